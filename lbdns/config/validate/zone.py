"""Zones: the zone part of each file (``zone``, ``soa``, apex ``ns``, ``records``, and the raw
``load_balancers`` mapping handed on to :mod:`.load_balancer`).

Sources: RFC 1035 §5.1 and §3.3.13 (SOA), RFC 1034 §4.2.1 (a zone has an SOA and NS records
at its apex).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from lbdns.config.loaded import ZoneData
from lbdns.config.model import NsSpec, Soa
from lbdns.config.source import PathKey, SourceFile
from lbdns.config.validate.issues import Collector
from lbdns.config.validate.records import RRsets, check_placement, make_rdata, read_records

_ZONE_PART_KEYS = ("soa", "ns", "records", "load_balancers")


@dataclass(slots=True)
class ZonePart:
    """The zone part of one file: ``zone`` is None when the SOA or the zone name is bad;
    ``raw_lbs`` is the unvalidated ``load_balancers`` mapping."""

    src: SourceFile
    zone: ZoneData | None
    raw_lbs: dict[str, Any]


def read_zones(col: Collector, sources: list[SourceFile]) -> tuple[list[ZonePart], list[dns.name.Name]]:
    """The zone part of every file that has a ``zone`` key, and the apexes served.

    A file without ``zone`` must hold no zone keys (E-ZONE); a zone defined twice is E-ZONE
    and its second definition (load balancers included) is skipped.
    """
    parts: list[ZonePart] = []
    origins: dict[dns.name.Name, SourceFile] = {}
    for src in sources:
        if "zone" not in src.data:
            for k in _ZONE_PART_KEYS:
                if k in src.data:
                    col.add(src, (k,), "E-ZONE", f"{k!r} needs a 'zone:' key naming the zone apex in the same file")
            continue
        zone, raw_lbs, origin = read_zone(col, src, src.data)
        if origin is not None:
            if origin in origins:
                col.add(src, ("zone",), "E-ZONE",
                        f"duplicate zone {origin.to_text()} (also in {origins[origin].name})")
                continue
            origins[origin] = src
        parts.append(ZonePart(src, zone, raw_lbs))
    return parts, list(origins)


def read_zone(col: Collector, src: SourceFile,
              data: Mapping[str, Any]) -> tuple[ZoneData | None, dict[str, Any], dns.name.Name | None]:
    """Validate the zone part of one file: returns the zone (None without a valid SOA; its
    ``load_balancers`` still empty), the raw load balancer mapping, and the apex (None when
    the zone name is bad, and then nothing else is read)."""
    origin = _zone_name(col, src, data)
    if origin is None:
        return None, {}, None
    soa = _read_soa(col, src, data, origin)
    rrsets: RRsets = {}
    _read_apex_ns(col, src, data, origin, rrsets)
    records = read_records(col, src, data, origin, rrsets)
    check_placement(col, src, rrsets, origin, records)
    raw_lbs = data.get("load_balancers") or {}
    if not isinstance(raw_lbs, dict):
        col.add(src, ("load_balancers",), "E-TYPE", "load_balancers must be a mapping of hostname → load balancer")
        raw_lbs = {}
    lbs = dict(raw_lbs)
    if soa is None:
        return None, lbs, origin
    return ZoneData(origin, soa, rrsets, {}, src.name), lbs, origin


def _zone_name(col: Collector, src: SourceFile, data: Mapping[str, Any]) -> dns.name.Name | None:
    zkey = data.get("zone")
    if not isinstance(zkey, str) or not zkey.strip(". "):
        col.add(src, ("zone",), "E-ZONE", "zone must be a domain name such as 'example.com'")
        return None
    try:
        return dns.name.from_text(zkey.strip()).canonicalize()
    except dns.exception.DNSException as exc:
        col.add(src, ("zone",), "E-ZONE", f"invalid zone name {zkey!r}: {exc}")
        return None


def _read_soa(col: Collector, src: SourceFile, data: Mapping[str, Any], origin: dns.name.Name) -> Soa | None:
    if "soa" not in data:
        col.add(src, ("zone",), "E-ZONE", "missing SOA (add an 'soa:' mapping with mname and rname)")
        return None
    soa = col.model(Soa, src, ("soa",), data["soa"])
    if soa is not None:
        for fld in ("mname", "rname"):
            text = getattr(soa, fld)
            if not text.strip() or text.split() != [text]:  # the SOA is compiled from its text form
                col.add(src, ("soa", fld), "E-RECORD", f"invalid domain name {text!r}: empty or with white space")
                continue
            try:
                dns.name.from_text(text, origin)
            except dns.exception.DNSException as exc:
                col.add(src, ("soa", fld), "E-RECORD", f"invalid domain name: {exc}")
    return soa


def _read_apex_ns(col: Collector, src: SourceFile, data: Mapping[str, Any], origin: dns.name.Name,
                  rrsets: RRsets) -> None:
    """The apex NS RRset from ``ns`` (a list of names, or ``{ttl, values}``)."""
    ns_raw = data.get("ns")
    ns_spec: NsSpec | None = None
    if ns_raw is None:
        col.add(src, ("zone",), "E-ZONE", "missing apex NS records (add 'ns: [ns1.example.com.]')")
    elif isinstance(ns_raw, list):
        ns_spec = col.model(NsSpec, src, ("ns",), {"values": ns_raw})
    else:
        ns_spec = col.model(NsSpec, src, ("ns",), ns_raw)
    if ns_spec is None:
        return
    rrs = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.NS)
    for i, v in enumerate(ns_spec.values):
        path: PathKey = ("ns", i) if isinstance(ns_raw, list) else ("ns", "values", i)
        try:
            rrs.add(make_rdata("NS", v, origin), ns_spec.ttl)
        except Exception as exc:
            col.add(src, path, "E-RECORD", f"invalid NS value {v!r}: {exc} (a domain name)")
    if len(rrs):
        rrsets[(origin, dns.rdatatype.NS)] = rrs
