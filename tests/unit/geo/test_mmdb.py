"""GeoDatabase: MaxMind DB lookups and the per-network memo (SPEC.md R-LOC-13, R-ANS-50)."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path
from typing import Any

import maxminddb
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from lbdns.geo.data import GeoDataError, default_regions
from lbdns.geo.location import GeoRecord
from lbdns.geo.mmdb import GeoDatabase
from tests.fixtures.geo import BASE_GEO_TABLE, BASE_NO_DATA, base_fixture_dbs, build_asn_mmdb, build_city_mmdb

EU = {
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
}  # fmt: skip


class SpyReader:
    """A maxminddb reader that counts lookups."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.calls = 0

    def get_with_prefix_len(self, ip: Any) -> Any:
        self.calls += 1
        return self.reader.get_with_prefix_len(ip)

    def metadata(self) -> Any:
        return self.reader.metadata()

    def close(self) -> None:
        self.reader.close()


@pytest.fixture(scope="module")
def base_dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return base_fixture_dbs(tmp_path_factory.mktemp("geo"))


@pytest.fixture
def db(base_dbs: tuple[Path, Path]) -> Any:
    with GeoDatabase.open(*base_dbs) as g:
        yield g


# ---------------------------------------------------------------------------- fixture databases


def test_fixture_files_read_back_with_maxminddb(base_dbs: tuple[Path, Path]) -> None:
    city, asn = base_dbs
    with maxminddb.open_database(str(city)) as r:
        assert r.metadata().database_type == "GeoIP2-City"
        assert r.metadata().ip_version == 6
        rec, plen = r.get_with_prefix_len("198.51.100.70")
        assert plen == 26
        assert rec == {
            "country": {"iso_code": "US"},
            "subdivisions": [{"iso_code": "CA"}],
            "location": {"latitude": 37.77, "longitude": -122.42},
        }
    with maxminddb.open_database(str(asn)) as r:
        assert r.metadata().database_type == "GeoLite2-ASN"
        rec, plen = r.get_with_prefix_len("203.0.113.70")
        assert plen == 26
        assert isinstance(rec, dict) and rec["autonomous_system_number"] == 64504


@pytest.mark.parametrize("cidr", list(BASE_GEO_TABLE))
def test_every_base_row(db: GeoDatabase, cidr: str) -> None:
    row = BASE_GEO_TABLE[cidr]
    net = ipaddress.ip_network(cidr)
    for addr in (net.network_address, net.network_address + 17, net.broadcast_address):
        rec = db.lookup(str(addr))
        assert rec == GeoRecord(
            country=row["country"],
            subdivision=row.get("subdivision"),
            latitude=row["latitude"],
            longitude=row["longitude"],
            asn=row["asn"],
            prefix_len=26,
        )


def test_hit_record(db: GeoDatabase) -> None:
    rec = db.lookup("198.51.100.70")
    assert rec == GeoRecord("US", "CA", 37.77, -122.42, 64501, 26)
    assert rec is not None and default_regions().region_of(rec.country, rec.subdivision) == "WNAM"


@pytest.mark.parametrize(
    "ip", [BASE_NO_DATA, "203.0.113.192", "10.0.0.1", "192.168.1.1", "127.0.0.1", "2001:db8::1"]
)
def test_miss_is_none(db: GeoDatabase, ip: str) -> None:
    assert db.lookup(ip) is None
    assert db.lookup(ip) is None  # also from the memo


def test_ipaddress_objects_packed_bytes_and_text_agree(base_dbs: tuple[Path, Path]) -> None:
    for ip in ("198.51.100.130", "203.0.113.70", BASE_NO_DATA, "::198.51.100.70", "2001:db8::1"):
        addr = ipaddress.ip_address(ip)
        # each form first on a fresh database (DB path), then from a shared memo
        results = []
        for form in (ip, addr, addr.packed):
            with GeoDatabase.open(*base_dbs) as fresh:
                results.append(fresh.lookup(form))
        with GeoDatabase.open(*base_dbs) as shared:
            results += [shared.lookup(form) for form in (ip, addr, addr.packed)]
        assert all(r == results[0] for r in results), ip


