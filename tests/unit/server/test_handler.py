"""Unit tests of :meth:`lbdns.server.handler.Handler.handle`: query bytes built with dnspython in,
response bytes out, no sockets. Covers the error rcodes (RFC 1035 §4.1.1, RFC 6891 §6.1.3), UDP
truncation, SERVFAIL on internal errors, and the memo paths (static packets, LB answers that
rotate or redraw per query, ECS shapes) against the strict path, including the weighted
statistics that used to need 10,000 queries over sockets (Cloudflare docs: Load Balancing ›
Origin steering; › Load shedding; docs/steering.md).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from lbdns.geo.data import default_regions
from lbdns.geo.location import StaticGeoTable
from lbdns.health.view import OriginState
from lbdns.server.handler import Handler
from lbdns.server.state import Current, StateRef
from lbdns.wire.render import make_server_cookie
from tests.fixtures.geo import BASE_GEO_TABLE, BASE_POPS
from tests.fixtures.snapshots import Built, build, build_dir, healthy, query_wire
from tests.integration.harness import Fixture
from tests.integration.static_zone import BIG_ADDRS, write_static_zones

U = OriginState.UNHEALTHY
IAD, LHR = BASE_POPS["IAD"], BASE_POPS["LHR"]
GEO = StaticGeoTable.from_mapping(BASE_GEO_TABLE)
EAST = frozenset({"192.0.2.10", "192.0.2.11"})
WEST = frozenset({"192.0.2.20", "192.0.2.21"})
EU = frozenset({"192.0.2.30", "192.0.2.31"})
ASIA = frozenset({"192.0.2.40"})
WA, WB = frozenset({"192.0.2.60"}), frozenset({"192.0.2.61"})
N = 10_000
TOL = 0.02
PEER = "198.51.100.5"


def asn_of(ip: Any) -> int | None:
    rec = GEO.lookup(ip)
    return rec.asn if rec is not None else None


def make_handler(b: Built, *, geo: Callable[..., Any] | None = GEO.lookup, seed: int = 1, **kw: Any) -> Handler:
    ref = StateRef(Current(b.snapshot, healthy(b.snapshot)))
    return Handler(ref, geo=geo, asn_of=asn_of, rng=random.Random(seed), clock=lambda: 1000.0,
                   regions=default_regions(), **kw)


def lb_fixture(tmp_path: Path, **lb: Any) -> Built:
    fx = Fixture()
    fx.lb.update(lb)
    return build(fx, tmp_path)


def reply(h: Handler, wire: bytes, *, peer: str = PEER, tcp: bool = False, pop: Any = IAD) -> dns.message.Message:
    out = h.handle(wire, peer, tcp, pop)
    assert out is not None and out[:2] == wire[:2]
    return dns.message.from_wire(out)


def addrs(msg: dns.message.Message) -> frozenset[str]:
    return frozenset(rd.to_text() for r in msg.answer if r.rdtype in (1, 28) for rd in r)


_DECODED: dict[bytes, frozenset[str]] = {}


def answer_of(h: Handler, wire: bytes, peer: str) -> frozenset[str]:
    """The answer addresses of one UDP exchange (each distinct response decoded once)."""
    out = h.handle(wire, peer, False, IAD)
    assert out is not None and out[:2] == wire[:2]
    got = _DECODED.get(out)
    if got is None:
        got = _DECODED[out] = addrs(dns.message.from_wire(out))
    return got


def tally(h: Handler, wire: bytes, n: int = N, **kw: Any) -> Counter[frozenset[str]]:
    """Answers to ``n`` copies of one query: counted as raw responses, each distinct one decoded
    once (decoding 10,000 messages with dnspython would dominate the test)."""
    peer, tcp, pop = kw.get("peer", PEER), kw.get("tcp", False), kw.get("pop", IAD)
    raw: Counter[bytes | None] = Counter(h.handle(wire, peer, tcp, pop) for _ in range(n))
    out: Counter[frozenset[str]] = Counter()
    for data, count in raw.items():
        assert data is not None and data[:2] == wire[:2]
        out[addrs(dns.message.from_wire(data))] += count
    return out


def ecs_scope(msg: dns.message.Message) -> int | None:
    return next((o.scopelen for o in msg.options if isinstance(o, dns.edns.ECSOption)), None)


# --- errors and header handling -------------------------------------------------------------------

@pytest.fixture(scope="module")
def static(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_dir(write_static_zones(tmp_path_factory.mktemp("static")))


def test_answer_echoes_id_and_question(static):
    h = make_handler(static, geo=None)
    msg = reply(h, query_wire("WwW.Example.COM", qid=0xBEEF))
    assert msg.id == 0xBEEF and msg.flags & dns.flags.QR and msg.flags & dns.flags.AA
    assert msg.question[0].name.to_text() == "WwW.Example.COM."
    assert addrs(msg) == {"192.0.2.80"}
    assert h.counters.queries[("udp", 1, 0)] == 1


def _edit(wire: bytes, **changes: Any) -> bytes:
    msg = dns.message.from_wire(wire)
    for key, value in changes.items():
        if key == "opcode":
            msg.set_opcode(value)
        elif key == "edns_version":
            msg.use_edns(value)
        elif key == "rdclass":
            msg.question[0].rdclass = value
    return msg.to_wire()


ERRORS: list[tuple[str, Callable[[], bytes], int | None]] = [
    ("short-header-dropped", lambda: b"\x00\x01\x00", None),
    ("response-dropped", lambda: bytes([0, 1, 0x80]) + query_wire("www.example.com")[3:], None),
    ("no-question-formerr", lambda: query_wire("www.example.com")[:4] + b"\x00\x00" + b"\x00" * 6,
     dns.rcode.FORMERR),
    ("trailing-garbage-formerr", lambda: query_wire("www.example.com", edns=False) + b"\xff", dns.rcode.FORMERR),
    ("opcode-notify-notimp", lambda: _edit(query_wire("www.example.com"), opcode=dns.opcode.NOTIFY),
     dns.rcode.NOTIMP),
    ("opcode-update-notimp", lambda: _edit(query_wire("www.example.com"), opcode=dns.opcode.UPDATE),
     dns.rcode.NOTIMP),
    ("edns-version-1-badvers", lambda: _edit(query_wire("www.example.com"), edns_version=1), dns.rcode.BADVERS),
    ("class-chaos-refused", lambda: query_wire("www.example.com")[:-11 - 4] + b"\x00\x01\x00\x03"
     + query_wire("www.example.com")[-11:], dns.rcode.REFUSED),
    ("axfr-refused", lambda: query_wire("example.com", "AXFR"), dns.rcode.REFUSED),
    ("ixfr-refused", lambda: query_wire("example.com", "IXFR"), dns.rcode.REFUSED),
]


@pytest.mark.parametrize(("make", "rcode"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_error_table(static, make, rcode):
    h = make_handler(static, geo=None)
    data = make()
    out = h.handle(data, PEER, False, IAD)
    if rcode is None:
        assert out is None and h.counters.dropped == 1
        return
    assert out is not None and out[:2] == data[:2]
    assert len(out) <= len(data) + 11  # never amplified: at most the question and an OPT record
    flags = int.from_bytes(out[2:4], "big")
    assert flags & 0x8000 and not flags & 0x0400  # QR set, AA clear
    assert int.from_bytes(out[6:8], "big") == 0  # no answer
    if rcode > 15:  # extended rcode: the upper bits travel in the OPT record (RFC 6891 §6.1.3)
        assert dns.message.from_wire(out).rcode() == rcode
    else:
        assert flags & 0xF == rcode


def test_udp_truncation_and_tcp_whole(static):
    h = make_handler(static, geo=None)
    small = reply(h, query_wire("big.example.com", edns=False))
    assert small.flags & dns.flags.TC and small.answer == []
    assert len(h.handle(query_wire("big.example.com", edns=False), PEER, False, IAD) or b"") <= 512
    whole = reply(h, query_wire("big.example.com", edns=False), tcp=True)
    assert not whole.flags & dns.flags.TC and addrs(whole) == set(BIG_ADDRS)
    fits = reply(h, query_wire("big.example.com", payload=4096))
    assert not fits.flags & dns.flags.TC and addrs(fits) == set(BIG_ADDRS)


def plan_entry(h: Handler, name: str, qtype: int = 1) -> Any:
    """The serving plan's entry for (name, qtype, IN), or None."""
    return h.ref.current.plan.names.get(query_wire(name, qtype, edns=False)[12:])


