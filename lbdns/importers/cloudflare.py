"""Cloudflare Load Balancing API exports → lbdns YAML (``lbdns import-cloudflare``).

Inputs are the JSON bodies of ``GET /accounts/{a}/load_balancers/monitors``,
``GET /accounts/{a}/load_balancers/pools``, ``GET /zones/{z}/load_balancers`` and optionally
``GET /zones/{z}/dns_records``: the API envelope (``{"success": true, "result": [...]}``), a
bare array, or a single object (:func:`parse_export`).

Output (:class:`CloudflareImport`) is an account file (``monitors:``, ``pools:``) and a zone
file (``zone:``, ``soa:``, ``ns:``, ``records:``, ``load_balancers:``) in the lbdns layout
(docs/configuration.md › Files and top-level keys). The mapping:

* **IDs become names.** A pool is referred to by its ``name``; a monitor gets the slug of its
  ``description`` (``"Login page monitor"`` → ``login-page-monitor``), else ``m-<first 8 of
  id>``. Every pool reference (``default_pools``, ``fallback_pool``, ``region_pools``,
  ``country_pools``, ``pop_pools``, ``random_steering.pool_weights``, the same inside rule
  ``overrides``) and every ``monitor`` reference is rewritten. The Cloudflare id is kept as a
  YAML comment above each object. A reference to an id that is not in the exports is dropped
  with a warning; a load balancer left with no ``default_pools`` is an error.
* **Read-only metadata** (``created_on``, ``modified_on``, ``zone_name``, ``healthy``,
  ``disabled_at``) is dropped silently; any other field lbdns does not know is dropped with a
  warning.
* **Proxied-only settings** are kept (lbdns accepts and ignores them) with a warning that
  says what DNS-only does instead (Cloudflare docs: Load Balancing › Proxy status ›
  Limitations): ``proxied: true`` becomes ``proxied: false``; session affinity, endpoint
  drain, zero-downtime failover / adaptive routing,
  ``least_outstanding_requests``/``least_connections``, ``load_shedding.session_percent``,
  rule ``fixed_response`` and ``http.*`` rule fields. Proxied DNS records are published with
  their own content.
* **Monitors**: fields that only apply to HTTP(S) (``path``, ``header``, ``expected_codes``,
  ``expected_body``, ``follow_redirects``, ``allow_insecure``) are dropped from other types
  (the Cloudflare API returns them with empty values), with a warning when they were set.
* **Zone apex data**: ``soa:`` is synthesised (:class:`SoaOptions`: MNAME = the first NS,
  RNAME = ``hostmaster.<zone>.``, serial = today as ``YYYYMMDD01``, the lbdns defaults for the
  timers), overridable from the CLI. ``ns:`` comes from ``--ns``, else the apex NS records of the
  DNS export, else ``ns1``/``ns2.<zone>.`` with a warning (Cloudflare's own name servers are not
  in the export).
* **DNS records**: A, AAAA, CNAME, MX, SRV, TXT, NS, CAA, PTR, HTTPS, SVCB, TLSA, SSHFP, NAPTR,
  DS, LOC, HINFO, DNAME, URI (``ttl: 1`` = Cloudflare's "automatic" = 300 s), from the record's
  structured ``data`` when the export has it, else from ``content``; other types (CERT, DNSKEY,
  SMIMEA, OPENPGPKEY, …) are skipped with a warning, and so is a CNAME at the apex (Cloudflare
  flattens it; lbdns serves an LB or A/AAAA records there instead).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype

from lbdns.importers import ImportFailed
from lbdns.importers.yamlout import Flow, block_entry, dump, header, list_section, map_section
from lbdns.importers.zonefile import SUPPORTED, build_records

METADATA = frozenset({"created_on", "modified_on", "zone_name", "zone_id", "healthy", "disabled_at",
                      "proxiable", "locked", "meta", "comment_modified_on", "tags_modified_on"})
"""Read-only Cloudflare fields dropped without a warning."""

MONITOR_FIELDS = ("type", "description", "method", "path", "header", "port", "timeout", "retries", "interval",
                  "expected_codes", "expected_body", "follow_redirects", "allow_insecure", "consecutive_up",
                  "consecutive_down", "probe_zone")
HTTP_ONLY = ("path", "header", "expected_codes", "expected_body", "follow_redirects", "allow_insecure")
POOL_FIELDS = ("name", "description", "enabled", "minimum_origins", "monitor", "monitor_group", "check_regions",
               "origins", "origin_steering", "load_shedding", "latitude", "longitude", "notification_filter",
               "notification_email", "networks")
ORIGIN_FIELDS = ("name", "address", "enabled", "weight", "header", "port", "virtual_network_id")
LB_FIELDS = ("description", "enabled", "proxied", "ttl", "default_pools", "fallback_pool", "region_pools",
             "country_pools", "pop_pools", "steering_policy", "random_steering", "location_strategy", "rules",
             "adaptive_routing", "session_affinity", "session_affinity_ttl", "session_affinity_attributes",
             "networks")
RULE_FIELDS = ("name", "condition", "disabled", "priority", "terminates", "overrides", "fixed_response")
OVERRIDE_FIELDS = ("default_pools", "fallback_pool", "region_pools", "country_pools", "pop_pools",
                   "steering_policy", "random_steering", "location_strategy", "ttl", "session_affinity",
                   "session_affinity_ttl", "session_affinity_attributes", "adaptive_routing")
STEERING = ("off", "geo", "random", "dynamic_latency", "proximity", "least_outstanding_requests",
            "least_connections", "")
AUTO_TTL = 300
"""Seconds a Cloudflare DNS record with ``ttl: 1`` ("automatic") gets."""

# What DNS-only does instead of each proxied-only feature (Cloudflare docs: Load Balancing ›
# Proxy status › Limitations)
SA_INSTEAD = ("session affinity needs an HTTP proxy and is ignored in DNS-only mode; for stickiness use "
              "origin_steering policy 'hash' (same resolver → same origin) or the DNS persistence methods "
              "in docs/steering.md (Cloudflare: DNS persistence)")
DRAIN_INSTEAD = ("endpoint drain is proxied-only and ignored; to drain an origin in DNS-only mode disable it or "
                 "set its weight to 0 (clients move as cached answers expire, after the LB ttl)")
ADAPTIVE_INSTEAD = ("adaptive routing / zero-downtime failover retries proxied requests on HTTP 52x errors and is "
                    "ignored; DNS-only failover relies on the health monitors only")
LOR_INSTEAD = ("has no request or connection counts in DNS-only mode; it behaves as weighted random "
               "(random_steering weights for pools, origin weights for origins)")
PROXIED_INSTEAD = ("imported as proxied: false: lbdns answers DNS-only (gray cloud) with the origin addresses, "
                   "clients connect to the origins directly, and the LB ttl applies")
SESSION_SHED_INSTEAD = ("load_shedding.session_percent applies to session-affinity traffic and is ignored; "
                        "only default_percent sheds DNS answers")
FIXED_INSTEAD = ("fixed_response cannot be sent in DNS and is ignored; when the rule matches, its overrides apply "
                 "and rule evaluation stops")


@dataclass(frozen=True)
class SoaOptions:
    """The synthesised SOA: ``mname`` (None ⇒ the first NS name), ``rname`` (None ⇒
    ``hostmaster.<zone>.``), ``serial`` (None ⇒ today in UTC as ``YYYYMMDD01``), the timers
    (the lbdns defaults) and the SOA RR's ``ttl``."""

    mname: str | None = None
    rname: str | None = None
    serial: int | None = None
    refresh: int = 7200
    retry: int = 3600
    expire: int = 1209600
    minimum: int = 300
    ttl: int = 3600