@pytest.mark.parametrize("bad", [b"", b"\x01\x02\x03", b"\x00" * 5, b"\x00" * 17])
def test_invalid_packed_length(db: GeoDatabase, bad: bytes) -> None:
    with pytest.raises(ValueError, match="4 or 16 bytes"):
        db.lookup(bad)


def test_ipv4_mapped_ipv6_is_an_ipv6_lookup(db: GeoDatabase) -> None:
    # The fixture stores IPv4 in ::/96 only (no ::ffff:0:0/96 alias, unlike MaxMind's files).
    rec = db.lookup("::198.51.100.70")
    assert rec is not None and rec.country == "US" and rec.prefix_len == 122
    assert db.lookup("::ffff:198.51.100.70") is None


@pytest.mark.parametrize("bad", ["", "198.51.100", "198.51.100.256", "1.2.3.4/24", "fe80::1%eth0", "::g"])
def test_invalid_text_raises_value_error(db: GeoDatabase, bad: str) -> None:
    with pytest.raises(ValueError):
        db.lookup(bad)


def test_wrong_type_raises_type_error(db: GeoDatabase) -> None:
    with pytest.raises(TypeError):
        db.lookup(3325256774)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- prefix lengths


@pytest.fixture(scope="module")
def v6_dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("geo6")
    table: dict[str, dict[str, Any]] = {
        "2001:db8:10::/44": {"country": "FR", "latitude": 48.86, "longitude": 2.35, "asn": 65010},
        "2001:db8:20::/56": {"country": "US", "subdivision": "WA", "latitude": 47.6, "longitude": -122.3},
        "2001:db8:30::/64": {"country": "JP"},  # country only, no coordinates
        "2001:db8:40::/48": {"latitude": 1.0, "longitude": 2.0},  # coordinates only
        "10.0.0.0/16": {"country": "DE", "latitude": 50.11, "longitude": 8.68, "asn": 65016},
        "10.1.0.0/25": {"country": "GB", "latitude": 51.51, "longitude": -0.13},
        "10.1.0.128/26": {"country": "IE", "latitude": 53.35, "longitude": -6.26},
        "10.1.0.192/32": {"country": "NL", "latitude": 52.37, "longitude": 4.9},
        "10.2.0.0/24": {"country": "CA", "subdivision": "BC", "latitude": 49.28, "longitude": -123.12},
    }
    asn_table = {
        "2001:db8:10::/44": {"asn": 65010},
        # the ASN data splits the City network 10.2.0.0/24 into two /25s
        "10.2.0.0/25": {"asn": 65020},
        "10.2.0.128/25": {"asn": 65021},
    }
    return build_city_mmdb(d / "city.mmdb", table), build_asn_mmdb(d / "asn.mmdb", asn_table)


@pytest.mark.parametrize(
    ("ip", "plen", "country"),
    [
        ("2001:db8:10::1", 44, "FR"),
        ("2001:db8:1f:ffff::1", 44, "FR"),
        ("2001:db8:20:0:1::1", 56, "US"),
        ("2001:db8:30::5", 64, "JP"),
        ("10.0.200.1", 16, "DE"),
        ("10.1.0.5", 25, "GB"),
        ("10.1.0.130", 26, "IE"),
        ("10.1.0.192", 32, "NL"),
    ],
)
def test_prefix_len_in_query_family(v6_dbs: tuple[Path, Path], ip: str, plen: int, country: str) -> None:
    with GeoDatabase.open(*v6_dbs) as g:
        for _ in range(2):  # DB path, then memo path
            rec = g.lookup(ip)
            assert rec is not None
            assert (rec.prefix_len, rec.country) == (plen, country)


def test_partial_records(v6_dbs: tuple[Path, Path]) -> None:
    with GeoDatabase.open(v6_dbs[0]) as g:
        assert g.lookup("2001:db8:30::1") == GeoRecord("JP", None, None, None, None, 64)
        assert g.lookup("2001:db8:40::1") == GeoRecord(None, None, 1.0, 2.0, None, 48)
        assert g.lookup("2001:db8:20::1") == GeoRecord("US", "WA", 47.6, -122.3, None, 56)


