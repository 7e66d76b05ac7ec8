"""Zone YAML → validated configuration, collecting every problem with its location
(DESIGN.md principle 5; SPEC.md §12).

Structural checks (unknown keys, types, ranges) are pydantic's, run per object so one bad
pool does not hide problems in the others; DNS and cross-object checks (references,
duplicates, plan limits, warnings) are done here. Every problem becomes an
:class:`lbdns.errors.Issue` located at ``file:line:col`` with its key path.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from pydantic import BaseModel, ValidationError

from lbdns.config.model import (
    MONITOR_TYPES,
    REGION_CODES,
    STEERING_POLICIES,
    LoadBalancer,
    Monitor,
    MonitorGroup,
    NsSpec,
    Pool,
    RecordSpec,
    Soa,
)
from lbdns.config.rdata import EXTRA_TYPES, VALUE_HINTS, check_zone_rdata, lb_conflicts
from lbdns.config.settings import ServerSettings
from lbdns.config.source import PathKey, SourceFile, load_yaml, zone_files
from lbdns.errors import ConfigError, Issue

SUPPORTED_TYPES: frozenset[str] = frozenset(
    {"A", "AAAA", "CNAME", "MX", "SRV", "TXT", "NS", "SOA", "CAA", "PTR"}
) | EXTRA_TYPES
"""Record types accepted in ``records`` (SOA only via the ``soa`` key; see lbdns.config.rdata)."""

TOP_LEVEL_KEYS = ("zone", "soa", "ns", "records", "load_balancers", "monitors", "monitor_groups", "pools")
PROXIED_ONLY_SA = ("cookie", "ip_cookie", "header")
PRIVATE_NETS = (
    ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("fc00::/7"), ipaddress.ip_network("fe80::/10"), ipaddress.ip_network("::1/128"),
)

# pydantic field name → SPEC.md §12 code for structural errors on that field
_FIELD_CODES: dict[str, str] = {
    "weight": "E-WEIGHT", "default_weight": "E-WEIGHT", "pool_weights": "E-WEIGHT",
    "default_percent": "E-SHED", "session_percent": "E-SHED", "default_policy": "E-SHED",
    "session_policy": "E-SHED", "latitude": "E-COORD", "longitude": "E-COORD",
    "ttl": "E-TTL", "session_affinity": "E-SA", "minimum_origins": "E-THRESH",
    "address": "E-ADDRESS", "Host": "E-VALIDATION",
}
_MONITOR_FIELDS = frozenset(Monitor.model_fields)


@dataclass(frozen=True, slots=True)
class ZoneData:
    """One validated zone.

    ``origin`` is the apex; ``rrsets`` maps (owner, rdtype) to a dnspython RRset with
    lower-case absolute owner names; ``load_balancers`` maps the LB owner name to its model
    (``name`` filled in as a lower-case FQDN with trailing dot); ``file`` is the source.
    """

    origin: dns.name.Name
    soa: Soa
    rrsets: Mapping[tuple[dns.name.Name, int], dns.rrset.RRset]
    load_balancers: Mapping[dns.name.Name, LoadBalancer]
    file: str


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated configuration: every zone plus the account-level objects
    (pools by id, monitors by id, monitor groups by id) and the warnings found."""

    zones: tuple[ZoneData, ...]
    pools: Mapping[str, Pool]
    monitors: Mapping[str, Monitor]
    monitor_groups: Mapping[str, MonitorGroup]
    warnings: tuple[Issue, ...] = ()


M = TypeVar("M", bound=BaseModel)


