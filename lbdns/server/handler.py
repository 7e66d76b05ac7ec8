"""bytes → bytes: parse the query, answer it, render the response (docs/architecture.md › One
query).

Synchronous and shared by UDP and TCP. Malformed packets get FORMERR or are dropped
(RFC 1035 §4.1.1), other opcodes NOTIMP, EDNS versions > 0 BADVERS (RFC 6891 §6.1.3), other
classes and zone transfers REFUSED; any unexpected exception becomes SERVFAIL plus a counter
(docs/architecture.md › Failure containment). Hostname origins are read from a cache filled
ahead of queries (:mod:`lbdns.server.hostnames`); nothing here waits.
"""

from __future__ import annotations

import hmac
import logging
import os
import random
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from itertools import accumulate
from typing import Any, cast

from lbdns.answer import Answer, QueryEnv, find_zone, resolve, snapshot_cache
from lbdns.errors import FormError
from lbdns.geo.location import resolve_location
from lbdns.geo.pops import Pop
from lbdns.server.counters import QTYPE_BUCKET, QueryCounters
from lbdns.server.rrl import RateLimiter, RrlParams
from lbdns.server.state import Current, StateRef
from lbdns.steering.decide import ClientLocation
from lbdns.steering.origins import HostLookup
from lbdns.wire.codec import (
    CLASS_IN,
    OPCODE_QUERY,
    QTYPE_AXFR,
    QTYPE_IXFR,
    RCODE_BADCOOKIE,
    RCODE_BADVERS,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    ClientSubnet,
    EdnsOptionError,
    Query,
    QuestionCountError,
    parse_query,
)
from lbdns.wire.render import build_error, build_headless, build_response, make_server_cookie

log = logging.getLogger("lbdns.server")


@dataclass(slots=True)
class _LbMemo:
    """A cacheable LB answer (docs/architecture.md › Caching): valid while the snapshot and the
    origin states (``HealthView.states_token``) are the ones it was computed with.
    Multi-answers rotate through ``rrs``; random single answers redraw from the cumulative
    ``weights`` over ``choices``."""

    snapshot: object
    health: object
    answer: Answer
    rrs: tuple[bytes, ...]
    choices: tuple[bytes, ...]
    weights: tuple[float, ...]
    decision_key: tuple[str, str, bool]
    turn: int = 0
    rec: object = None
    network_prefix: int = -2

    def data(self, rng: random.Random) -> bytes:
        """The answer section for one more query."""
        if self.choices:
            return self.choices[bisect_right(self.weights, rng.random() * self.weights[-1])
                                if self.weights[-1] > 0 else 0]
        rrs = self.rrs
        n = len(rrs)
        if n == 1:
            return rrs[0]
        self.turn = k = (self.turn + 1) % n
        return b"".join(rrs[k:] + rrs[:k])


@dataclass(slots=True)
class _Packet:
    """A memoised UDP response for one exact query (bytes after the ID), see
    :class:`Handler`. Static: ``head`` is the whole response after the ID. LB: ``head`` runs
    up to the answer section, which ``memo`` supplies per query, and ``tail`` follows it; valid
    while ``memo`` is."""

    counter_key: tuple[str, int, int]
    head: bytes
    memo: _LbMemo | None = None
    tail: bytes = b""


@dataclass(slots=True)
class _EcsPacket:
    """A memoised UDP response shape for LB queries that carry ECS and differ only in the ECS
    address (the query's last octets, the OPT record holding nothing but that option). The
    response is ``flags`` (flags and QDCOUNT) + ANCOUNT + ``head`` (NSCOUNT, ARCOUNT, question)
    + answer section + ``opt_prefix`` + SCOPE octet + the address. With
    ``fixed`` the answer did not depend on the location (scope 0); otherwise the LB memo of
    the address's GeoIP record (``loc_key`` + record identity) supplies it and the scope."""

    counter_key: tuple[str, int, int]
    flags: bytes
    head: bytes
    opt_prefix: bytes
    max_section: int
    pad: bytes
    low_mask: int
    source: int
    fixed: _LbMemo | None
    loc_key: tuple[bytes, int, str, bool]


