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
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any, cast

from lbdns.answer import Answer, QueryEnv, find_zone, resolve
from lbdns.errors import FormError
from lbdns.geo.location import resolve_location
from lbdns.geo.pops import Pop
from lbdns.geo.regions import RegionMap
from lbdns.server.counters import QTYPE_BUCKET, QueryCounters
from lbdns.server.rrl import RateLimiter, RrlParams
from lbdns.server.state import Current, StateRef
from lbdns.serving import resolver_decided
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
from lbdns.wire.render import build_error, build_headless, build_response, server_cookie_key

log = logging.getLogger("lbdns.server")

_COOKIES = 65536
"""Server cookies kept per (client cookie, address); emptied when full."""


@dataclass(slots=True)
class GeoLocator:
    """Per-query location computation bound to the query's ECS, resolver and PoP
    (Cloudflare API docs: Load Balancer Details › ``location_strategy``); GeoIP is consulted only
    when a policy asks. ``regions`` maps a looked-up country to its region; without ``geo`` or
    ``regions`` the PoP is the location."""

    geo: Callable[..., object | None] | None
    ecs: ClientSubnet | None
    resolver_ip: str
    pop: Pop
    regions: RegionMap | None
    known: dict[object, object | None] = field(default_factory=dict)
    """The GeoIP lookups made for this query (argument → record): each address is looked up once."""

    def lookup(self, ip: object) -> object | None:
        """The GeoIP record of ``ip`` (packed ECS address or resolver address text), or None."""
        try:
            return self.known[ip]
        except KeyError:
            rec = self.known[ip] = self.geo(ip) if self.geo is not None else None
            return rec

    def __call__(self, *, need: str, prefer_ecs: str, mode: str, policy: str) -> ClientLocation:
        if self.geo is None or self.regions is None:
            return ClientLocation("pop", self.pop.country, self.pop.latitude, self.pop.longitude, self.pop.region)
        loc = resolve_location(
            prefer_ecs=prefer_ecs, mode=mode, policy=policy, need=need,
            ecs_ip=self.ecs.packed if self.ecs is not None else None,
            resolver_ip=self.resolver_ip, pop=self.pop, lookup=cast(Any, self.lookup), regions=self.regions,
        )
        return ClientLocation(loc.source, loc.country, loc.latitude, loc.longitude, loc.region,
                              loc.network_prefix, loc.ecs_consulted)