@dataclass(slots=True)
class _Collector:
    """Accumulates issues while walking all files."""

    issues: list[Issue] = field(default_factory=list)

    def add(self, src: SourceFile, path: PathKey, code: str, message: str, *, warning: bool = False) -> None:
        self.issues.append(src.issue(path, code, message, warning=warning))

    def model(self, cls: type[M], src: SourceFile, path: PathKey, data: Any, *, partial: bool = False) -> M | None:
        """Validate ``data`` (found at ``path``) as ``cls``; record located errors; None on failure.

        With ``partial``, an object whose errors all sit in optional top-level fields is
        validated again without those fields and returned, so its other fields still get the
        semantic checks (every problem reported at once); the errors already recorded keep
        the configuration from loading.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            bad: set[str] = set()
            for err in exc.errors():
                loc = (*path, *err["loc"])
                self.add(src, loc, _code_for(cls, err, loc), _message_for(cls, err))
                if err["loc"] and isinstance(err["loc"][0], str):
                    bad.add(err["loc"][0])
            if not partial or not isinstance(data, dict) or not bad:
                return None
            required = {n for n, f in cls.model_fields.items() if f.is_required()}
            if bad & required:
                return None
            try:
                return cls.model_validate({k: v for k, v in data.items() if k not in bad})
            except ValidationError:
                return None


def _code_for(cls: type[BaseModel], err: Any, loc: PathKey) -> str:
    etype = str(err["type"])
    if etype.startswith(("E-", "W-")):
        return etype
    if etype == "extra_forbidden":
        return "E-HEADER" if "header" in loc and cls is Pool else "E-FIELD"
    if cls is Monitor:
        return "E-MON"
    for part in reversed(loc):
        if isinstance(part, str) and part in _FIELD_CODES:
            return _FIELD_CODES[part]
    if etype == "missing":
        return "E-FIELD"
    return "E-TYPE"


def _model_fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model at ``loc`` (for "did you mean" hints)."""
    current: Any = cls
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        current = _unwrap_model(ann)
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def _unwrap_model(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _message_for(cls: type[BaseModel], err: Any) -> str:
    etype = str(err["type"])
    loc = tuple(err["loc"])
    if etype == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = _model_fields_at(cls, loc)
        hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        if key == "regions_pool":
            hint = ["region_pools"]
        text = f"unknown field {key!r}"
        if hint:
            return f"{text} (did you mean {hint[0]!r}?)"
        return f"{text} (allowed: {', '.join(allowed)})" if allowed else text
    if etype == "missing":
        return "required field is missing"
    msg = str(err["msg"])
    if etype.startswith(("E-", "W-")):
        return msg
    if "input" in err and not isinstance(err["input"], dict | list):
        msg = f"{msg} (got {err['input']!r})"
    return msg


# ---------------------------------------------------------------------------------------------
# Names and records
# ---------------------------------------------------------------------------------------------

def _parse_owner(key: str, origin: dns.name.Name) -> dns.name.Name:
    """An owner key (relative, ``''``/``@`` for the apex, or absolute with trailing dot)."""
    if key in ("", "@"):
        return origin
    if key.endswith("."):
        return dns.name.from_text(key).canonicalize()
    return dns.name.from_text(key, origin).canonicalize()


def _record_texts(spec: RecordSpec) -> list[Any]:
    if spec.values is not None:
        return list(spec.values)
    if spec.value is None:
        return []
    return [spec.value]


def _txt_rdata(value: str) -> dns.rdata.Rdata:
    """TXT from a plain string: split into ≤ 255-octet character-strings (RFC 1035 §3.3.14)."""
    from dns.rdtypes.ANY.TXT import TXT

    raw = value.encode("utf-8")
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


def _structured_text(rtype: str, value: Mapping[str, Any]) -> str:
    """octoDNS structured MX/SRV/CAA values → rdata presentation text."""
    if rtype == "MX":
        return f"{value['preference']} {value['exchange']}"
    if rtype == "SRV":
        return f"{value['priority']} {value['weight']} {value['port']} {value['target']}"
    if rtype == "CAA":
        text = str(value["value"]).replace("\\", "\\\\").replace('"', '\\"')
        return f"{value.get('flags', 0)} {value['tag']} \"{text}\""
    raise KeyError(rtype)


def _make_rdata(rtype: str, value: Any, origin: dns.name.Name) -> dns.rdata.Rdata:
    """One rdata from a YAML value; raises ValueError/KeyError/dns exceptions on bad input."""
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


_ALLOWED_VALUE_HINT = {
    "A": "an IPv4 address",
    "AAAA": "an IPv6 address",
    "CNAME": "a domain name",
    "NS": "a domain name",
    "PTR": "a domain name",
    "MX": "'PREFERENCE EXCHANGE' or {preference, exchange}",
    "SRV": "'PRIORITY WEIGHT PORT TARGET' or {priority, weight, port, target}",
    "CAA": "'FLAGS TAG \"VALUE\"' or {flags, tag, value}",
    "TXT": "a string (split into 255-octet character-strings)",
    **VALUE_HINTS,
}


def _zone_section(col: _Collector, src: SourceFile, data: Mapping[str, Any],
                  settings: ServerSettings) -> tuple[ZoneData | None, dict[str, Any], dns.name.Name | None]:
    """Validate the zone part of a file (zone, soa, ns, records, load_balancers)."""
    zkey = data.get("zone")
    if not isinstance(zkey, str) or not zkey.strip(". "):
        col.add(src, ("zone",), "E-ZONE", "zone must be a domain name such as 'example.com'")
        return None, {}, None
    try:
        origin = dns.name.from_text(zkey.strip()).canonicalize()
    except dns.exception.DNSException as exc:
        col.add(src, ("zone",), "E-ZONE", f"invalid zone name {zkey!r}: {exc}")
        return None, {}, None
    soa: Soa | None = None
    if "soa" not in data:
        col.add(src, ("zone",), "E-ZONE", "missing SOA (add an 'soa:' mapping with mname and rname)")
    else:
        soa = col.model(Soa, src, ("soa",), data["soa"])
        if soa is not None:
            for fld in ("mname", "rname"):
                try:
                    dns.name.from_text(getattr(soa, fld), origin)
                except dns.exception.DNSException as exc:
                    col.add(src, ("soa", fld), "E-RECORD", f"invalid domain name: {exc}")

    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    # NS at the apex
    ns_raw = data.get("ns")
    ns_spec: NsSpec | None = None
    if ns_raw is None:
        col.add(src, ("zone",), "E-ZONE", "missing apex NS records (add 'ns: [ns1.example.com.]')")
    elif isinstance(ns_raw, list):
        ns_spec = col.model(NsSpec, src, ("ns",), {"values": ns_raw})
    else:
        ns_spec = col.model(NsSpec, src, ("ns",), ns_raw)
    if ns_spec is not None:
        rrs = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.NS)
        for i, v in enumerate(ns_spec.values):
            path: PathKey = ("ns", i) if isinstance(ns_raw, list) else ("ns", "values", i)
            try:
                rrs.add(_make_rdata("NS", v, origin), ns_spec.ttl)
            except Exception as exc:
                col.add(src, path, "E-RECORD", f"invalid NS value {v!r}: {exc} (a domain name)")
        if len(rrs):
            rrsets[(origin, dns.rdatatype.NS)] = rrs

    records = data.get("records", {})
    if records is None:
        records = {}
    if not isinstance(records, dict):
        col.add(src, ("records",), "E-TYPE", "records must be a mapping of owner name → record(s)")
        records = {}
    for key, entry in records.items():
        base: PathKey = ("records", key)
        try:
            owner = _parse_owner(key, origin)
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
            spec = col.model(RecordSpec, src, rpath, raw)
            if spec is None:
                continue
            rtype = spec.type.upper()
            if rtype not in SUPPORTED_TYPES or rtype == "SOA":
                allowed = ", ".join(sorted(SUPPORTED_TYPES - {"SOA"}))
                msg = ("the SOA is set with the 'soa' key" if rtype == "SOA"
                       else f"unsupported record type {spec.type!r}")
                col.add(src, (*rpath, "type"), "E-RECORD", f"{msg} (allowed: {allowed})")
                continue
            values = _record_texts(spec)
            if not values:
                col.add(src, rpath, "E-RECORD", "record has no 'value' or 'values'")
                continue
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
                    rrset.add(_make_rdata(rtype, value, origin), spec.ttl)
                except Exception as exc:
                    col.add(src, vpath, "E-RECORD",
                            f"invalid {rtype} value {value!r}: {exc} ({_ALLOWED_VALUE_HINT.get(rtype, 'rdata text')})")
            if len(rrset):
                rrsets[(owner, rdtype)] = rrset

    # CNAME beside other data (RFC 1034 §3.6.2, RFC 2181 §10.1)
    owners: dict[dns.name.Name, list[int]] = {}
    for (owner, rtype_code) in rrsets:
        owners.setdefault(owner, []).append(rtype_code)
    for owner, types in owners.items():
        if dns.rdatatype.CNAME in types:
            key = _owner_key(owner, origin, records)
            if len(types) > 1 or owner == origin:
                others = ", ".join(sorted(dns.rdatatype.to_text(dns.rdatatype.RdataType(t))
                                          for t in types if t != dns.rdatatype.CNAME))
                col.add(src, ("records", key), "E-CNAME",
                        f"CNAME cannot coexist with other data at {owner.to_text()}"
                        + (f" (found {others})" if others else " (not allowed at the zone apex)"))
            if len(rrsets[(owner, dns.rdatatype.CNAME)]) > 1:
                col.add(src, ("records", key), "E-CNAME", "a CNAME RRset holds exactly one record")
    # data below a delegation (other than glue addresses) is occluded (RFC 1034 §4.2.1)
    cuts = [o for o, t in owners.items() if dns.rdatatype.NS in t and o != origin]
    for owner, types in owners.items():
        for cut in cuts:
            if owner != cut and owner.is_subdomain(cut):
                bad = [t for t in types if t not in (dns.rdatatype.A, dns.rdatatype.AAAA)]
                if bad:
                    col.add(src, ("records", _owner_key(owner, origin, records)), "E-NAME",
                            f"{owner.to_text()} lies below the delegation {cut.to_text()} "
                            "(only glue A/AAAA records are allowed there)")
            elif owner == cut:
                bad = [t for t in types if t not in (dns.rdatatype.NS, dns.rdatatype.A,
                                                      dns.rdatatype.AAAA, dns.rdatatype.DS)]
                if bad:
                    col.add(src, ("records", _owner_key(owner, origin, records)), "E-NAME",
                            f"{owner.to_text()} is a delegation point; only NS, DS and glue are allowed")
    for owner, code, message, warning in check_zone_rdata(rrsets, origin):
        col.add(src, ("records", _owner_key(owner, origin, records)), code, message, warning=warning)

    lbs: dict[str, Any] = {}
    raw_lbs = data.get("load_balancers") or {}
    if not isinstance(raw_lbs, dict):
        col.add(src, ("load_balancers",), "E-TYPE", "load_balancers must be a mapping of hostname → load balancer")
        raw_lbs = {}
    for key, raw in raw_lbs.items():
        lbs[key] = raw
    if soa is None:
        return None, lbs, origin
    return ZoneData(origin, soa, rrsets, {}, src.name), lbs, origin


