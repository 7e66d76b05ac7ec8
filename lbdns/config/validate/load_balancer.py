"""Load balancers of each zone: the hostname and where it sits in the zone, then each load
balancer's own fields (proxied, ttl, pools, steering, DNS-only limits) and its rules.

Sources (Cloudflare docs, Load Balancing): Load Balancer Details [API] (fields and values;
``steering_policy`` ``""`` maps to geo or off; ``ttl``); DNS-only load balancing (no proxying,
session affinity and adaptive routing are proxied-only); Steering policies (least outstanding
requests needs request counts; proximity needs pool coordinates; dynamic steering uses the
health monitor's RTT from every region); Fallback pools. RFC 1034 §4.2.1 (a name at or below
a zone cut is not in the zone's authoritative data).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype

from lbdns.config.loaded import ZoneData
from lbdns.config.model import REGION_CODES, STEERING_POLICIES, LoadBalancer, Pool
from lbdns.config.rdata import lb_conflicts
from lbdns.config.refs import geo_maps_set, resolve_policy
from lbdns.config.settings import ServerSettings
from lbdns.config.source import PathKey, SourceFile
from lbdns.config.validate.issues import Collector, hint
from lbdns.config.validate.records import parse_owner
from lbdns.config.validate.references import RefChecker
from lbdns.config.validate.rules import CompileRule, check_rules, compile_rule
from lbdns.config.validate.zone import ZonePart
from lbdns.geo.regions import RegionMap

PROXIED_ONLY_SA = ("cookie", "ip_cookie", "header")
"""Session affinity kinds that need the proxy (ignored, W-SA)."""
_NO_REQUEST_COUNTS = ("least_outstanding_requests", "least_connections")
_TTL_MAX = 86400


@dataclass(slots=True)
class LoadBalancers:
    """The zones with their load balancers filled in, the compiled rule conditions per
    ``(zone apex, LB owner)``, and the number of load balancers counted for plan quotas."""

    zones: list[ZoneData] = field(default_factory=list)
    rules: dict[tuple[dns.name.Name, dns.name.Name], tuple[Any, ...]] = field(default_factory=dict)
    count: int = 0


def check_load_balancers(col: Collector, parts: list[ZonePart], pools: dict[str, Pool | None],
                         settings: ServerSettings, regions: RegionMap,
                         rule_errors: MutableMapping[str, int] | None = None) -> LoadBalancers:
    """Validate the load balancers of every zone part against ``pools`` (every known pool
    name and id; None for a pool that failed validation) and the country list of ``regions``;
    the compiled rule conditions count their run-time errors into ``rule_errors``."""
    out = LoadBalancers()
    compile_one = partial(compile_rule, errors=rule_errors)
    for part in parts:
        zd = part.zone
        refs = RefChecker(col, part.src, pools, regions)
        lbs: dict[dns.name.Name, LoadBalancer] = {}
        for key, raw in part.raw_lbs.items():
            lb_path: PathKey = ("load_balancers", key)
            lb = col.model(LoadBalancer, part.src, lb_path, raw, partial=True)
            if lb is None or zd is None:
                continue
            out.count += 1
            owner = _place(col, part.src, lb_path, key, zd, lbs)
            if owner is None:
                continue
            for problem in lb_conflicts(owner, lb, zd.rrsets):
                col.add(part.src, lb_path, "E-LB-NAME", problem)
            lb, compiled = check_lb(refs, lb_path, lb, settings, compile_one)
            name = owner.to_text().lower()
            lbs[owner] = lb.model_copy(update={"name": name, "id": lb.id or name})
            out.rules[(zd.origin, owner)] = tuple(compiled)
        if zd is not None:
            out.zones.append(ZoneData(zd.origin, zd.soa, zd.rrsets, lbs, zd.file))
    return out


def _place(col: Collector, src: SourceFile, path: PathKey, key: str, zd: ZoneData,
           lbs: dict[dns.name.Name, LoadBalancer]) -> dns.name.Name | None:
    """The LB owner name from its key, or None when it is bad, outside the zone or taken
    (E-LB-NAME); a name at or below a delegation is E-LB-NAME but still checked."""
    origin = zd.origin
    try:
        owner = parse_owner(key, origin)
    except dns.exception.DNSException as exc:
        col.add(src, path, "E-LB-NAME", f"invalid load balancer hostname {key!r}: {exc}")
        return None
    if not owner.is_subdomain(origin):
        col.add(src, path, "E-LB-NAME", f"load balancer {owner.to_text()} is outside the zone {origin.to_text()}")
        return None
    if owner in lbs:
        col.add(src, path, "E-LB-NAME", f"duplicate load balancer name {owner.to_text()}")
        return None
    for (rowner, rdtype) in zd.rrsets:
        if rdtype == dns.rdatatype.NS and rowner != origin and owner.is_subdomain(rowner):
            col.add(src, path, "E-LB-NAME",
                    f"load balancer {owner.to_text()} is at or below the delegation {rowner.to_text()}")
    return owner


def check_lb(refs: RefChecker, path: PathKey, lb: LoadBalancer, settings: ServerSettings,
             compile_rule: CompileRule) -> tuple[LoadBalancer, list[Any]]:
    """Check one load balancer at ``path``; returns it with its fallback pool filled in (the
    last default pool when unset) and the compiled rule conditions (None per failed rule)."""
    _check_basics(refs.col, refs.src, path, lb, settings)
    refs.check_list((*path, "default_pools"), lb.default_pools)
    fallback = refs.lb_fallback(path, lb)
    refs.check_maps(path, lb.region_pools, lb.country_pools, lb.pop_pools, settings)
    resolved = _check_policy(refs.col, refs.src, path, lb)
    _check_pools_for_policy(refs, path, lb, resolved)
    _check_proxied_only(refs.col, refs.src, path, lb)
    compiled = check_rules(refs, path, lb, resolved, settings, compile_rule)
    return lb.model_copy(update={"fallback_pool": fallback}), compiled


def _check_basics(col: Collector, src: SourceFile, path: PathKey, lb: LoadBalancer, settings: ServerSettings) -> None:
    if lb.proxied:
        if settings.allow_proxied_as_dns_only:
            col.add(src, (*path, "proxied"), "W-PROXIED", "proxied load balancer served as DNS-only", warning=True)
        else:
            col.add(src, (*path, "proxied"), "E-PROXIED",
                    "proxied load balancers are not supported by a DNS-only server "
                    "(set proxied: false, or allow_proxied_as_dns_only in lbdns.yaml)")
    if not 1 <= lb.ttl <= _TTL_MAX:
        col.add(src, (*path, "ttl"), "E-TTL", f"ttl {lb.ttl} is out of range (integer 1–86400 seconds)")


def _check_policy(col: Collector, src: SourceFile, path: PathKey, lb: LoadBalancer) -> str:
    """E-STEERING for an unknown policy; the warnings of a policy DNS-only cannot honour.
    Returns the resolved policy."""
    policy = lb.steering_policy
    known = policy in STEERING_POLICIES
    if not known:
        why = " (did you mean 'random'?)" if policy == "random_steering" else hint(policy, STEERING_POLICIES)
        col.add(src, (*path, "steering_policy"), "E-STEERING",
                f"unknown steering_policy {policy!r}{why} (allowed: {', '.join(repr(p) for p in STEERING_POLICIES)})")
    resolved = resolve_policy(policy, lb.region_pools, lb.country_pools, lb.pop_pools)
    if policy in _NO_REQUEST_COUNTS:
        col.add(src, (*path, "steering_policy"), "W-LOR-DNS",
                f"{policy} has no request counts in DNS-only mode: pools are drawn by random_steering weights",
                warning=True)
    if geo_maps_set(lb.region_pools, lb.country_pools, lb.pop_pools) and resolved != "geo" and known:
        col.add(src, (*path, "steering_policy"), "W-UNUSED",
                f"region/country/pop pools are ignored with steering_policy {resolved!r}", warning=True)
    return resolved


def _check_pools_for_policy(refs: RefChecker, path: PathKey, lb: LoadBalancer, resolved: str) -> None:
    """Warnings about pools the resolved policy ignores or cannot steer well."""
    col, src, pools = refs.col, refs.src, refs.pools
    for name in lb.random_steering.pool_weights:
        if name not in lb.default_pools:
            col.add(src, (*path, "random_steering", "pool_weights", name), "W-UNUSED",
                    f"pool {name!r} is not in default_pools; its weight is ignored", warning=True)
    if resolved == "proximity":
        # a pool that failed validation is in ``pools`` as None (its own errors are reported)
        missing = [n for n in lb.default_pools if (pool := pools.get(n)) is not None and pool.latitude is None]
        if missing:
            col.add(src, (*path, "steering_policy"), "W-NOCOORD",
                    f"pools without coordinates are tried last: {', '.join(missing)} "
                    "(for accurate proximity steering add latitude/longitude to every pool)", warning=True)
    if resolved == "dynamic_latency":
        for n in lb.default_pools:
            if _narrows_regions(pools.get(n)):
                col.add(src, (*path, "default_pools"), "W-DYN-REGIONS",
                        f"pool {n!r} narrows check_regions; dynamic steering expects all regions", warning=True)


def _narrows_regions(pool: Pool | None) -> bool:
    """Whether a pool's health checks run from fewer than all regions."""
    if pool is None or pool.check_regions is None:
        return False
    regions = set(pool.check_regions)
    return bool(regions - {"ALL_REGIONS"}) and regions != set(REGION_CODES) and "ALL_REGIONS" not in regions


def _check_proxied_only(col: Collector, src: SourceFile, path: PathKey, lb: LoadBalancer) -> None:
    """Session affinity (E-SA unknown, W-SA proxied-only) and adaptive routing (W-SA)."""
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
