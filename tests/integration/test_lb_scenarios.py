"""SPEC-EXAMPLES.md §A–§D (LB answering, precedence, endpoint and pool steering) and §E
load shedding / DNS persistence, as black-box tests over UDP (and TCP where stated).

Every test starts a real server on loopback with the base fixture B (tests/integration/
harness.py), modifies it as the scenario says, sets health directly, and queries with
dnspython. Answers are compared as sets (R-ANS-27).
"""

from __future__ import annotations

import socket
from collections import Counter

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from lbdns.health.view import OriginState
from tests.fixtures.stats import chi_square, chi_square_p
from tests.integration.harness import addresses, answer_set, iter_sources

U = OriginState.UNHEALTHY
K = OriginState.UNKNOWN
H = OriginState.HEALTHY
EAST = {"192.0.2.10", "192.0.2.11"}
WEST = {"192.0.2.20", "192.0.2.21"}
EU = {"192.0.2.30", "192.0.2.31"}
FALLBACK = {"192.0.2.99"}
SOA_300 = ("example.com.", 300, "SOA",
           "ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300")


def soa_authority(msg) -> set[tuple[str, int, str, str]]:
    return {(r.name.to_text(), r.ttl, dns.rdatatype.to_text(r.rdtype), rd.to_text())
            for r in msg.authority for rd in r}


def assert_nodata(msg) -> None:
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.answer == []
    assert soa_authority(msg) == {SOA_300}


# --- A. Basic answering, failover and fallback ---------------------------------------------