def _owner_key(owner: dns.name.Name, origin: dns.name.Name, records: Mapping[str, Any]) -> str:
    for key in records:
        try:
            if _parse_owner(key, origin) == owner:
                return key
        except dns.exception.DNSException:
            continue
    return owner.relativize(origin).to_text()


# ---------------------------------------------------------------------------------------------
# Account-level objects and load balancers
# ---------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Placed:
    """A validated object with the file and path it came from."""

    src: SourceFile
    path: PathKey
    obj: Any


def _hint(value: str, allowed: Iterable[str]) -> str:
    m = difflib.get_close_matches(value, list(allowed), n=1, cutoff=0.5)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _check_monitor(col: _Collector, p: _Placed, settings: ServerSettings,
                   parse_codes: Callable[[str], object]) -> None:
    m: Monitor = p.obj
    src, path = p.src, p.path
    if m.type not in MONITOR_TYPES:
        extra = " (LDAP monitors are not supported)" if m.type.lower() == "ldap" else ""
        col.add(src, (*path, "type"), "E-MON",
                f"unknown monitor type {m.type!r}{extra} (allowed: {', '.join(MONITOR_TYPES)})")
        return
    if settings.plan == "non_enterprise" and m.type in ("udp_icmp", "icmp_ping", "smtp"):
        col.add(src, (*path, "type"), "E-PLAN",
                f"monitor type {m.type!r} needs plan enterprise (non-Enterprise: http, https, tcp)")
    http = m.type in ("http", "https")
    if http:
        if m.method and m.method not in ("GET", "HEAD"):
            col.add(src, (*path, "method"), "E-MON", f"method {m.method!r} is invalid for {m.type} (GET or HEAD)")
        if not m.path.startswith("/"):
            col.add(src, (*path, "path"), "E-MON", f"path {m.path!r} must start with '/'")
        try:
            parse_codes(m.expected_codes)
        except ValueError as exc:
            col.add(src, (*path, "expected_codes"), "E-MON", str(exc))
        for name in m.header:
            if name.lower() == "user-agent":
                col.add(src, (*path, "header", name), "W-UA",
                        "the User-Agent header cannot be overridden; this entry is ignored", warning=True)
    else:
        if m.method and not (m.type == "tcp" and m.method == "connection_established"):
            col.add(src, (*path, "method"), "E-MON",
                    f"method {m.method!r} is invalid for {m.type} "
                    + ("(connection_established)" if m.type == "tcp" else "(leave it empty)"))
        for fld in ("header", "expected_body", "follow_redirects", "allow_insecure"):
            if fld in _set_fields(m) and getattr(m, fld):
                col.add(src, (*path, fld), "E-MON", f"{fld} applies to http/https monitors only")
        if "expected_codes" in _set_fields(m):
            col.add(src, (*path, "expected_codes"), "E-MON", "expected_codes applies to http/https monitors only")
    if m.type in ("tcp", "udp_icmp", "smtp") and not (1 <= m.port <= 65535):
        col.add(src, (*path, "port"), "E-MON", f"a {m.type} monitor needs a port (1–65535)")
    lo = settings.monitor_interval_min or (15 if settings.plan == "non_enterprise" else 10)
    if not lo <= m.interval <= 3600:
        col.add(src, (*path, "interval"), "E-MON",
                f"interval {m.interval} s is out of range ({lo}–3600 s for plan {settings.plan})")
    if m.timeout < 1:
        col.add(src, (*path, "timeout"), "E-MON", f"timeout {m.timeout} s must be at least 1 s")
    for fld in ("retries", "consecutive_up", "consecutive_down"):
        if getattr(m, fld) < 0:
            col.add(src, (*path, fld), "E-MON", f"{fld} must not be negative")
    if m.timeout >= 1 and m.timeout * (m.retries + 1) >= m.interval:
        col.add(src, (*path, "timeout"), "W-INTERVAL-TIMEOUT",
                f"timeout × (retries + 1) = {m.timeout * (m.retries + 1)} s ≥ interval {m.interval} s",
                warning=True)


