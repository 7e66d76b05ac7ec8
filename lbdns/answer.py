"""The authoritative answer: zone match, LB precedence, NXDOMAIN/NODATA with SOA, CNAME
chasing, wildcards, referrals, REFUSED (RFC 1034 §4.3.2, RFC 2308, RFC 4592; docs/decisions.md ›
Answers and precedence).

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
from lbdns.snapshot_types import LB_TYPES_ENTERPRISE, EncodedRRset, LbPlan, Node, Snapshot, ZoneIndex
from lbdns.steering.decide import ClientLocation, Decision, Locator, Query, decide
from lbdns.steering.origins import HostLookup, Rng
from lbdns.steering.plan import Effective
from lbdns.wire.codec import (
    CLASS_IN,
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_ANY,
    QTYPE_CNAME,
    QTYPE_DNAME,
    QTYPE_DS,
    QTYPE_HINFO,
    QTYPE_HTTPS,
    QTYPE_NS,
    QTYPE_SOA,
    QTYPE_SVCB,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    ClientSubnet,
)
from lbdns.wire.names import to_text
from lbdns.wire.render import QNAME_POINTER

MAX_CNAME_CHAIN = 8
_HINFO_RDATA = b"\x07RFC8482\x00"
_RCODE_YXDOMAIN = 6
# RFC 8482 §4.1: the one RRset an ANY query gets — the first present in this order
_ANY_ORDER = (QTYPE_A, QTYPE_AAAA, QTYPE_CNAME, 15, 16, 33, 257, 12, QTYPE_HTTPS, QTYPE_SVCB, QTYPE_DNAME,
              35, 256, 52, 44, 29, QTYPE_HINFO, QTYPE_DS, QTYPE_NS, QTYPE_SOA)


@dataclass(slots=True)
class Answer:
    """Pre-encoded response sections plus what the edge needs to know.

    ``ecs_scope`` is the SCOPE PREFIX-LENGTH to echo (None ⇒ 0); ``lb`` the LB that was
    consulted (None for ordinary data); ``decision`` its :class:`Decision`;
    ``matched_rules`` the names of rules that matched; ``static`` True when the answer
    depends on nothing but the snapshot (safe to cache by (qname, qtype)); for cacheable LB
    answers ``rrs`` holds the answer RRs one by one (multi-answer, rotated per query) or
    ``weighted`` the (weight, RR) candidates of a random single answer. ``optional`` /
    ``opcount`` / ``optional_parts`` are additional-section records that may be left out when
    the response is too big (RFC 2181 §9; see :func:`lbdns.wire.render.build_response`).
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
    optional: bytes = b""
    opcount: int = 0
    optional_parts: tuple[tuple[bytes, int], ...] = ()


def refused() -> Answer:
    """A new REFUSED answer (no zone of ours encloses the name; RFC 1035 §4.1.1): one per
    query, since an :class:`Answer` is mutable and may be filled in by its caller."""
    return Answer(RCODE_REFUSED, False)


@dataclass(slots=True)
class QueryEnv:
    """Per-query inputs beyond the question: the resolver address (packet source), the
    valid ECS option (None, or with source prefix > 0: a /0 carries no client information,
    docs/decisions.md › DNS protocol), the PoP code and region, the health view, an rng, a
    monotonic ``now`` in seconds, hostname lookups and a location function
    ``locate_for(ecs, resolver_ip, pop)``; ``trace`` fills the decision trail for
    ``lbdns explain``."""

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


def find_zone(snapshot: Snapshot, qname: bytes, start: int = 0) -> tuple[ZoneIndex | None, list[int], int]:
    """The closest enclosing served zone of ``qname`` (lower-case wire) whose apex is at least
    ``start`` labels above it, the label offsets and the index of the zone apex among them
    (len(offsets) for the root)."""
    zones = snapshot.zones
    offs = label_offsets(qname)
    for k in range(start, len(offs)):
        z = zones.get(qname[offs[k]:])
        if z is not None:
            return z, offs, k
    z = zones.get(b"\x00")
    return z, offs, len(offs)


