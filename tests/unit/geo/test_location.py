"""Request location (SPEC.md R-LOC-05..07, R-LOC-13) and the static GeoIP table.

Table tests cover every branch of R-LOC-06 and the location part of SPEC-EXAMPLES EX-28..EX-32,
run against both GeoIP backends built from the base fixture: an MMDB file read by GeoDatabase, and
the ``geo.backend: static`` table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lbdns.geo.data import default_regions
from lbdns.geo.distance import haversine_km
from lbdns.geo.location import (
    GeoRecord,
    ResolvedLocation,
    StaticGeoTable,
    location_ecs_scope,
    resolve_location,
    yields_need,
)
from lbdns.geo.mmdb import GeoDatabase
from lbdns.geo.pops import Pop
from lbdns.geo.regions import RegionMap
from tests.fixtures.geo import BASE_GEO_TABLE, BASE_NO_DATA, BASE_POPS, base_fixture_dbs

Lookup = Callable[[Any], GeoRecord | None]

# ECS addresses are the masked network addresses (R-LOC-04)
NEW_YORK = "198.51.100.0"
SAN_FRANCISCO = "198.51.100.64"
TOKYO = "198.51.100.128"
LONDON = "203.0.113.0"
FRANKFURT = "203.0.113.64"
DEFAULT_RESOLVER = "198.51.100.5"  # New York
REGIONS = default_regions()

POOLS = {
    "p-us-east": (39.04, -77.49),
    "p-us-west": (37.37, -121.92),
    "p-eu": (50.11, 8.68),
    "p-asia": (35.68, 139.77),
}


@pytest.fixture(scope="module", params=["mmdb", "static"])
def lookup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lookup]:
    if request.param == "mmdb":
        city, asn = base_fixture_dbs(tmp_path_factory.mktemp("loc"))
        with GeoDatabase.open(city, asn) as db:
            yield db.lookup
    else:
        yield StaticGeoTable.from_mapping(BASE_GEO_TABLE).lookup


def loc(
    lookup: Lookup,
    *,
    prefer_ecs: str = "proximity",
    mode: str = "pop",
    policy: str = "geo",
    need: str | None = None,
    ecs: str | None = None,
    resolver: str | None = DEFAULT_RESOLVER,
    pop: str = "IAD",
) -> ResolvedLocation:
    if need is None:
        need = "coordinates" if policy == "proximity" else "country"
    return resolve_location(
        prefer_ecs=prefer_ecs,
        mode=mode,
        policy=policy,
        need=need,
        ecs_ip=ecs,
        resolver_ip=resolver,
        pop=BASE_POPS[pop],
        lookup=lookup,
        regions=REGIONS,
    )


def nearest_pool(where: ResolvedLocation) -> str:
    assert where.latitude is not None and where.longitude is not None
    lat, lon = where.latitude, where.longitude
    return min(POOLS, key=lambda p: haversine_km(lat, lon, *POOLS[p]))


# ---------------------------------------------------------------------------- R-LOC-06 branches

# (prefer_ecs, policy) → is ECS preferred
PREFER_TABLE = [
    ("always", "geo", True),
    ("always", "proximity", True),
    ("never", "geo", False),
    ("never", "proximity", False),
    ("proximity", "proximity", True),
    ("proximity", "geo", False),
    ("geo", "geo", True),
    ("geo", "proximity", False),
]


@pytest.mark.parametrize(("prefer_ecs", "policy", "preferred"), PREFER_TABLE)
def test_prefer_ecs_against_resolved_policy(
    lookup: Lookup, prefer_ecs: str, policy: str, preferred: bool
) -> None:
    r = loc(lookup, prefer_ecs=prefer_ecs, mode="pop", policy=policy, ecs=TOKYO, pop="SJC")
    if preferred:
        assert (r.source, r.country, r.ecs_consulted, r.network_prefix) == ("ecs", "JP", True, 26)
        assert (r.latitude, r.longitude) == (35.69, 139.69)
    else:
        assert (r.source, r.country, r.ecs_consulted, r.network_prefix) == ("pop", "US", False, None)


@pytest.mark.parametrize(
    ("case", "kwargs", "expected"),
    [
        # preferred ECS that yields wins over a resolver that would also yield
        (
            "ecs",
            dict(prefer_ecs="always", mode="resolver_ip", ecs=TOKYO, resolver=LONDON),
            ("ecs", "JP", True),
        ),
        # preferred ECS without data → resolver (ECS was still consulted)
        (
            "ecs-miss-resolver",
            dict(prefer_ecs="always", mode="resolver_ip", ecs=BASE_NO_DATA, resolver=LONDON),
            ("resolver", "GB", True),
        ),
        # preferred ECS without data, mode pop → PoP
        ("ecs-miss-pop", dict(prefer_ecs="always", mode="pop", ecs=BASE_NO_DATA), ("pop", "US", True)),
        # no ECS → resolver
        (
            "no-ecs-resolver",
            dict(prefer_ecs="always", mode="resolver_ip", resolver=LONDON),
            ("resolver", "GB", False),
        ),
        # ECS not preferred → resolver, ECS not consulted
        (
            "not-preferred-resolver",
            dict(prefer_ecs="never", mode="resolver_ip", ecs=TOKYO, resolver=LONDON),
            ("resolver", "GB", False),
        ),
        # ECS not preferred, mode pop → PoP
        (
            "not-preferred-pop",
            dict(prefer_ecs="never", mode="pop", ecs=TOKYO, resolver=LONDON),
            ("pop", "US", False),
        ),
        # resolver lookup fails → PoP
        (
            "resolver-miss",
            dict(prefer_ecs="never", mode="resolver_ip", resolver=BASE_NO_DATA),
            ("pop", "US", False),
        ),
        # private resolver address → PoP
        (
            "resolver-private",
            dict(prefer_ecs="never", mode="resolver_ip", resolver="10.0.0.53"),
            ("pop", "US", False),
        ),
        # no resolver address at all → PoP
        ("resolver-none", dict(prefer_ecs="never", mode="resolver_ip", resolver=None), ("pop", "US", False)),
        # both fail → PoP, ECS consulted
        (
            "all-miss",
            dict(prefer_ecs="always", mode="resolver_ip", ecs=BASE_NO_DATA, resolver="192.168.0.1"),
            ("pop", "US", True),
        ),
    ],
)
@pytest.mark.parametrize("policy", ["geo", "proximity"])
def test_r_loc_06_branches(
    lookup: Lookup, case: str, kwargs: dict[str, Any], expected: tuple[str, str, bool], policy: str
) -> None:
    r = loc(lookup, policy=policy, **kwargs)
    assert (r.source, r.country, r.ecs_consulted) == expected, case
    if r.source == "pop":
        iad = BASE_POPS["IAD"]
        assert (r.latitude, r.longitude, r.region, r.network_prefix) == (
            iad.latitude,
            iad.longitude,
            "ENAM",
            None,
        )
    else:
        assert r.network_prefix == 26


def _table(rows: dict[str, dict[str, Any]]) -> Lookup:
    return StaticGeoTable.from_mapping(rows).lookup


def test_missing_attribute_counts_as_failed_lookup() -> None:
    # R-LOC-13: country-only data does not yield coordinates, coordinates-only data no country
    lookup = _table(
        {
            "192.0.2.0/24": {"country": "FR"},
            "198.18.0.0/24": {"latitude": 48.85, "longitude": 2.35},
            "198.18.1.0/24": {"country": "IT", "latitude": 41.9},  # half a coordinate
        }
    )
    ecs_country_only = dict(prefer_ecs="always", mode="resolver_ip", ecs="192.0.2.0", resolver="198.18.0.1")
    r = loc(lookup, policy="proximity", **ecs_country_only)
    assert (r.source, r.country, r.latitude, r.ecs_consulted) == ("resolver", None, 48.85, True)
    r = loc(lookup, policy="geo", **ecs_country_only)
    assert (r.source, r.country, r.latitude) == ("ecs", "FR", None)
    r = loc(lookup, policy="geo", prefer_ecs="never", mode="resolver_ip", resolver="198.18.0.1")
    assert r.source == "pop"
    r = loc(lookup, policy="proximity", prefer_ecs="always", ecs="198.18.1.0")
    assert (r.source, r.ecs_consulted) == ("pop", True)


def test_region_for_geo_region_source_location(lookup: Lookup) -> None:
    # R-LOC-07: region_of(Loc.country, Loc.subdivision) for ecs/resolver, else the PoP region
    r = loc(lookup, prefer_ecs="always", ecs=SAN_FRANCISCO, pop="IAD")
    assert (r.country, r.subdivision, r.region) == ("US", "CA", "WNAM")
    r = loc(lookup, prefer_ecs="always", ecs=NEW_YORK, pop="SJC")
    assert (r.country, r.subdivision, r.region) == ("US", "NY", "ENAM")
    r = loc(lookup, prefer_ecs="always", ecs=TOKYO, pop="LHR")
    assert r.region == "NEAS"
    r = loc(lookup, prefer_ecs="never", mode="pop", pop="FRA")
    assert (r.source, r.country, r.region) == ("pop", "DE", "WEU")


def test_region_falls_back_to_pop_region_when_unmapped() -> None:
    regions = RegionMap.from_rows([{"code": "FR", "region": "WEU"}])
    lookup = _table({"192.0.2.0/24": {"country": "JP", "latitude": 35.0, "longitude": 139.0}})
    r = resolve_location(
        prefer_ecs="always",
        mode="pop",
        policy="geo",
        need="country",
        ecs_ip="192.0.2.0",
        resolver_ip=None,
        pop=BASE_POPS["LHR"],
        lookup=lookup,
        regions=regions,
    )
    assert (r.source, r.country, r.region) == ("ecs", "JP", "WEU")


def test_pop_subdivision_is_carried() -> None:
    pop = Pop("IAD", "ENAM", "US", 38.94, -77.46, city="Dulles", subdivision="VA")
    r = resolve_location(
        prefer_ecs="never",
        mode="pop",
        policy="geo",
        need="country",
        ecs_ip=None,
        resolver_ip=None,
        pop=pop,
        lookup=_table({}),
        regions=REGIONS,
    )
    assert r == ResolvedLocation("pop", "US", "VA", 38.94, -77.46, "ENAM", None, False)


def test_lookup_not_called_when_not_needed() -> None:
    calls: list[object] = []

    def spy(ip: object) -> GeoRecord | None:
        calls.append(ip)
        return None

    resolve_location(
        prefer_ecs="proximity",
        mode="pop",
        policy="geo",
        need="country",
        ecs_ip=TOKYO,
        resolver_ip=LONDON,
        pop=BASE_POPS["IAD"],
        lookup=spy,
        regions=REGIONS,
    )
    assert calls == []
    resolve_location(
        prefer_ecs="always",
        mode="resolver_ip",
        policy="geo",
        need="country",
        ecs_ip=TOKYO,
        resolver_ip=LONDON,
        pop=BASE_POPS["IAD"],
        lookup=spy,
        regions=REGIONS,
    )
    assert calls == [TOKYO, LONDON]


@pytest.mark.parametrize(
    "kwargs",
    [{"prefer_ecs": "sometimes"}, {"mode": "ecs"}, {"need": "region"}, {"prefer_ecs": ""}],
)
def test_invalid_arguments(kwargs: dict[str, str]) -> None:
    args: dict[str, Any] = dict(
        prefer_ecs="always",
        mode="pop",
        policy="geo",
        need="country",
        ecs_ip=None,
        resolver_ip=None,
        pop=BASE_POPS["IAD"],
        lookup=_table({}),
        regions=REGIONS,
    )
    args.update(kwargs)
    with pytest.raises(ValueError):
        resolve_location(**args)


def test_yields_need() -> None:
    full = GeoRecord("US", "NY", 40.71, -74.01, 64500, 26)
    assert yields_need(full, "country") and yields_need(full, "coordinates")
    assert not yields_need(None, "country") and not yields_need(None, "coordinates")
    assert not yields_need(GeoRecord(None, None, 1.0, 2.0, None, 8), "country")
    assert not yields_need(GeoRecord("FR", None, 1.0, None, None, 8), "coordinates")
    with pytest.raises(ValueError):
        yields_need(full, "asn")


# ---------------------------------------------------------------------------- SPEC-EXAMPLES


@pytest.mark.parametrize(
    ("case", "kwargs", "source", "country"),
    [
        ("EX-29.1", dict(prefer_ecs="geo", mode="pop", ecs=TOKYO, pop="SJC"), "ecs", "JP"),
        ("EX-29.2", dict(prefer_ecs="geo", mode="pop", pop="SJC"), "pop", "US"),
        (
            "EX-29.3",
            dict(prefer_ecs="never", mode="resolver_ip", resolver="198.51.100.130", ecs=NEW_YORK, pop="SJC"),
            "resolver",
            "JP",
        ),
        (
            "EX-29.4",
            dict(prefer_ecs="never", mode="resolver_ip", resolver=BASE_NO_DATA, ecs=NEW_YORK, pop="SJC"),
            "pop",
            "US",
        ),
        ("EX-29.5", dict(prefer_ecs="proximity", mode="pop", ecs=TOKYO, pop="SJC"), "pop", "US"),
        ("EX-30.2", dict(prefer_ecs="never", mode="pop", pop="FRA"), "pop", "DE"),
        ("EX-30.3", dict(prefer_ecs="always", mode="pop", ecs=LONDON, pop="FRA"), "ecs", "GB"),
    ],
)
def test_geo_examples(lookup: Lookup, case: str, kwargs: dict[str, Any], source: str, country: str) -> None:
    r = loc(lookup, policy="geo", **kwargs)
    assert (r.source, r.country) == (source, country), case
    if case == "EX-29.2":
        assert r.region == "WNAM"  # SJC region (not mapped in EX-29 ⇒ default pools)


def test_ex_28_4_ecs_does_not_change_pop(lookup: Lookup) -> None:
    # EX-28.4: the location comes from ECS (JP), the PoP (and its region WEU) is unchanged
    r = loc(lookup, policy="geo", prefer_ecs="always", mode="resolver_ip", ecs=TOKYO, pop="LHR")
    assert (r.source, r.country) == ("ecs", "JP")
    assert BASE_POPS["LHR"].region == "WEU"


@pytest.mark.parametrize(
    ("case", "kwargs", "source", "pool"),
    [
        ("EX-32.1", dict(ecs=SAN_FRANCISCO, pop="IAD"), "ecs", "p-us-west"),
        ("EX-32.2", dict(resolver="203.0.113.10", pop="IAD"), "pop", "p-us-east"),
        (
            "EX-32.3",
            dict(
                prefer_ecs="never", mode="resolver_ip", resolver="203.0.113.10", ecs=SAN_FRANCISCO, pop="IAD"
            ),
            "resolver",
            "p-eu",
        ),
        (
            "EX-32.4",
            dict(prefer_ecs="never", mode="resolver_ip", resolver=BASE_NO_DATA, ecs=SAN_FRANCISCO, pop="IAD"),
            "pop",
            "p-us-east",
        ),
        ("EX-32.6", dict(ecs=TOKYO, pop="NRT"), "ecs", "p-asia"),
    ],
)
def test_proximity_examples(
    lookup: Lookup, case: str, kwargs: dict[str, Any], source: str, pool: str
) -> None:
    r = loc(lookup, policy="proximity", **kwargs)  # default location_strategy: proximity / pop
    assert r.source == source, case
    assert nearest_pool(r) == pool, case


def test_ex_32_5_next_nearest(lookup: Lookup) -> None:
    r = loc(lookup, policy="proximity", ecs=SAN_FRANCISCO, pop="IAD")
    assert r.latitude is not None and r.longitude is not None
    order = sorted(POOLS, key=lambda p: haversine_km(r.latitude, r.longitude, *POOLS[p]))  # type: ignore[arg-type]
    assert order[:2] == ["p-us-west", "p-us-east"]
    assert round(haversine_km(r.latitude, r.longitude, *POOLS["p-us-east"])) == 3877


# ---------------------------------------------------------------------------- static table


def test_static_table_longest_prefix_and_ipv6() -> None:
    t = StaticGeoTable.from_mapping(
        {
            "10.0.0.0/8": {"country": "US"},
            "10.1.0.0/16": {"country": "ca", "subdivision": "CA-BC", "latitude": 49.2, "longitude": -123.1},
            "10.1.2.3/32": {"country": "GB", "asn": 64496},
            "2001:db8::/32": {"country": "FR"},
            "2001:db8:1::/48": {"country": "DE"},
        }
    )
    assert len(t) == 5
    assert t.lookup("10.9.9.9") == GeoRecord("US", None, None, None, None, 8)
    assert t.lookup("10.1.9.9") == GeoRecord("CA", "BC", 49.2, -123.1, None, 16)
    assert t.lookup("10.1.2.3") == GeoRecord("GB", None, None, None, 64496, 32)
    assert t.lookup("2001:db8:2::1") == GeoRecord("FR", None, None, None, None, 32)
    assert t.lookup("2001:db8:1::1") == GeoRecord("DE", None, None, None, None, 48)
    assert t.lookup("11.0.0.1") is None
    assert t.lookup("::1") is None
    assert t.lookup(bytes([10, 1, 2, 3])) == t.lookup("10.1.2.3")
    assert t.lookup(ipaddress.ip_address("2001:db8:1::1").packed) == t.lookup("2001:db8:1::1")


def test_static_table_matches_fixture_database(tmp_path: Path) -> None:
    city, asn = base_fixture_dbs(tmp_path)
    static = StaticGeoTable.from_mapping(BASE_GEO_TABLE)
    with GeoDatabase.open(city, asn) as db:
        for prefix in ("198.51.100.", "203.0.113."):
            for i in range(256):
                ip = f"{prefix}{i}"
                assert static.lookup(ip) == db.lookup(ip), ip


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"192.0.2.1/24": {"country": "US"}}, "host bits"),
        ({"192.0.2.0/24": {"country": "USA"}}, "alpha-2"),
        ({"192.0.2.0/24": {"country": "FR", "subdivision": "75"}}, "only used for US and CA"),
        ({"192.0.2.0/24": {"latitude": 91}}, "latitude"),
        ({"192.0.2.0/24": {"longitude": 181}}, "longitude"),
        ({"192.0.2.0/24": {"asn": -1}}, "asn"),
        ({"not-a-cidr": {}}, "not-a-cidr"),
    ],
)
def test_static_table_rejects(row: dict[str, dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StaticGeoTable.from_mapping(row)


# ---------------------------------------------------------------------------- ECS scope (R-ANS-50)


@pytest.mark.parametrize(
    ("kwargs", "source_prefix", "scope"),
    [
        # ECS decided: the GeoIP network's /26, capped by the source prefix
        (dict(prefer_ecs="always", ecs=TOKYO), 24, 24),
        (dict(prefer_ecs="always", ecs=TOKYO), 28, 26),
        (dict(prefer_ecs="always", ecs=TOKYO), 32, 26),
        # ECS consulted but no data: the source prefix
        (dict(prefer_ecs="always", ecs=BASE_NO_DATA), 32, 32),
        (dict(prefer_ecs="always", mode="resolver_ip", ecs=BASE_NO_DATA, resolver=LONDON), 24, 24),
        # ECS not consulted: 0
        (dict(prefer_ecs="never", mode="resolver_ip", ecs=TOKYO, resolver=LONDON), 24, 0),
        (dict(prefer_ecs="proximity", ecs=TOKYO), 24, 0),  # policy geo: not preferred
    ],
)
def test_location_ecs_scope(lookup: Lookup, kwargs: dict[str, Any], source_prefix: int, scope: int) -> None:
    assert location_ecs_scope(loc(lookup, policy="geo", **kwargs), source_prefix) == scope


def test_location_ecs_scope_without_location() -> None:
    assert location_ecs_scope(None, 24) == 0
