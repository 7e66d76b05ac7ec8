"""GeoIP records and the request location algorithm (pure).

* :class:`GeoRecord` — what a GeoIP lookup returns.
* :func:`resolve_location` — the ``location_strategy`` algorithm (ECS → resolver → PoP; Cloudflare
  docs: Load Balancing › Global traffic steering › EDNS Client Subnet (ECS) support; Cloudflare
  API docs: Load Balancer Details › ``location_strategy``) and the region for ``region_pools``,
  given any lookup callable (``GeoDatabase.lookup`` from ``lbdns.geo.mmdb``, or
  :meth:`StaticGeoTable.lookup`).
* :class:`StaticGeoTable` — longest-prefix CIDR table, the static GeoIP backend used by tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any, NamedTuple, TypeGuard, TypeVar

from lbdns.geo.pops import Pop
from lbdns.geo.regions import SUBDIVIDED_COUNTRIES, RegionMap

__all__ = [
    "MODES",
    "NEEDS",
    "PREFER_ECS",
    "SOURCES",
    "GeoRecord",
    "ResolvedLocation",
    "StaticGeoTable",
    "location_ecs_scope",
    "resolve_location",
    "yields_need",
]

#: Allowed ``location_strategy.prefer_ecs`` values (Cloudflare API docs: Load Balancer Details).
PREFER_ECS: frozenset[str] = frozenset({"always", "never", "proximity", "geo"})
#: Allowed ``location_strategy.mode`` values (Cloudflare API docs: Load Balancer Details).
MODES: frozenset[str] = frozenset({"pop", "resolver_ip"})
#: What the steering policy needs from a location: a country for geo, coordinates for proximity.
NEEDS: frozenset[str] = frozenset({"country", "coordinates"})
#: Values of :attr:`ResolvedLocation.source`.
SOURCES: frozenset[str] = frozenset({"ecs", "resolver", "pop"})

A = TypeVar("A")

# Builds a NamedTuple without the generated __new__'s argument handling (hot path).
_new_tuple = tuple.__new__


@dataclass(frozen=True, slots=True)
class GeoRecord:
    """Result of one GeoIP lookup.

    ``country``: ISO-3166-1 alpha-2, upper case, or None. ``subdivision``: ISO-3166-2 suffix
    (``"CA"`` for California) for US/CA addresses only, else None. ``latitude`` / ``longitude``:
    decimal degrees or None. ``asn``: autonomous system number or None. ``prefix_len``: prefix
    length of the GeoIP network that matched, in the address family of the query (an IPv4 lookup
    reports 0…32 even in an IPv6-tree database) — the source of the ECS scope (RFC 7871 §7.2.1;
    docs/decisions.md › DNS protocol).
    """

    country: str | None
    subdivision: str | None
    latitude: float | None
    longitude: float | None
    asn: int | None
    prefix_len: int

    @property
    def has_coordinates(self) -> bool:
        """True when both latitude and longitude are known."""
        return self.latitude is not None and self.longitude is not None


class ResolvedLocation(NamedTuple):
    """The request location computed from ``location_strategy`` (immutable).

    A ``NamedTuple`` rather than a frozen dataclass because it is built on the query hot path:
    construction costs ~0.1 µs against ~1.5 µs for a frozen slotted dataclass (measured, CPython
    3.11). Use the field names; ``_replace`` gives a modified copy.

    ``source``: ``"ecs"``, ``"resolver"`` or ``"pop"``. ``country`` / ``subdivision`` /
    ``latitude`` / ``longitude`` (decimal degrees): from the GeoIP record that decided, or the PoP's.
    ``region``: the region for ``geo_region_source: location`` (docs/steering.md › ``geo``) —
    ``regions.region_of(country, subdivision)`` for ecs/resolver sources when a mapping exists, else the
    PoP's region; for ``source == "pop"`` the PoP's region. ``network_prefix``: prefix length of the
    GeoIP network that decided (ecs/resolver sources), else None. ``ecs_consulted``: True when the
    ECS address was looked up, even if that lookup did not yield what was needed — drives the
    ECS scope (RFC 7871 §7.2.1; consulted and decided ⇒ ``min(network_prefix, source prefix)``;
    consulted but fell through ⇒ source prefix; not consulted ⇒ 0).
    """

    source: str
    country: str | None
    subdivision: str | None
    latitude: float | None
    longitude: float | None
    region: str | None
    network_prefix: int | None
    ecs_consulted: bool


def yields_need(record: GeoRecord | None, need: str) -> bool:
    """Tell whether a lookup result is successful for ``need`` (a missing attribute counts as an
    unsuccessful lookup, lbdns decision).

    ``need == "country"``: the record has a country. ``need == "coordinates"``: it has both
    latitude and longitude. A None record (address absent from the data) never yields.
    Raises ValueError for any other ``need``.
    """
    if need not in NEEDS:
        raise ValueError(f"need {need!r} (allowed: country, coordinates)")
    return _yields(record, need == "country")


def _yields(record: GeoRecord | None, need_country: bool) -> TypeGuard[GeoRecord]:
    if record is None:
        return False
    if need_country:
        return record.country is not None
    return record.latitude is not None and record.longitude is not None


def _from_record(
    source: str, record: GeoRecord, pop: Pop, ecs_consulted: bool, regions: RegionMap
) -> ResolvedLocation:
    country = record.country
    region = regions.region_of(country, record.subdivision) if country else None
    return _new_tuple(
        ResolvedLocation,
        (
            source,
            country,
            record.subdivision,
            record.latitude,
            record.longitude,
            region or pop.region,
            record.prefix_len,
            ecs_consulted,
        ),
    )


def resolve_location(
    *,
    prefer_ecs: str,
    mode: str,
    policy: str,
    need: str,
    ecs_ip: A | None,
    resolver_ip: A | None,
    pop: Pop,
    lookup: Callable[[A], GeoRecord | None],
    regions: RegionMap,
) -> ResolvedLocation:
    """Compute the request location (Cloudflare docs: Load Balancing › Global traffic steering ›
    EDNS Client Subnet (ECS) support; Cloudflare API docs: Load Balancer Details ›
    ``location_strategy``).

    Takes ``prefer_ecs`` / ``mode`` from the LB's ``location_strategy``, the *resolved* steering
    ``policy`` (after ``""`` mapping and rule overrides; lbdns decision, docs/decisions.md ›
    Steering), ``need`` (``"country"`` for geo, ``"coordinates"`` for proximity), the ECS address
    (``None`` when absent or of source prefix 0, docs/decisions.md › DNS protocol; already masked
    to the source prefix, RFC 7871 §6), the resolver address (or None), the PoP that received the
    query, a ``lookup`` callable returning a :class:`GeoRecord` or None, and the region table
    ``regions`` that maps a looked-up country (and US/CA subdivision) to its region.

    ECS is used when preferred (``always``, or ``proximity`` / ``geo`` equal to ``policy``) and its
    lookup yields ``need``; else, with ``mode == "resolver_ip"``, the resolver's lookup if it
    yields ``need``; else the PoP (coordinates, country, subdivision and region of ``pop``).
    Returns a :class:`ResolvedLocation`. Raises ValueError for an unknown ``prefer_ecs``, ``mode``
    or ``need``; exceptions from ``lookup`` propagate.
    """
    if need not in NEEDS:
        raise ValueError(f"need {need!r} (allowed: country, coordinates)")
    if prefer_ecs == "always":
        prefer = True
    elif prefer_ecs == "never":
        prefer = False
    elif prefer_ecs == "proximity" or prefer_ecs == "geo":
        prefer = policy == prefer_ecs
    else:
        raise ValueError(f"prefer_ecs {prefer_ecs!r} (allowed: always, never, proximity, geo)")
    if mode != "pop" and mode != "resolver_ip":
        raise ValueError(f"mode {mode!r} (allowed: pop, resolver_ip)")

    need_country = need == "country"
    ecs_consulted = False
    if prefer and ecs_ip is not None:
        ecs_consulted = True
        record = lookup(ecs_ip)
        if _yields(record, need_country):
            return _from_record("ecs", record, pop, True, regions)
    if mode == "resolver_ip" and resolver_ip is not None:
        record = lookup(resolver_ip)
        if _yields(record, need_country):
            return _from_record("resolver", record, pop, ecs_consulted, regions)
    return _new_tuple(
        ResolvedLocation,
        ("pop", pop.country, pop.subdivision, pop.latitude, pop.longitude, pop.region, None, ecs_consulted),
    )


def location_ecs_scope(loc: ResolvedLocation | None, source_prefix: int) -> int:
    """Return the ECS SCOPE PREFIX-LENGTH that the location part of an answer requires.

    RFC 7871 §7.2.1 (docs/decisions.md › DNS protocol): the location came from ECS ⇒ the prefix
    length of the GeoIP network that decided, but no more than ``source_prefix``; ECS was consulted
    but fell through (no data, or not the needed attribute) ⇒ ``source_prefix``; ECS not consulted,
    or no location computed (``loc`` None) ⇒ 0. The caller combines this with the rule part of the
    scope (``max`` with ``source_prefix`` when a rule read the ECS address). Never raises.
    """
    if loc is None or not loc.ecs_consulted:
        return 0
    if loc.source == "ecs" and loc.network_prefix is not None:
        return min(loc.network_prefix, source_prefix)
    return source_prefix


class StaticGeoTable:
    """The static GeoIP table of the tests (not a server setting): CIDR → record.

    Longest-prefix match over IPv4 and IPv6 networks (one dict per prefix length present, probed
    longest first). Addresses outside every network are unsuccessful lookups (None).
    """

    __slots__ = ("_tables",)

    def __init__(self, entries: Iterable[tuple[IPv4Network | IPv6Network, GeoRecord]]) -> None:
        """Take ``(network, record)`` pairs; each record's ``prefix_len`` should equal the network's.

        Raises ValueError on a duplicate network.
        """
        by_family: dict[int, dict[int, dict[int, GeoRecord]]] = {4: {}, 6: {}}
        for net, rec in entries:
            per_len = by_family[net.version].setdefault(net.prefixlen, {})
            key = int(net.network_address) >> (net.max_prefixlen - net.prefixlen)
            if key in per_len:
                raise ValueError(f"duplicate network {net}")
            per_len[key] = rec
        self._tables: dict[int, tuple[tuple[int, int, dict[int, GeoRecord]], ...]] = {
            fam: tuple(
                (plen, (32 if fam == 4 else 128) - plen, tbl)
                for plen, tbl in sorted(tables.items(), reverse=True)
            )
            for fam, tables in by_family.items()
        }

    @classmethod
    def from_mapping(cls, table: Mapping[str, Mapping[str, Any]]) -> StaticGeoTable:
        """Build from ``{cidr: {country, subdivision, latitude, longitude, asn}}`` (every attribute
        optional; the tests' ``geo_static`` layout).

        Returns the table. Raises ValueError naming the CIDR on a bad network (host bits set), a
        country that is not two letters, a subdivision outside US/CA, out-of-range coordinates or a
        negative ASN.
        """
        entries: list[tuple[IPv4Network | IPv6Network, GeoRecord]] = []
        for cidr, attrs in table.items():
            try:
                net = ip_network(str(cidr), strict=True)
                entries.append((net, _record_from_attrs(attrs, net.prefixlen)))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"geo_static {cidr}: {exc}") from exc
        return cls(entries)

    def lookup(self, ip: str | bytes | IPv4Address | IPv6Address) -> GeoRecord | None:
        """Return the record of the longest network containing ``ip``, or None.

        Takes an address string, packed bytes (4 or 16) or ``ipaddress`` object. Raises ValueError
        for an invalid string or packed length.
        """
        addr = ip_address(ip) if isinstance(ip, (str, bytes)) else ip
        n = int(addr)
        for _plen, shift, tbl in self._tables[addr.version]:
            rec = tbl.get(n >> shift)
            if rec is not None:
                return rec
        return None

    def __len__(self) -> int:
        return sum(len(tbl) for fam in self._tables.values() for _p, _s, tbl in fam)


def _record_from_attrs(attrs: Mapping[str, Any], prefix_len: int) -> GeoRecord:
    country = attrs.get("country")
    if country is not None:
        country = str(country)
        if not (len(country) == 2 and country.isascii() and country.isalpha()):
            raise ValueError(f"country {country!r} is not an ISO-3166-1 alpha-2 code")
        country = country.upper()
    subdivision = attrs.get("subdivision")
    if subdivision is not None:
        subdivision = str(subdivision).upper()
        if country not in SUBDIVIDED_COUNTRIES:
            raise ValueError("subdivision is only used for US and CA")
        if subdivision.startswith(f"{country}-"):
            subdivision = subdivision[3:]
    lat = attrs.get("latitude")
    lon = attrs.get("longitude")
    latitude = None if lat is None else float(lat)
    longitude = None if lon is None else float(lon)
    if latitude is not None and not (math.isfinite(latitude) and -90.0 <= latitude <= 90.0):
        raise ValueError(f"latitude {lat!r} out of range (-90..90)")
    if longitude is not None and not (math.isfinite(longitude) and -180.0 <= longitude <= 180.0):
        raise ValueError(f"longitude {lon!r} out of range (-180..180)")
    asn_raw = attrs.get("asn")
    asn = None if asn_raw is None else int(asn_raw)
    if asn is not None and not 0 <= asn <= 0xFFFFFFFF:
        raise ValueError(f"asn {asn_raw!r} out of range (0..4294967295)")
    return GeoRecord(country, subdivision, latitude, longitude, asn, prefix_len)
