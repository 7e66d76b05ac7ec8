"""Validated configuration → immutable :class:`Snapshot` (DESIGN.md principle 2).

The snapshot holds, per served zone, a node index keyed by the lower-case wire-format owner
name with pre-encoded RRsets, and, per load balancer, an :class:`LbPlan` with its compiled
pools, base effective configuration and compiled rules. Nothing here runs per query.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import dns.name
import dns.rdatatype
import dns.rrset

from lbdns.config.model import LoadBalancer, Pool, RuleOverrides
from lbdns.config.settings import ServerSettings
from lbdns.config.validate import Config, LoadedConfig, resolve_policy
from lbdns.steering.plan import CompiledOrigin, CompiledPool, Effective
from lbdns.wire.codec import (
    CLASS_IN,
    QTYPE_AAAA,
    QTYPE_CNAME,
    QTYPE_MX,
    QTYPE_NS,
    QTYPE_SOA,
    QTYPE_SRV,
)
from lbdns.wire.render import QNAME_POINTER


@dataclass(frozen=True, slots=True)
class EncodedRRset:
    """An RRset pre-encoded for answers. ``tails`` are the per-RR bytes after the owner name
    (TYPE, CLASS, TTL, RDLENGTH, RDATA; names in RDATA uncompressed); ``at_qname`` the whole
    RRset with the owner written as a pointer to the question name (offset 12);
    ``targets`` the lower-case wire names the RDATA points to (CNAME/NS/MX/SRV targets)."""

    rtype: int
    ttl: int
    tails: tuple[bytes, ...]
    at_qname: bytes
    targets: tuple[bytes, ...] = ()

    @property
    def count(self) -> int:
        """Number of RRs."""
        return len(self.tails)

    def with_owner(self, owner: bytes) -> bytes:
        """The RRset with ``owner`` (wire form) written in full before every RR."""
        return b"".join(owner + t for t in self.tails)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One enabled custom rule in evaluation order (SPEC.md §8.3). ``condition`` is a
    :class:`lbdns.rules.compiler.CompiledCondition`; ``apply`` maps an Effective to the
    Effective with this rule's overrides (R-RUL-31/32); ``stops`` is ``terminates`` or a
    ``fixed_response`` (R-RUL-33/34)."""

    name: str
    index: int
    condition: Any
    apply: Callable[[Effective], Effective]
    stops: bool
    overrides: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LbPlan:
    """A compiled load balancer. ``name`` is the LB hostname (lower case, trailing dot);
    ``rule_name`` the ``cf.load_balancer.name`` value; ``base`` the effective config
    without rules; ``rules`` enabled rules sorted by (priority, array index);
    ``rule_fields`` every rule field any condition reads."""

    name: str
    rule_name: str
    zone: str
    base: Effective
    rules: tuple[CompiledRule, ...]
    rule_fields: frozenset[str]
    model: LoadBalancer
    serves_mx_srv: bool


@dataclass(slots=True)
class Node:
    """One owner name of a zone: its RRsets by type, an enabled LB (or None), and whether
    it is a delegation point."""

    name: bytes
    rrsets: dict[int, EncodedRRset] = field(default_factory=dict)
    lb: LbPlan | None = None
    is_cut: bool = False


@dataclass(frozen=True, slots=True)
class ZoneIndex:
    """A served zone. ``origin`` is the lower-case wire apex; ``nodes`` every existing name
    including empty non-terminals; ``cuts`` the delegation points below the apex;
    ``negative_soa`` the SOA RR (owner in full) with TTL min(SOA TTL, MINIMUM) for
    NXDOMAIN/NODATA (RFC 2308 §3, §5)."""

    origin: bytes
    origin_text: str
    nodes: Mapping[bytes, Node]
    cuts: frozenset[bytes]
    negative_soa: bytes
    soa_ttl: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the query path reads about configuration, immutable once built.

    ``zones`` maps the lower-case wire apex to its :class:`ZoneIndex`; ``pools`` the
    compiled pools by id; ``plans`` every LB plan (enabled or not) by name; ``config`` the
    validated model (for explain, status and probes); ``settings`` the server settings.
    """

    zones: Mapping[bytes, ZoneIndex]
    pools: Mapping[str, CompiledPool]
    plans: Mapping[str, LbPlan]
    config: Config
    settings: ServerSettings
    generation: int = 0


def name_wire(name: dns.name.Name) -> bytes:
    """Lower-case uncompressed wire form of an absolute name."""
    wire = name.canonicalize().to_wire()
    assert wire is not None
    return wire


def _encode_rrset(rrset: dns.rrset.RRset) -> EncodedRRset:
    tails: list[bytes] = []
    targets: list[bytes] = []
    for rd in rrset:
        rdata = rd.to_wire()
        tails.append(struct.pack("!HHIH", rrset.rdtype, CLASS_IN, rrset.ttl, len(rdata)) + rdata)
        target = getattr(rd, "target", None) or getattr(rd, "exchange", None)
        if isinstance(target, dns.name.Name) and rrset.rdtype in (QTYPE_CNAME, QTYPE_NS, QTYPE_MX, QTYPE_SRV):
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
        has_hostnames=any(o.hostname is not None for o in origins),
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
    )


def _rule_applier(ov: RuleOverrides, pools: Mapping[str, CompiledPool]) -> tuple[
        Callable[[Effective], Effective], tuple[str, ...]]:
    """Pre-resolve a rule's overrides into a function Effective → Effective (R-RUL-30…32):
    lists, maps and scalars replace wholesale; random_steering and location_strategy merge
    one level deep; the steering policy is re-resolved after the merge (R-GTS-30)."""
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
            resolved = configured if configured != "" else (
                "geo" if (out.region_pools or out.country_pools or out.pop_pools) else "off")
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


def build_snapshot(loaded: LoadedConfig, settings: ServerSettings, generation: int = 0) -> Snapshot:
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
            plan = LbPlan(
                name=lb.name, rule_name=lb.name.rstrip("."), zone=zd.origin.to_text(),
                base=base_effective(lb, pools, settings), rules=rules, rule_fields=fields, model=lb,
                serves_mx_srv=enterprise,
            )
            plans[lb.name] = plan
            if lb.enabled:
                node_for(owner).lb = plan
        zones[origin] = ZoneIndex(origin, zd.origin.to_text(), MappingProxyType(nodes), cuts, negative_soa,
                                  soa.ttl)
    return Snapshot(MappingProxyType(zones), MappingProxyType(pools), MappingProxyType(plans), config, settings,
                    generation)


LB_TYPES_BASE = frozenset({1, QTYPE_AAAA, QTYPE_CNAME})
LB_TYPES_ENTERPRISE = frozenset({1, QTYPE_AAAA, QTYPE_CNAME, QTYPE_MX, QTYPE_SRV})