def strict(h: Handler, wire: bytes, *, peer: str = PEER, tcp: bool = False, pop: Any = IAD) -> dns.message.Message:
    """The strict path's response (no serving plan)."""
    out = h.strict(wire, peer, tcp, pop, h.ref.current)
    assert out is not None
    return dns.message.from_wire(out)


def test_cookie_answered_from_the_plan_per_client(static):
    h = make_handler(static, geo=None)
    wire = dns.message.make_query("www.example.com", "A", use_edns=0,
                                  options=[dns.edns.GenericOption(10, b"\x01" * 8)]).to_wire()
    msg = reply(h, wire)
    cookie = next(o for o in msg.options if o.otype == 10)
    assert cookie.to_wire()[:8] == b"\x01" * 8 and len(cookie.to_wire()) == 16  # client + server cookie
    assert plan_entry(h, "www.example.com") is not None
    again, other = reply(h, wire), reply(h, wire, peer="198.51.100.6")
    assert again.to_wire() == msg.to_wire() == strict(h, wire).to_wire()
    assert next(o for o in other.options if o.otype == 10).to_wire() != cookie.to_wire()  # per client address


def test_server_cookie_kept_per_client_cookie_and_address_and_new_with_a_new_secret(static):
    """The kept server cookies are exactly RFC 7873 §4.2's derivation for the current secret:
    per client cookie and address, and recomputed when the secret is rotated."""
    h = make_handler(static, geo=None)
    pairs = [(bytes([i]) * 8, f"198.51.100.{j}") for i in range(3) for j in range(3)]
    for secret in (b"\x01" * 16, b"\x02" * 16):
        h.cookie_secret = secret
        for _ in range(2):
            for client, peer in pairs:
                assert h.server_cookie(client, peer) == make_server_cookie(secret, client, peer)