def test_ex01_failover_all_healthy(fx, serve):
    s = serve(fx)
    r = s.query("lb.example.com", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert answer_set(r) == {("lb.example.com.", 30, "A", "192.0.2.10"), ("lb.example.com.", 30, "A", "192.0.2.11")}


def test_ex02_primary_critical_next_pool(fx, serve):
    s = serve(fx)
    s.set_health({("p-us-east", "e1"): U, ("p-us-east", "e2"): U})
    assert addresses(s.query("lb.example.com")) == WEST


def test_ex03_failback_and_degraded(fx, serve):
    s = serve(fx)
    s.set_health({("p-us-east", "e1"): U, ("p-us-east", "e2"): U})
    assert addresses(s.query("lb.example.com")) == WEST
    s.set_health({("p-us-east", "e2"): U})
    assert addresses(s.query("lb.example.com")) == {"192.0.2.10"}


def test_ex04_minimum_origins(fx, serve):
    fx.pool("p-us-east")["minimum_origins"] = 2
    s = serve(fx)
    s.set_health({("p-us-east", "e2"): U})
    assert addresses(s.query("lb.example.com")) == WEST


def test_ex04_variant_minimum_one(fx, serve):
    s = serve(fx)
    s.set_health({("p-us-east", "e2"): U})
    assert addresses(s.query("lb.example.com")) == {"192.0.2.10"}


def test_ex05_all_critical_fallback_health_ignored(fx, serve):
    s = serve(fx)
    s.set_health({(p, o): U for p, o in [("p-us-east", "e1"), ("p-us-east", "e2"), ("p-us-west", "w1"),
                                          ("p-us-west", "w2"), ("p-eu", "eu1"), ("p-eu", "eu2"),
                                          ("p-fallback", "fb1")]})
    assert answer_set(s.query("lb.example.com")) == {("lb.example.com.", 30, "A", "192.0.2.99")}


ALL_DOWN = {(p, o): U for p, o in [("p-us-east", "e1"), ("p-us-east", "e2"), ("p-us-west", "w1"),
                                    ("p-us-west", "w2"), ("p-eu", "eu1"), ("p-eu", "eu2"), ("p-fallback", "fb1")]}


def test_ex06_fallback_disabled_soa(fx, serve):
    fx.pool("p-fallback")["enabled"] = False
    s = serve(fx)
    s.set_health(ALL_DOWN)
    assert_nodata(s.query("lb.example.com"))


def test_ex06_variant_fallback_origin_disabled(fx, serve):
    fx.origin("p-fallback", "fb1")["enabled"] = False
    s = serve(fx)
    s.set_health(ALL_DOWN)
    assert_nodata(s.query("lb.example.com"))


def test_ex07_unknown_health_is_down(fx, serve):
    s = serve(fx, health="none")  # nothing published: every pair UNKNOWN
    assert addresses(s.query("lb.example.com")) == FALLBACK
    s.set_health({key: K for key in ALL_DOWN})
    assert addresses(s.query("lb.example.com")) == FALLBACK


def test_ex08_unmonitored_pools_primary_only(fx, serve):
    for name in ("p-us-east", "p-us-west", "p-eu"):
        del fx.pool(name)["monitor"]
    s = serve(fx, health="none")
    for _ in range(100):
        assert answer_set(s.query("lb.example.com")) == {("lb.example.com.", 30, "A", "192.0.2.10"),
                                                         ("lb.example.com.", 30, "A", "192.0.2.11")}


def test_ex09_disabled_pools(fx, serve):
    fx.pool("p-us-east")["enabled"] = False
    s = serve(fx)
    assert addresses(s.query("lb.example.com")) == WEST


def test_ex09_variant_all_disabled(fx, serve):
    for name in ("p-us-east", "p-us-west", "p-eu"):
        fx.pool(name)["enabled"] = False
    s = serve(fx)
    assert addresses(s.query("lb.example.com")) == FALLBACK


def test_ex10_disabled_endpoint_counts_unavailable(fx, serve):
    fx.pool("p-us-east")["minimum_origins"] = 2
    fx.origin("p-us-east", "e2")["enabled"] = False
    s = serve(fx)
    assert addresses(s.query("lb.example.com")) == WEST


def test_ex11_weight_zero_endpoint_multi_answer(fx, serve):
    fx.pool("p-us-east")["origins"].append({"name": "e3", "address": "192.0.2.12", "weight": 0})
    s = serve(fx)
    for _ in range(100):
        assert addresses(s.query("lb.example.com")) == EAST


def test_ex12_lb_ttl(fx, serve):
    fx.lb["ttl"] = 120
    s = serve(fx)
    assert answer_set(s.query("lb.example.com")) == {("lb.example.com.", 120, "A", "192.0.2.10"),
                                                     ("lb.example.com.", 120, "A", "192.0.2.11")}
    assert_nodata(s.query("lb.example.com", "AAAA"))


# --- B. DNS records, precedence, qtypes -----------------------------------------------------

def test_ex13_lb_supersedes_a_txt_still_answered(fx, serve):
    fx.zone["records"]["lb"] = [{"type": "A", "ttl": 300, "value": "192.0.2.250"},
                                {"type": "TXT", "ttl": 300, "value": "v=test"}]
    s = serve(fx)
    assert addresses(s.query("lb.example.com")) == EAST
    assert answer_set(s.query("lb.example.com", "TXT")) == {("lb.example.com.", 300, "TXT", '"v=test"')}


def test_ex13_disabled_lb_serves_record(fx, serve):
    fx.zone["records"]["lb"] = [{"type": "A", "ttl": 300, "value": "192.0.2.250"},
                                {"type": "TXT", "ttl": 300, "value": "v=test"}]
    fx.lb["enabled"] = False
    s = serve(fx)
    assert answer_set(s.query("lb.example.com")) == {("lb.example.com.", 300, "A", "192.0.2.250")}


def test_ex14_disabled_lb_without_records_nxdomain(fx, serve):
    fx.lb["enabled"] = False
    s = serve(fx)
    r = s.query("lb.example.com")
    assert r.rcode() == dns.rcode.NXDOMAIN and soa_authority(r) == {SOA_300}


def _wildcard_fixture(fx):
    fx.zone["load_balancers"] = {"*": fx.zone["load_balancers"]["lb"]}
    fx.zone["records"]["y"] = {"type": "A", "ttl": 300, "value": "192.0.2.201"}
    fx.zone["records"]["*"] = {"type": "A", "ttl": 300, "value": "192.0.2.202"}


def test_ex15_wildcard_lb_vs_specific_and_wildcard(fx, serve):
    _wildcard_fixture(fx)
    s = serve(fx)
    assert answer_set(s.query("y.example.com")) == {("y.example.com.", 300, "A", "192.0.2.201")}
    assert answer_set(s.query("z.example.com")) == {("z.example.com.", 30, "A", "192.0.2.10"),
                                                    ("z.example.com.", 30, "A", "192.0.2.11")}


def test_ex16_wildcard_lb_blocked_by_txt_only_name(fx, serve):
    _wildcard_fixture(fx)
    fx.zone["records"]["t"] = {"type": "TXT", "ttl": 300, "value": "x"}
    s = serve(fx)
    assert_nodata(s.query("t.example.com"))


def test_ex17_aaaa_mx_any_nxdomain(fx, serve):
    s = serve(fx)
    assert_nodata(s.query("lb.example.com", "AAAA"))
    assert_nodata(s.query("lb.example.com", "MX"))
    assert answer_set(s.query("lb.example.com", "ANY")) == {("lb.example.com.", 30, "HINFO", '"RFC8482" ""')}
    r = s.query("nope.example.com")
    assert r.rcode() == dns.rcode.NXDOMAIN and soa_authority(r) == {SOA_300}


def test_ex18_mixed_families(fx, serve):
    fx.lb["default_pools"] = ["p-mixed"]
    s = serve(fx)
    assert answer_set(s.query("lb.example.com")) == {("lb.example.com.", 30, "A", "192.0.2.50")}
    assert answer_set(s.query("lb.example.com", "AAAA")) == {("lb.example.com.", 30, "AAAA", "2001:db8::50"),
                                                             ("lb.example.com.", 30, "AAAA", "2001:db8::51")}
    s.set_health({("p-mixed", "m6a"): U})
    assert addresses(s.query("lb.example.com", "AAAA"), "AAAA") == {"2001:db8::51"}
    assert addresses(s.query("lb.example.com")) == {"192.0.2.50"}


def test_ex19_cname_chasing_into_lb(fx, serve):
    fx.zone["records"]["alias"] = {"type": "CNAME", "ttl": 300, "value": "lb.example.com."}
    s = serve(fx)
    assert answer_set(s.query("alias.example.com")) == {
        ("alias.example.com.", 300, "CNAME", "lb.example.com."),
        ("lb.example.com.", 30, "A", "192.0.2.10"), ("lb.example.com.", 30, "A", "192.0.2.11")}


# --- C. Endpoint steering and weights -------------------------------------------------------
#
# Black-box distribution checks, one per policy family, over few queries: each asserts that the
# server as a whole draws by weight (a χ² goodness-of-fit bound at p = 1e-6, so a correct server
# fails about once in a million runs, while e.g. ignoring the weights fails every run). The exact
# shares (within ±0.02 over 10,000 seeded draws) are unit-tested in process:
# tests/unit/steering/test_decide.py and tests/unit/server/test_handler.py.

FIT_P = 1e-6


def _shares(s, n: int, **kw) -> Counter[frozenset[str]]:
    c: Counter[frozenset[str]] = Counter()
    for _ in range(n):
        c[frozenset(addresses(s.query("lb.example.com", **kw)))] += 1
    return c


def assert_fits(c: Counter[frozenset[str]], expected: dict[frozenset[str], float]) -> None:
    """The answer counts ``c`` come from the shares ``expected`` (χ² test, see above)."""
    assert set(c) <= set(expected), c
    x = chi_square(c, expected)
    assert chi_square_p(x, len(expected)) >= FIT_P, (c, x)


def test_ex23_unequal_weights_single_weighted(fx, serve):
    fx.lb["default_pools"] = ["p-weighted"]
    s = serve(fx)
    c = _shares(s, 1000)
    assert set(c) == {frozenset({"192.0.2.60"}), frozenset({"192.0.2.61"})}
    assert_fits(c, {frozenset({"192.0.2.60"}): 0.7, frozenset({"192.0.2.61"}): 0.3})


def test_ex24_health_switches_single_multi(fx, serve):
    fx.pool("p-weighted")["origins"].append({"name": "wc", "address": "192.0.2.62", "weight": 0.7})
    fx.lb["default_pools"] = ["p-weighted"]
    s = serve(fx)
    c = _shares(s, 300)
    assert set(c) == {frozenset({"192.0.2.60"}), frozenset({"192.0.2.61"}), frozenset({"192.0.2.62"})}
    s.set_health({("p-weighted", "wb"): U})
    for _ in range(50):
        assert addresses(s.query("lb.example.com")) == {"192.0.2.60", "192.0.2.62"}


def test_ex25_hash_sticky_per_resolver(fx, serve):
    fx.lb["default_pools"] = ["p-weighted"]
    fx.pool("p-weighted")["origin_steering"] = {"policy": "hash"}
    s = serve(fx)
    to_60 = 0
    sources = list(iter_sources(200))
    for src in sources:
        answers = {frozenset(addresses(s.query("lb.example.com", source=src))) for _ in range(2)}
        answers.add(frozenset(addresses(s.query("lb.example.com", source=src, ecs="203.0.113.0/24"))))
        assert len(answers) == 1 and len(next(iter(answers))) == 1
        to_60 += next(iter(answers)) == frozenset({"192.0.2.60"})
    assert abs(to_60 / len(sources) - 0.70) <= 0.1  # the hash is deterministic: the same share every run


# --- D. Global steering: random --------------------------------------------------------------

def _random_fixture(fx, **rs):
    fx.lb["steering_policy"] = "random"
    fx.lb["random_steering"] = rs or {"default_weight": 0.2, "pool_weights": {"p-us-east": 0.3, "p-us-west": 0.5}}


def test_ex27_random_pool_weights(fx, serve):
    _random_fixture(fx)
    s = serve(fx)
    c = _shares(s, 1000)
    assert set(c) == {frozenset(EAST), frozenset(WEST), frozenset(EU)}
    assert_fits(c, {frozenset(EAST): 0.3, frozenset(WEST): 0.5, frozenset(EU): 0.2})
    s.set_health({("p-us-west", "w1"): U, ("p-us-west", "w2"): U})  # an unhealthy pool leaves the draw
    assert set(_shares(s, 100)) == {frozenset(EAST), frozenset(EU)}


def test_ex27_variant_zero_weights(fx, serve):
    _random_fixture(fx, default_weight=0, pool_weights={"p-us-east": 0, "p-us-west": 0})
    s = serve(fx)
    for _ in range(100):
        assert addresses(s.query("lb.example.com")) == FALLBACK


# --- E. Load shedding and DNS persistence ---------------------------------------------------

def test_ex37_load_shedding_random(fx, serve):
    fx.pool("p-us-east")["load_shedding"] = {"default_percent": 50, "default_policy": "random"}
    s = serve(fx)
    c = _shares(s, 1000)
    assert set(c) == {frozenset(EAST), frozenset(WEST)}
    assert_fits(c, {frozenset(EAST): 0.5, frozenset(WEST): 0.5})


def test_ex38_load_shedding_hash_persistence(fx, serve):
    fx.lb["default_pools"] = ["p-us-east", "p-us-west"]
    fx.pool("p-us-east")["load_shedding"] = {"default_percent": 50, "default_policy": "hash"}
    fx.pool("p-us-east")["origin_steering"] = {"policy": "hash"}
    s = serve(fx)
    east = 0
    sources = list(iter_sources(256))
    for src in sources:
        a = {frozenset(addresses(s.query("lb.example.com", source=src)))}
        a.add(frozenset(addresses(s.query("lb.example.com", source=src, ecs="203.0.113.0/24"))))
        assert len(a) == 1
        east += next(iter(a)) == frozenset(EAST)
    assert abs(east / len(sources) - 0.50) <= 0.1  # deterministic per resolver set


def test_ex39_all_pools_shedding_fallback_never_shed(fx, serve):
    fx.lb["default_pools"] = ["p-us-east", "p-us-west"]
    for name in ("p-us-east", "p-us-west", "p-fallback"):
        fx.pool(name)["load_shedding"] = {"default_percent": 100}
    s = serve(fx)
    for _ in range(100):
        assert addresses(s.query("lb.example.com")) == FALLBACK


# --- H. Transport, apex ----------------------------------------------------------------------

def test_ex48_tcp_and_no_edns(fx, serve):
    s = serve(fx)
    assert addresses(s.query("lb.example.com", tcp=True)) == EAST
    r = s.query("lb.example.com", edns=False)
    assert r.edns < 0 and addresses(r) == EAST


def test_ex48_4_ecs_echo_scope_zero_without_location(fx, serve):
    s = serve(fx)
    r = s.query("lb.example.com", ecs="203.0.113.0/24")
    assert addresses(r) == EAST
    opt = next(o for o in r.options if isinstance(o, dns.edns.ECSOption))
    assert (opt.srclen, opt.scopelen, opt.address) == (24, 0, "203.0.113.0")


def test_ex50_apex_lb(fx, serve):
    fx.zone["load_balancers"] = {"": fx.zone["load_balancers"]["lb"]}
    s = serve(fx)
    assert answer_set(s.query("example.com")) == {("example.com.", 30, "A", "192.0.2.10"),
                                                  ("example.com.", 30, "A", "192.0.2.11")}
    soa = answer_set(s.query("example.com", "SOA"))
    assert {(o, t, ty) for o, t, ty, _ in soa} == {("example.com.", 3600, "SOA")}
    assert answer_set(s.query("example.com", "NS")) == {("example.com.", 3600, "NS", "ns1.example.com.")}
    assert_nodata(s.query("example.com", "MX"))


# --- precedence extras (issue #3 "Must show") -------------------------------------------------

def test_lb_supersedes_cname_at_same_name(fx, serve):
    fx.zone["records"]["lb"] = {"type": "CNAME", "ttl": 300, "value": "elsewhere.example.net."}
    s = serve(fx)
    assert addresses(s.query("lb.example.com")) == EAST
    assert_nodata(s.query("lb.example.com", "CNAME"))


def test_lb_supersedes_aaaa_at_same_name(fx, serve):
    fx.zone["records"]["lb"] = {"type": "AAAA", "ttl": 300, "value": "2001:db8::99"}
    s = serve(fx)
    assert_nodata(s.query("lb.example.com", "AAAA"))  # LB pools are IPv4-only: NODATA, not the record


def test_disabled_wildcard_lb_synthesizes_nothing(fx, serve):
    fx.zone["load_balancers"] = {"*": dict(fx.zone["load_balancers"]["lb"], enabled=False)}
    s = serve(fx)
    r = s.query("anything.example.com")
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_failback_after_recovery_off_policy(fx, serve):
    s = serve(fx)
    seen = []
    for states in ({("p-us-east", "e1"): U, ("p-us-east", "e2"): U}, {}):
        s.set_health(states)
        seen.append(frozenset(addresses(s.query("lb.example.com"))))
    assert seen == [frozenset(WEST), frozenset(EAST)]


def test_health_switches_by_health_view_only(fx, serve):
    s = serve(fx)
    s.set_health({("p-us-east", "e1"): H, ("p-us-east", "e2"): U})
    assert addresses(s.query("lb.example.com")) == {"192.0.2.10"}


def _lb_packet() -> bytearray:
    q = dns.message.make_query("lb.example.com", "A")
    q.flags &= ~dns.flags.RD
    return bytearray(q.to_wire())


def test_repeated_lb_packet_rotates_and_follows_health(fx, serve):
    """The serving plan (lbdns/serving.py) answers a repeated LB query from pre-rendered bytes
    around a freshly rotated answer section, and only while the origin states are the same."""
    s = serve(fx)
    wire = _lb_packet()
    replies = []
    for i in range(40):
        wire[:2] = (0x100 + i).to_bytes(2, "big")
        out = s.raw(bytes(wire))
        assert out is not None and out[:2] == wire[:2]
        replies.append(out)
    assert "IAD" in s.app.ref.current.plan.names[bytes(wire[12:12 + 20])].by_pop
    e1, e2 = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 11])
    orders = {out.index(e1) < out.index(e2) for out in replies}
    assert orders == {True, False}  # both rotations served
    assert len({len(out) for out in replies}) == 1
    strict = dns.message.from_wire(s.app.handler.strict(bytes(wire), "127.0.0.1", False, s.app.pops["IAD"],
                                                        s.app.ref.current))
    for out in replies:
        assert answer_set(dns.message.from_wire(out)) == answer_set(strict)
    s.set_health({("p-us-east", "e1"): U, ("p-us-east", "e2"): U})
    wire[:2] = b"\x77\x77"
    assert addresses(dns.message.from_wire(s.raw(bytes(wire)))) == WEST