def _set_fields(obj: BaseModel) -> set[str]:
    return set(obj.model_fields_set)


def _is_private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip in net for net in PRIVATE_NETS if net.version == ip.version)


def _check_pool(col: _Collector, p: _Placed, settings: ServerSettings, monitors: Mapping[str, Any],
                groups: Mapping[str, Any], zones: list[dns.name.Name]) -> None:
    pool: Pool = p.obj
    src, path = p.src, p.path
    if pool.monitor and pool.monitor_group:
        col.add(src, path, "E-MON-BOTH", "a pool has either a monitor or a monitor_group, not both")
    if pool.monitor and pool.monitor not in monitors:
        col.add(src, (*path, "monitor"), "E-REF", f"unknown monitor {pool.monitor!r}{_hint(pool.monitor, monitors)}")
    if pool.monitor_group:
        if settings.plan == "non_enterprise":
            col.add(src, (*path, "monitor_group"), "E-PLAN", "monitor groups need plan enterprise")
        if pool.monitor_group not in groups:
            col.add(src, (*path, "monitor_group"), "E-REF", f"unknown monitor group {pool.monitor_group!r}")
    if pool.minimum_origins < 1:
        col.add(src, (*path, "minimum_origins"), "E-THRESH", "minimum_origins must be at least 1")
    enabled = sum(1 for o in pool.origins if o.enabled)
    if pool.minimum_origins > enabled >= 0 and pool.minimum_origins >= 1:
        col.add(src, (*path, "minimum_origins"), "W-THRESH",
                f"minimum_origins {pool.minimum_origins} > {enabled} enabled origin(s): the pool can never be healthy",
                warning=True)
    if (pool.latitude is None) != (pool.longitude is None):
        col.add(src, path, "E-COORD", "set both latitude and longitude, or neither")
    if pool.check_regions is not None:
        for i, r in enumerate(pool.check_regions):
            if r not in REGION_CODES and r != "ALL_REGIONS":
                col.add(src, (*path, "check_regions", i), "E-REGION",
                        f"unknown region {r!r} (allowed: {', '.join(REGION_CODES)}, ALL_REGIONS)")
    if pool.origin_steering.policy in ("least_outstanding_requests", "least_connections"):
        col.add(src, (*path, "origin_steering", "policy"), "W-LOR-DNS",
                f"{pool.origin_steering.policy} has no request counts in DNS-only mode: "
                "origins are chosen by weight (random)", warning=True)
    if pool.notification_email:
        col.add(src, (*path, "notification_email"), "W-DEPRECATED",
                "notification_email is deprecated; use notification_webhook in lbdns.yaml", warning=True)
    names: dict[str, int] = {}
    addrs: dict[str, int] = {}
    for i, o in enumerate(pool.origins):
        opath: PathKey = (*path, "origins", i)
        if o.name in names:
            col.add(src, (*opath, "name"), "E-DUP", f"duplicate origin name {o.name!r} (also origins[{names[o.name]}])")
        names.setdefault(o.name, i)
        key = o.address.lower().rstrip(".")
        if key in addrs:
            col.add(src, (*opath, "address"), "E-DUP",
                    f"duplicate origin address {o.address!r} (also origins[{addrs[key]}])")
        addrs.setdefault(key, i)
        ip = o.ip
        if (ip is not None and _is_private(ip)) or o.virtual_network_id:
            what = "virtual_network_id (private endpoints)" if o.virtual_network_id else f"private address {o.address}"
            col.add(src, (*opath, "address"), "W-PRIVATE",
                    f"{what}: DNS-only load balancing supports public endpoints only",
                    warning=not settings.strict_public_endpoints)
        if ip is not None and "flatten_cname" in o.model_fields_set:
            col.add(src, (*opath, "flatten_cname"), "E-ADDRESS", "flatten_cname applies to hostname origins only")
        if o.header is not None and o.header.Host:
            host = o.header.Host[0].rstrip(".").lower()
            try:
                hname = dns.name.from_text(host)
                fqdn = len(hname.labels) >= 3
            except dns.exception.DNSException:
                fqdn = False
            in_zone = fqdn and any(hname.is_subdomain(z) for z in zones)
            if not fqdn or not (in_zone or host == o.address.rstrip(".").lower()):
                col.add(src, (*opath, "header", "Host"), "E-VALIDATION",
                        f"Host {o.header.Host[0]!r} must be a fully qualified name inside a zone served here "
                        "or equal to the origin address")