def test_asn_database_splitting_a_city_network(v6_dbs: tuple[Path, Path]) -> None:
    with GeoDatabase.open(*v6_dbs) as g:
        assert g.has_asn
        a = g.lookup("10.2.0.1")
        b = g.lookup("10.2.0.200")
        assert a is not None and b is not None
        assert (a.asn, b.asn) == (65020, 65021)
        assert a.prefix_len == b.prefix_len == 24  # City network decides the location scope
        assert (a.country, a.subdivision) == ("CA", "BC")
        # memo keeps them apart
        assert g.lookup("10.2.0.2") == a and g.lookup("10.2.0.201") == b
        # ASN from the ASN database; None where it has no entry
        rec = g.lookup("2001:db8:10::1")
        assert rec is not None and rec.asn == 65010
        rec = g.lookup("10.0.0.1")
        assert rec is not None and rec.asn is None


def test_only_asn_data_gives_record_without_location(tmp_path: Path) -> None:
    city = build_city_mmdb(tmp_path / "c.mmdb", {"192.0.2.0/24": {"country": "FR"}})
    asn = build_asn_mmdb(tmp_path / "a.mmdb", {"198.18.0.0/15": {"asn": 64999}})
    with GeoDatabase.open(city, asn) as g:
        rec = g.lookup("198.18.5.5")
        assert rec is not None
        assert (rec.country, rec.latitude, rec.asn) == (None, None, 64999)


def test_ipv6_lookup_in_ipv4_only_database(tmp_path: Path) -> None:
    w = MMDBWriter(ip_version=4, database_type="GeoIP2-Country")
    w.insert_network(IPSet(["192.0.2.0/24"]), {"country": {"iso_code": "fr"}})
    path = tmp_path / "v4.mmdb"
    w.to_db_file(str(path))
    with GeoDatabase.open(path) as g:
        rec = g.lookup("192.0.2.9")
        assert rec == GeoRecord("FR", None, None, None, None, 24)  # upper-cased, no location
        assert g.lookup("2001:db8::1") is None


# ---------------------------------------------------------------------------- memo


def _spied(path: Path, cache_size: int = 100_000) -> tuple[GeoDatabase, SpyReader]:
    spy = SpyReader(maxminddb.open_database(str(path)))
    return GeoDatabase(spy, cache_size=cache_size), spy


def test_memo_answers_inside_a_cached_network_without_the_database(v6_dbs: tuple[Path, Path]) -> None:
    g, spy = _spied(v6_dbs[0])
    first = g.lookup("10.0.1.1")
    assert spy.calls == 1
    # same /24, another /24 of the same /16, and an ipaddress object: no database access
    for ip in ("10.0.1.200", "10.0.77.3", "10.0.255.255", ipaddress.IPv4Address("10.0.0.0")):
        assert g.lookup(ip) == first
    assert spy.calls == 1
    assert g.hits == 4 and g.misses == 1
    # a /24 split into /25, /26 and /32 networks
    for ip in ("10.1.0.1", "10.1.0.129", "10.1.0.192"):
        g.lookup(ip)
    assert spy.calls == 4
    assert g.lookup("10.1.0.100") is not None and g.lookup("10.1.0.150") is not None
    assert g.lookup("10.1.0.192") is not None
    assert spy.calls == 4
    # 10.1.0.193 lies in a network not seen yet (no data): one more access, then memoised
    assert g.lookup("10.1.0.193") is None
    assert g.lookup("10.1.0.193") is None
    assert spy.calls == 5
    # IPv6: /44 network answers other /48s
    g.lookup("2001:db8:10::1")
    g.lookup("2001:db8:1a:1::1")
    assert spy.calls == 6
    # misses are memoised by network too
    g.lookup("203.0.113.1")
    g.lookup("203.0.113.99")
    assert spy.calls == 7


def test_memo_disabled(v6_dbs: tuple[Path, Path]) -> None:
    g, spy = _spied(v6_dbs[0], cache_size=0)
    g.lookup("10.0.1.1")
    g.lookup("10.0.1.1")
    assert spy.calls == 2 and g.cache_len == 0


def test_memo_is_bounded(v6_dbs: tuple[Path, Path]) -> None:
    g, _spy = _spied(v6_dbs[0], cache_size=8)
    for i in range(200):
        g.lookup(f"172.16.{i}.1")
        g.lookup(f"2001:db8:{i:x}::1")
        assert g.cache_len <= 16  # 8 per family