def test_repeated_lb_packet_weighted_single_still_draws(fx, serve):
    fx.lb["default_pools"] = ["p-weighted"]
    s = serve(fx)
    wire = _lb_packet()
    seen = Counter()
    for i in range(400):
        wire[:2] = i.to_bytes(2, "big")
        seen[frozenset(addresses(dns.message.from_wire(s.raw(bytes(wire)))))] += 1
    assert set(seen) == {frozenset({"192.0.2.60"}), frozenset({"192.0.2.61"})}
    assert 0.55 <= seen[frozenset({"192.0.2.60"})] / 400 <= 0.85  # 70 % ± sampling error


def test_plan_selection_per_pop(fx, serve):
    """The serving plan keeps a selection per PoP: the same query alternating between two PoPs
    is kept for both, and each answers with its own PoP's decision."""
    fx.lb["steering_policy"] = ""
    fx.lb["pop_pools"] = {"LHR": ["p-eu"]}
    s = serve(fx)
    wire = _lb_packet()
    for i in range(6):
        wire[:2] = i.to_bytes(2, "big")
        pop = "IAD" if i % 2 else "LHR"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(bytes(wire), ("127.0.0.1", s.ports[pop]))
            got = addresses(dns.message.from_wire(sock.recv(4096)))
        assert got == (EAST if pop == "IAD" else EU)
    assert set(s.app.ref.current.plan.names[bytes(wire[12:12 + 20])].by_pop) == {"IAD", "LHR"}


def test_status_no_health_only_for_a_serving_enabled_fallback(fx, serve):
    """R-HLT-11/A-48 as /status reports it: the fallback pool is 'serving' when none of the
    LB's pools is usable — unless it is disabled (then the LB answers NODATA, EX-06)."""
    from lbdns.admin import serving_fallbacks

    s = serve(fx)
    cur = lambda: s.app.ref.current  # noqa: E731
    assert serving_fallbacks(cur().snapshot, cur().health) == {}
    s.set_health(ALL_DOWN)
    assert serving_fallbacks(cur().snapshot, cur().health) == {"p-fallback": ["lb.example.com."]}
    fx.pool("p-fallback")["enabled"] = False
    s2 = serve(fx)
    s2.set_health(ALL_DOWN)
    assert_nodata(s2.query("lb.example.com"))
    assert serving_fallbacks(s2.app.ref.current.snapshot, s2.app.ref.current.health) == {}