def _check_lb(col: _Collector, src: SourceFile, path: PathKey, lb: LoadBalancer, pools: Mapping[str, Pool],
              settings: ServerSettings, compile_rule: Callable[[str], Any]) -> tuple[LoadBalancer, list[Any]]:
    """Check one load balancer; returns it with defaults applied (fallback_pool) and the
    compiled rule conditions (or None per rule that failed)."""
    if lb.proxied:
        if settings.allow_proxied_as_dns_only:
            col.add(src, (*path, "proxied"), "W-PROXIED", "proxied load balancer served as DNS-only", warning=True)
        else:
            col.add(src, (*path, "proxied"), "E-PROXIED",
                    "proxied load balancers are not supported by a DNS-only server "
                    "(set proxied: false, or allow_proxied_as_dns_only in lbdns.yaml)")
    if not 1 <= lb.ttl <= 86400:
        col.add(src, (*path, "ttl"), "E-TTL", f"ttl {lb.ttl} is out of range (integer 1–86400 seconds)")

    def check_refs(pp: PathKey, names: list[str], *, allow_empty: bool = False) -> None:
        if not names and not allow_empty:
            col.add(src, pp, "E-POOLS", "the pool list must not be empty")
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                col.add(src, (*pp, i), "E-POOLS", f"pool {n!r} is listed twice")
            seen.add(n)
            if n not in pools:
                col.add(src, (*pp, i), "E-REF", f"unknown pool {n!r}{_hint(n, pools)}")

    check_refs((*path, "default_pools"), lb.default_pools)
    fallback = lb.fallback_pool
    if fallback is None:
        if lb.default_pools:
            fallback = lb.default_pools[-1]
            col.add(src, (*path, "default_pools"), "W-FALLBACK-DEFAULT",
                    f"fallback_pool not set: using the last default pool {fallback!r}", warning=True)
    elif fallback not in pools:
        col.add(src, (*path, "fallback_pool"), "E-REF", f"unknown pool {fallback!r}{_hint(fallback, pools)}")
    _check_maps(col, src, path, lb.region_pools, lb.country_pools, lb.pop_pools, settings, check_refs)
    policy = lb.steering_policy
    if policy not in STEERING_POLICIES:
        hint = " (did you mean 'random'?)" if policy == "random_steering" else _hint(policy, STEERING_POLICIES)
        col.add(src, (*path, "steering_policy"), "E-STEERING",
                f"unknown steering_policy {policy!r}{hint} (allowed: {', '.join(repr(p) for p in STEERING_POLICIES)})")
    resolved = resolve_policy(policy, lb.region_pools, lb.country_pools, lb.pop_pools)
    if policy in ("least_outstanding_requests", "least_connections"):
        col.add(src, (*path, "steering_policy"), "W-LOR-DNS",
                f"{policy} has no request counts in DNS-only mode: pools are drawn by random_steering weights",
                warning=True)
    has_maps = any(v for v in lb.region_pools.values()) or any(v for v in lb.country_pools.values()) or any(
        v for v in lb.pop_pools.values())
    if has_maps and resolved != "geo" and policy in STEERING_POLICIES:
        col.add(src, (*path, "steering_policy"), "W-UNUSED",
                f"region/country/pop pools are ignored with steering_policy {resolved!r}", warning=True)
    for name in lb.random_steering.pool_weights:
        if name not in lb.default_pools:
            col.add(src, (*path, "random_steering", "pool_weights", name), "W-UNUSED",
                    f"pool {name!r} is not in default_pools; its weight is ignored", warning=True)
    if resolved == "proximity":
        missing = [n for n in lb.default_pools if n in pools and pools[n].latitude is None]
        if missing:
            col.add(src, (*path, "steering_policy"), "W-NOCOORD",
                    f"pools without coordinates are tried last: {', '.join(missing)} "
                    "(for accurate proximity steering add latitude/longitude to every pool)", warning=True)
    if resolved == "dynamic_latency":
        for n in lb.default_pools:
            pool = pools.get(n)
            if pool is not None and pool.check_regions is not None and set(pool.check_regions) - {"ALL_REGIONS"} \
                    and set(pool.check_regions) != set(REGION_CODES) and "ALL_REGIONS" not in pool.check_regions:
                col.add(src, (*path, "default_pools"), "W-DYN-REGIONS",
                        f"pool {n!r} narrows check_regions; dynamic steering expects all regions", warning=True)
    sa = lb.session_affinity
    if sa not in ("", "none", *PROXIED_ONLY_SA):
        col.add(src, (*path, "session_affinity"), "E-SA",
                f"unknown session_affinity {sa!r} (allowed: '', none, cookie, ip_cookie, header)")
    elif sa in PROXIED_ONLY_SA:
        col.add(src, (*path, "session_affinity"), "W-SA",
                "session affinity is not supported in DNS-only mode and is ignored "
                "(use hash origin steering or the DNS persistence methods instead)", warning=True)
    if lb.adaptive_routing is not None and lb.adaptive_routing.failover_across_pools:
        col.add(src, (*path, "adaptive_routing"), "W-SA",
                "adaptive routing is proxied-only and ignored in DNS-only mode", warning=True)
    if settings.plan == "non_enterprise" and len(lb.rules) > 1:
        col.add(src, (*path, "rules"), "E-QUOTA",
                f"{len(lb.rules)} rules exceed the non-Enterprise limit of 1 rule per load balancer")
    compiled: list[Any] = []
    enabled_rules = [r for r in lb.rules if not r.disabled]
    if enabled_rules and resolved == "geo":
        col.add(src, (*path, "rules"), "W-RULES-GEO",
                "custom rules are incompatible with geo steering in Cloudflare; lbdns still evaluates them",
                warning=True)
    for i, rule in enumerate(lb.rules):
        rpath: PathKey = (*path, "rules", i)
        try:
            cond = compile_rule(rule.condition)
            for code, message, column in getattr(cond, "warnings", ()):
                col.add(src, (*rpath, "condition"), code, f"column {column}: {message}", warning=True)
            compiled.append(cond)
        except Exception as exc:  # RuleError
            column = getattr(exc, "column", 0)
            message = getattr(exc, "message", str(exc))
            col.add(src, (*rpath, "condition"), "E-RULE-EXPR", f"column {column}: {message}")
            compiled.append(None)
        ov = rule.overrides
        if ov.default_pools is not None:
            check_refs((*rpath, "overrides", "default_pools"), ov.default_pools)
        if ov.fallback_pool is not None and ov.fallback_pool not in pools:
            col.add(src, (*rpath, "overrides", "fallback_pool"), "E-REF", f"unknown pool {ov.fallback_pool!r}")
        _check_maps(col, src, (*rpath, "overrides"), ov.region_pools or {}, ov.country_pools or {},
                    ov.pop_pools or {}, settings, check_refs)
        if ov.steering_policy is not None:
            if ov.steering_policy not in STEERING_POLICIES:
                hint = " (did you mean 'random'?)" if ov.steering_policy == "random_steering" else ""
                col.add(src, (*rpath, "overrides", "steering_policy"), "E-STEERING",
                        f"unknown steering_policy {ov.steering_policy!r}{hint}")
            elif ov.steering_policy == "geo" and resolved != "geo":
                col.add(src, (*rpath, "overrides", "steering_policy"), "W-RULES-GEO",
                        "rule overrides steering to geo, which Cloudflare does not support with rules", warning=True)
        if ov.ttl is not None and not 1 <= ov.ttl <= 86400:
            col.add(src, (*rpath, "overrides", "ttl"), "E-TTL", f"ttl {ov.ttl} is out of range (1–86400)")
        if ov.session_affinity or ov.session_affinity_ttl or ov.session_affinity_attributes:
            col.add(src, (*rpath, "overrides"), "W-SA", "session affinity overrides are ignored in DNS-only mode",
                    warning=True)
        if rule.fixed_response is not None:
            col.add(src, (*rpath, "fixed_response"), "W-FIXED-RESPONSE",
                    "fixed_response cannot be sent in DNS; the rule's overrides apply and rule evaluation stops",
                    warning=True)
    return lb.model_copy(update={"fallback_pool": fallback}), compiled