class Handler:
    """Turns one DNS message into its response bytes (or None to drop it).

    ``ref`` is the published state; ``geo`` a GeoIP lookup (None disables location: the
    PoP is used) and ``regions`` the region table its countries map through (required with
    ``geo``); ``lookup`` the hostname-origin cache; ``rng`` the randomness source;
    ``on_answer`` the query-log hook, called with the parsed query and the answer.

    A query is answered from the serving plan of the published state when the plan holds its
    answer (:meth:`lbdns.serving.ServingPlan.respond`), else on the strict path
    (:meth:`strict`: parse, :func:`~lbdns.answer.resolve`, render), which teaches the plan
    what it computed (docs/architecture.md › One query).
    """

    def __init__(self, ref: StateRef, *, geo: Callable[..., object | None] | None = None,
                 asn_of: Callable[[IPv4Address | IPv6Address], int | None] | None = None,
                 lookup: HostLookup | None = None, rng: random.Random | None = None,
                 counters: QueryCounters | None = None, clock: Callable[[], float] = time.monotonic,
                 on_answer: Callable[..., None] | None = None, regions: RegionMap | None = None) -> None:
        if geo is not None and regions is None:
            raise ValueError("a GeoIP lookup needs the region table (regions=)")
        self.ref = ref
        self.geo = geo
        self.regions = regions
        self.asn_of = asn_of
        self.lookup = lookup
        self.rng = rng or random.Random()
        self.counters = counters or QueryCounters()
        self.clock = clock
        self.on_answer = on_answer
        self.cookie_secret = os.urandom(16)
        """The server secret of DNS cookies (RFC 7873 §7.1); workers of one server share it."""
        self.looked_up: tuple[object, object | None] | None = None
        """The serving plan's GeoIP lookup for a query it left to the strict path (argument, record);
        :meth:`handle` takes it for that query and clears it."""
        rrl = ref.current.snapshot.settings.rrl
        self.rrl = RateLimiter(RrlParams(
            rrl.responses_per_second, rrl.nxdomains_per_second, rrl.errors_per_second, rrl.window, rrl.slip,
            rrl.ipv4_prefix_length, rrl.ipv6_prefix_length, tuple(rrl.exempt), rrl.table_size,
        ), clock, self.valid_cookie, self.wildcard_zone) if rrl.enabled else None
        """Response rate limiter for UDP answers (None when ``rrl.enabled`` is false); the
        transport applies it."""

    @property
    def cookie_secret(self) -> bytes:
        return self._cookie_secret

    @cookie_secret.setter
    def cookie_secret(self, secret: bytes) -> None:
        self._cookie_secret = secret
        compute = server_cookie_key(secret)
        known: dict[tuple[bytes, str], bytes] = {}

        def server_cookie(client_cookie: bytes, peer_ip: str) -> bytes:
            try:
                return known[client_cookie, peer_ip]
            except KeyError:
                if len(known) >= _COOKIES:
                    known.clear()
                out = known[client_cookie, peer_ip] = compute(client_cookie, peer_ip)
                return out

        self.server_cookie = server_cookie
        """Our 8-octet server cookie for a client cookie from a peer address text (RFC 7873 §4.2),
        kept per (client cookie, address) for this secret: a resolver keeps its client cookie for
        a server (RFC 7873 §5.1), so its next queries cost a dict lookup, not a BLAKE2b."""

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
                and edns.server_cookie == self.server_cookie(edns.client_cookie, peer_ip))

    def _country_of(self, ip: IPv4Address | IPv6Address) -> str | None:
        if self.geo is None:
            return None
        rec = self.geo(ip)
        return getattr(rec, "country", None) if rec is not None else None

    def handle(self, data: bytes, peer_ip: str, tcp: bool, pop: Pop) -> bytes | None:
        """Answer one message from ``peer_ip`` received at PoP ``pop``.

        Returns the response bytes, or None when the packet must be dropped. Never raises.
        """
        cur = self.ref.current
        try:
            hit = cur.plan.respond(data, peer_ip, tcp, pop.code, self)
        except Exception:
            hit = None
            self.counters.internal_errors += 1
            log.exception("internal error in the serving plan")
        if hit is None:
            looked_up, self.looked_up = self.looked_up, None  # handed over to this query only
            return self.strict(data, peer_ip, tcp, pop, cur, looked_up)
        if self.on_answer is not None:
            self.on_answer(parse_query(data), peer_ip, tcp, pop, hit[1])
        return hit[0]

    def strict(self, data: bytes, peer_ip: str, tcp: bool, pop: Pop, cur: Current,
               looked_up: tuple[object, object | None] | None = None) -> bytes | None:
        """The strict path: parse every field, check, :func:`~lbdns.answer.resolve`, render.
        ``looked_up`` is the serving plan's GeoIP lookup for this query (argument, record), reused."""
        try:
            q = parse_query(data)
        except FormError as exc:
            if not exc.answerable:
                self.counters.dropped += 1
                return None
            return self._malformed(data, exc, peer_ip, tcp)
        try:
            return self._answer(q, peer_ip, tcp, pop, cur, looked_up)
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
                server = self.server_cookie(edns.client_cookie, peer_ip)
                valid = edns.server_cookie is None or hmac.compare_digest(edns.server_cookie, server)
                rcode = RCODE_NOERROR if valid else RCODE_BADCOOKIE
                cookie = edns.client_cookie + server
            out = build_headless(data, rcode, edns, edns_payload=payload, cookie=cookie)
        else:
            out = build_error(data, rcode, edns_payload=payload if isinstance(exc, EdnsOptionError) else None)
        self.counters.queries[("tcp" if tcp else "udp", 0, rcode)] += 1
        return out

    def _answer(self, q: Query, peer_ip: str, tcp: bool, pop: Pop, cur: Current,
                looked_up: tuple[object, object | None] | None) -> bytes:
        settings = cur.snapshot.settings
        ours = settings.edns_udp_payload
        edns = q.edns
        limit = 65535 if tcp else (max(512, min(edns.payload, ours)) if edns is not None else 512)
        cookie = nsid = None
        if edns is not None:
            if edns.client_cookie is not None:
                cookie = self.server_cookie(edns.client_cookie, peer_ip)
            if edns.nsid:
                nsid = settings.nsid_wire
        rcode = _refusal(q)
        if rcode >= 0:
            self.counters.queries[("tcp" if tcp else "udp", QTYPE_BUCKET[q.qtype], rcode)] += 1
            return build_response(q, rcode=rcode, aa=False, max_size=limit, edns_payload=ours,
                                  server_cookie=cookie, nsid=nsid)
        ecs = edns.ecs if edns is not None else None
        # a /0 ECS carries no client information (docs/decisions.md › DNS protocol)
        ecs_for_answer = None if ecs is not None and ecs.source_prefix == 0 else ecs
        locator = GeoLocator(self.geo, ecs_for_answer, peer_ip, pop, self.regions)
        if looked_up is not None:
            locator.known[looked_up[0]] = looked_up[1]
        env = QueryEnv(
            resolver_ip=peer_ip, ecs=ecs_for_answer, pop=pop.code, pop_region=pop.region, health=cur.health,
            rng=self.rng, now=self.clock(), lookup=self.lookup,
            locator=locator, asn_of=self.asn_of, country_of=self._country_of,
            ip_src_uses_ecs=settings.ip_src_uses_ecs,
        )
        ans = resolve(cur.snapshot, q.qname_lower, q.qtype, env)
        if ans.lb is not None:
            self._count_lb(q, peer_ip, pop, cur, ans, ecs_for_answer, locator)
        self.counters.queries[("tcp" if tcp else "udp", QTYPE_BUCKET[q.qtype], ans.rcode)] += 1
        out = build_response(
            q, rcode=ans.rcode, aa=ans.aa, answer=ans.answer, ancount=ans.ancount,
            authority=ans.authority, nscount=ans.nscount, additional=ans.additional, arcount=ans.arcount,
            max_size=limit, edns_payload=ours, ecs_scope=ans.ecs_scope if ecs is not None else None,
            server_cookie=cookie, nsid=nsid, optional=ans.optional, opcount=ans.opcount,
            optional_parts=ans.optional_parts,
        )
        if self.on_answer is not None:
            self.on_answer(q, peer_ip, tcp, pop, ans)
        return out

    def _count_lb(self, q: Query, peer_ip: str, pop: Pop, cur: Current, ans: Answer,
                  ecs: ClientSubnet | None, locator: GeoLocator) -> None:
        """Count an LB decision and its matched rules; hand a cacheable one to the plan."""
        assert ans.lb is not None
        d = ans.decision
        if d is not None:  # None: an ANY query at the LB name, rules evaluated only
            dkey = (ans.lb.name, d.pool.name if d.pool else "", d.fallback)
            self.counters.decisions[dkey] += 1
            if q.qclass == CLASS_IN and (ans.rrs or ans.weighted):
                rec = locator.lookup(ecs.packed if ecs is not None else peer_ip)
                resolver_rec = locator.lookup(peer_ip) if ecs is not None and resolver_decided(ans) else None
                cur.plan.learn_lb(q.qname_lower + q.question[-4:], pop.code, ans, ecs is not None, rec, dkey,
                                  q.qtype, resolver_rec)
        for name in ans.matched_rules:
            self.counters.rule_matches[(ans.lb.name, name)] += 1


def _refusal(q: Query) -> int:
    """The error rcode of a query the answer logic does not see, else -1: NOTIMP for other
    opcodes, BADVERS for EDNS versions > 0 (RFC 6891 §6.1.3), REFUSED for other classes and
    zone transfers."""
    if q.opcode != OPCODE_QUERY:
        return RCODE_NOTIMP
    if q.edns is not None and q.edns.version > 0:
        return RCODE_BADVERS
    if q.qclass != CLASS_IN or q.qtype in (QTYPE_AXFR, QTYPE_IXFR):
        return RCODE_REFUSED
    return -1
