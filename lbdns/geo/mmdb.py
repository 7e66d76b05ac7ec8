"""GeoIP lookups from MaxMind DB files (edge module).

:class:`GeoDatabase` wraps a City (or Country) database — GeoLite2, GeoIP2, DB-IP Lite and other
files in MaxMind's record layout — and optionally an ASN database, opened with ``maxminddb``'s C
extension over a memory map (``MODE_MMAP_EXT``; pure-Python ``MODE_AUTO`` if the extension is
missing). It answers the GeoIP lookups of ``location_strategy`` and reports the matching
network's prefix length for the ECS scope of answers (RFC 7871 §7.2.1).

Hot path: results are memoised per matched network (a memo per ECS /24 is what keeps a Python
server's geo lookups cheap). A lookup first probes a bucket keyed by the address's /24
(IPv4) or /48 (IPv6). A bucket holds the answer directly when the matched network is that wide or
wider; when the data splits the /24 (/48) into longer networks, the bucket holds those networks and
is probed once per distinct prefix length seen inside it. Networks wider than a bucket are also
kept in a per-prefix-length table consulted before the database, so later addresses anywhere
inside a cached network never touch the database. Buckets live in a two-generation dict per
address family (recently used buckets are promoted; the older generation is dropped when the
younger fills), so the memo stays bounded without per-entry bookkeeping.

Equal records are one object: a lookup returns the same :class:`GeoRecord` for every address
whose network has the same data and prefix length, whichever network and however long ago it was
read, so a caller can key what it derived from a record by the record's identity (the serving
plan's location class, docs/architecture.md › The serving plan).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address
from os import PathLike
from pathlib import Path
from socket import AF_INET, AF_INET6, inet_pton
from typing import Any, Final

import maxminddb

from lbdns.geo.data import GeoDataError
from lbdns.geo.location import GeoRecord
from lbdns.geo.regions import SUBDIVIDED_COUNTRIES

__all__ = ["DEFAULT_CACHE_SIZE", "GeoDatabase", "GeoRecord"]

#: Default bound on memoised buckets per address family (each bucket covers a /24 or /48).
DEFAULT_CACHE_SIZE: Final = 400_000
#: Bound on the networks remembered inside one split bucket before it is reset.
_MAX_SPLIT_ENTRIES: Final = 4096
#: Bound on the distinct records kept to return equal records as one object (then reset).
_MAX_RECORDS: Final = 400_000


class _NoData:
    """Marker for a memoised "address not in the data" result."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no data>"


_NO_DATA: Final = _NoData()
_from_bytes: Final = int.from_bytes

_Value = GeoRecord | _NoData


class _Split:
    """A /24 (/48) bucket that the data divides into longer networks: shift → {net >> shift: value}."""

    __slots__ = ("count", "levels")

    def __init__(self) -> None:
        self.levels: dict[int, dict[int, _Value]] = {}
        self.count = 0

    def find(self, n: int) -> _Value | None:
        for shift, tbl in self.levels.items():
            v = tbl.get(n >> shift)
            if v is not None:
                return v
        return None

    def add(self, shift: int, n: int, value: _Value) -> None:
        if self.count >= _MAX_SPLIT_ENTRIES:
            self.levels.clear()
            self.count = 0
        tbl = self.levels.get(shift)
        if tbl is None:
            tbl = self.levels[shift] = {}
        tbl[n >> shift] = value
        self.count += 1


_Entry = GeoRecord | _NoData | _Split