@dataclass(slots=True)
class _PopMemos:
    """The packet memos of one PoP, all for ``snapshot``: ``packets`` by query bytes after the
    ID, ``ecs`` by query bytes after the ID without the trailing ECS address, and
    ``ecs_address_len`` (query length → address length) to find that address."""

    snapshot: object = None
    packets: dict[bytes, _Packet] = field(default_factory=dict)
    ecs: dict[bytes, _EcsPacket] = field(default_factory=dict)
    ecs_address_len: dict[int, int] = field(default_factory=dict)

    def reset(self, snapshot: object) -> None:
        """Empty every memo (they now belong to ``snapshot``)."""
        self.packets.clear()
        self.ecs.clear()
        self.ecs_address_len.clear()
        self.snapshot = snapshot


def _memo_scope(network_prefix: int, source: int) -> int:
    """The ECS SCOPE of a location-memoised LB answer for a query with SOURCE PREFIX-LENGTH
    ``source``: the deciding GeoIP network's prefix clamped to the source; ``-1`` (ECS consulted,
    no data) gives the source, ``-2`` (location not from ECS) gives 0 (RFC 7871 §7.2.1)."""
    if network_prefix >= 0:
        return min(network_prefix, source)
    return source if network_prefix == -1 else 0


def _section_fits(out: bytes, section: bytes, qlen: int, lbm: _LbMemo, limit: int) -> tuple[int, int] | None:
    """Where the answer ``section`` sits in the LB response ``out`` (start, end), or None when
    the response is truncated, not laid out as header + question + section + rest, or some
    answer ``lbm`` can draw would not fit the ``limit`` (octets) the same way."""
    start = 12 + qlen
    end = start + len(section)
    if out[2] & 0x02 or out[start:end] != section:
        return None
    longest = max(len(c) for c in lbm.choices) if lbm.choices else len(section)
    if len(out) - len(section) + longest > limit:
        return None
    return start, end


_SCOPE_OCTET = tuple(bytes((i,)) for i in range(129))
_COUNT = tuple(i.to_bytes(2, "big") for i in range(1024))
_LB_MEMO_MAX = 50_000
_PACKET_MEMO_MAX = 10_000
"""Entries per PoP of each UDP packet memo before it is emptied."""
_PACKET_QUERY_MAX = 512
"""Longest query (octets) whose response is memoised: keys stay small whatever options a
client sends, so a memo holds at most about 10,000 × (512 + 1,500) octets per PoP."""
_PACKET_REPLY_MAX = 1500
"""Longest response (octets) that is memoised."""


@dataclass(slots=True)
class GeoLocator:
    """Per-query location computation bound to the query's ECS, resolver and PoP
    (Cloudflare API docs: Load Balancer Details › ``location_strategy``); GeoIP is consulted only
    when a policy asks."""

    geo: Callable[..., object | None] | None
    ecs: ClientSubnet | None
    resolver_ip: str
    pop: Pop

    def __call__(self, *, need: str, prefer_ecs: str, mode: str, policy: str) -> ClientLocation:
        if self.geo is None:
            return ClientLocation("pop", self.pop.country, self.pop.latitude, self.pop.longitude, self.pop.region)
        loc = resolve_location(
            prefer_ecs=prefer_ecs, mode=mode, policy=policy, need=need,
            ecs_ip=self.ecs.ip if self.ecs is not None else None,
            resolver_ip=self.resolver_ip, pop=self.pop, lookup=cast(Any, self.geo),
        )
        return ClientLocation(loc.source, loc.country, loc.latitude, loc.longitude, loc.region,
                              loc.network_prefix, loc.ecs_consulted)