def _check_maps(col: _Collector, src: SourceFile, path: PathKey, region_pools: Mapping[str, list[str]],
                country_pools: Mapping[str, list[str]], pop_pools: Mapping[str, list[str]],
                settings: ServerSettings, check_refs: Callable[..., None]) -> None:
    from lbdns.geo.regions import is_country

    for key, names in region_pools.items():
        if key not in REGION_CODES:
            hint = " (use country_pools for countries)" if is_country(key) else _hint(key, REGION_CODES)
            col.add(src, (*path, "region_pools", key), "E-REGION",
                    f"unknown region {key!r}{hint} (allowed: {', '.join(REGION_CODES)})")
        check_refs((*path, "region_pools", key), names, allow_empty=True)
    for key, names in country_pools.items():
        if not is_country(key):
            col.add(src, (*path, "country_pools", key), "E-COUNTRY",
                    f"{key!r} is not an ISO-3166-1 alpha-2 country code (e.g. US, GB, JP)")
        check_refs((*path, "country_pools", key), names, allow_empty=True)
    for key, names in pop_pools.items():
        if settings.plan == "non_enterprise":
            col.add(src, (*path, "pop_pools"), "E-PLAN", "pop_pools needs plan enterprise")
        if not (len(key) == 3 and key.isalpha() and key.isupper()):
            col.add(src, (*path, "pop_pools", key), "E-POP",
                    f"{key!r} is not a PoP code (3 upper-case letters, e.g. LHR)")
        check_refs((*path, "pop_pools", key), names, allow_empty=True)


def resolve_policy(policy: str, region_pools: Mapping[str, list[str]] | Mapping[str, tuple[str, ...]],
                   country_pools: Mapping[str, Any], pop_pools: Mapping[str, Any]) -> str:
    """Resolve ``""`` to ``geo`` when any geo map has a non-empty list, else ``off``
    (SPEC.md R-GTS-30). Other values are returned unchanged."""
    if policy != "":
        return policy
    if any(region_pools.values()) or any(country_pools.values()) or any(pop_pools.values()):
        return "geo"
    return "off"


