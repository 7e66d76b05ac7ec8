"""RFC 1035 master file → lbdns zone YAML (``lbdns import-zone``).

The file is parsed with dnspython's zone parser (:func:`dns.zone.from_file`, so ``$ORIGIN``,
``$TTL``, ``$INCLUDE``, ``@``, relative names, parentheses and ``$GENERATE`` work as in BIND).
The apex SOA becomes ``soa:``, the apex NS RRset ``ns:``, every other RRset of a supported
type (A, AAAA, CNAME, MX, SRV, TXT, NS, CAA, PTR, HTTPS, SVCB, TLSA, SSHFP, NAPTR, DS, LOC,
HINFO, DNAME, URI) an entry under ``records:`` with its own TTL. Other types (DNSKEY, RRSIG,
NSEC, NSEC3, CDS, SMIMEA, OPENPGPKEY, …) are reported with their owner names and skipped, as is
data lbdns could never serve: data hidden below a delegation (RFC 1034 §4.2.1: only the NS and
DS RRsets at the cut and glue addresses are kept), a DS RRset that is not at a delegation point
(RFC 4035 §2.4) and data below a DNAME (RFC 6672 §2.3), each with a warning.

Value layout (what :mod:`lbdns.config.validate` reads back): A/AAAA/CNAME/NS/PTR as text
with absolute names; MX as ``{preference, exchange}``; SRV as
``{priority, weight, port, target}``; CAA as rdata text (``0 issue "ca.example"``, exact for
any value); the other types as rdata presentation text with absolute names
(``1 . alpn="h2,h3"``, ``"PC" "Linux"``); TXT as a plain string when it is one printable character-string, otherwise as
rdata text with every character-string quoted (``'"v=spf1" "-all"'``), which the validator
parses back into the same strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataset
import dns.rdatatype
import dns.zone
from dns.rdtypes.IN.SRV import SRV
from dns.rdtypes.mxbase import MXBase
from dns.rdtypes.txtbase import TXTBase

from lbdns.config.record_types import IMPORT_ORDER, RECORD_TYPES
from lbdns.importers import ImportFailed
from lbdns.importers.yamlout import Flow, block_entry, dump, header

SUPPORTED = RECORD_TYPES
"""Record types lbdns serves from ``records:`` (besides the apex SOA and NS)."""


@dataclass
class ZoneImport:
    """The result of an import: ``data`` is the zone YAML as plain data (``zone``, ``soa``,
    ``ns``, ``records``), ``warnings`` human-readable notes for stderr, ``skipped`` maps each
    unsupported type to the owner names that had it."""

    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)


def owner_key(name: dns.name.Name, origin: dns.name.Name) -> str:
    """The ``records:`` key of ``name``: relative to ``origin``, ``'@'`` for the apex."""
    if name == origin:
        return "@"
    return str(name.relativize(origin).to_text())


def _abs(name: dns.name.Name, origin: dns.name.Name) -> str:
    return str(name.derelativize(origin).to_text())


def txt_value(strings: Iterable[bytes]) -> str:
    """The YAML value of one TXT rdata: the plain string when it is a single printable
    UTF-8 character-string that does not start with ``"``, else the rdata presentation
    text (every character-string quoted and escaped)."""
    parts = list(strings)
    if len(parts) == 1:
        try:
            text = parts[0].decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if (text is not None and len(parts[0]) <= 255 and not text.startswith('"')
                and text.isprintable() and text.strip() == text):
            return text
    return " ".join(_quote(p) for p in parts)


def _quote(raw: bytes) -> str:
    out = []
    for b in raw:
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def rdata_value(rd: dns.rdata.Rdata, origin: dns.name.Name) -> Any:
    """The YAML value of one rdata of a supported type (see the module notes); names are
    absolute (trailing dot)."""
    if isinstance(rd, MXBase):
        return Flow(preference=int(rd.preference), exchange=_abs(rd.exchange, origin))
    if isinstance(rd, SRV):
        return Flow(priority=int(rd.priority), weight=int(rd.weight), port=int(rd.port),
                    target=_abs(rd.target, origin))
    if isinstance(rd, TXTBase):
        return txt_value(rd.strings)
    return str(rd.to_text(origin=origin, relativize=False))


def record_entry(rdataset: dns.rdataset.Rdataset, origin: dns.name.Name) -> Flow:
    """One ``records:`` entry (``{type, ttl, value}`` or ``{type, ttl, values}``) for an
    RRset of a supported type; values keep the RRset's order."""
    values = [rdata_value(rd, origin) for rd in rdataset]
    entry = Flow(type=dns.rdatatype.to_text(rdataset.rdtype), ttl=int(rdataset.ttl))
    if len(values) == 1:
        entry["value"] = values[0]
    else:
        entry["values"] = values
    return entry