def test_cache_clear(db: GeoDatabase) -> None:
    db.lookup("198.51.100.1")
    assert db.cache_len > 0
    db.cache_clear()
    assert db.cache_len == 0
    assert db.lookup("198.51.100.1") is not None


def test_memo_agrees_with_database_on_real_data() -> None:
    """Random addresses (and neighbours, to exercise every memo path) against uncached lookups."""
    rng = random.Random()
    cached = GeoDatabase.default(cache_size=4_000)
    plain = GeoDatabase.default(cache_size=0)
    try:
        addrs: list[str] = []
        for _ in range(3000):
            n = rng.getrandbits(32)
            addrs += [str(ipaddress.IPv4Address(n)), str(ipaddress.IPv4Address(n ^ rng.getrandbits(12)))]
            m = (0x2 << 124) | rng.getrandbits(124) if rng.random() < 0.5 else rng.getrandbits(128)
            addrs += [str(ipaddress.IPv6Address(m)), str(ipaddress.IPv6Address(m ^ rng.getrandbits(90)))]
        for ip in addrs + addrs[::-1]:
            assert cached.lookup(ip) == plain.lookup(ip), ip
        assert cached.hits > 0
    finally:
        cached.close()
        plain.close()


@pytest.mark.parametrize("cache_size", [0, 64, 100_000])
def test_equal_records_are_one_object(cache_size: int) -> None:
    """Addresses in different networks with equal data and prefix length get the same record
    object, also after the memo forgot the first one (the serving plan keys locations by the
    record's identity)."""
    rng = random.Random(6)
    with GeoDatabase.default(cache_size=cache_size) as g:
        first: dict[GeoRecord, GeoRecord] = {}
        equal = 0
        for _ in range(4000):
            rec = g.lookup(rng.getrandbits(24).to_bytes(3, "big") + b"\x00")
            if rec is not None:
                equal += rec in first
                assert first.setdefault(rec, rec) is rec
        assert equal > 1000


# ---------------------------------------------------------------------------- opening


def test_default_database_resolves_public_addresses() -> None:
    with GeoDatabase.default() as g:
        assert g.database_type == "GeoLite2-City"
        rec = g.lookup("8.8.8.8")
        assert rec is not None and rec.country == "US"
        assert rec.latitude is not None and rec.longitude is not None
        for eu_ip in ("193.0.6.139", "2001:67c:2e8:22::c100:68b"):  # RIPE NCC, Amsterdam
            rec = g.lookup(eu_ip)
            assert rec is not None and rec.country in EU
            assert default_regions().region_of(rec.country, rec.subdivision) in {"WEU", "EEU"}
        rec = g.lookup("2001:4860:4860::8888")
        assert rec is not None and rec.country == "US" and rec.subdivision is not None
        assert g.lookup("10.0.0.1") is None
        assert g.lookup("fe80::1") is None


def test_open_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GeoDataError, match="cannot open"):
        GeoDatabase.open(tmp_path / "nope.mmdb")


def test_open_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(GeoDataError, match="not a valid MaxMind DB"):
        GeoDatabase.open(bad)


def test_open_invalid_asn_file_closes_city(base_dbs: tuple[Path, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(GeoDataError, match=r"bad\.mmdb"):
        GeoDatabase.open(base_dbs[0], bad)


def test_falls_back_without_c_extension(base_dbs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    real = maxminddb.open_database
    modes: list[int] = []

    def fake_open(path: str, mode: int = maxminddb.MODE_AUTO) -> Any:
        modes.append(mode)
        if mode == maxminddb.MODE_MMAP_EXT:
            raise ValueError("MODE_MMAP_EXT requires the maxminddb.extension module to be available")
        return real(path, maxminddb.MODE_MMAP)

    monkeypatch.setattr(maxminddb, "open_database", fake_open)
    with GeoDatabase.open(base_dbs[0]) as g:
        rec = g.lookup("198.51.100.70")
        assert rec is not None and rec.prefix_len == 26
    assert modes == [maxminddb.MODE_MMAP_EXT, maxminddb.MODE_AUTO]


def test_default_uses_mmap_ext() -> None:
    with GeoDatabase.default() as g:
        assert type(g._city).__module__ == "maxminddb.extension"