def test_static_plan_entry_any_case_new_id_and_dropped_on_reload(static, tmp_path):
    h = make_handler(static, geo=None)
    first = reply(h, query_wire("www.example.com", qid=1))
    assert plan_entry(h, "www.example.com") is not None
    mixed = query_wire("wWw.ExAmple.COM", qid=7)
    out = h.handle(mixed, PEER, False, IAD)
    assert out is not None and out[12:12 + 17] == mixed[12:12 + 17]  # the question echoed in the client's case
    assert out == h.strict(mixed, PEER, False, IAD, h.ref.current)
    h.counters.queries.clear()
    again = reply(h, query_wire("www.example.com", qid=2))
    assert again.id == 2 and again.answer == first.answer
    assert h.counters.queries[("udp", 1, 0)] == 1
    other = Fixture()
    other.zone["records"]["www"] = {"type": "A", "ttl": 300, "value": "192.0.2.99"}
    h.ref.publish_snapshot(build(other, tmp_path).snapshot)
    assert addrs(reply(h, query_wire("www.example.com", qid=3))) == {"192.0.2.99"}


def test_internal_error_is_servfail_and_counted(tmp_path):
    b = lb_fixture(tmp_path, steering_policy="proximity", default_pools=["p-us-east", "p-us-west"])

    def broken_geo(ip: Any) -> Any:
        raise RuntimeError("geo database exploded")

    h = make_handler(b, geo=broken_geo)
    msg = reply(h, query_wire("lb.example.com", ecs="198.51.100.64/26"))
    assert msg.rcode() == dns.rcode.SERVFAIL and not msg.flags & dns.flags.AA
    assert h.counters.internal_errors == 1
    assert reply(h, query_wire("nope.example.com")).rcode() == dns.rcode.NXDOMAIN  # still answering


def test_on_answer_hook_sees_every_query_and_keeps_the_plan(static):
    seen: list[tuple[str, bool, bytes]] = []
    h = make_handler(static, geo=None,
                     on_answer=lambda q, peer, tcp, pop, ans: seen.append((peer, tcp, q.qname_lower)))
    for _ in range(3):
        reply(h, query_wire("www.example.com"))
    assert seen == [(PEER, False, b"\x03www\x07example\x03com\x00")] * 3
    assert plan_entry(h, "www.example.com") is not None