@dataclass
class CloudflareImport:
    """The converted configuration.

    ``monitors`` and ``pools`` are the account file's lists, ``zone`` the zone file's data
    (``zone``, ``soa``, ``ns``, ``records``, ``load_balancers``); ``comments`` maps
    ``("monitors"|"pools"|"load_balancers", lbdns name)`` to the comment written above that
    object (its Cloudflare id); ``warnings`` are for stderr; ``monitor_names`` and
    ``pool_names`` map Cloudflare ids to lbdns names.
    """

    zone_name: str
    monitors: list[dict[str, Any]] = field(default_factory=list)
    pools: list[dict[str, Any]] = field(default_factory=list)
    zone: dict[str, Any] = field(default_factory=dict)
    comments: dict[tuple[str, str], str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    monitor_names: dict[str, str] = field(default_factory=dict)
    pool_names: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# reading exports
# ---------------------------------------------------------------------------------------------

def parse_export(data: Any, what: str) -> list[dict[str, Any]]:
    """The objects of one export: ``data`` is an API envelope, a list of objects or one object.
    ``what`` names the export in error messages. Raises :class:`ImportFailed` for a failed
    API response (``success: false``) or anything that is not objects."""
    if isinstance(data, dict) and ("result" in data or "success" in data):
        if data.get("success") is False:
            errors = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e)
                               for e in data.get("errors") or [])
            raise ImportFailed(f"{what}: the API response reports failure" + (f": {errors}" if errors else ""))
        data = data.get("result")
    if data is None:
        return []
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(o, dict) for o in data):
        raise ImportFailed(f"{what}: expected a JSON object, a list of objects or an API envelope "
                           '({"success": true, "result": [...]})')
    return list(data)