def _negative(zone: ZoneIndex, rcode: int, aa: bool = True) -> Answer:
    return Answer(rcode, aa, authority=zone.negative_soa, nscount=1)


def _referral(zone: ZoneIndex, cut: bytes) -> Answer:
    """Referral to a delegated child (RFC 1034 §4.3.2 step 3b): AA clear, NS in authority, the
    addresses of NS targets held in this zone in additional. Glue of targets below the cut
    (in-domain) is required: when it does not fit, the response is truncated (RFC 9471 §3).
    Addresses of other targets in the zone (sibling glue, authoritative names) are optional
    and left out first (RFC 9471 §2.2, RFC 2181 §9)."""
    node = zone.nodes[cut]
    ns = node.rrsets[QTYPE_NS]
    required: list[bytes] = []
    count = 0
    optional: list[tuple[bytes, int]] = []
    for target in dict.fromkeys(ns.targets):
        tnode = zone.nodes.get(target)
        if tnode is None:
            continue
        in_domain = any(target[off:] == cut for off in label_offsets(target))
        for t in (QTYPE_A, QTYPE_AAAA):
            rr = tnode.rrsets.get(t)
            if rr is not None:
                if in_domain:
                    required.append(rr.with_owner(target))
                    count += rr.count
                else:
                    optional.append((rr.with_owner(target), rr.count))
    return Answer(RCODE_NOERROR, False, authority=ns.with_owner(cut), nscount=ns.count,
                  additional=b"".join(required), arcount=count, optional=b"".join(p for p, _ in optional),
                  opcount=sum(c for _, c in optional), optional_parts=tuple(optional))


class NeedsEnv(Exception):
    """Raised by :func:`resolve` called without a :class:`QueryEnv` when the answer needs one
    (a load balancer is consulted): the answer is not static."""


def resolve(snapshot: Snapshot, qname: bytes, qtype: int, env: QueryEnv | None) -> Answer:
    """Answer (qname, qtype) for class IN. ``qname`` is the lower-case wire name.

    The first RR owner is written as a pointer to the question (offset 12), so the caller
    must put the question right after the header. ``env`` None asks for a static answer only:
    :class:`NeedsEnv` is raised when a load balancer would be consulted.
    """
    return _resolve(snapshot, qname, qtype, env, QNAME_POINTER, 0)


def _resolve(snapshot: Snapshot, qname: bytes, qtype: int, env: QueryEnv | None, owner: bytes,
             depth: int) -> Answer:
    zone, offs, zi = find_zone(snapshot, qname)
    if zone is None:
        return refused()
    if zi == 0 and qtype == QTYPE_DS and offs:
        # DS at the apex of a zone whose parent is served too: the parent answers (RFC 4035 §3.1.4.1)
        parent, _, pzi = find_zone(snapshot, qname, 1)
        if parent is not None and qname in parent.cuts:
            zone, zi = parent, pzi
    if zone.cuts:
        for k in range(zi - 1, -1, -1):
            suffix = qname[offs[k]:]
            if suffix in zone.cuts:
                if k == 0 and qtype == QTYPE_DS:
                    break  # DS at the cut is parent-side data: answered here (RFC 4035 §3.1.4.1)
                return _referral(zone, suffix)
    if zone.dnames:
        for k in range(1, zi + 1):  # an ancestor owning a DNAME (RFC 6672 §3.2)
            above = qname[offs[k]:] if k < len(offs) else b"\x00"
            if above in zone.dnames:
                return _dname_answer(snapshot, zone, above, qname[:offs[k]], qtype, env, owner, depth)
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
        if qtype in plan.types:
            return _lb_answer(snapshot, zone, plan, qname, qtype, env, owner, depth)
        if qtype == QTYPE_ANY:
            return _lb_any(plan, qname, env, owner)
    rrsets = node.rrsets
    if qtype == QTYPE_ANY:
        # RFC 8482 §4.1: answer with one RRset (the first present in a fixed preference order)
        for t in (*_ANY_ORDER, *sorted(rrsets)):
            if t in rrsets and not (plan is not None and t in LB_TYPES_ENTERPRISE):
                one = rrsets[t]
                return Answer(RCODE_NOERROR, True,
                              one.at_qname if owner is QNAME_POINTER else one.with_owner(owner), one.count)
        return _negative(zone, RCODE_NOERROR)
    rrset = rrsets.get(qtype)
    if rrset is not None:
        data = rrset.at_qname if owner is QNAME_POINTER else rrset.with_owner(owner)
        if rrset.opcount or rrset.lb_targets:
            return _with_additional(snapshot, rrset, data, env, depth)
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
                      rest.decision, rest.matched_rules, rest.static, optional=rest.optional,
                      opcount=rest.opcount, optional_parts=rest.optional_parts)
    return _negative(zone, RCODE_NOERROR)