# ---------------------------------------------------------------------------------------------
# Whole configuration
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated config plus the compiled rule conditions per LB
    (``rules[(zone origin, lb name)] = [CompiledCondition, …]`` in array order)."""

    config: Config
    rules: Mapping[tuple[dns.name.Name, dns.name.Name], tuple[Any, ...]]


def load_config(directory: Path, settings: ServerSettings | None = None,
                *, display_root: Path | None = None) -> LoadedConfig:
    """Load and validate every YAML file under ``directory``.

    Returns the :class:`LoadedConfig`; raises :class:`ConfigError` with every issue (errors
    and warnings) when there is at least one error. Warnings of a valid config are in
    ``config.warnings``.
    """
    settings = settings or ServerSettings()
    col = _Collector()
    if not directory.is_dir():
        from lbdns.errors import Location
        raise ConfigError([Issue(Location(str(directory)), "", "E-ZONE", "zones directory does not exist")])
    root = display_root if display_root is not None else directory
    sources: list[SourceFile] = []
    for path in zone_files(directory):
        try:
            shown = str(path.relative_to(root.parent)) if display_root is None else str(path.relative_to(root))
        except ValueError:
            shown = str(path)
        src, issues = load_yaml(path, shown)
        col.issues.extend(issues)
        if src is None:
            continue
        if not isinstance(src.data, dict):
            col.add(src, (), "E-TYPE", "a zone file must be a mapping (zone:, soa:, ns:, records:, …)")
            continue
        for key in src.data:
            if key not in TOP_LEVEL_KEYS:
                col.add(src, (key,), "E-FIELD", f"unknown top-level key {key!r}{_hint(key, TOP_LEVEL_KEYS)} "
                        f"(allowed: {', '.join(TOP_LEVEL_KEYS)})")
        sources.append(src)

    # account-level objects first
    monitors: dict[str, _Placed] = {}
    groups: dict[str, _Placed] = {}
    pools: dict[str, _Placed] = {}
    pool_names: dict[str, _Placed] = {}
    raw_pool_names: set[str] = set()
    for src in sources:
        sections: tuple[tuple[str, type[Any], dict[str, _Placed]], ...] = (
            ("monitors", Monitor, monitors), ("monitor_groups", MonitorGroup, groups))
        for section, cls, table in sections:
            items = src.data.get(section) or []
            if not isinstance(items, list):
                col.add(src, (section,), "E-TYPE", f"{section} must be a list")
                continue
            for i, raw in enumerate(items):
                obj: Any = col.model(cls, src, (section, i), raw, partial=True)
                if obj is None:
                    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                        table.setdefault(raw["id"], _Placed(src, (section, i), None))
                    continue
                if obj.id in table:
                    other = table[obj.id]
                    col.add(src, (section, i, "id"), "E-REF",
                            f"duplicate {section[:-1].replace('_', ' ')} id {obj.id!r} "
                            f"(also {other.src.location(other.path)})")
                    continue
                table[obj.id] = _Placed(src, (section, i), obj)
        items = src.data.get("pools") or []
        if not isinstance(items, list):
            col.add(src, ("pools",), "E-TYPE", "pools must be a list")
            continue
        for i, raw in enumerate(items):
            if isinstance(raw, dict):
                for k in ("name", "id"):
                    if isinstance(raw.get(k), str):
                        raw_pool_names.add(raw[k])
            obj = col.model(Pool, src, ("pools", i), raw, partial=True)
            if obj is None:
                continue
            if obj.name in pool_names or obj.id in pools:
                other = pool_names.get(obj.name) or pools[obj.id]
                col.add(src, ("pools", i, "name"), "E-DUP",
                        f"duplicate pool name {obj.name!r} (also {other.src.location(other.path)})")
                continue
            pools[obj.id] = _Placed(src, ("pools", i), obj)
            pool_names[obj.name] = pools[obj.id]

    from lbdns.health.expected_codes import parse_expected_codes

    for placed in monitors.values():
        if placed.obj is not None:
            _check_monitor(col, placed, settings, parse_expected_codes)
    for gid, placed in groups.items():
        if placed.obj is None:
            continue
        for j, member in enumerate(placed.obj.members):
            if member.monitor_id not in monitors:
                col.add(placed.src, (*placed.path, "members", j, "monitor_id"), "E-REF",
                        f"unknown monitor {member.monitor_id!r} in monitor group {gid!r}")

    # zones
    zone_parts: list[tuple[SourceFile, ZoneData | None, dict[str, Any]]] = []
    zone_origins: dict[dns.name.Name, SourceFile] = {}
    for src in sources:
        if "zone" not in src.data:
            for k in ("soa", "ns", "records", "load_balancers"):
                if k in src.data:
                    col.add(src, (k,), "E-ZONE", f"{k!r} needs a 'zone:' key naming the zone apex in the same file")
            continue
        zd, raw_lbs, zorigin = _zone_section(col, src, src.data, settings)
        if zorigin is not None:
            if zorigin in zone_origins:
                col.add(src, ("zone",), "E-ZONE",
                        f"duplicate zone {zorigin.to_text()} (also in {zone_origins[zorigin].name})")
                continue
            zone_origins[zorigin] = src
        zone_parts.append((src, zd, raw_lbs))

    valid_pools = {k: p.obj for k, p in pools.items()}
    ref_pools: Mapping[str, Any] = {**{n: None for n in raw_pool_names}, **valid_pools}
    for placed in pools.values():
        _check_pool(col, placed, settings, monitors, groups, list(zone_origins))

    from lbdns.rules import count_runtime_error
    from lbdns.rules.compiler import compile_condition

    def compile_rule(text: str) -> Any:
        return compile_condition(text, on_error=count_runtime_error(text))

    zones: list[ZoneData] = []
    rules: dict[tuple[dns.name.Name, dns.name.Name], tuple[Any, ...]] = {}
    used_pools: set[str] = set()
    lb_count = 0
    for src, zd, raw_lbs in zone_parts:
        lbs: dict[dns.name.Name, LoadBalancer] = {}
        origin = zd.origin if zd is not None else None
        for key, raw in raw_lbs.items():
            lb_path: PathKey = ("load_balancers", key)
            lb = col.model(LoadBalancer, src, lb_path, raw, partial=True)
            if lb is None or origin is None:
                continue
            lb_count += 1
            try:
                owner = _parse_owner(key, origin)
            except dns.exception.DNSException as exc:
                col.add(src, lb_path, "E-LB-NAME", f"invalid load balancer hostname {key!r}: {exc}")
                continue
            if not owner.is_subdomain(origin):
                col.add(src, lb_path, "E-LB-NAME",
                        f"load balancer {owner.to_text()} is outside the zone {origin.to_text()}")
                continue
            if owner in lbs:
                col.add(src, lb_path, "E-LB-NAME", f"duplicate load balancer name {owner.to_text()}")
                continue
            assert zd is not None
            for (rowner, rdtype) in zd.rrsets:
                if rdtype == dns.rdatatype.NS and rowner != origin and owner.is_subdomain(rowner):
                    col.add(src, lb_path, "E-LB-NAME",
                            f"load balancer {owner.to_text()} is at or below the delegation {rowner.to_text()}")
            for problem in lb_conflicts(owner, lb, zd.rrsets):
                col.add(src, lb_path, "E-LB-NAME", problem)
            lb, compiled = _check_lb(col, src, lb_path, lb, ref_pools, settings, compile_rule)
            lb = lb.model_copy(update={"name": owner.to_text().lower(), "id": lb.id or owner.to_text().lower()})
            lbs[owner] = lb
            rules[(origin, owner)] = tuple(compiled)
            used_pools.update(lb.default_pools)
            if lb.fallback_pool:
                used_pools.add(lb.fallback_pool)
            for mapping in (lb.region_pools, lb.country_pools, lb.pop_pools):
                for names in mapping.values():
                    used_pools.update(names)
            for rule in lb.rules:
                ov = rule.overrides
                used_pools.update(ov.default_pools or [])
                if ov.fallback_pool:
                    used_pools.add(ov.fallback_pool)
                for mapping2 in (ov.region_pools or {}, ov.country_pools or {}, ov.pop_pools or {}):
                    for names in mapping2.values():
                        used_pools.update(names)
            _check_plan_lb(col, src, lb_path, lb, valid_pools, settings)
        if zd is not None:
            zones.append(ZoneData(zd.origin, zd.soa, zd.rrsets, lbs, zd.file))

    for pid, placed in pools.items():
        if pid not in used_pools and placed.obj.name not in used_pools:
            col.add(placed.src, placed.path, "W-UNUSED",
                    f"pool {placed.obj.name!r} is not used by any load balancer", warning=True)
    _check_quotas(col, sources, lb_count, valid_pools, monitors, settings)

    order = {s.name: n for n, s in enumerate(sources)}

    def position(i: Issue) -> tuple[int, str, int, int]:
        loc = i.location
        return order.get(loc.file, -1), loc.file, loc.line, loc.column

    errors = sorted((i for i in col.issues if i.is_error), key=position)
    warnings = sorted((i for i in col.issues if not i.is_error), key=position)
    if errors:
        raise ConfigError(errors + warnings)
    config = Config(
        zones=tuple(zones),
        pools=valid_pools,
        monitors={k: p.obj for k, p in monitors.items() if p.obj is not None},
        monitor_groups={k: p.obj for k, p in groups.items() if p.obj is not None},
        warnings=tuple(warnings),
    )
    return LoadedConfig(config, rules)


def _check_plan_lb(col: _Collector, src: SourceFile, path: PathKey, lb: LoadBalancer,
                   pools: Mapping[str, Pool], settings: ServerSettings) -> None:
    """Plan-dependent checks of one LB (SPEC.md R-CFG-02)."""
    if settings.plan != "non_enterprise":
        return
    # pop_pools under non_enterprise is reported by _check_maps (once per key)


def _check_quotas(col: _Collector, sources: list[SourceFile], lb_count: int, pools: Mapping[str, Pool],
                  monitors: Mapping[str, _Placed], settings: ServerSettings) -> None:
    """Count limits (SPEC.md R-CFG-01/02): errors for non_enterprise, W-QUOTA otherwise."""
    if not sources:
        return
    first = sources[0]
    if settings.plan == "non_enterprise":
        if lb_count > 20:
            col.add(first, (), "E-QUOTA", f"{lb_count} load balancers exceed the non-Enterprise limit of 20")
        if len(pools) > 20:
            col.add(first, (), "E-QUOTA", f"{len(pools)} pools exceed the non-Enterprise limit of 20")
        for pid, pool in pools.items():
            if len(pool.origins) > 20:
                col.add(first, (), "E-QUOTA", f"pool {pid!r} has {len(pool.origins)} origins (non-Enterprise limit 20)")
    if pools and len(monitors) > 1.5 * len(pools):
        code = "E-QUOTA" if settings.plan == "non_enterprise" else "W-QUOTA"
        col.add(first, ("monitors",), code,
                f"{len(monitors)} monitors exceed 1.5 × {len(pools)} pools",
                warning=code == "W-QUOTA")