class Handler:
    """Turns one DNS message into its response bytes (or None to drop it).

    ``ref`` is the published state; ``geo`` a GeoIP lookup (None disables location: the
    PoP is used); ``lookup`` the hostname-origin cache; ``rng`` the randomness source.

    ``packet_memos`` holds per PoP code a :class:`_PopMemos`. Its ``packets`` map a UDP
    query's bytes after the message ID to a :class:`_Packet`: the strict path's own response
    bytes, for answers that depend on nothing but those bytes, the snapshot and (for LB names)
    the origin states — static answers (the static memo) and memoised LB answers whose location
    did not matter, to queries without a DNS cookie (its server half depends on the client
    address) and without ECS. A repeated query is then answered by one dict lookup: the stored
    bytes with the new ID, and for an LB the answer section drawn or rotated afresh as before.
    Its ``ecs`` map does the same for LB queries with ECS that differ only in the address (the
    GeoIP record of the address picks the memoised LB answer and the scope). Only queries of at
    most 512 octets with responses of at most 1,500 are kept, at most 10,000 per memo; a new
    snapshot empties them. Not used when a query log is on (the log needs the parsed query).
    """

    def __init__(self, ref: StateRef, *, geo: Callable[..., object | None] | None = None,
                 asn_of: Callable[[IPv4Address | IPv6Address], int | None] | None = None,
                 lookup: HostLookup | None = None, rng: random.Random | None = None,
                 counters: QueryCounters | None = None, clock: Callable[[], float] = time.monotonic,
                 on_answer: Callable[..., None] | None = None) -> None:
        self.ref = ref
        self.geo = geo
        self.asn_of = asn_of
        self.lookup = lookup
        self.rng = rng or random.Random()
        self.counters = counters or QueryCounters()
        self.clock = clock
        self.on_answer = on_answer
        self.cookie_secret = os.urandom(16)
        self.lb_memo: dict[tuple[bytes, int, str], _LbMemo] = {}
        self.loc_memo: dict[tuple[bytes, int, str, bool, int], _LbMemo] = {}
        self.packet_memos: dict[str, _PopMemos] = {}
        rrl = ref.current.snapshot.settings.rrl
        self.rrl = RateLimiter(RrlParams(
            rrl.responses_per_second, rrl.nxdomains_per_second, rrl.errors_per_second, rrl.window, rrl.slip,
            rrl.ipv4_prefix_length, rrl.ipv6_prefix_length, tuple(rrl.exempt), rrl.table_size,
        ), clock, self.valid_cookie, self.wildcard_zone) if rrl.enabled else None
        """Response rate limiter for UDP answers (None when ``rrl.enabled`` is false); the
        transport applies it."""

    def wildcard_zone(self, qname: bytes) -> bytes | None:
        """The apex of the zone answering ``qname`` (lower-case wire) from a wildcard
        (RFC 4592: no such node), else None."""
        zone = find_zone(self.ref.current.snapshot, qname)[0]
        return zone.origin if zone is not None and qname not in zone.nodes else None

    def valid_cookie(self, data: bytes, peer_ip: str) -> bool:
        """True when the query ``data`` from ``peer_ip`` carries the server cookie we would
        give that client: its source address is not spoofed (RFC 7873 §5.2.3)."""
        try:
            edns = parse_query(data).edns
        except FormError:
            return False
        return (edns is not None and edns.client_cookie is not None and edns.server_cookie is not None
                and edns.server_cookie == make_server_cookie(self.cookie_secret, edns.client_cookie, peer_ip))

    def _remember(self, q: Query, pop: Pop, cur: Current, ans: Answer, ecs: ClientSubnet | None,
                  dkey: tuple[str, str, bool]) -> None:
        """Keep a cacheable LB answer: per (name, type, PoP) when no client location was
        used; per (name, type, PoP, ECS present, GeoIP record) when the location came from
        the ECS address or, with ``mode: pop``, from the PoP (never when it came from the
        resolver address, which is not part of the key)."""
        d = ans.decision
        assert d is not None and ans.lb is not None
        memo = _LbMemo(cur.snapshot, cur.health.states_token, ans, ans.rrs, tuple(rr for _, rr in ans.weighted),
                       tuple(accumulate(w for w, _ in ans.weighted)), dkey)
        loc = d.location
        if loc is None:
            if len(self.lb_memo) >= _LB_MEMO_MAX:
                self.lb_memo.clear()
            self.lb_memo[(q.qname_lower, q.qtype, pop.code)] = memo
            return
        if loc.source == "resolver" or (loc.source == "pop" and ans.lb.base.location_mode != "pop"):
            return
        rec = self.geo(ecs.packed) if (ecs is not None and self.geo is not None) else None
        memo.rec = rec
        if loc.source == "ecs" and loc.network_prefix is not None:
            memo.network_prefix = loc.network_prefix
        elif loc.ecs_consulted:
            memo.network_prefix = -1  # consulted but no data: SCOPE = SOURCE (RFC 7871 §7.2.1)
        if len(self.loc_memo) >= _LB_MEMO_MAX * 4:
            self.loc_memo.clear()
        self.loc_memo[(q.qname_lower, q.qtype, pop.code, ecs is not None, id(rec))] = memo

    def _pop_memos(self, pop: Pop, cur: Current) -> _PopMemos:
        memos = self.packet_memos.get(pop.code)
        if memos is None:
            memos = self.packet_memos[pop.code] = _PopMemos()
        if memos.snapshot is not cur.snapshot:
            memos.reset(cur.snapshot)
        return memos

    def _remember_packet(self, data: bytes, cur: Current, pop: Pop, packet: _Packet, reply_len: int) -> None:
        if len(data) > _PACKET_QUERY_MAX or reply_len > _PACKET_REPLY_MAX:
            return
        packets = self._pop_memos(pop, cur).packets
        if len(packets) >= _PACKET_MEMO_MAX:
            packets.clear()
        packets[data[2:]] = packet

    def _remember_lb_packet(self, data: bytes, cur: Current, pop: Pop, lbm: _LbMemo,
                            counter_key: tuple[str, int, int], out: bytes, section: bytes, qlen: int,
                            limit: int) -> None:
        """Keep the parts around the answer section of an LB response, when every answer the
        memo can draw fits the same way (:func:`_section_fits`)."""
        bounds = _section_fits(out, section, qlen, lbm, limit)
        if bounds is None:
            return
        start, end = bounds
        self._remember_packet(data, cur, pop, _Packet(counter_key, out[2:start], lbm, out[end:]), len(out))

    def _ecs_hit(self, memos: _PopMemos, data: bytes, alen: int, cur: Current) -> bytes | None:
        """The response to an ECS query from ``memos.ecs``, or None (strict path)."""
        t = memos.ecs.get(data[2:-alen])
        if t is None:
            return None
        address = data[-alen:]
        if address[-1] & t.low_mask:
            return None  # bits beyond the source prefix: the strict path answers FORMERR
        lbm = t.fixed
        scope = 0
        if lbm is None:
            rec = self.geo(address + t.pad) if self.geo is not None else None
            lbm = self.loc_memo.get((*t.loc_key, id(rec)))
            if lbm is None or lbm.rec is not rec:
                return None
            scope = _memo_scope(lbm.network_prefix, t.source)
        ancount = lbm.answer.ancount
        if lbm.health is not cur.health.states_token or lbm.snapshot is not cur.snapshot or ancount >= 1024:
            return None
        section = lbm.data(self.rng)
        if len(section) > t.max_section:
            return None
        self.counters.decisions[lbm.decision_key] += 1
        self.counters.queries[t.counter_key] += 1
        return (data[:2] + t.flags + _COUNT[ancount] + t.head + section + t.opt_prefix + _SCOPE_OCTET[scope]
                + address)

    def _remember_ecs_packet(self, data: bytes, cur: Current, pop: Pop, q: Query, ecs: ClientSubnet,
                             lbm: _LbMemo, located: bool, scope: int, counter_key: tuple[str, int, int],
                             out: bytes, section: bytes, limit: int) -> None:
        """Keep the shape of an ECS LB response when the query ends with an OPT record whose
        only option is the ECS option, so that a query differing only in the address can be
        answered from the PoP's ``ecs`` memo. ``located``: ``lbm`` came from the location memo
        (another address may need another entry) rather than being the same for every client."""
        address = ecs.address
        alen = len(address)
        n = len(data)
        if alen == 0 or n > _PACKET_QUERY_MAX or len(out) > _PACKET_REPLY_MAX:
            return
        if (data[n - alen:] != address or data[n - alen - 8:n - alen - 6] != b"\x00\x08"
                or data[n - alen - 10:n - alen - 8] != (8 + alen).to_bytes(2, "big")):
            return
        bounds = _section_fits(out, section, len(q.question), lbm, limit)
        if bounds is None or out[len(out) - alen:] != address or out[len(out) - alen - 1] != scope:
            return
        start, end = bounds
        memos = self._pop_memos(pop, cur)
        if len(memos.ecs) >= _PACKET_MEMO_MAX:
            memos.ecs.clear()
            memos.ecs_address_len.clear()
        bits = ecs.source_prefix % 8
        memos.ecs[data[2:n - alen]] = _EcsPacket(
            counter_key, out[2:6], out[8:start], out[end:len(out) - alen - 1],
            limit - (len(out) - len(section)), bytes((4 if ecs.family == 1 else 16) - alen),
            (0xFF >> bits) if bits else 0, ecs.source_prefix, None if located else lbm,
            (q.qname_lower, q.qtype, pop.code, True))
        memos.ecs_address_len[n] = alen

    def _country_of(self, ip: IPv4Address | IPv6Address) -> str | None:
        if self.geo is None:
            return None
        rec = self.geo(ip)
        return getattr(rec, "country", None) if rec is not None else None

    def handle(self, data: bytes, peer_ip: str, tcp: bool, pop: Pop) -> bytes | None:
        """Answer one message from ``peer_ip`` received at PoP ``pop``.

        Returns the response bytes, or None when the packet must be dropped. Never raises.
        """
        if not tcp and (memos := self.packet_memos.get(pop.code)) is not None:
            cur = self.ref.current
            if memos.snapshot is not cur.snapshot:
                memos.reset(None)  # a reload: drop the old snapshot's entries (and references)
            elif (hit := memos.packets.get(data[2:])) is not None:
                lbm = hit.memo
                if lbm is None:
                    self.counters.queries[hit.counter_key] += 1
                    return data[:2] + hit.head
                if lbm.health is cur.health.states_token:
                    self.counters.decisions[lbm.decision_key] += 1
                    self.counters.queries[hit.counter_key] += 1
                    return data[:2] + hit.head + lbm.data(self.rng) + hit.tail
            elif (alen := memos.ecs_address_len.get(len(data))) is not None:
                out = self._ecs_hit(memos, data, alen, cur)
                if out is not None:
                    return out
        try:
            q = parse_query(data)
        except FormError as exc:
            if not exc.answerable:
                self.counters.dropped += 1
                return None
            return self._malformed(data, exc, peer_ip, tcp)
        try:
            return self._answer(q, peer_ip, tcp, pop, data)
        except Exception:
            self.counters.internal_errors += 1
            log.exception("internal error answering %r/%d", q.qname, q.qtype)
            return build_response(q, rcode=RCODE_SERVFAIL, aa=False,
                                  max_size=65535 if tcp else 512)

    def _malformed(self, data: bytes, exc: FormError, peer_ip: str, tcp: bool) -> bytes | None:
        """The reply to a message with a readable header that did not parse as a query.

        An opcode we do not implement is NOTIMP whatever its sections hold (RFC 1035 §4.1.1;
        e.g. DSO messages carry QDCOUNT 0, RFC 8490 §5.1.1), anything else FORMERR. When the
        request carried an OPT record the reply carries one (RFC 6891 §6.1.1, §7); an EDNS
        version above 0 in a QUERY is BADVERS (RFC 6891 §6.1.3). A QDCOUNT of 0 with a COOKIE option is
        the query for a server cookie (RFC 7873 §5.4): NOERROR with the client cookie and our
        server cookie, or BADCOOKIE when the server cookie sent back is not the valid one.
        """
        opcode = (data[2] >> 3) & 0xF
        rcode = RCODE_FORMERR if opcode == OPCODE_QUERY else RCODE_NOTIMP
        payload = self.ref.current.snapshot.settings.edns_udp_payload
        out: bytes | None
        if isinstance(exc, QuestionCountError) and exc.edns is not None:
            edns = exc.edns
            cookie = None
            if rcode == RCODE_FORMERR and edns.version > 0:  # NOTIMP first, as for parsed queries
                rcode = RCODE_BADVERS
            elif rcode == RCODE_FORMERR and exc.qdcount == 0 and edns.client_cookie is not None:
                server = make_server_cookie(self.cookie_secret, edns.client_cookie, peer_ip)
                valid = edns.server_cookie is None or hmac.compare_digest(edns.server_cookie, server)
                rcode = RCODE_NOERROR if valid else RCODE_BADCOOKIE
                cookie = edns.client_cookie + server
            out = build_headless(data, rcode, edns, edns_payload=payload, cookie=cookie)
        else:
            out = build_error(data, rcode, edns_payload=payload if isinstance(exc, EdnsOptionError) else None)
        self.counters.queries[("tcp" if tcp else "udp", 0, rcode)] += 1
        return out

    def _answer(self, q: Query, peer_ip: str, tcp: bool, pop: Pop, data: bytes) -> bytes:  # noqa: C901, PLR0912, PLR0915 -- per-query hot path in one frame; split only with a bench comparison
        cur = self.ref.current
        settings = cur.snapshot.settings
        ours = settings.edns_udp_payload
        edns = q.edns
        limit = 65535 if tcp else (max(512, min(edns.payload, ours)) if edns is not None else 512)
        cookie: bytes | None = None
        nsid: bytes | None = None
        if edns is not None:
            if edns.client_cookie is not None:
                cookie = make_server_cookie(self.cookie_secret, edns.client_cookie, peer_ip)
            if edns.nsid:
                nsid = settings.nsid_wire
        if q.opcode != OPCODE_QUERY:
            rcode = RCODE_NOTIMP
        elif edns is not None and edns.version > 0:
            rcode = RCODE_BADVERS
        elif q.qclass != CLASS_IN or q.qtype in (QTYPE_AXFR, QTYPE_IXFR):
            rcode = RCODE_REFUSED
        else:
            rcode = -1
        if rcode >= 0:
            self.counters.queries[("tcp" if tcp else "udp", QTYPE_BUCKET[q.qtype], rcode)] += 1
            return build_response(q, rcode=rcode, aa=False, max_size=limit, edns_payload=ours,
                                  server_cookie=cookie, nsid=nsid)
        ecs = edns.ecs if edns is not None else None
        # a /0 ECS carries no client information (docs/decisions.md › DNS protocol)
        ecs_for_answer = None if ecs is not None and ecs.source_prefix == 0 else ecs
        memo = snapshot_cache(cur.snapshot)
        ans = memo.get((q.qname_lower, q.qtype))
        static = ans is not None
        if ans is None:
            lbm = self.lb_memo.get((q.qname_lower, q.qtype, pop.code))
            scope = 0
            located = lbm is None
            if lbm is None and self.loc_memo:
                rec = self.geo(ecs_for_answer.packed) if (ecs_for_answer is not None and self.geo is not None) else None
                lbm = self.loc_memo.get((q.qname_lower, q.qtype, pop.code, ecs_for_answer is not None, id(rec)))
                if lbm is not None and lbm.rec is not rec:
                    lbm = None
                if lbm is not None and ecs_for_answer is not None:
                    scope = _memo_scope(lbm.network_prefix, ecs_for_answer.source_prefix)
            if lbm is not None and lbm.health is cur.health.states_token and lbm.snapshot is cur.snapshot:
                self.counters.decisions[lbm.decision_key] += 1
                a = lbm.answer
                counter_key = ("tcp" if tcp else "udp", QTYPE_BUCKET[q.qtype], a.rcode)
                self.counters.queries[counter_key] += 1
                section = lbm.data(self.rng)
                out = build_response(q, rcode=a.rcode, aa=True, answer=section, ancount=a.ancount,
                                     max_size=limit, edns_payload=ours, ecs_scope=scope if ecs is not None else None,
                                     server_cookie=cookie) if nsid is None else build_response(
                    q, rcode=a.rcode, aa=True, answer=section, ancount=a.ancount, max_size=limit, edns_payload=ours,
                    ecs_scope=scope if ecs is not None else None, server_cookie=cookie, nsid=nsid)
                if self.on_answer is not None:
                    self.on_answer(q, peer_ip, tcp, pop, a)
                elif not tcp and cookie is None:
                    if ecs is None and not located:
                        self._remember_lb_packet(data, cur, pop, lbm, counter_key, out, section, len(q.question),
                                                 limit)
                    elif ecs_for_answer is not None:
                        self._remember_ecs_packet(data, cur, pop, q, ecs_for_answer, lbm, located, scope,
                                                  counter_key, out, section, limit)
                return out
        if ans is None:
            env = QueryEnv(
                resolver_ip=peer_ip, ecs=ecs_for_answer, pop=pop.code, pop_region=pop.region, health=cur.health,
                rng=self.rng, now=self.clock(), lookup=self.lookup,
                locator=GeoLocator(self.geo, ecs_for_answer, peer_ip, pop),
                asn_of=self.asn_of, country_of=self._country_of, ip_src_uses_ecs=settings.ip_src_uses_ecs,
            )
            ans = resolve(cur.snapshot, q.qname_lower, q.qtype, env)
            if ans.lb is not None:
                d = ans.decision
                if d is not None:  # None: an ANY query at the LB name, rules evaluated only
                    dkey = (ans.lb.name, d.pool.name if d.pool else "", d.fallback)
                    self.counters.decisions[dkey] += 1
                    if ans.rrs or ans.weighted:
                        self._remember(q, pop, cur, ans, ecs_for_answer, dkey)
                for name in ans.matched_rules:
                    self.counters.rule_matches[(ans.lb.name, name)] += 1
        counter_key = ("tcp" if tcp else "udp", QTYPE_BUCKET[q.qtype], ans.rcode)
        self.counters.queries[counter_key] += 1
        if ans.opcount or nsid is not None:  # keyword arguments cost: only pass these when used
            out = build_response(
                q, rcode=ans.rcode, aa=ans.aa, answer=ans.answer, ancount=ans.ancount,
                authority=ans.authority, nscount=ans.nscount, additional=ans.additional, arcount=ans.arcount,
                max_size=limit, edns_payload=ours, ecs_scope=ans.ecs_scope if ecs is not None else None,
                server_cookie=cookie, nsid=nsid, optional=ans.optional, opcount=ans.opcount,
                optional_parts=ans.optional_parts,
            )
        else:
            out = build_response(
                q, rcode=ans.rcode, aa=ans.aa, answer=ans.answer, ancount=ans.ancount,
                authority=ans.authority, nscount=ans.nscount, additional=ans.additional, arcount=ans.arcount,
                max_size=limit, edns_payload=ours, ecs_scope=ans.ecs_scope if ecs is not None else None,
                server_cookie=cookie,
            )
        if self.on_answer is not None:
            self.on_answer(q, peer_ip, tcp, pop, ans)
        elif static and not tcp and (edns is None or (edns.client_cookie is None and ecs is None)):
            self._remember_packet(data, cur, pop, _Packet(counter_key, out[2:]), len(out))
        return out