def _with_additional(snapshot: Snapshot, rrset: EncodedRRset, data: bytes, env: QueryEnv | None,
                     depth: int) -> Answer:
    """The answer ``data`` (``rrset``: apex NS, MX or SRV) with the addresses of its targets as
    optional additional data (RFC 1034 §4.3.2 step 6, RFC 2181 §5.4.1). A target that is a load
    balancer is steered like a direct A and AAAA query for it (same health, pool choice, rules
    and ECS scope, the narrower scope wins); only its A/AAAA records are added. Static unless
    a load balancer was steered."""
    ans = Answer(RCODE_NOERROR, True, data, rrset.count, optional=rrset.optional, opcount=rrset.opcount,
                 optional_parts=rrset.optional_parts)
    if not rrset.lb_targets:
        return ans
    ans.static = False
    if env is None:
        raise NeedsEnv
    parts = list(rrset.optional_parts)
    scope: int | None = None
    for target, plan in rrset.lb_targets:
        zone = find_zone(snapshot, target)[0]
        if zone is None:
            continue
        for t in (QTYPE_A, QTYPE_AAAA):
            if t not in plan.types:
                continue
            steered = _lb_answer(snapshot, zone, plan, target, t, env, target, depth)
            if steered.ecs_scope is not None:
                scope = steered.ecs_scope if scope is None else max(scope, steered.ecs_scope)
            d = steered.decision
            if steered.ancount and d is not None and all(rt == t for rt, _ in d.records):
                parts.append((steered.answer, steered.ancount))
    ans.optional = b"".join(p for p, _ in parts)
    ans.opcount = sum(c for _, c in parts)
    ans.optional_parts = tuple(parts)
    ans.ecs_scope = scope
    return ans


def _dname_answer(snapshot: Snapshot, zone: ZoneIndex, dname_owner: bytes, prefix: bytes, qtype: int,
                  env: QueryEnv | None, owner: bytes, depth: int) -> Answer:
    """DNAME substitution (RFC 6672 §2.2, §3.2): the query name is ``prefix`` (its labels
    below the DNAME owner, wire form without the root) + ``dname_owner``. The answer is the
    DNAME RR, then a CNAME from the query name to ``prefix`` + the DNAME target with the
    DNAME's TTL (§3.1), then — unless the query is for CNAME — the answer for the new name
    when it lies in a served zone (chased like a CNAME, within the same chain limit). A new
    name longer than 255 octets is YXDOMAIN with the DNAME RR (§2.2)."""
    dname = zone.nodes[dname_owner].rrsets[QTYPE_DNAME]
    dname_rr = dname.with_owner(dname_owner)
    target = prefix + dname.targets[0]
    if len(target) > 255:
        return Answer(_RCODE_YXDOMAIN, True, dname_rr, 1)
    data = dname_rr + owner + _tail(QTYPE_CNAME, dname.ttl, target)
    rest = _chase(snapshot, target, qtype, env, depth) if qtype != QTYPE_CNAME else None
    if rest is None:
        return Answer(RCODE_NOERROR, True, data, 2)
    return Answer(rest.rcode, True, data + rest.answer, 2 + rest.ancount, rest.authority, rest.nscount,
                  rest.additional, rest.arcount, rest.ecs_scope, rest.lb, rest.decision, rest.matched_rules,
                  rest.static, optional=rest.optional, opcount=rest.opcount, optional_parts=rest.optional_parts)


