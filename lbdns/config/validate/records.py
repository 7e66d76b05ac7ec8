"""Static DNS records of a zone: owner names, one RRset per (owner, type) from the YAML
values, and where data may sit (CNAME alone at its name, nothing but glue below a
delegation).

Record validation lives here: a new record type adds its presentation-format parsing and
placement checks to this module (or to a module it calls).

Sources: RFC 1035 §3.3 and §5.1 (presentation formats), RFC 3596 (AAAA), RFC 2782 (SRV),
RFC 8659 (CAA), RFC 2181 §5.2 (one TTL per RRset) and §10.1, RFC 1034 §3.6.2 (CNAME and
other data), RFC 1034 §4.2.1 (data below a zone cut is not authoritative).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from lbdns.config.model import RecordSpec
from lbdns.config.rdata import check_zone_rdata
from lbdns.config.record_types import RECORD_TYPES
from lbdns.config.source import PathKey, SourceFile
from lbdns.config.validate.issues import Collector

SUPPORTED_TYPES: frozenset[str] = frozenset({"SOA", *RECORD_TYPES})
"""Record types accepted in ``records`` (SOA only via the ``soa`` key; the table:
:mod:`lbdns.config.record_types`)."""

RRsets = dict[tuple[dns.name.Name, int], dns.rrset.RRset]
"""(owner, rdtype) → RRset, owners lower-case and absolute."""

def parse_owner(key: str, origin: dns.name.Name) -> dns.name.Name:
    """An owner key (relative, ``''``/``@`` for the apex, or absolute with trailing dot) as a
    lower-case absolute name; raises ``dns.exception.DNSException`` on a bad name."""
    if key in ("", "@"):
        return origin
    if key.endswith("."):
        return dns.name.from_text(key).canonicalize()
    return dns.name.from_text(key, origin).canonicalize()


def owner_key(owner: dns.name.Name, origin: dns.name.Name, records: Mapping[str, Any]) -> str:
    """The ``records`` key that names ``owner`` (for locating an issue), else its relative text."""
    for key in records:
        try:
            if parse_owner(key, origin) == owner:
                return key
        except dns.exception.DNSException:
            continue
    return owner.relativize(origin).to_text()


def make_rdata(rtype: str, value: Any, origin: dns.name.Name) -> dns.rdata.Rdata:
    """One rdata from a YAML value (presentation text, a number, or an octoDNS-style mapping
    for MX/SRV/CAA); raises ValueError/KeyError/dns exceptions on bad input."""
    if rtype == "TXT" and isinstance(value, str) and not value.startswith('"'):
        return _txt_rdata(value)
    if isinstance(value, Mapping):
        text = _structured_text(rtype, value)
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        raise ValueError(f"expected rdata text, got {type(value).__name__}")
    if rtype == "A":
        ipaddress.IPv4Address(text)
    elif rtype == "AAAA":
        ipaddress.IPv6Address(text)
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), text, origin=origin, relativize=False)


def _txt_rdata(value: str) -> dns.rdata.Rdata:
    """TXT from a plain string: split into ≤ 255-octet character-strings (RFC 1035 §3.3.14)."""
    from dns.rdtypes.ANY.TXT import TXT

    raw = value.encode("utf-8")
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


def _structured_text(rtype: str, value: Mapping[str, Any]) -> str:
    """An octoDNS structured value (MX/SRV/CAA) → rdata presentation text; KeyError otherwise."""
    kind = RECORD_TYPES.get(rtype)
    if kind is None or kind.structured is None:
        raise KeyError(rtype)
    return kind.structured(value)


# ---------------------------------------------------------------------------------------------
# Reading ``records``
# ---------------------------------------------------------------------------------------------

def read_records(col: Collector, src: SourceFile, data: Mapping[str, Any], origin: dns.name.Name,
                 rrsets: RRsets) -> dict[str, Any]:
    """Add the RRsets of the file's ``records`` mapping to ``rrsets``; returns that mapping
    (``{}`` when absent or not a mapping) for locating later issues by owner."""
    records = data.get("records", {})
    if records is None:
        records = {}
    if not isinstance(records, dict):
        col.add(src, ("records",), "E-TYPE", "records must be a mapping of owner name → record(s)")
        records = {}
    for key, entry in records.items():
        base: PathKey = ("records", key)
        try:
            owner = parse_owner(key, origin)
        except dns.exception.DNSException as exc:
            col.add(src, base, "E-NAME", f"invalid owner name {key!r}: {exc}")
            continue
        if not owner.is_subdomain(origin):
            col.add(src, base, "E-NAME",
                    f"owner {owner.to_text()} is outside the zone {origin.to_text()} "
                    "(names relative to the apex, '' for the apex, or absolute names ending in the zone)")
            continue
        items = entry if isinstance(entry, list) else [entry]
        for idx, raw in enumerate(items):
            rpath: PathKey = (*base, idx) if isinstance(entry, list) else base
            _read_record(col, src, rpath, raw, owner, origin, rrsets)
    return records


def _read_record(col: Collector, src: SourceFile, rpath: PathKey, raw: Any, owner: dns.name.Name,
                 origin: dns.name.Name, rrsets: RRsets) -> None:
    """One record entry (type, ttl, value or values) at ``rpath`` into its RRset."""
    spec = col.model(RecordSpec, src, rpath, raw)
    if spec is None:
        return
    rtype = spec.type.upper()
    if rtype not in SUPPORTED_TYPES or rtype == "SOA":
        allowed = ", ".join(sorted(SUPPORTED_TYPES - {"SOA"}))
        msg = ("the SOA is set with the 'soa' key" if rtype == "SOA"
               else f"unsupported record type {spec.type!r}")
        col.add(src, (*rpath, "type"), "E-RECORD", f"{msg} (allowed: {allowed})")
        return
    values = _record_texts(spec)
    if not values:
        col.add(src, rpath, "E-RECORD", "record has no 'value' or 'values'")
        return
    if spec.value is not None and spec.values is not None:
        col.add(src, rpath, "E-RECORD", "use either 'value' or 'values', not both")
    rdtype = dns.rdatatype.from_text(rtype)
    rrset = rrsets.get((owner, rdtype))
    if rrset is None:
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
    elif rrset.ttl != spec.ttl:
        col.add(src, (*rpath, "ttl"), "E-TTL",
                f"TTL {spec.ttl} differs from {rrset.ttl} of the same RRset (RFC 2181 §5.2)")
    for vi, value in enumerate(values):
        vpath: PathKey = (*rpath, "values", vi) if spec.values is not None else (*rpath, "value")
        try:
            rrset.add(make_rdata(rtype, value, origin), spec.ttl)
        except Exception as exc:
            col.add(src, vpath, "E-RECORD",
                    f"invalid {rtype} value {value!r}: {exc} ({RECORD_TYPES[rtype].value_hint})")
    if len(rrset):
        rrsets[(owner, rdtype)] = rrset


def _record_texts(spec: RecordSpec) -> list[Any]:
    if spec.values is not None:
        return list(spec.values)
    if spec.value is None:
        return []
    return [spec.value]


# ---------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------

def check_placement(col: Collector, src: SourceFile, rrsets: RRsets, origin: dns.name.Name,
                    records: Mapping[str, Any]) -> None:
    """E-CNAME for a CNAME beside other data, at the apex or with several records; E-NAME for
    data other than glue below a delegation, or other than NS and glue at it."""
    owners: dict[dns.name.Name, list[int]] = {}
    for (owner, rtype_code) in rrsets:
        owners.setdefault(owner, []).append(rtype_code)
    _check_cnames(col, src, rrsets, owners, origin, records)
    _check_delegations(col, src, owners, origin, records)
    for owner, code, message, warning in check_zone_rdata(rrsets, origin):
        col.add(src, ("records", owner_key(owner, origin, records)), code, message, warning=warning)


def _check_cnames(col: Collector, src: SourceFile, rrsets: RRsets, owners: Mapping[dns.name.Name, list[int]],
                  origin: dns.name.Name, records: Mapping[str, Any]) -> None:
    """CNAME beside other data (RFC 1034 §3.6.2, RFC 2181 §10.1)."""
    for owner, types in owners.items():
        if dns.rdatatype.CNAME not in types:
            continue
        key = owner_key(owner, origin, records)
        if len(types) > 1 or owner == origin:
            others = ", ".join(sorted(dns.rdatatype.to_text(dns.rdatatype.RdataType(t))
                                      for t in types if t != dns.rdatatype.CNAME))
            col.add(src, ("records", key), "E-CNAME",
                    f"CNAME cannot coexist with other data at {owner.to_text()}"
                    + (f" (found {others})" if others else " (not allowed at the zone apex)"))
        if len(rrsets[(owner, dns.rdatatype.CNAME)]) > 1:
            col.add(src, ("records", key), "E-CNAME", "a CNAME RRset holds exactly one record")


_GLUE = (dns.rdatatype.A, dns.rdatatype.AAAA)
_AT_CUT = (dns.rdatatype.NS, dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.DS)


def _check_delegations(col: Collector, src: SourceFile, owners: Mapping[dns.name.Name, list[int]],
                       origin: dns.name.Name, records: Mapping[str, Any]) -> None:
    """Data below a delegation (other than glue addresses) is occluded (RFC 1034 §4.2.1)."""
    cuts = [o for o, t in owners.items() if dns.rdatatype.NS in t and o != origin]
    for owner, types in owners.items():
        for cut in cuts:
            if owner != cut and owner.is_subdomain(cut):
                if any(t not in _GLUE for t in types):
                    col.add(src, ("records", owner_key(owner, origin, records)), "E-NAME",
                            f"{owner.to_text()} lies below the delegation {cut.to_text()} "
                            "(only glue A/AAAA records are allowed there)")
            elif owner == cut and any(t not in _AT_CUT for t in types):
                col.add(src, ("records", owner_key(owner, origin, records)), "E-NAME",
                        f"{owner.to_text()} is a delegation point; only NS, DS and glue are allowed")