# --- LB answers through the memo paths ------------------------------------------------------------

def test_lb_multi_answer_rotates_on_the_packet_memo_and_follows_health(tmp_path):
    b = lb_fixture(tmp_path)
    h = make_handler(b)
    orders = set()
    for i in range(20):
        msg = reply(h, query_wire("lb.example.com", qid=i))
        assert addrs(msg) == EAST
        orders.add(tuple(rd.to_text() for r in msg.answer for rd in r))
    assert len(orders) == 2 and "IAD" in plan_entry(h, "lb.example.com").by_pop
    assert h.counters.decisions[("lb.example.com.", "p-us-east", False)] == 20
    h.ref.publish_health(healthy(b.snapshot, {("p-us-east", "e1"): U, ("p-us-east", "e2"): U}))
    assert addrs(reply(h, query_wire("lb.example.com", qid=99))) == WEST


@pytest.mark.parametrize("tcp", [False, True])
def test_ex23_weighted_single_answer_redrawn_per_query(tmp_path, tcp):
    """The weighted answer kept in the serving plan (UDP and TCP) still draws 70/30."""
    b = lb_fixture(tmp_path, default_pools=["p-weighted"])
    h = make_handler(b, seed=5)
    wire = query_wire("lb.example.com")
    c = tally(h, wire, tcp=tcp)
    assert set(c) == {WA, WB}
    assert abs(c[WA] / N - 0.7) <= TOL
    assert plan_entry(h, "lb.example.com").by_pop  # answered from the plan after the first query


def test_ex27_random_pool_draw_on_every_query(tmp_path):
    b = lb_fixture(tmp_path, steering_policy="random",
                   random_steering={"default_weight": 0.2, "pool_weights": {"p-us-east": 0.3, "p-us-west": 0.5}})
    h = make_handler(b, seed=3)
    wire = query_wire("lb.example.com")
    c = tally(h, wire)
    for key, p in ((EAST, 0.3), (WEST, 0.5), (EU, 0.2)):
        assert abs(c[key] / N - p) <= TOL
    assert not plan_entry(h, "lb.example.com").by_pop  # a draw between pools is never kept
    assert sum(h.counters.decisions.values()) == N


def test_ex37_random_shedding_on_every_query(tmp_path):
    fx = Fixture()
    fx.pool("p-us-east")["load_shedding"] = {"default_percent": 50, "default_policy": "random"}
    h = make_handler(build(fx, tmp_path), seed=4)
    wire = query_wire("lb.example.com")
    c = tally(h, wire)
    assert set(c) == {EAST, WEST} and abs(c[EAST] / N - 0.5) <= TOL


def _peers(n: int) -> list[str]:
    return [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)]


def test_ex25_hash_sticky_per_resolver_ecs_ignored(tmp_path):
    fx = Fixture()
    fx.lb["default_pools"] = ["p-weighted"]
    fx.pool("p-weighted")["origin_steering"] = {"policy": "hash"}
    h = make_handler(build(fx, tmp_path))
    to_60 = 0
    plain, with_ecs = query_wire("lb.example.com"), query_wire("lb.example.com", ecs="203.0.113.0/24")
    peers = _peers(1000)
    for peer in peers:
        answers = {answer_of(h, plain, peer), answer_of(h, plain, peer), answer_of(h, with_ecs, peer)}
        assert len(answers) == 1
        to_60 += answers == {WA}
    assert abs(to_60 / len(peers) - 0.7) <= 0.04


def test_ex38_hash_shedding_per_resolver(tmp_path):
    fx = Fixture()
    fx.lb["default_pools"] = ["p-us-east", "p-us-west"]
    fx.pool("p-us-east")["load_shedding"] = {"default_percent": 50, "default_policy": "hash"}
    h = make_handler(build(fx, tmp_path))
    plain, with_ecs = query_wire("lb.example.com"), query_wire("lb.example.com", ecs="203.0.113.0/24")
    east = 0
    peers = _peers(1000)
    for peer in peers:
        answers = {answer_of(h, plain, peer), answer_of(h, with_ecs, peer)}
        assert len(answers) == 1
        east += answers == {EAST}
    assert abs(east / len(peers) - 0.5) <= 0.04