def load_export(path: str | Path, what: str | None = None) -> list[dict[str, Any]]:
    """Read ``path`` (JSON) and return its objects (:func:`parse_export`). Raises
    :class:`ImportFailed` naming the file when it cannot be read or parsed."""
    label = what or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ImportFailed(f"{label}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise ImportFailed(f"{path}: invalid JSON: nested too deeply") from None
    except ValueError as exc:  # an integer beyond Python's 4,300-digit int-to-str limit
        raise ImportFailed(f"{path}: invalid JSON: {exc}") from None
    return parse_export(data, str(path))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def slug(text: str, limit: int = 48) -> str:
    """A lower-case identifier from free text: runs of other characters become ``-``."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-")


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 2
    while out in taken:
        out = f"{name}-{n}"
        n += 1
    taken.add(out)
    return out


def _at(where: str, key: str) -> str:
    """A location inside an object: ``"pool x: origins[0]"``, then ``"pool x: origins[0].header"``."""
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def _cf_id(obj: Mapping[str, Any]) -> str:
    value = obj.get("id")
    return str(value) if value not in (None, "") else ""


class _Ctx:
    """Warnings collector and pool-reference rewriter for one import."""

    def __init__(self, pool_names: Mapping[str, str], warnings: list[str]) -> None:
        self.pool_names = pool_names
        self.known_names = set(pool_names.values())
        self.warnings = warnings

    def warn(self, where: str, text: str) -> None:
        """Record a warning about ``where``."""
        self.warnings.append(f"{where}: {text}")

    def pool(self, ref: Any, where: str) -> str | None:
        """The lbdns name of pool ``ref`` (a Cloudflare id, or already a name), or None."""
        if isinstance(ref, str):
            if ref in self.pool_names:
                return self.pool_names[ref]
            if ref in self.known_names:
                return ref
        self.warn(where, f"unknown pool {ref!r} (not in the pools export): reference dropped")
        return None

    def pool_list(self, refs: Any, where: str) -> list[str]:
        """A list of pool references as lbdns names (unknown ones dropped, duplicates removed)."""
        if not isinstance(refs, list):
            if refs is not None:
                self.warn(where, f"expected a list of pool ids, got {type(refs).__name__}: dropped")
            return []
        out: list[str] = []
        for i, ref in enumerate(refs):
            name = self.pool(ref, f"{where}[{i}]")
            if name is not None and name not in out:
                out.append(name)
        return out

    def pool_map(self, mapping: Any, where: str, *, upper: bool = False) -> dict[str, list[str]]:
        """A region/country/PoP → pool ids map with names; entries left empty are dropped;
        ``upper`` upper-cases the keys (country and PoP codes)."""
        if not isinstance(mapping, dict):
            if mapping is not None:
                self.warn(where, "expected a mapping of code → pool ids: dropped")
            return {}
        out: dict[str, list[str]] = {}
        for key, refs in mapping.items():
            k = str(key).upper() if upper else str(key)
            names = self.pool_list(refs, _at(where, str(key)))
            if names:
                out[k] = names
            else:
                self.warn(_at(where, str(key)), "no known pool left: entry dropped")
        return out

    def random_steering(self, rs: Any, where: str) -> dict[str, Any] | None:
        """``random_steering`` with ``pool_weights`` keyed by pool name (None when empty)."""
        if not isinstance(rs, dict):
            return None
        out: dict[str, Any] = {}
        if rs.get("default_weight") is not None:
            out["default_weight"] = rs["default_weight"]
        weights = rs.get("pool_weights")
        if isinstance(weights, dict) and weights:
            pw: dict[str, Any] = {}
            for ref, w in weights.items():
                name = self.pool(ref, _at(where, f"pool_weights.{ref}"))
                if name is not None:
                    pw[name] = w
            if pw:
                out["pool_weights"] = pw
        return out or None


def _copy_known(src: Mapping[str, Any], fields: Sequence[str], where: str, ctx: _Ctx,
                skip: Iterable[str] = ()) -> dict[str, Any]:
    """The ``fields`` of ``src`` that are not None; unknown non-metadata keys warned about."""
    skipped = set(skip)
    for key in src:
        if key not in fields and key not in METADATA and key != "id" and key not in skipped:
            ctx.warn(where, f"field {key!r} is not used by lbdns: dropped")
    return {k: src[k] for k in fields if k in src and src[k] is not None}


# ---------------------------------------------------------------------------------------------
# monitors and pools
# ---------------------------------------------------------------------------------------------

def convert_monitor(obj: Mapping[str, Any], mid: str, ctx: _Ctx) -> dict[str, Any]:
    """One Cloudflare monitor → an lbdns monitor with ``id`` = ``mid`` (Cloudflare docs: Load
    Balancing › Manage monitors)."""
    where = f"monitor {mid}"
    m = _copy_known(obj, MONITOR_FIELDS, where, ctx)
    mtype = str(m.get("type") or "http")
    m["type"] = mtype
    if mtype not in ("http", "https"):
        for key in HTTP_ONLY:
            if key not in m:
                continue
            value = m.pop(key)
            if value not in ("", {}, [], False, "/", None):
                ctx.warn(where, f"{key} applies to http/https monitors only: dropped from this {mtype} monitor")
        method = m.get("method")
        if method == "" or (method and not (mtype == "tcp" and method == "connection_established")):
            m.pop("method")
            if method:
                ctx.warn(where, f"method {method!r} does not apply to a {mtype} monitor: dropped")
    else:
        if m.get("expected_codes") == "":
            m.pop("expected_codes")
        if m.get("method") == "":
            m.pop("method")
        if m.get("header") == {}:
            m.pop("header")
    if m.get("description") == "":
        m.pop("description")
    if m.get("probe_zone") == "":
        m.pop("probe_zone")
    return {"id": mid, **m}


def _origin(obj: Mapping[str, Any], where: str, ctx: _Ctx, zone: dns.name.Name) -> dict[str, Any]:
    o = _copy_known(obj, ORIGIN_FIELDS, where, ctx)
    if o.get("port") == 0:
        o.pop("port")  # 0 = not set
    w = o.get("weight")
    if isinstance(w, int | float) and not isinstance(w, bool) and not math.isclose(round(w * 100), w * 100,
                                                                                   abs_tol=1e-6):
        o["weight"] = round(float(w), 2)
        ctx.warn(where, f"weight {w} rounded to {o['weight']} (lbdns weights have steps of 0.01)")
    hdr = o.get("header")
    if isinstance(hdr, dict):
        hosts = hdr.get("Host") or hdr.get("host")
        if not hosts:
            o.pop("header")
        else:
            host = str(hosts[0]).rstrip(".").lower()
            addr = str(o.get("address", "")).rstrip(".").lower()
            try:
                in_zone = dns.name.from_text(host).is_subdomain(zone) and host.count(".") >= 1
            except dns.exception.DNSException:
                in_zone = False
            if in_zone or host == addr:
                o["header"] = {"Host": [str(hosts[0])]}
            else:
                o.pop("header")
                ctx.warn(where, f"Host header {hosts[0]!r} dropped: lbdns accepts a Host override only for a "
                                "name inside a zone it serves or equal to the origin address; the monitor "
                                "will send the origin address")
    if o.get("virtual_network_id"):
        ctx.warn(where, "virtual_network_id (a private endpoint): DNS-only load balancing supports public "
                        "endpoints only (W-PRIVATE)")
    return Flow(o)


def convert_pool(obj: Mapping[str, Any], name: str, ctx: _Ctx, monitor_names: Mapping[str, str],
                 zone: dns.name.Name) -> dict[str, Any]:
    """One Cloudflare pool → an lbdns pool named ``name`` (Cloudflare docs: Load Balancing ›
    Manage pools), its monitor reference rewritten."""
    where = f"pool {name}"
    p = _copy_known(obj, POOL_FIELDS, where, ctx)
    p["name"] = name
    if "check_regions" in obj and obj["check_regions"] is None:
        p["check_regions"] = None  # "All Data Centers"
    mon = p.pop("monitor", None)
    if mon:
        if mon in monitor_names:
            p["monitor"] = monitor_names[mon]
        else:
            ctx.warn(where, f"monitor {mon!r} is not in the monitors export: imported without a monitor "
                            "(health is then not considered for this pool)")
    group = p.pop("monitor_group", None)
    if group:
        ctx.warn(where, f"monitor_group {group!r} cannot be imported (monitor groups are not part of the "
                        "exports): imported without health monitoring; add monitor_groups: by hand")
    origins = obj.get("origins") or []
    p["origins"] = [_origin(o, _at(where, f"origins[{i}]"), ctx, zone) for i, o in enumerate(origins)
                    if isinstance(o, dict)]
    if not p["origins"]:
        raise ImportFailed(f"{where}: a pool needs at least one origin")
    steer = p.get("origin_steering")
    if isinstance(steer, dict):
        policy = steer.get("policy")
        if policy in ("least_outstanding_requests", "least_connections"):
            ctx.warn(where, f"origin_steering {policy} {LOR_INSTEAD}")
        if not policy:
            p.pop("origin_steering")
    shed = p.get("load_shedding")
    if isinstance(shed, dict) and (shed.get("session_percent") or 0) > 0:
        ctx.warn(where, SESSION_SHED_INSTEAD)
    if p.get("notification_email") == "":
        p.pop("notification_email")
    if p.get("description") == "":
        p.pop("description")
    order = ("name", "description", "enabled", "monitor", "minimum_origins", "check_regions", "latitude",
             "longitude", "origin_steering", "load_shedding", "notification_filter", "notification_email",
             "networks", "origins")
    return {k: p[k] for k in order if k in p}


# ---------------------------------------------------------------------------------------------
# load balancers
# ---------------------------------------------------------------------------------------------

def _steering(value: Any, where: str, ctx: _Ctx) -> str | None:
    if value is None:
        return None
    policy = str(value)
    if policy == "random_steering":
        ctx.warn(where, "steering_policy 'random_steering' is not a policy name: imported as 'random'")
        return "random"
    if policy not in STEERING:
        ctx.warn(where, f"unknown steering_policy {policy!r}: imported as '' (geo when region/country/pop pools "
                        "are set, else off)")
        return ""
    if policy in ("least_outstanding_requests", "least_connections"):
        ctx.warn(where, f"steering_policy {policy} {LOR_INSTEAD}")
    return policy


def _affinity(obj: Mapping[str, Any], where: str, ctx: _Ctx) -> None:
    sa = obj.get("session_affinity")
    if sa not in (None, "", "none"):
        ctx.warn(where, f"session_affinity {sa!r}: {SA_INSTEAD}")
    attrs = obj.get("session_affinity_attributes")
    if isinstance(attrs, dict):
        if attrs.get("drain_duration"):
            ctx.warn(where, f"session_affinity_attributes.drain_duration: {DRAIN_INSTEAD}")
        if attrs.get("zero_downtime_failover") not in (None, "", "none"):
            ctx.warn(where, f"zero_downtime_failover {attrs['zero_downtime_failover']!r}: {ADAPTIVE_INSTEAD}")
    ar = obj.get("adaptive_routing")
    if isinstance(ar, dict) and ar.get("failover_across_pools"):
        ctx.warn(where, f"adaptive_routing.failover_across_pools: {ADAPTIVE_INSTEAD}")


def _pool_refs(src: Mapping[str, Any], out: dict[str, Any], where: str, ctx: _Ctx) -> None:
    """Rewrite the pool references of an LB or a rule's overrides from ``src`` into ``out``."""
    if "default_pools" in src and src["default_pools"] is not None:
        out["default_pools"] = ctx.pool_list(src["default_pools"], _at(where, "default_pools"))
    if src.get("fallback_pool"):
        fb = ctx.pool(src["fallback_pool"], _at(where, "fallback_pool"))
        if fb is not None:
            out["fallback_pool"] = fb
        else:
            out.pop("fallback_pool", None)
    for key in ("region_pools", "country_pools", "pop_pools"):
        if key in src and src[key] is not None:
            mapped = ctx.pool_map(src[key], _at(where, str(key)), upper=key != "region_pools")
            if mapped:
                out[key] = mapped
            else:
                out.pop(key, None)
    if "random_steering" in src:
        rs = ctx.random_steering(src["random_steering"], _at(where, "random_steering"))
        if rs is not None:
            out["random_steering"] = rs
        else:
            out.pop("random_steering", None)


def convert_rule(obj: Mapping[str, Any], where: str, ctx: _Ctx,
                 compile_condition: Callable[[str], Any] | None = None) -> dict[str, Any] | None:
    """One custom rule with its overrides' pool references rewritten, or None when its
    condition does not compile in lbdns (dropped with a warning that quotes it)."""
    r = _copy_known(obj, RULE_FIELDS, where, ctx)
    cond = str(r.get("condition", ""))
    if compile_condition is not None:
        try:
            compiled = compile_condition(cond)
        except Exception as exc:
            ctx.warn(where, f"condition {cond!r} is not valid in lbdns ({exc}): rule dropped")
            return None
        for _code, message, column in getattr(compiled, "warnings", ()):
            ctx.warn(_at(where, "condition"), f"column {column}: {message}")
    ov_src = obj.get("overrides")
    if isinstance(ov_src, dict):
        ov = _copy_known(ov_src, OVERRIDE_FIELDS, _at(where, "overrides"), ctx)
        _pool_refs(ov_src, ov, _at(where, "overrides"), ctx)
        if ov.get("default_pools") == []:
            ov.pop("default_pools")
            ctx.warn(_at(where, "overrides.default_pools"), "no known pool left: override dropped")
        if "steering_policy" in ov:
            steering = _steering(ov["steering_policy"], _at(where, "overrides"), ctx)
            if steering is None:
                ov.pop("steering_policy")
            else:
                ov["steering_policy"] = steering
        _affinity(ov_src, _at(where, "overrides"), ctx)
        r["overrides"] = ov
    elif "overrides" in r:
        r.pop("overrides")
    fixed = r.get("fixed_response")
    if isinstance(fixed, dict) and any(v not in (None, "", 0) for v in fixed.values()):
        ctx.warn(where, FIXED_INSTEAD)
    elif "fixed_response" in r:
        r.pop("fixed_response")
    return r


def lb_key(name: str, zone: dns.name.Name) -> str | None:
    """The ``load_balancers:`` key for LB hostname ``name`` (relative to the zone, ``'@'`` for
    the apex), or None when it is outside ``zone``."""
    try:
        owner = dns.name.from_text(name.rstrip(".").lower() + ".")
    except dns.exception.DNSException:
        return None
    if not owner.is_subdomain(zone):
        return None
    return "@" if owner == zone else str(owner.relativize(zone).to_text())


def convert_lb(obj: Mapping[str, Any], ctx: _Ctx,
               compile_condition: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """One Cloudflare load balancer → an lbdns load balancer (Cloudflare API docs: Load Balancer
    Details; the hostname is the caller's YAML key). Raises :class:`ImportFailed` when no default pool is known."""
    name = str(obj.get("name", "")).rstrip(".").lower()
    where = f"load balancer {name}"
    lb = _copy_known(obj, LB_FIELDS, where, ctx, skip=("name",))
    if lb.get("proxied"):
        ctx.warn(where, f"proxied: true {PROXIED_INSTEAD}")
        lb["proxied"] = False
    _pool_refs(obj, lb, where, ctx)
    if not lb.get("default_pools"):
        raise ImportFailed(f"{where}: none of its default_pools is in the pools export")
    if "steering_policy" in lb:
        steering = _steering(lb["steering_policy"], where, ctx)
        if steering is None:
            lb.pop("steering_policy")
        else:
            lb["steering_policy"] = steering
    ttl = lb.get("ttl")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 86400):
        ctx.warn(where, f"ttl {ttl!r} is outside 1–86400: the default 30 s is used")
        lb.pop("ttl")
    _affinity(obj, where, ctx)
    if lb.get("session_affinity") == "":
        lb.pop("session_affinity")
    rules_src = obj.get("rules")
    if isinstance(rules_src, list):
        rules = []
        for i, rule in enumerate(rules_src):
            if isinstance(rule, dict):
                conv = convert_rule(rule, _at(where, f"rules[{i}]"), ctx, compile_condition)
                if conv is not None:
                    rules.append(conv)
        if rules:
            lb["rules"] = rules
        else:
            lb.pop("rules", None)
    if lb.get("description") == "":
        lb.pop("description")
    order = ("description", "enabled", "proxied", "ttl", "steering_policy", "default_pools", "fallback_pool",
             "region_pools", "country_pools", "pop_pools", "random_steering", "location_strategy", "rules",
             "adaptive_routing", "session_affinity", "session_affinity_ttl", "session_affinity_attributes",
             "networks")
    return {k: lb[k] for k in order if k in lb}


# ---------------------------------------------------------------------------------------------
# DNS records
# ---------------------------------------------------------------------------------------------

def _dot(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _record_text(rec: Mapping[str, Any]) -> str:
    """Rdata presentation text of one Cloudflare DNS record (raises KeyError/ValueError)."""
    rtype = str(rec["type"]).upper()
    content = str(rec.get("content", ""))
    data = rec.get("data") if isinstance(rec.get("data"), dict) else None
    if rtype in ("CNAME", "NS", "PTR"):
        return _dot(content)
    if rtype == "MX":
        return f"{int(rec.get('priority', 0))} {_dot(content)}"
    if rtype == "SRV":
        if data and "target" in data:
            return f"{int(data['priority'])} {int(data['weight'])} {int(data['port'])} {_dot(str(data['target']))}"
        parts = content.split()
        if len(parts) == 3:
            parts = [str(int(rec.get("priority", 0))), *parts]
        if len(parts) != 4:
            raise ValueError(f"SRV content {content!r} is not 'weight port target'")
        return " ".join([*parts[:3], _dot(parts[3])])
    if rtype == "CAA":
        if data and "tag" in data:
            value = str(data.get("value", "")).replace("\\", "\\\\").replace('"', '\\"')
            return f"{int(data.get('flags', 0))} {data['tag']} \"{value}\""
        return content
    if data and rtype in _DATA_FORMS:
        return _DATA_FORMS[rtype](rec, data)
    if rtype == "DNAME":
        return _dot(content)
    if rtype == "URI" and rec.get("priority") is not None and len(content.split(None, 1)) == 2 \
            and not content.split(None, 1)[1][:1].isdigit():
        return f"{int(rec['priority'])} {content}"  # content is 'WEIGHT "TARGET"', the priority beside it
    if rtype == "TXT":
        if content.startswith('"'):
            return content
        raw = content.encode("utf-8")
        chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
        return " ".join('"' + "".join(
            "\\" + chr(b) if b in (0x22, 0x5C) else chr(b) if 0x20 <= b < 0x7F else f"\\{b:03d}" for b in c) + '"'
            for c in chunks)
    return content


def _quoted(text: Any) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _target(name: Any) -> str:
    text = str(name)
    return text if text == "." else _dot(text)


_DATA_FORMS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], str]] = {
    # Cloudflare API ``data`` objects → rdata presentation text (RFC 9460, 6698, 4255, 3403, 4034, 1876, 7553)
    "HTTPS": lambda r, d: f"{int(d['priority'])} {_target(d['target'])} {d.get('value') or ''}".rstrip(),
    "SVCB": lambda r, d: f"{int(d['priority'])} {_target(d['target'])} {d.get('value') or ''}".rstrip(),
    "TLSA": lambda r, d: f"{int(d['usage'])} {int(d['selector'])} {int(d['matching_type'])} {d['certificate']}",
    "SSHFP": lambda r, d: f"{int(d['algorithm'])} {int(d['type'])} {d['fingerprint']}",
    "NAPTR": lambda r, d: (f"{int(d['order'])} {int(d['preference'])} {_quoted(d.get('flags', ''))} "
                           f"{_quoted(d.get('service', ''))} {_quoted(d.get('regex', ''))} "
                           f"{_target(d.get('replacement') or '.')}"),
    "DS": lambda r, d: f"{int(d['key_tag'])} {int(d['algorithm'])} {int(d['digest_type'])} {d['digest']}",
    "LOC": lambda r, d: (f"{d['lat_degrees']} {d['lat_minutes']} {d['lat_seconds']} {d['lat_direction']} "
                         f"{d['long_degrees']} {d['long_minutes']} {d['long_seconds']} {d['long_direction']} "
                         f"{d['altitude']}m {d.get('size', 1)}m {d.get('precision_horz', 10000)}m "
                         f"{d.get('precision_vert', 10)}m"),
    "URI": lambda r, d: f"{int(r.get('priority', d.get('priority', 0)))} {int(d['weight'])} {_quoted(d['target'])}",
}


