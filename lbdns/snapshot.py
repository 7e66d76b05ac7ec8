"""Validated configuration → immutable :class:`Snapshot` (DESIGN.md principle 2): the builder.

The types live in :mod:`lbdns.snapshot_types` (pure; what the query path imports) and are
re-exported here. The snapshot holds, per served zone, a node index keyed by the lower-case wire-format owner
name with pre-encoded RRsets, and, per load balancer, an :class:`LbPlan` with its compiled
pools, base effective configuration and compiled rules. Nothing here runs per query.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import dns.name
import dns.rdatatype
import dns.rrset

from lbdns.config.loaded import LoadedConfig
from lbdns.config.model import LoadBalancer, Pool, RuleOverrides, ServiceBinding
from lbdns.config.refs import resolve_policy
from lbdns.config.settings import ServerSettings
from lbdns.snapshot_types import (
    LB_TYPES_BASE,
    LB_TYPES_ENTERPRISE,
    CompiledRule,
    EncodedRRset,
    LbPlan,
    Node,
    Snapshot,
    ZoneIndex,
)
from lbdns.steering.plan import CompiledOrigin, CompiledPool, Effective
from lbdns.wire.codec import (
    CLASS_IN,
    QTYPE_AAAA,
    QTYPE_CNAME,
    QTYPE_DNAME,
    QTYPE_HTTPS,
    QTYPE_MX,
    QTYPE_NS,
    QTYPE_SOA,
    QTYPE_SRV,
    QTYPE_SVCB,
)
from lbdns.wire.render import QNAME_POINTER

__all__ = [  # the types are re-exported: importers of lbdns.snapshot keep working
    "LB_TYPES_BASE", "LB_TYPES_ENTERPRISE", "CompiledRule", "EncodedRRset", "LbPlan", "Node", "Snapshot",
    "ZoneIndex", "base_effective", "build_snapshot", "compile_pool", "name_wire",
]

def name_wire(name: dns.name.Name) -> bytes:
    """Lower-case uncompressed wire form of an absolute name."""
    wire = name.canonicalize().to_wire()
    assert wire is not None
    return wire


_TARGET_TYPES = (QTYPE_CNAME, QTYPE_NS, QTYPE_MX, QTYPE_SRV, QTYPE_DNAME)


def _encode_rrset(rrset: dns.rrset.RRset) -> EncodedRRset:
    tails: list[bytes] = []
    targets: list[bytes] = []
    for rd in rrset:
        rdata = rd.to_wire()
        tails.append(struct.pack("!HHIH", rrset.rdtype, CLASS_IN, rrset.ttl, len(rdata)) + rdata)
        target = getattr(rd, "target", None) or getattr(rd, "exchange", None)
        if isinstance(target, dns.name.Name) and rrset.rdtype in _TARGET_TYPES:
            targets.append(name_wire(target))
    t = tuple(tails)
    return EncodedRRset(rrset.rdtype, rrset.ttl, t, b"".join(QNAME_POINTER + x for x in t), tuple(targets))


def _compile_origin(i: int, o: Any) -> CompiledOrigin:
    ip = o.ip
    host = o.hostname
    return CompiledOrigin(
        index=i, name=o.name, enabled=o.enabled, weight=o.weight,
        family=0 if ip is None else ip.version, packed=b"" if ip is None else ip.packed,
        address=o.address, hostname=host,
        hostname_wire=b"" if host is None else name_wire(dns.name.from_text(host)),
        port=o.port, flatten_cname=o.flatten_cname, mx_preference=o.mx_preference,
        srv_priority=o.srv_priority, srv_weight=o.srv_weight,
    )


def compile_pool(p: Pool) -> CompiledPool:
    """A pool model → :class:`CompiledPool` (weights, shedding, coordinates)."""
    origins = tuple(_compile_origin(i, o) for i, o in enumerate(p.origins))
    shed = p.load_shedding
    return CompiledPool(
        id=p.id, name=p.name, enabled=p.enabled, monitored=p.monitored,
        minimum_origins=p.minimum_origins, origins=origins, origin_policy=p.origin_steering.policy,
        shed_percent=shed.default_percent if shed else 0.0,
        shed_policy=shed.default_policy if shed else "random",
        latitude=p.latitude, longitude=p.longitude,
        has_hostnames=any(o.hostname is not None for o in origins), max_answers=p.max_answers,
        persistence_key=p.persistence_key,
    )


def _pool_list(names: list[str] | None, pools: Mapping[str, CompiledPool]) -> tuple[CompiledPool, ...]:
    return tuple(pools[n] for n in names or () if n in pools)


def _pool_map(m: Mapping[str, list[str]] | None,
              pools: Mapping[str, CompiledPool]) -> Mapping[str, tuple[CompiledPool, ...]]:
    # a key mapped to an empty list counts as undefined (SPEC.md R-GTS-31, A-10)
    return MappingProxyType({k: _pool_list(v, pools) for k, v in (m or {}).items() if v})


def base_effective(lb: LoadBalancer, pools: Mapping[str, CompiledPool], settings: ServerSettings) -> Effective:
    """The effective configuration of ``lb`` without rules (SPEC.md §3.3)."""
    return Effective(
        default_pools=_pool_list(lb.default_pools, pools),
        fallback_pool=pools.get(lb.fallback_pool or ""),
        region_pools=_pool_map(lb.region_pools, pools),
        country_pools=_pool_map(lb.country_pools, pools),
        pop_pools=_pool_map(lb.pop_pools, pools),
        steering_policy=resolve_policy(lb.steering_policy, lb.region_pools, lb.country_pools, lb.pop_pools),
        configured_policy=lb.steering_policy,
        pool_weights=MappingProxyType(dict(lb.random_steering.pool_weights)),
        default_weight=lb.random_steering.default_weight,
        prefer_ecs=lb.location_strategy.prefer_ecs,
        location_mode=lb.location_strategy.mode,
        ttl=lb.ttl,
        region_source=settings.geo_region_source,
        max_answers=lb.max_answers,
    )


def _rule_applier(ov: RuleOverrides, pools: Mapping[str, CompiledPool]) -> tuple[
        Callable[[Effective], Effective], tuple[str, ...]]:
    """Pre-resolve a rule's overrides into a function Effective → Effective (Cloudflare docs:
    Load Balancing › Custom rules › overrides): lists, maps and scalars replace wholesale;
    random_steering and location_strategy merge one level deep; the steering policy is
    re-resolved after the merge (Cloudflare API docs: Load Balancer Details › ``steering_policy``)."""
    changes: dict[str, Any] = {}
    names: list[str] = []
    if ov.default_pools is not None:
        changes["default_pools"] = _pool_list(ov.default_pools, pools)
        names.append("default_pools")
    if ov.fallback_pool is not None:
        changes["fallback_pool"] = pools.get(ov.fallback_pool)
        names.append("fallback_pool")
    for key in ("region_pools", "country_pools", "pop_pools"):
        val = getattr(ov, key)
        if val is not None:
            changes[key] = _pool_map(val, pools)
            names.append(key)
    if ov.ttl is not None:
        changes["ttl"] = ov.ttl
        names.append("ttl")
    rs = ov.random_steering
    if rs is not None:
        if rs.default_weight is not None:
            changes["default_weight"] = rs.default_weight
        if rs.pool_weights is not None:
            changes["pool_weights"] = MappingProxyType(dict(rs.pool_weights))
        names.append("random_steering")
    ls = ov.location_strategy
    if ls is not None:
        if ls.prefer_ecs is not None:
            changes["prefer_ecs"] = ls.prefer_ecs
        if ls.mode is not None:
            changes["location_mode"] = ls.mode
        names.append("location_strategy")
    new_policy = ov.steering_policy
    if new_policy is not None:
        names.append("steering_policy")
    reresolve = new_policy is not None or any(k in changes for k in ("region_pools", "country_pools", "pop_pools"))
    return RuleApply(MappingProxyType(changes), new_policy, reresolve), tuple(names)


@dataclass(frozen=True, slots=True)
class RuleApply:
    """A rule's pre-resolved overrides as a function Effective → Effective (a plain object,
    not a closure, so a snapshot can be pickled): ``changes`` replace fields; ``new_policy``
    is the overridden steering policy (None: unchanged); with ``reresolve`` the policy is
    resolved again after the merge."""

    changes: Mapping[str, Any]
    new_policy: str | None
    reresolve: bool

    def __call__(self, eff: Effective) -> Effective:
        out = eff.with_changes(**self.changes) if self.changes else eff
        if self.reresolve:
            configured = self.new_policy if self.new_policy is not None else out.configured_policy
            resolved = resolve_policy(configured, out.region_pools, out.country_pools, out.pop_pools)
            out = out.with_changes(configured_policy=configured, steering_policy=resolved)
        return out


def _compile_rules(lb: LoadBalancer, compiled_conditions: tuple[Any, ...],
                   pools: Mapping[str, CompiledPool]) -> tuple[tuple[CompiledRule, ...], frozenset[str]]:
    rules: list[CompiledRule] = []
    fields: set[str] = set()
    order = sorted(range(len(lb.rules)), key=lambda i: (lb.rules[i].priority, i))
    for i in order:
        rule = lb.rules[i]
        if rule.disabled:
            continue
        cond = compiled_conditions[i] if i < len(compiled_conditions) else None
        if cond is None:
            continue
        apply, names = _rule_applier(rule.overrides, pools)
        fields.update(cond.fields)
        rules.append(CompiledRule(rule.name or f"rules[{i}]", i, cond, apply,
                                  rule.terminates or rule.fixed_response is not None, names))
    return tuple(rules), frozenset(fields)


def build_snapshot(loaded: LoadedConfig, settings: ServerSettings, generation: int = 0) -> Snapshot:  # noqa: C901 -- one pass over zones and LBs; to be split when the serving plan replaces it
    """Compile a validated configuration into a :class:`Snapshot` (SPEC.md §3.2 precedence is
    resolved here: only enabled LBs become part of the name tree, R-ANS-08/R-ANS-10)."""
    config = loaded.config
    pools = {pid: compile_pool(p) for pid, p in config.pools.items()}
    for p in config.pools.values():  # references by name as well as id
        pools.setdefault(p.name, pools[p.id])
    zones: dict[bytes, ZoneIndex] = {}
    plans: dict[str, LbPlan] = {}
    enterprise = settings.plan == "enterprise"
    for zd in config.zones:
        origin = name_wire(zd.origin)
        nodes: dict[bytes, Node] = {}

        def node_for(name: dns.name.Name, apex: dns.name.Name = zd.origin,
                     nodes: dict[bytes, Node] = nodes) -> Node:
            key = name_wire(name)
            n = nodes.get(key)
            if n is None:
                n = Node(key)
                nodes[key] = n
                # empty non-terminals up to the apex (RFC 4592 §2.2.2)
                parent = name.parent() if name != apex else None
                while parent is not None and parent.is_subdomain(apex):
                    pk = name_wire(parent)
                    if pk in nodes:
                        break
                    nodes[pk] = Node(pk)
                    if parent == apex:
                        break
                    parent = parent.parent()
            return n

        node_for(zd.origin)
        for (owner, rdtype), rrset in zd.rrsets.items():
            node_for(owner).rrsets[rdtype] = _encode_rrset(rrset)
        soa = zd.soa
        soa_rrset = dns.rrset.from_text(
            zd.origin, soa.ttl, "IN", "SOA",
            f"{soa.mname} {soa.rname} {soa.serial} {soa.refresh} {soa.retry} {soa.expire} {soa.minimum}")
        # mname/rname may be relative to the zone
        soa_rrset = dns.rrset.from_rdata_list(
            zd.origin, soa.ttl, [rd.replace(mname=rd.mname.derelativize(zd.origin),
                                            rname=rd.rname.derelativize(zd.origin)) for rd in soa_rrset])
        node_for(zd.origin).rrsets[QTYPE_SOA] = _encode_rrset(soa_rrset)
        neg_ttl = min(soa.ttl, soa.minimum)
        neg_rd = next(iter(soa_rrset)).to_wire()
        negative_soa = origin + struct.pack("!HHIH", QTYPE_SOA, CLASS_IN, neg_ttl, len(neg_rd)) + neg_rd
        cuts = frozenset(k for k, n in nodes.items() if QTYPE_NS in n.rrsets and k != origin)
        for k in cuts:
            nodes[k].is_cut = True
        for owner, lb in zd.load_balancers.items():
            conds = loaded.rules.get((zd.origin, owner), ())
            rules, fields = _compile_rules(lb, conds, pools)
            service = {t: service_template(b) for t, b in ((QTYPE_HTTPS, lb.https), (QTYPE_SVCB, lb.svcb))
                       if b is not None}
            plan = LbPlan(
                name=lb.name, rule_name=lb.name.rstrip("."), zone=zd.origin.to_text(),
                base=base_effective(lb, pools, settings), rules=rules, rule_fields=fields, model=lb,
                serves_mx_srv=enterprise,
                types=(LB_TYPES_ENTERPRISE if enterprise else LB_TYPES_BASE) | frozenset(service),
                service=MappingProxyType(service),
            )
            plans[lb.name] = plan
            if lb.enabled:
                node_for(owner).lb = plan
        dnames = frozenset(k for k, n in nodes.items() if QTYPE_DNAME in n.rrsets)
        zones[origin] = ZoneIndex(origin, zd.origin.to_text(), MappingProxyType(nodes), cuts, negative_soa,
                                  soa.ttl, dnames)
    for z in zones.values():
        for node in z.nodes.values():
            for rtype in (QTYPE_NS, QTYPE_MX, QTYPE_SRV):
                rr = node.rrsets.get(rtype)
                if rr is not None and rr.targets and (rtype != QTYPE_NS or node.name == z.origin):
                    node.rrsets[rtype] = _with_additional(rr, zones)
    return Snapshot(MappingProxyType(zones), MappingProxyType(pools), MappingProxyType(plans), config, settings,
                    generation)


def service_template(binding: ServiceBinding) -> tuple[bytes, bytes, bytes]:
    """The fixed parts of an LB's ServiceMode SVCB/HTTPS RDATA (RFC 9460 §2.2): ``head`` =
    SvcPriority, TargetName ``.`` (the owner itself) and the SvcParams with keys below
    ``ipv4hint`` (4): alpn (1), no-default-alpn (2), port (3); ``mid`` = the params between
    ``ipv4hint`` and ``ipv6hint`` (6): ech (5); ``tail`` = params above 6 (none). An answer is
    ``head`` + ipv4hint + ``mid`` + ipv6hint + ``tail``, keys in increasing order (§2.2)."""
    head = struct.pack("!H", binding.priority) + b"\x00"
    if binding.alpn:
        ids = b"".join(bytes((len(a),)) + a.encode() for a in binding.alpn)
        head += struct.pack("!HH", 1, len(ids)) + ids
    if binding.no_default_alpn:
        head += struct.pack("!HH", 2, 0)
    if binding.port is not None:
        head += struct.pack("!HHH", 3, 2, binding.port)
    mid = b""
    if binding.ech is not None:
        ech = base64.b64decode(binding.ech)
        mid = struct.pack("!HH", 5, len(ech)) + ech
    return head, mid, b""


def zone_of(zones: Mapping[bytes, ZoneIndex], name: bytes) -> tuple[ZoneIndex | None, bytes | None]:
    """The served zone holding ``name`` (lower-case wire) and the delegation cut at or above
    ``name`` in it (None when ``name`` is authoritative data of that zone)."""
    offs: list[int] = []
    i = 0
    while name[i]:
        offs.append(i)
        i += name[i] + 1
    offs.append(i)
    for k, off in enumerate(offs):
        z = zones.get(name[off:])
        if z is not None:
            for j in range(k - 1, -1, -1):
                if name[offs[j]:] in z.cuts:
                    return z, name[offs[j]:]
            return z, None
    return None, None


def _with_additional(rr: EncodedRRset, zones: Mapping[bytes, ZoneIndex]) -> EncodedRRset:
    """``rr`` with its additional-section data (see :class:`EncodedRRset`): for each distinct
    target that is authoritative data of a served zone (not at or below a delegation), its A
    and AAAA RRsets, or the target's LB when an enabled LB answering A/AAAA owns it."""
    parts: list[tuple[bytes, int]] = []
    lbs: list[tuple[bytes, LbPlan]] = []
    for target in dict.fromkeys(rr.targets):
        zone, cut = zone_of(zones, target)
        node = zone.nodes.get(target) if zone is not None and cut is None else None
        if node is None:
            continue
        if node.lb is not None and node.lb.types & {1, QTYPE_AAAA}:
            lbs.append((target, node.lb))
            continue
        for t in (1, QTYPE_AAAA):
            addr = node.rrsets.get(t)
            if addr is not None:
                parts.append((addr.with_owner(target), addr.count))
    if not parts and not lbs:
        return rr
    return replace(rr, optional=b"".join(p for p, _ in parts), opcount=sum(c for _, c in parts),
                   optional_parts=tuple(parts), lb_targets=tuple(lbs))