def test_plan_selection_per_pop(tmp_path):
    b = lb_fixture(tmp_path, steering_policy="", pop_pools={"LHR": ["p-eu"]})
    h = make_handler(b)
    wire = query_wire("lb.example.com")
    for i in range(6):
        pop = LHR if i % 2 else IAD
        assert addrs(reply(h, wire, pop=pop)) == (EU if pop is LHR else EAST)
    assert set(plan_entry(h, "lb.example.com").by_pop) == {"IAD", "LHR"}


PROX = {"steering_policy": "proximity", "default_pools": ["p-us-east", "p-us-west", "p-eu", "p-asia"]}


def test_ecs_plan_matches_the_strict_path(tmp_path):
    """Queries differing only in the ECS address: the plan's selection per GeoIP record answers
    like the strict path, with the scope of the address's GeoIP network, and never for a
    malformed address."""
    b = lb_fixture(tmp_path, **PROX)
    h = make_handler(b)
    cases = {"198.51.100.64": WEST, "198.51.100.128": ASIA, "203.0.113.192": EAST, "198.51.100.0": EAST,
             "203.0.113.0": EU}
    for addr in cases:  # warm the memos
        for _ in range(2):
            reply(h, query_wire("lb.example.com", ecs=f"{addr}/26"))
    assert plan_entry(h, "lb.example.com").by_location
    for addr, expected in cases.items():
        wire = query_wire("lb.example.com", qid=0x4242, ecs=f"{addr}/26")
        udp, slow = reply(h, wire), strict(h, wire)
        assert addrs(udp) == addrs(slow) == expected, addr
        assert ecs_scope(udp) == ecs_scope(slow) and udp.flags == slow.flags, addr
    assert ecs_scope(reply(h, query_wire("lb.example.com", ecs="198.51.100.64/26"))) == 26
    assert ecs_scope(reply(h, query_wire("lb.example.com", ecs="203.0.113.192/26"))) == 26  # no data: SOURCE
    bad = bytearray(query_wire("lb.example.com", ecs="198.51.100.64/26"))
    bad[-1] |= 0x01  # a bit beyond the /26 prefix
    assert reply(h, bytes(bad)).rcode() == dns.rcode.FORMERR
    h.ref.publish_health(healthy(b.snapshot, {("p-us-west", "w1"): U, ("p-us-west", "w2"): U}))
    assert addrs(reply(h, query_wire("lb.example.com", ecs="198.51.100.64/26"))) == EAST


def test_ecs_ipv6_and_zero_prefix(tmp_path):
    b = lb_fixture(tmp_path, **PROX)
    v6 = StaticGeoTable.from_mapping({**BASE_GEO_TABLE, "2001:db8:1::/48": BASE_GEO_TABLE["198.51.100.128/26"]})
    h = make_handler(b, geo=v6.lookup)
    for _ in range(3):
        msg = reply(h, query_wire("lb.example.com", ecs="2001:db8:1::/56"))
        assert addrs(msg) == ASIA and ecs_scope(msg) == 48
    zero = reply(h, query_wire("lb.example.com", ecs="0.0.0.0/0"))
    assert addrs(zero) == EAST and ecs_scope(zero) == 0  # /0 carries no client information


def test_location_from_the_resolver_is_not_memoised_per_pop(tmp_path):
    """With ``mode: resolver_ip`` the answer depends on the packet source, which no memo keys on."""
    b = lb_fixture(tmp_path, location_strategy={"prefer_ecs": "never", "mode": "resolver_ip"}, **PROX)
    h = make_handler(b)
    wire = query_wire("lb.example.com")
    for _ in range(3):
        assert addrs(reply(h, wire, peer="198.51.100.130")) == ASIA
        assert addrs(reply(h, wire, peer="203.0.113.10")) == EU
        assert addrs(reply(h, wire, peer="203.0.113.200")) == EAST  # no data: the PoP


def test_rule_matches_are_counted(tmp_path):
    b = lb_fixture(tmp_path, rules=[{"name": "qt", "condition": "dns.qry.type == 1", "overrides": {"ttl": 9}}])
    h = make_handler(b)
    for _ in range(3):
        assert reply(h, query_wire("lb.example.com")).answer[0].ttl == 9
    assert h.counters.rule_matches[("lb.example.com.", "qt")] == 3