def convert_dns_records(records: Iterable[Mapping[str, Any]], zone: dns.name.Name,
                        warnings: list[str]) -> tuple[dict[str, Any], list[str], int | None]:
    """Cloudflare DNS records → ``records:`` (zonefile layout), the apex NS names found, and
    the apex NS TTL. Unsupported types, names outside the zone, an apex CNAME and
    unparsable content are skipped with a warning; proxied records are published DNS-only
    (warning). RRsets whose records disagree on TTL get the smallest."""
    sets: dict[tuple[dns.name.Name, int], dns.rdataset.Rdataset] = {}
    skipped: dict[str, list[str]] = {}
    proxied: list[str] = []
    for rec in records:
        rtype = str(rec.get("type", "")).upper()
        raw_name = str(rec.get("name", ""))
        where = f"dns record {raw_name} {rtype}"
        try:
            owner = dns.name.from_text(raw_name.rstrip(".").lower() + ".")
        except dns.exception.DNSException as exc:
            warnings.append(f"{where}: invalid name ({exc}): skipped")
            continue
        if not owner.is_subdomain(zone):
            warnings.append(f"{where}: outside the zone {zone.to_text()}: skipped")
            continue
        if rtype not in SUPPORTED:
            skipped.setdefault(rtype or "?", []).append(owner.to_text())
            continue
        if rtype == "CNAME" and owner == zone:
            warnings.append(f"{where}: a CNAME at the zone apex (Cloudflare CNAME flattening) cannot be served: "
                            "skipped (use a load balancer at the apex, or A/AAAA records)")
            continue
        ttl_raw = rec.get("ttl", 1)
        ttl = AUTO_TTL if ttl_raw in (None, 1) else int(ttl_raw)
        try:
            rdtype = dns.rdatatype.from_text(rtype)
            rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, _record_text(rec), origin=zone, relativize=False)
        except (KeyError, ValueError, TypeError, dns.exception.DNSException) as exc:
            warnings.append(f"{where}: content {rec.get('content')!r} cannot be parsed ({exc}): skipped")
            continue
        if rec.get("proxied"):
            proxied.append(f"{owner.to_text()} {rtype}")
        rds = sets.get((owner, rdtype))
        if rds is None:
            rds = dns.rdataset.Rdataset(dns.rdataclass.IN, rdtype)
            rds.update_ttl(ttl)
            sets[(owner, rdtype)] = rds
        elif rds.ttl != ttl:
            warnings.append(f"{where}: TTL {ttl} differs from the other records of the RRset: "
                            f"using {min(ttl, rds.ttl)} (RFC 2181 §5.2)")
        rds.add(rd, ttl)
    if proxied:
        warnings.append(f"proxied DNS records are served DNS-only with their own content (the origin address, "
                        f"not Cloudflare proxy addresses): {', '.join(proxied)}")
    for rtype, owners in sorted(skipped.items()):
        warnings.append(f"unsupported DNS record type {rtype} skipped at: {', '.join(owners)}")
    apex_ns = sets.pop((zone, dns.rdatatype.NS), None)
    ns_names = [rd.target.to_text() for rd in apex_ns] if apex_ns is not None else []
    by_owner: dict[dns.name.Name, list[dns.rdataset.Rdataset]] = {}
    for (owner, _t), rds in sets.items():
        by_owner.setdefault(owner, []).append(rds)
    recs, more, _skipped = build_records(zone, by_owner)
    warnings.extend(more)
    return recs, ns_names, int(apex_ns.ttl) if apex_ns is not None else None