def build_records(origin: dns.name.Name,
                  rrsets: Mapping[dns.name.Name, Iterable[dns.rdataset.Rdataset]]) -> tuple[
                      dict[str, Any], list[str], dict[str, list[str]]]:
    """``records:`` from RRsets by owner (the apex SOA/NS excluded by the caller).

    Returns the mapping (owner key → entry or list of entries, owners in canonical DNS
    order), warnings, and unsupported types → owner names (skipped). Data at or below a
    delegation other than the NS and DS RRsets at the cut and glue addresses, DS away from a
    delegation point and data below a DNAME owner are skipped with a warning.
    """
    warnings: list[str] = []
    skipped: dict[str, list[str]] = {}
    cuts = {n for n, sets in rrsets.items() if n != origin
            for s in sets if s.rdtype == dns.rdatatype.NS}
    dnames = [n for n, sets in rrsets.items() for s in sets if s.rdtype == dns.rdatatype.DNAME]
    records: dict[str, Any] = {}
    for name in sorted(rrsets):
        entries: list[Flow] = []
        sets = sorted(rrsets[name], key=lambda s: (IMPORT_ORDER.get(dns.rdatatype.to_text(s.rdtype), 99), s.rdtype))
        for rds in sets:
            rtype = dns.rdatatype.to_text(rds.rdtype)
            if rtype not in SUPPORTED:
                skipped.setdefault(rtype, []).append(name.to_text())
                continue
            hidden = [c for c in cuts if name.is_subdomain(c)]
            if hidden and rtype not in ("A", "AAAA") and not (name in cuts and rtype in ("NS", "DS")):
                warnings.append(f"{name.to_text()} {rtype}: at or below the delegation {hidden[0].to_text()} "
                                "(occluded; only NS, DS and glue A/AAAA are kept there): skipped")
                continue
            if rtype == "DS" and name not in cuts:
                warnings.append(f"{name.to_text()} DS: not at a delegation point (DS belongs beside the NS RRset "
                                "of a cut, RFC 4035 §2.4): skipped")
                continue
            below = [d for d in dnames if d != name and name.is_subdomain(d)]
            if below:
                warnings.append(f"{name.to_text()} {rtype}: below the DNAME at {below[0].to_text()} "
                                "(unreachable, RFC 6672 §2.3): skipped")
                continue
            entries.append(record_entry(rds, origin))
        if entries:
            records[owner_key(name, origin)] = entries[0] if len(entries) == 1 else entries
    for rtype, owners in sorted(skipped.items()):
        warnings.append(f"unsupported record type {rtype} skipped at: {', '.join(owners)}")
    return records, warnings, skipped


def soa_mapping(rds: dns.rdataset.Rdataset, origin: dns.name.Name) -> dict[str, Any]:
    """The ``soa:`` mapping for an SOA rdataset (all fields plus the RR's TTL)."""
    rd = rds[0]
    return {"mname": _abs(rd.mname, origin), "rname": _abs(rd.rname, origin), "serial": int(rd.serial),
            "refresh": int(rd.refresh), "retry": int(rd.retry), "expire": int(rd.expire),
            "minimum": int(rd.minimum), "ttl": int(rds.ttl)}


def import_zone_file(path: str | Path, origin: str | None = None) -> ZoneImport:
    """Parse the master file ``path`` (``origin`` when the file has no ``$ORIGIN``) into
    zone YAML data. Raises :class:`ImportFailed` (with the file name and, from dnspython,
    the line) when the file cannot be read or parsed, or lacks the apex SOA or NS."""
    try:
        zone = dns.zone.from_file(str(path), origin=origin, relativize=False, check_origin=False)
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot read: {exc.strerror or exc}") from None
    except dns.zone.UnknownOrigin:
        raise ImportFailed(f"{path}: no $ORIGIN in the file: give the zone name with --origin") from None
    except dns.exception.DNSException as exc:
        text = str(exc)  # dnspython's message starts with "file:line:" for syntax errors
        raise ImportFailed(text if text.startswith(str(path)) else f"{path}: {text}") from None
    return import_zone(zone)


def import_zone_text(text: str, origin: str | None = None) -> ZoneImport:
    """Like :func:`import_zone_file` for master-file text (tests, stdin)."""
    try:
        zone = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    except dns.zone.UnknownOrigin:
        raise ImportFailed("no $ORIGIN in the zone text: give the zone name with --origin") from None
    except dns.exception.DNSException as exc:
        raise ImportFailed(str(exc)) from None
    return import_zone(zone)


def import_zone(zone: dns.zone.Zone) -> ZoneImport:
    """A parsed dnspython zone (absolute names) → :class:`ZoneImport`. Raises
    :class:`ImportFailed` without an apex SOA or NS RRset."""
    origin = zone.origin
    assert origin is not None
    apex = zone.get_node(origin)
    soa = apex.get_rdataset(zone.rdclass, dns.rdatatype.SOA) if apex is not None else None
    ns = apex.get_rdataset(zone.rdclass, dns.rdatatype.NS) if apex is not None else None
    if soa is None:
        raise ImportFailed(f"zone {origin.to_text()}: no SOA record at the apex")
    if ns is None:
        raise ImportFailed(f"zone {origin.to_text()}: no NS records at the apex")
    by_owner: dict[dns.name.Name, list[dns.rdataset.Rdataset]] = {}
    for name, node in zone.nodes.items():
        for rds in node.rdatasets:
            if name == origin and rds.rdtype in (dns.rdatatype.SOA, dns.rdatatype.NS):
                continue
            by_owner.setdefault(name, []).append(rds)
    records, warnings, skipped = build_records(origin, by_owner)
    data: dict[str, Any] = {
        "zone": origin.to_text(omit_final_dot=True),
        "soa": soa_mapping(soa, origin),
        "ns": {"ttl": int(ns.ttl), "values": [_abs(rd.target, origin) for rd in ns]},
        "records": records,
    }
    return ZoneImport(data, warnings, skipped)


def render_zone(result: ZoneImport, source: str) -> str:
    """The zone YAML text for ``result`` with a header naming ``source``."""
    data = result.data
    lines = [f"Zone {data['zone']} imported by `lbdns import-zone` from {source}."]
    if result.skipped:
        lines.append("Skipped (unsupported types): " + ", ".join(
            f"{t} ({len(o)})" for t, o in sorted(result.skipped.items())))
    body = {"zone": data["zone"], "soa": Flow(data["soa"]), "ns": Flow(data["ns"])}
    text = header(lines) + dump(body)
    records = data["records"]
    text += "\nrecords:\n" if records else "\nrecords: {}\n"
    for key, entry in records.items():
        text += block_entry(key, entry)
    return text