class _Family:
    """Memo of one address family: ``bits`` address width, buckets of ``bucket_bits`` prefix.

    ``young`` / ``old``: the two generations of buckets (bucket key → entry). ``wide``: networks
    shorter than a bucket (shift → {address >> shift: value}), so that every /24 (/48) inside a
    cached /19 (/32…) is answered without the database; reset when it reaches the bound.
    """

    __slots__ = ("bits", "bucket_bits", "half", "old", "shift", "wide", "wide_count", "young")

    def __init__(self, bits: int, bucket_bits: int, cache_size: int) -> None:
        self.bits = bits
        self.bucket_bits = bucket_bits
        self.shift = bits - bucket_bits
        self.half = max(1, cache_size // 2) if cache_size > 0 else 0
        self.young: dict[int, _Entry] = {}
        self.old: dict[int, _Entry] = {}
        self.wide: dict[int, dict[int, _Value]] = {}
        self.wide_count = 0

    def put(self, key: int, entry: _Entry) -> None:
        young = self.young
        if len(young) >= self.half and key not in young:
            self.old = young
            young = self.young = {}
        young[key] = entry

    def wide_find(self, n: int) -> _Value | None:
        for shift, tbl in self.wide.items():
            v = tbl.get(n >> shift)
            if v is not None:
                return v
        return None

    def wide_add(self, shift: int, n: int, value: _Value) -> None:
        if self.wide_count >= self.half:
            self.wide = {}
            self.wide_count = 0
        tbl = self.wide.get(shift)
        if tbl is None:
            tbl = self.wide[shift] = {}
        tbl[n >> shift] = value
        self.wide_count += 1

    def clear(self) -> None:
        self.young = {}
        self.old = {}
        self.wide = {}
        self.wide_count = 0

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


def _open_reader(path: str) -> Any:
    try:
        try:
            return maxminddb.open_database(path, maxminddb.MODE_MMAP_EXT)
        except ValueError:
            # C extension not available (e.g. a pure-Python install): fall back.
            return maxminddb.open_database(path, maxminddb.MODE_AUTO)
    except OSError as exc:
        raise GeoDataError(f"{path}: cannot open GeoIP database ({exc.strerror or exc})") from exc
    except (maxminddb.InvalidDatabaseError, ValueError) as exc:
        raise GeoDataError(f"{path}: not a valid MaxMind DB file ({exc})") from exc


def _float(v: object) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


def _asn(v: object) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    return None


def _convert(city: object, asn_rec: object, prefix_len: int) -> GeoRecord | None:
    """Build a GeoRecord from MaxMind records (country.iso_code, subdivisions[0].iso_code,
    location.latitude/longitude, traits.autonomous_system_number / autonomous_system_number)."""
    if not isinstance(city, Mapping):
        city = None
    if not isinstance(asn_rec, Mapping):
        asn_rec = None
    if city is None and asn_rec is None:
        return None
    country: str | None = None
    subdivision: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    asn: int | None = None
    if city is not None:
        c = city.get("country")
        if isinstance(c, Mapping):
            iso = c.get("iso_code")
            if isinstance(iso, str) and len(iso) == 2:
                country = iso.upper()
        if country in SUBDIVIDED_COUNTRIES:
            subs = city.get("subdivisions")
            if isinstance(subs, list) and subs and isinstance(subs[0], Mapping):
                sub = subs[0].get("iso_code")
                if isinstance(sub, str) and sub:
                    subdivision = sub.upper()
        loc = city.get("location")
        if isinstance(loc, Mapping):
            latitude = _float(loc.get("latitude"))
            longitude = _float(loc.get("longitude"))
            if latitude is None or longitude is None:
                latitude = longitude = None
        traits = city.get("traits")
        if isinstance(traits, Mapping):
            asn = _asn(traits.get("autonomous_system_number"))
        if asn is None:
            asn = _asn(city.get("autonomous_system_number"))
    if asn_rec is not None:
        asn = _asn(asn_rec.get("autonomous_system_number"))
    return GeoRecord(country, subdivision, latitude, longitude, asn, prefix_len)


class GeoDatabase:
    """GeoIP lookups from a MaxMind City/Country database plus an optional ASN database.

    Use :meth:`open` or :meth:`default`; call :meth:`close` (or use ``with``) when done. Not meant
    for concurrent use from several threads (the memo is unsynchronised; the server calls it from
    its one event-loop thread).
    """

    __slots__ = (
        "_asn",
        "_asn_v6",
        "_city",
        "_city_v6",
        "_records",
        "_v4",
        "_v6",
        "asn_path",
        "city_path",
        "hits",
        "misses",
    )

    def __init__(
        self,
        city_reader: Any,
        asn_reader: Any = None,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        city_path: str | None = None,
        asn_path: str | None = None,
    ) -> None:
        """Wrap already opened ``maxminddb`` readers (prefer :meth:`open`).

        ``cache_size``: memo bound in buckets per address family (0 disables memoisation).
        """
        self._city = city_reader
        self._asn = asn_reader
        self._city_v6 = city_reader.metadata().ip_version == 6
        self._asn_v6 = asn_reader is not None and asn_reader.metadata().ip_version == 6
        self._v4 = _Family(32, 24, cache_size)
        self._v6 = _Family(128, 48, cache_size)
        self._records: dict[GeoRecord, GeoRecord] = {}
        """Every distinct record read (equal data and prefix length) → its one object."""
        self.city_path = city_path
        self.asn_path = asn_path
        #: Lookups answered from the memo / from the database (counters for metrics).
        self.hits = 0
        self.misses = 0

    @classmethod
    def open(
        cls,
        city_path: str | PathLike[str],
        asn_path: str | PathLike[str] | None = None,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> GeoDatabase:
        """Open a City (or Country) MMDB file and, optionally, an ASN MMDB file.

        Opens with ``maxminddb.MODE_MMAP_EXT`` (falls back to ``MODE_AUTO`` without the C
        extension). Returns the database. Raises GeoDataError naming the file if it cannot be
        opened or is not a MaxMind DB.
        """
        city = _open_reader(str(city_path))
        try:
            asn = _open_reader(str(asn_path)) if asn_path is not None else None
        except GeoDataError:
            city.close()
            raise
        return cls(
            city,
            asn,
            cache_size=cache_size,
            city_path=str(city_path),
            asn_path=None if asn_path is None else str(asn_path),
        )

    @classmethod
    def default(cls, *, cache_size: int = DEFAULT_CACHE_SIZE) -> GeoDatabase:
        """Open the GeoLite2-City database embedded in the ``maxminddb-geolite2`` package.

        Licence: "This product includes GeoLite2 data created by MaxMind, available from
        https://www.maxmind.com" — GeoLite2 City, build of 2018-07-03, distributed under the
        Creative Commons Attribution-ShareAlike 4.0 International licence (CC BY-SA 4.0), which
        applied to GeoLite2 releases before 2019-12-30. The data is old: good for tests, demos and
        coarse country steering, not for production accuracy. No ASN database is included.
        Only the package's file path is used (not its reader API).

        Returns the database. Raises GeoDataError if the package is not installed or its file is
        unreadable.
        """
        try:
            from geolite2 import geolite2 as packaged
        except ImportError as exc:
            raise GeoDataError("the maxminddb-geolite2 package is not installed") from exc
        path = Path(str(packaged.filename))
        return cls.open(path, cache_size=cache_size)

    def describe(self) -> str:
        """One line naming the database for the start-up log: file, database type and build date
        from the MMDB metadata (``database_type``, ``build_epoch``), and the ASN database if any,
        e.g. ``/var/lib/GeoIP/GeoLite2-City.mmdb (GeoLite2-City, built 2024-05-03)``."""

        def one(reader: Any, path: str | None) -> str:
            meta = reader.metadata()
            built = time.strftime("%Y-%m-%d", time.gmtime(int(meta.build_epoch)))
            return f"{path or '?'} ({meta.database_type}, built {built})"

        text = one(self._city, self.city_path)
        if self._asn is not None:
            text += f"; ASN {one(self._asn, self.asn_path)}"
        return text

    def lookup(self, ip: str | bytes | IPv4Address | IPv6Address) -> GeoRecord | None:  # noqa: PLR0912 -- per-query hot path: the address forms dispatched inline
        """Look an address up.

        Takes an IPv4/IPv6 address as text, ``ipaddress`` object or packed network-order bytes
        (4 or 16; the cheapest form for an ECS address taken off the wire). For ECS pass the
        masked network address (RFC 7871 §6).

        Returns a :class:`GeoRecord` — fields the data lacks are None; ``prefix_len`` is the City
        database network's prefix length in the query's address family (0…32 for IPv4 even in an
        IPv6-tree database) — or None when neither database has an entry for the address (private
        ranges etc.). An IPv4-mapped IPv6 address is looked up as IPv6 (MaxMind's own files alias
        ``::ffff:0:0/96`` to the IPv4 data; the prefix length is then an IPv6 one).

        Raises ValueError for an invalid address text or packed length, TypeError for another
        argument type.
        """
        if type(ip) is bytes:  # first: the serving plan's ECS lookups
            size = len(ip)
            if size == 4:
                fam = self._v4
            elif size == 16:
                fam = self._v6
            else:
                raise ValueError(f"packed IP address must be 4 or 16 bytes, got {size}")
            n = _from_bytes(ip, "big")
        elif type(ip) is str:
            try:
                if ":" in ip:
                    fam = self._v6
                    n = _from_bytes(inet_pton(AF_INET6, ip), "big")
                else:
                    fam = self._v4
                    n = _from_bytes(inet_pton(AF_INET, ip), "big")
            except OSError:
                raise ValueError(f"invalid IP address {ip!r}") from None
        elif isinstance(ip, IPv4Address):
            fam = self._v4
            n = int(ip)
        elif isinstance(ip, IPv6Address):
            fam = self._v6
            n = int(ip)
        elif isinstance(ip, str):
            return self.lookup(str.__str__(ip))
        else:
            raise TypeError(f"expected an IP address string or ipaddress object, got {type(ip).__name__}")
        key = n >> fam.shift
        entry = fam.young.get(key)
        if entry is None:
            entry = fam.old.get(key)
            if entry is not None:
                fam.put(key, entry)
        if entry is not None:
            value = entry.find(n) if type(entry) is _Split else entry
            if value is not None:
                self.hits += 1
                return value if type(value) is GeoRecord else None
        return self._miss(fam, n, ip, entry)

    def _miss(
        self, fam: _Family, n: int, ip: str | bytes | IPv4Address | IPv6Address, entry: _Entry | None
    ) -> GeoRecord | None:
        if entry is None and fam.wide:
            wide = fam.wide_find(n)
            if wide is not None:
                self.hits += 1
                fam.put(n >> fam.shift, wide)
                return wide if type(wide) is GeoRecord else None
        self.misses += 1
        v6 = fam.bits == 128
        if type(ip) is bytes:
            ip = IPv6Address(ip) if v6 else IPv4Address(ip)
        city_rec: object = None
        plen = 0
        if self._city_v6 or not v6:
            city_rec, plen = self._city.get_with_prefix_len(ip)
            if not v6 and plen > 32:  # defensive: a reader reporting IPv6-tree depth
                plen -= 96
        key_plen = plen
        asn_rec: object = None
        if self._asn is not None and (self._asn_v6 or not v6):
            asn_rec, asn_plen = self._asn.get_with_prefix_len(ip)
            if not v6 and asn_plen > 32:
                asn_plen -= 96
            key_plen = max(key_plen, asn_plen)
        record = _convert(city_rec, asn_rec, max(0, plen))
        if record is not None:
            record = self._one(record)
        if fam.half:
            value: _Value = _NO_DATA if record is None else record
            key_plen = max(0, min(key_plen, fam.bits))
            if key_plen <= fam.bucket_bits:
                fam.put(n >> fam.shift, value)
                if key_plen < fam.bucket_bits:
                    fam.wide_add(fam.bits - key_plen, n, value)
            else:
                split = entry if type(entry) is _Split else _Split()
                split.add(fam.bits - key_plen, n, value)
                if split is not entry:
                    fam.put(n >> fam.shift, split)
        return record

    def _one(self, record: GeoRecord) -> GeoRecord:
        """The one object of records equal to ``record`` (kept in ``_records``, reset at _MAX_RECORDS)."""
        records = self._records
        same = records.get(record)
        if same is not None:
            return same
        if len(records) >= _MAX_RECORDS:
            records.clear()
        records[record] = record
        return record

    def cache_clear(self) -> None:
        """Forget every memoised result (e.g. after the database files were replaced)."""
        self._v4.clear()
        self._v6.clear()
        self._records.clear()

    @property
    def cache_len(self) -> int:
        """Number of memoised /24 and /48 buckets (both generations, both families)."""
        return len(self._v4) + len(self._v6)

    @property
    def database_type(self) -> str:
        """``database_type`` from the City database metadata (e.g. ``"GeoLite2-City"``)."""
        return str(self._city.metadata().database_type)

    @property
    def build_epoch(self) -> int:
        """Build time of the City database, seconds since the Unix epoch (UTC)."""
        return int(self._city.metadata().build_epoch)

    @property
    def has_asn(self) -> bool:
        """True when an ASN database is attached."""
        return self._asn is not None

    def close(self) -> None:
        """Close the database files; lookups afterwards raise ValueError (from ``maxminddb``)
        unless answered from the memo, which is cleared here."""
        self.cache_clear()
        self._city.close()
        if self._asn is not None:
            self._asn.close()

    def __enter__(self) -> GeoDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GeoDatabase(city={self.city_path!r}, asn={self.asn_path!r})"