# ---------------------------------------------------------------------------------------------
# whole import
# ---------------------------------------------------------------------------------------------

def default_serial(today: datetime.date | None = None) -> int:
    """``YYYYMMDD01`` for ``today`` (default: the current UTC date)."""
    d = today or datetime.datetime.now(datetime.UTC).date()
    return int(d.strftime("%Y%m%d")) * 100 + 1


def convert(monitors: Sequence[Mapping[str, Any]], pools: Sequence[Mapping[str, Any]],  # noqa: C901, PLR0912, PLR0915 -- a linear import, one step per exported object kind
            load_balancers: Sequence[Mapping[str, Any]], dns_records: Sequence[Mapping[str, Any]] | None = None,
            *, zone: str, ns: Sequence[str] | None = None, soa: SoaOptions | None = None,
            compile_condition: Callable[[str], Any] | None = None) -> CloudflareImport:
    """Convert the exports (objects as returned by :func:`load_export`) for zone ``zone``.

    ``ns`` overrides the apex NS names, ``soa`` the synthesised SOA; ``compile_condition``
    (default: lbdns' rule compiler) checks rule conditions. Load balancers outside ``zone``
    are skipped with a warning. Raises :class:`ImportFailed` when ``zone`` is not a domain
    name, a pool has no origins or a load balancer keeps no default pool.
    """
    if compile_condition is None:
        from lbdns.rules.compiler import compile_condition as default_compile

        compile_condition = default_compile
    try:
        origin = dns.name.from_text(zone.strip().rstrip(".").lower() + ".")
    except dns.exception.DNSException as exc:
        raise ImportFailed(f"--zone {zone!r} is not a domain name: {exc}") from None
    zone_text = origin.to_text(omit_final_dot=True)
    out = CloudflareImport(zone_name=zone_text)
    warnings = out.warnings

    # names first, so references can be rewritten whatever the order of the objects
    taken: set[str] = set()
    monitor_order: list[str] = []
    pool_order: list[str] = []
    for obj in monitors:
        cf = _cf_id(obj)
        base = slug(str(obj.get("description") or "")) or (f"m-{cf[:8]}" if cf else "monitor")
        name = _unique(base, taken)
        monitor_order.append(name)
        if cf:
            if cf in out.monitor_names:
                warnings.append(f"monitor {cf}: duplicate id: the later object is imported as {name!r}")
            out.monitor_names[cf] = name
        out.comments[("monitors", name)] = f"cloudflare monitor id {cf}" if cf else "cloudflare monitor (no id)"
    pool_taken: set[str] = set()
    for obj in pools:
        cf = _cf_id(obj)
        base = str(obj.get("name") or "").strip() or (f"pool-{cf[:8]}" if cf else "pool")
        name = _unique(base, pool_taken)
        pool_order.append(name)
        if name != base:
            warnings.append(f"pool {cf}: name {base!r} is used twice: imported as {name!r}")
        if cf:
            out.pool_names[cf] = name
        out.comments[("pools", name)] = f"cloudflare pool id {cf}" if cf else "cloudflare pool (no id)"
    ctx = _Ctx(out.pool_names, warnings)

    for obj, name in zip(monitors, monitor_order, strict=True):
        out.monitors.append(convert_monitor(obj, name, ctx))
    for obj, name in zip(pools, pool_order, strict=True):
        out.pools.append(convert_pool(obj, name, ctx, out.monitor_names, origin))

    lbs: dict[str, Any] = {}
    for obj in load_balancers:
        raw_name = str(obj.get("name", ""))
        zname = obj.get("zone_name")
        key = lb_key(raw_name, origin)
        if key is None or (zname and str(zname).rstrip(".").lower() != zone_text):
            warnings.append(f"load balancer {raw_name}: not in zone {zone_text}: skipped")
            continue
        if key in lbs:
            warnings.append(f"load balancer {raw_name}: a second load balancer with this hostname: skipped")
            continue
        lbs[key] = convert_lb(obj, ctx, compile_condition)
        cf = _cf_id(obj)
        out.comments[("load_balancers", key)] = f"cloudflare load balancer id {cf}" if cf else ""

    records: dict[str, Any] = {}
    ns_names: list[str] = []
    ns_ttl: int | None = None
    if dns_records is not None:
        records, ns_names, ns_ttl = convert_dns_records(dns_records, origin, warnings)
    if ns:
        ns_names = [_dot(n.strip().lower()) for n in ns]
    elif not ns_names:
        ns_names = [f"ns1.{zone_text}.", f"ns2.{zone_text}."]
        warnings.append(f"zone {zone_text}: no name servers given: using {', '.join(ns_names)}; "
                        "set --ns to the names of your lbdns servers")
    soa = soa or SoaOptions()
    soa_data = {
        "mname": _dot(soa.mname) if soa.mname else ns_names[0],
        "rname": _dot(soa.rname) if soa.rname else f"hostmaster.{zone_text}.",
        "serial": soa.serial if soa.serial is not None else default_serial(),
        "refresh": soa.refresh, "retry": soa.retry, "expire": soa.expire, "minimum": soa.minimum,
        "ttl": soa.ttl,
    }
    out.zone = {"zone": zone_text, "soa": soa_data,
                "ns": {"ttl": ns_ttl if ns_ttl is not None and not ns else 3600, "values": ns_names},
                "records": records, "load_balancers": lbs}
    return out


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------