def _chases(snapshot: Snapshot, target: bytes, depth: int) -> bool:
    """Whether a CNAME to ``target`` (wire name) at chain depth ``depth`` is followed here:
    the target lies in a served zone and the chain is shorter than ``MAX_CNAME_CHAIN``
    (RFC 1034 §4.3.2; lbdns decision, docs/decisions.md › Answers and precedence)."""
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

def _tail(rtype: int, ttl: int, rdata: bytes) -> bytes:
    """TYPE, CLASS IN, TTL, RDLENGTH and RDATA of one record (RFC 1035 §4.1.3)."""
    return struct.pack("!HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata


def apply_rules(plan: LbPlan, qname_text: str, qtype: int, env: QueryEnv) -> tuple[Effective, list[str], bool]:
    """Evaluate ``plan.rules`` in order (Cloudflare API docs: Load Balancer Details ›
    ``rules``: ``priority``, ``overrides``, ``terminates``). Returns the effective config,
    the names of matching rules, and whether a matching condition read ECS-derived data
    (for the ECS scope, RFC 7871 §7.2.1)."""
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


def _lb_any(plan: LbPlan, qname: bytes, env: QueryEnv | None, owner: bytes) -> Answer:
    """ANY at an LB name: one ``HINFO "RFC8482" ""`` RR (RFC 8482 §4.2) with the effective TTL,
    a matching rule's ``overrides.ttl`` included (Cloudflare: the LB ``ttl``; rules may override
    it). Without rules the answer is static; with rules they are evaluated like for an A query
    (their ECS reads set the scope) and the answer is computed per query."""
    ttl = plan.base.ttl
    if plan.rules and env is None:
        raise NeedsEnv
    if not plan.rules or env is None:
        return Answer(RCODE_NOERROR, True, owner + _tail(QTYPE_HINFO, ttl, _HINFO_RDATA), 1, static=True)
    eff, matched, reads_ecs = apply_rules(plan, to_text(qname), QTYPE_ANY, env)
    return Answer(RCODE_NOERROR, True, owner + _tail(QTYPE_HINFO, eff.ttl, _HINFO_RDATA), 1,
                  ecs_scope=_ecs_scope(env.ecs, None, reads_ecs), lb=plan, matched_rules=matched, static=False)


def _ip(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text)
    except ValueError:
        return None


def _lb_answer(snapshot: Snapshot, zone: ZoneIndex, plan: LbPlan, qname: bytes, qtype: int,
               env: QueryEnv | None, owner: bytes, depth: int) -> Answer:
    if env is None:
        raise NeedsEnv
    eff = plan.base
    matched: list[str] = []
    rules_read_ecs = False
    if plan.rules:
        eff, matched, rules_read_ecs = apply_rules(plan, to_text(qname), qtype, env)
    q = Query(qtype, env.resolver_ip, env.pop, env.pop_region, env.now, env.ecs)
    d = decide(eff, q, env.health, env.rng, lookup=env.lookup, locate=env.locator, trace=env.trace)
    scope = _ecs_scope(env.ecs, d.location, rules_read_ecs, d.hash_scope)
    if not d.records:
        ans = _negative(zone, RCODE_NOERROR)
        ans.lb, ans.decision, ans.matched_rules, ans.static, ans.ecs_scope = plan, d, matched, False, scope
        return ans
    ttl = eff.ttl
    recs = d.records
    if plan.rules:
        d.cacheable = False
    if qtype in plan.service:
        cname = next((r for r in recs if r[0] == QTYPE_CNAME), None)
        if cname is None:
            return _service_answer(plan, qtype, d, ttl, env, owner, scope, matched)
        recs = d.records = [cname]  # the LB name is an alias here: answer like an A query would
        d.weighted = None
    n = len(recs)
    rrs: tuple[bytes, ...] = ()
    weighted: tuple[tuple[float, bytes], ...] = ()
    drawable = (*recs, *(rec for _, rec in d.weighted or ()))
    if qtype != QTYPE_CNAME and d.cacheable and any(
            rt == QTYPE_CNAME and _chases(snapshot, rd, depth) for rt, rd in drawable):
        d.cacheable = False  # an in-zone CNAME target is chased per answer (``flatten_cname: false``)
    if n == 1 and recs[0][0] == QTYPE_CNAME and qtype != QTYPE_CNAME:
        data = owner + _tail(QTYPE_CNAME, ttl, recs[0][1])
        rest = _chase(snapshot, recs[0][1], qtype, env, depth)
        if rest is not None:  # flatten_cname: false: the CNAME, then the target's RRset when served here
            if rest.ecs_scope is not None:  # a chased LB's location counts too: the narrower scope
                scope = rest.ecs_scope if scope is None else max(scope, rest.ecs_scope)
            return Answer(rest.rcode, True, data + rest.answer, 1 + rest.ancount, rest.authority, rest.nscount,
                          rest.additional, rest.arcount, ecs_scope=scope, lb=plan, decision=d,
                          matched_rules=matched, static=False, optional=rest.optional, opcount=rest.opcount,
                          optional_parts=rest.optional_parts)
    if n == 1:
        rtype, rdata = recs[0]
        data = owner + _tail(rtype, ttl, rdata)
        if d.cacheable and d.weighted:
            weighted = tuple((w, owner + _tail(rt, ttl, rd)) for w, (rt, rd) in d.weighted)
        elif d.cacheable:
            rrs = (data,)
    else:
        start = int(env.rng.random() * n) % n  # rotate: docs/decisions.md › Answers and precedence
        parts = [owner + _tail(rt, ttl, rd) for rt, rd in recs[start:] + recs[:start]]
        data = b"".join(parts)
        if d.cacheable:
            rrs = tuple(parts)
    return Answer(RCODE_NOERROR, True, data, n, ecs_scope=scope, lb=plan, decision=d, matched_rules=matched,
                  static=False, rrs=rrs, weighted=weighted)


def _service_answer(plan: LbPlan, qtype: int, d: Decision, ttl: int, env: QueryEnv, owner: bytes,
                    scope: int | None, matched: list[str]) -> Answer:
    """An HTTPS/SVCB query at an LB with ``https:``/``svcb:``: one ServiceMode record (RFC 9460
    §2.4.3, §7.3) whose ipv4hint/ipv6hint are the A/AAAA records of decision ``d`` (the
    addresses direct A and AAAA queries would get now: same pool, health and ECS scope). The
    hints of a multi-answer are rotated together at a random start, like the A/AAAA answers; a
    cacheable decision lists every rotation as an equally weighted choice for the LB memo."""
    head, mid, tail = plan.service[qtype]
    v4 = [rd for rt, rd in d.records if rt == QTYPE_A]
    v6 = [rd for rt, rd in d.records if rt == QTYPE_AAAA]
    turns = max(len(v4), len(v6), 1)

    def record(k: int) -> bytes:
        rdata = head
        if v4:
            r = k % len(v4)
            rdata += struct.pack("!HH", 4, 4 * len(v4)) + b"".join(v4[r:] + v4[:r])
        rdata += mid
        if v6:
            r = k % len(v6)
            rdata += struct.pack("!HH", 6, 16 * len(v6)) + b"".join(v6[r:] + v6[:r])
        return owner + _tail(qtype, ttl, rdata + tail)

    data = record(int(env.rng.random() * turns) % turns)
    weighted: tuple[tuple[float, bytes], ...] = ()
    rrs: tuple[bytes, ...] = ()
    if d.cacheable:
        if turns == 1:
            rrs = (data,)
        else:
            weighted = tuple((1.0, record(k)) for k in range(turns))
    return Answer(RCODE_NOERROR, True, data, 1, ecs_scope=scope, lb=plan, decision=d, matched_rules=matched,
                  static=False, rrs=rrs, weighted=weighted)


def _ecs_scope(ecs: ClientSubnet | None, loc: ClientLocation | None, rules_read_ecs: bool,
               hash_scope: int = 0) -> int | None:
    """SCOPE PREFIX-LENGTH (RFC 7871 §7.2.1; docs/decisions.md › DNS protocol); at least
    ``hash_scope``, the ECS prefix a pool's ``hash`` key was taken from (docs/steering.md ›
    Persistence key)."""
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
    return max(scope, hash_scope)
