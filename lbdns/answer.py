"""The authoritative answer: zone match, LB precedence, NXDOMAIN/NODATA with SOA, CNAME
chasing, wildcards, referrals, REFUSED (RFC 1034 §4.3.2, RFC 2308, RFC 4592; SPEC.md §3).

Pure and synchronous: reads a :class:`~lbdns.snapshot.Snapshot` and a :class:`QueryEnv`
(health view, rng, clock, location and hostname lookups injected), returns an
:class:`Answer` of pre-encoded sections. No dnspython objects per query.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

from lbdns.health.view import HealthView
from lbdns.snapshot import LB_TYPES_BASE, LB_TYPES_ENTERPRISE, LbPlan, Node, Snapshot, ZoneIndex
from lbdns.steering.decide import ClientLocation, Decision, Locator, Query, decide
from lbdns.steering.origins import HostLookup, Rng
from lbdns.steering.plan import Effective
from lbdns.wire.codec import (
    CLASS_IN,
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_ANY,
    QTYPE_CNAME,
    QTYPE_HINFO,
    QTYPE_NS,
    QTYPE_SOA,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    ClientSubnet,
)
from lbdns.wire.names import to_text
from lbdns.wire.render import QNAME_POINTER

MAX_CNAME_CHAIN = 8
_QTYPE_DS = 43
_HINFO_RDATA = b"\x07RFC8482\x00"
_STATIC_CACHE_MAX = 100_000
_ANY_ORDER = (QTYPE_A, QTYPE_AAAA, QTYPE_CNAME, 15, 16, 33, 257, 12, QTYPE_NS, QTYPE_SOA)


@dataclass(slots=True)
class Answer:
    """Pre-encoded response sections plus what the edge needs to know.

    ``ecs_scope`` is the SCOPE PREFIX-LENGTH to echo (None ⇒ 0); ``lb`` the LB that was
    consulted (None for ordinary data); ``decision`` its :class:`Decision`;
    ``matched_rules`` the names of rules that matched; ``static`` True when the answer
    depends on nothing but the snapshot (safe to cache by (qname, qtype)); for cacheable LB
    answers ``rrs`` holds the answer RRs one by one (multi-answer, rotated per query) or
    ``weighted`` the (weight, RR) candidates of a random single answer.
    """

    rcode: int
    aa: bool
    answer: bytes = b""
    ancount: int = 0
    authority: bytes = b""
    nscount: int = 0
    additional: bytes = b""
    arcount: int = 0
    ecs_scope: int | None = None
    lb: LbPlan | None = None
    decision: Decision | None = None
    matched_rules: list[str] = field(default_factory=list)
    static: bool = True
    rrs: tuple[bytes, ...] = ()
    weighted: tuple[tuple[float, bytes], ...] = ()


REFUSED = Answer(RCODE_REFUSED, False)


@dataclass(slots=True)
class QueryEnv:
    """Per-query inputs beyond the question: the resolver address (packet source), the
    valid ECS option (None, or with source prefix > 0 — R-LOC-03), the PoP code and region,
    the health view, an rng, a monotonic ``now`` in seconds, hostname lookups and a
    location function ``locate_for(ecs, resolver_ip, pop)``; ``trace`` fills the decision
    trail for ``lbdns explain``."""

    resolver_ip: str
    ecs: ClientSubnet | None
    pop: str
    pop_region: str
    health: HealthView
    rng: Rng
    now: float
    lookup: HostLookup | None = None
    locator: Locator | None = None
    asn_of: Callable[[IPv4Address | IPv6Address], int | None] | None = None
    country_of: Callable[[IPv4Address | IPv6Address], str | None] | None = None
    ip_src_uses_ecs: bool = True
    trace: bool = False


def label_offsets(wire: bytes) -> list[int]:
    """Offsets of every label of an uncompressed wire name (the root excluded)."""
    offs: list[int] = []
    i = 0
    n = wire[0]
    while n:
        offs.append(i)
        i += n + 1
        n = wire[i]
    return offs


def find_zone(snapshot: Snapshot, qname: bytes) -> tuple[ZoneIndex | None, list[int], int]:
    """The closest enclosing served zone of ``qname`` (lower-case wire), the label offsets
    and the index of the zone apex among them (len(offsets) for the root)."""
    zones = snapshot.zones
    offs = label_offsets(qname)
    for k, off in enumerate(offs):
        z = zones.get(qname[off:])
        if z is not None:
            return z, offs, k
    z = zones.get(b"\x00")
    return z, offs, len(offs)


def _negative(zone: ZoneIndex, rcode: int, aa: bool = True) -> Answer:
    return Answer(rcode, aa, authority=zone.negative_soa, nscount=1)


def _referral(zone: ZoneIndex, cut: bytes) -> Answer:
    """Referral to a delegated child (RFC 1034 §4.3.2 step 3b): AA clear, NS in authority,
    in-zone glue in additional."""
    node = zone.nodes[cut]
    ns = node.rrsets[QTYPE_NS]
    add: list[bytes] = []
    count = 0
    for target in ns.targets:
        tnode = zone.nodes.get(target)
        if tnode is None:
            continue
        for t in (QTYPE_A, QTYPE_AAAA):
            rr = tnode.rrsets.get(t)
            if rr is not None:
                add.append(rr.with_owner(target))
                count += rr.count
    return Answer(RCODE_NOERROR, False, authority=ns.with_owner(cut), nscount=ns.count,
                  additional=b"".join(add), arcount=count)


def resolve(snapshot: Snapshot, qname: bytes, qtype: int, env: QueryEnv | None) -> Answer:
    """Answer (qname, qtype) for class IN. ``qname`` is the lower-case wire name.

    The first RR owner is written as a pointer to the question (offset 12), so the caller
    must put the question right after the header. Static answers are memoised per snapshot.
    Raises :class:`lbdns.steering.decide.NeedsLookup` when an LB needs hostname lookups.
    """
    cache: dict[tuple[bytes, int], Answer] = snapshot_cache(snapshot)
    hit = cache.get((qname, qtype))
    if hit is not None:
        return hit
    ans = _resolve(snapshot, qname, qtype, env, QNAME_POINTER, 0)
    if ans.static and len(cache) < _STATIC_CACHE_MAX:
        cache[(qname, qtype)] = ans
    return ans


_CACHES: dict[int, tuple[Snapshot, dict[tuple[bytes, int], Answer]]] = {}


def snapshot_cache(snapshot: Snapshot) -> dict[tuple[bytes, int], Answer]:
    """The static-answer memo of ``snapshot`` (one per live snapshot)."""
    entry = _CACHES.get(id(snapshot))
    if entry is not None and entry[0] is snapshot:
        return entry[1]
    if len(_CACHES) > 4:
        _CACHES.clear()
    memo: dict[tuple[bytes, int], Answer] = {}
    _CACHES[id(snapshot)] = (snapshot, memo)
    return memo


def release_snapshot_cache(snapshot: Snapshot) -> dict[tuple[bytes, int], Answer]:
    """Forget the static-answer memo of a replaced ``snapshot`` and return it (empty when it
    had none), so that the caller can free its entries a slice at a time."""
    entry = _CACHES.pop(id(snapshot), None)
    if entry is None or entry[0] is not snapshot:
        return {}
    return entry[1]


def _resolve(snapshot: Snapshot, qname: bytes, qtype: int, env: QueryEnv | None, owner: bytes,
             depth: int) -> Answer:
    zone, offs, zi = find_zone(snapshot, qname)
    if zone is None:
        return REFUSED
    if zone.cuts:
        for k in range(zi - 1, -1, -1):
            suffix = qname[offs[k]:]
            if suffix in zone.cuts:
                if k == 0 and qtype == _QTYPE_DS:
                    break  # DS at the cut is parent-side data: answered here (RFC 4035 §3.1.4.1)
                return _referral(zone, suffix)
    node = zone.nodes.get(qname)
    if node is None:
        # RFC 4592 §3.3.1: closest encloser, then its wildcard child
        for k in range(1, zi + 1):
            ce = qname[offs[k]:] if k < len(offs) else b"\x00"
            if ce in zone.nodes:
                node = zone.nodes.get(b"\x01*" + ce)
                break
        if node is None:
            return _negative(zone, RCODE_NXDOMAIN)
    return _answer_node(snapshot, zone, node, qname, qtype, env, owner, depth)


def _answer_node(snapshot: Snapshot, zone: ZoneIndex, node: Node, qname: bytes, qtype: int,
                 env: QueryEnv | None, owner: bytes, depth: int) -> Answer:
    plan = node.lb
    if plan is not None:
        lb_types = LB_TYPES_ENTERPRISE if plan.serves_mx_srv else LB_TYPES_BASE
        if qtype in lb_types:
            return _lb_answer(snapshot, zone, plan, qname, qtype, env, owner, depth)
        if qtype == QTYPE_ANY:
            ttl = plan.base.ttl
            rr = owner + struct.pack("!HHIH", QTYPE_HINFO, CLASS_IN, ttl, len(_HINFO_RDATA)) + _HINFO_RDATA
            return Answer(RCODE_NOERROR, True, rr, 1, static=True)
    rrsets = node.rrsets
    if qtype == QTYPE_ANY:
        # RFC 8482 §4.1: answer with one RRset (the first present in a fixed preference order)
        for t in _ANY_ORDER:
            if t in rrsets and not (plan is not None and t in LB_TYPES_ENTERPRISE):
                one = rrsets[t]
                return Answer(RCODE_NOERROR, True,
                              one.at_qname if owner is QNAME_POINTER else one.with_owner(owner), one.count)
        return _negative(zone, RCODE_NOERROR)
    rrset = rrsets.get(qtype)
    if rrset is not None:
        data = rrset.at_qname if owner is QNAME_POINTER else rrset.with_owner(owner)
        return Answer(RCODE_NOERROR, True, data, rrset.count)
    cname = rrsets.get(QTYPE_CNAME) if plan is None else None
    if cname is not None and qtype != QTYPE_CNAME:
        data = cname.at_qname if owner is QNAME_POINTER else cname.with_owner(owner)
        first = Answer(RCODE_NOERROR, True, data, cname.count)
        target = cname.targets[0] if cname.targets else b""
        rest = _chase(snapshot, target, qtype, env, depth)
        if rest is None:
            return first
        return Answer(rest.rcode, True, first.answer + rest.answer, first.ancount + rest.ancount,
                      rest.authority, rest.nscount, rest.additional, rest.arcount, rest.ecs_scope, rest.lb,
                      rest.decision, rest.matched_rules, rest.static)
    return _negative(zone, RCODE_NOERROR)


def _chases(snapshot: Snapshot, target: bytes, depth: int) -> bool:
    """Whether a CNAME to ``target`` (wire name) at chain depth ``depth`` is followed here:
    the target lies in a served zone and the chain is shorter than ``MAX_CNAME_CHAIN``
    (RFC 1034 §4.3.2; SPEC.md R-ANS-12)."""
    return bool(target) and depth + 1 < MAX_CNAME_CHAIN and find_zone(snapshot, target)[0] is not None


def _chase(snapshot: Snapshot, target: bytes, qtype: int, env: QueryEnv | None, depth: int) -> Answer | None:
    """The answer for ``target`` to append after a CNAME, or None when the chain stops there
    (out-of-zone target, too deep, or nothing authoritative to add)."""
    if not _chases(snapshot, target, depth):
        return None
    rest = _resolve(snapshot, target, qtype, env, target, depth + 1)
    if rest.rcode == RCODE_REFUSED or not rest.aa:
        return None
    return rest


# ---------------------------------------------------------------------------------------------
# Load-balancer answers
# ---------------------------------------------------------------------------------------------

_TAILS: dict[tuple[int, int, bytes], bytes] = {}


def _tail(rtype: int, ttl: int, rdata: bytes) -> bytes:
    key = (rtype, ttl, rdata)
    t = _TAILS.get(key)
    if t is None:
        t = struct.pack("!HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata
        if len(_TAILS) < 200_000:
            _TAILS[key] = t
    return t


def apply_rules(plan: LbPlan, qname_text: str, qtype: int, env: QueryEnv) -> tuple[Effective, list[str], bool]:
    """Evaluate ``plan.rules`` in order (SPEC.md §8.3–8.4). Returns the effective config,
    the names of matching rules, and whether a matching condition read ECS-derived data
    (for the ECS scope, R-ANS-50)."""
    from lbdns.rules.fields import RuleFields

    ecs = env.ecs
    fields = plan.rule_fields
    src_ip: IPv4Address | IPv6Address | None
    src_is_ecs = ecs is not None and env.ip_src_uses_ecs
    src_ip = ecs.ip if (src_is_ecs and ecs is not None) else _ip(env.resolver_ip)
    asn = env.asn_of(src_ip) if (env.asn_of is not None and src_ip is not None and "ip.src.asnum" in fields) else None
    country = (env.country_of(src_ip) if (env.country_of is not None and src_ip is not None
                                          and "lbdns.client.country" in fields) else None)
    rf = RuleFields(
        lb_name=plan.rule_name, region=env.pop_region, ip_src=src_ip, asnum=asn, qname=qname_text, qtype=qtype,
        ecs_present=ecs is not None, ecs_addr=str(ecs.ip) if ecs is not None else None, country=country,
    )
    eff = plan.base
    matched: list[str] = []
    for rule in plan.rules:
        if rule.condition.evaluate(rf):
            eff = rule.apply(eff)
            matched.append(rule.name)
            if rule.stops:
                break
    reads_ecs = ecs is not None and (
        (src_is_ecs and bool(fields & {"ip.src", "ip.src.asnum", "lbdns.client.country"}))
        or bool(fields & {"dns.rr.opt.client", "dns.rr.opt.client.addr"}))
    return eff, matched, reads_ecs


def _ip(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None


def _lb_answer(snapshot: Snapshot, zone: ZoneIndex, plan: LbPlan, qname: bytes, qtype: int,
               env: QueryEnv | None, owner: bytes, depth: int) -> Answer:
    if env is None:
        raise RuntimeError("LB answers need a QueryEnv")
    eff = plan.base
    matched: list[str] = []
    rules_read_ecs = False
    if plan.rules:
        eff, matched, rules_read_ecs = apply_rules(plan, to_text(qname), qtype, env)
    q = Query(qtype, env.resolver_ip, env.pop, env.pop_region, env.now)
    d = decide(eff, q, env.health, env.rng, lookup=env.lookup, locate=env.locator, trace=env.trace)
    scope = _ecs_scope(env.ecs, d.location, rules_read_ecs)
    if not d.records:
        ans = _negative(zone, RCODE_NOERROR)
        ans.lb, ans.decision, ans.matched_rules, ans.static, ans.ecs_scope = plan, d, matched, False, scope
        return ans
    ttl = eff.ttl
    recs = d.records
    n = len(recs)
    rrs: tuple[bytes, ...] = ()
    weighted: tuple[tuple[float, bytes], ...] = ()
    if plan.rules:
        d.cacheable = False
    drawable = (*recs, *(rec for _, rec in d.weighted or ()))
    if qtype != QTYPE_CNAME and d.cacheable and any(
            rt == QTYPE_CNAME and _chases(snapshot, rd, depth) for rt, rd in drawable):
        d.cacheable = False  # an in-zone CNAME target is chased per answer (R-ANS-32)
    if n == 1 and recs[0][0] == QTYPE_CNAME and qtype != QTYPE_CNAME:
        data = owner + _tail(QTYPE_CNAME, ttl, recs[0][1])
        rest = _chase(snapshot, recs[0][1], qtype, env, depth)
        if rest is not None:  # R-ANS-32: the CNAME, then the target's RRset when served here
            if rest.ecs_scope is not None:  # a chased LB's location counts too: the narrower scope
                scope = rest.ecs_scope if scope is None else max(scope, rest.ecs_scope)
            return Answer(rest.rcode, True, data + rest.answer, 1 + rest.ancount, rest.authority, rest.nscount,
                          rest.additional, rest.arcount, ecs_scope=scope, lb=plan, decision=d,
                          matched_rules=matched, static=False)
    if n == 1:
        rtype, rdata = recs[0]
        data = owner + _tail(rtype, ttl, rdata)
        if d.cacheable and d.weighted:
            weighted = tuple((w, owner + _tail(rt, ttl, rd)) for w, (rt, rd) in d.weighted)
        elif d.cacheable:
            rrs = (data,)
    else:
        start = int(env.rng.random() * n) % n  # rotate: a random permutation order (R-ANS-27)
        parts = [owner + _tail(rt, ttl, rd) for rt, rd in recs[start:] + recs[:start]]
        data = b"".join(parts)
        if d.cacheable:
            rrs = tuple(parts)
    return Answer(RCODE_NOERROR, True, data, n, ecs_scope=scope, lb=plan, decision=d, matched_rules=matched,
                  static=False, rrs=rrs, weighted=weighted)


def _ecs_scope(ecs: ClientSubnet | None, loc: ClientLocation | None, rules_read_ecs: bool) -> int | None:
    """SCOPE PREFIX-LENGTH per SPEC.md R-ANS-50."""
    if ecs is None:
        return None
    scope = 0
    if loc is not None and loc.ecs_consulted:
        if loc.source == "ecs" and loc.network_prefix is not None:
            scope = min(loc.network_prefix, ecs.source_prefix)
        else:
            scope = ecs.source_prefix
    if rules_read_ecs:
        scope = max(scope, ecs.source_prefix)
    return scope