ACCOUNT_FILE = "_account.yaml"


def render_account(result: CloudflareImport, sources: Sequence[str] = ()) -> str:
    """The account file (``monitors:``, ``pools:``) with the Cloudflare ids as comments."""
    lines = ["Account-level monitors and pools imported by `lbdns import-cloudflare`"
             + (f" from {', '.join(sources)}" if sources else "") + ".",
             "Cloudflare ids became names: pools by their name, monitors by the slug of their description;",
             "each object's Cloudflare id is noted above it."]
    text = header(lines)
    text += list_section("monitors", ((result.comments.get(("monitors", m["id"])), m) for m in result.monitors))
    text += "\n"
    text += list_section("pools", ((result.comments.get(("pools", p["name"])), p) for p in result.pools))
    return text


def render_zone(result: CloudflareImport, sources: Sequence[str] = ()) -> str:
    """The zone file (``zone``, ``soa``, ``ns``, ``records``, ``load_balancers``)."""
    z = result.zone
    soa = z["soa"]
    lines = [f"Zone {z['zone']} imported by `lbdns import-cloudflare`"
             + (f" from {', '.join(sources)}" if sources else "") + ".",
             "The SOA is synthesised (Cloudflare does not export it): MNAME = the first NS, RNAME = "
             "hostmaster.<zone>,",
             f"serial {soa['serial']} (YYYYMMDDnn), timers = lbdns defaults; see `lbdns import-cloudflare --help`."]
    text = header(lines)
    text += dump({"zone": z["zone"], "soa": Flow(soa), "ns": Flow(z["ns"])})
    records = z["records"]
    text += "\nrecords:\n" if records else "\nrecords: {}\n"
    for key, entry in records.items():
        text += block_entry(key, entry)
    text += "\n"
    text += map_section("load_balancers", ((result.comments.get(("load_balancers", k)) or None, k, v)
                                           for k, v in z["load_balancers"].items()))
    return text


def write_files(result: CloudflareImport, out_dir: str | Path, sources: Sequence[str] = (), *,
                force: bool = False) -> tuple[Path, Path]:
    """Write ``_account.yaml`` and ``<zone>.yaml`` into ``out_dir`` (created if needed);
    returns both paths. Raises :class:`ImportFailed` when a file exists and not ``force``."""
    out = Path(out_dir)
    account = out / ACCOUNT_FILE
    zone = out / f"{result.zone_name}.yaml"
    if not force:
        for p in (account, zone):
            if p.exists():
                raise ImportFailed(f"{p} exists (use --force to overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    account.write_text(render_account(result, sources), encoding="utf-8")
    zone.write_text(render_zone(result, sources), encoding="utf-8")
    return account, zone
