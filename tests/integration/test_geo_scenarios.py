"""SPEC-EXAMPLES.md EX-28…EX-33, EX-40 and EX-48: geo, proximity and dynamic-latency
steering, location_strategy and ECS echo/scope, black-box over UDP/TCP with MMDB fixtures.

Resolver addresses of the scenarios are mapped into loopback space by
``harness.resolver`` (the fixture GeoIP database mirrors their locations there).
"""

from __future__ import annotations

import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.rcode

from lbdns.health.view import OriginState, PoolRtt
from tests.integration.harness import addresses, ecs_option, resolver

U = OriginState.UNHEALTHY
EAST = {"192.0.2.10", "192.0.2.11"}
WEST = {"192.0.2.20", "192.0.2.21"}
EU = {"192.0.2.30", "192.0.2.31"}
ASIA = {"192.0.2.40"}
FALLBACK = {"192.0.2.99"}


def test_ex28_region_steering_by_pop(fx, serve):
    fx.lb["steering_policy"] = ""
    fx.lb["region_pools"] = {"WEU": ["p-eu", "p-us-east"]}
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="LHR")) == EU
    assert addresses(s.query("lb.example.com", pop="FRA")) == EU
    assert addresses(s.query("lb.example.com", pop="IAD")) == EAST


def test_ex28_4_ecs_never_changes_region(fx, serve):
    fx.lb["steering_policy"] = ""
    fx.lb["region_pools"] = {"WEU": ["p-eu", "p-us-east"]}
    fx.lb["location_strategy"] = {"prefer_ecs": "always", "mode": "resolver_ip"}
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="LHR", ecs="198.51.100.128/26")) == EU


def test_ex28_5_empty_policy_without_maps_is_off(fx, serve):
    fx.lb["steering_policy"] = ""
    s = serve(fx)
    s.set_health({("p-us-east", "e1"): U, ("p-us-east", "e2"): U})
    assert addresses(s.query("lb.example.com", pop="LHR")) == WEST


def _country(fx, prefer, mode):
    fx.lb["steering_policy"] = "geo"
    fx.lb["country_pools"] = {"JP": ["p-asia"]}
    fx.lb["location_strategy"] = {"prefer_ecs": prefer, "mode": mode}


def test_ex29_1_country_from_ecs(fx, serve):
    _country(fx, "geo", "pop")
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="SJC", ecs="198.51.100.128/26")) == ASIA


def test_ex29_2_no_ecs_pop_country(fx, serve):
    _country(fx, "geo", "pop")
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="SJC")) == EAST


def test_ex29_3_resolver_country_ecs_ignored(fx, serve):
    _country(fx, "never", "resolver_ip")
    s = serve(fx)
    r = s.query("lb.example.com", pop="SJC", source=resolver("198.51.100.130"), ecs="198.51.100.0/26")
    assert addresses(r) == ASIA
    assert ecs_option(r).scopelen == 0  # ECS not consulted


def test_ex29_4_resolver_without_data_pop(fx, serve):
    _country(fx, "never", "resolver_ip")
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="SJC", source=resolver("203.0.113.200"))) == EAST


def test_ex29_5_prefer_proximity_ignores_ecs_for_geo(fx, serve):
    _country(fx, "proximity", "pop")
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="SJC", ecs="198.51.100.128/26")) == EAST


def _ex30(fx, prefer="never"):
    fx.lb["steering_policy"] = "geo"
    fx.lb["pop_pools"] = {"LHR": ["p-us-west"]}
    fx.lb["country_pools"] = {"GB": ["p-asia"]}
    fx.lb["region_pools"] = {"WEU": ["p-eu"]}
    fx.lb["location_strategy"] = {"prefer_ecs": prefer, "mode": "pop"}


def test_ex30_pop_before_country_before_region(fx, serve):
    _ex30(fx)
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="LHR")) == WEST
    assert addresses(s.query("lb.example.com", pop="FRA")) == EU


def test_ex30_3_country_from_ecs(fx, serve):
    _ex30(fx, "always")
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="FRA", ecs="203.0.113.0/26")) == ASIA


def test_ex31_exhausted_mapped_list_fallback_no_cascade(fx, serve):
    fx.lb["steering_policy"] = "geo"
    fx.lb["region_pools"] = {"WEU": ["p-eu"]}
    s = serve(fx)
    s.set_health({("p-eu", "eu1"): U, ("p-eu", "eu2"): U})
    assert addresses(s.query("lb.example.com", pop="LHR")) == FALLBACK


def test_ex31_variant_empty_list_is_undefined(fx, serve):
    fx.lb["steering_policy"] = "geo"
    fx.lb["region_pools"] = {"WEU": []}
    s = serve(fx)
    s.set_health({("p-eu", "eu1"): U, ("p-eu", "eu2"): U})
    assert addresses(s.query("lb.example.com", pop="LHR")) == EAST


def _prox(fx, **ls):
    fx.lb["steering_policy"] = "proximity"
    fx.lb["default_pools"] = ["p-us-east", "p-us-west", "p-eu", "p-asia"]
    if ls:
        fx.lb["location_strategy"] = ls


def test_ex32_1_proximity_ecs(fx, serve):
    _prox(fx)
    s = serve(fx)
    r = s.query("lb.example.com", pop="IAD", ecs="198.51.100.64/26")
    assert addresses(r) == WEST
    assert ecs_option(r).scopelen == 26


def test_ex32_2_no_ecs_mode_pop(fx, serve):
    _prox(fx)
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="IAD", source=resolver("203.0.113.10"))) == EAST


def test_ex32_3_resolver_location(fx, serve):
    _prox(fx, prefer_ecs="never", mode="resolver_ip")
    s = serve(fx)
    r = s.query("lb.example.com", pop="IAD", source=resolver("203.0.113.10"), ecs="198.51.100.64/26")
    assert addresses(r) == EU


def test_ex32_4_resolver_without_data_pop(fx, serve):
    _prox(fx, prefer_ecs="never", mode="resolver_ip")
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="IAD", source=resolver("203.0.113.200"))) == EAST


def test_ex32_5_nearest_critical_next_nearest(fx, serve):
    _prox(fx)
    s = serve(fx)
    s.set_health({("p-us-west", "w1"): U, ("p-us-west", "w2"): U})
    assert addresses(s.query("lb.example.com", pop="IAD", ecs="198.51.100.64/26")) == EAST


def test_ex32_6_tokyo(fx, serve):
    _prox(fx)
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="NRT", ecs="198.51.100.128/26")) == ASIA


def test_ecs_ipv6_proximity_and_scope(fx, serve):
    _prox(fx)
    s = serve(fx)
    r = s.query("lb.example.com", pop="IAD", ecs="2001:db8:1::/56")
    assert addresses(r) == ASIA
    opt = ecs_option(r)
    assert (opt.family, opt.srclen, opt.scopelen) == (2, 56, 48)


def test_ecs_without_geo_data_scope_is_source(fx, serve):
    _prox(fx)
    s = serve(fx)
    r = s.query("lb.example.com", pop="IAD", ecs="203.0.113.192/26")
    assert addresses(r) == EAST  # no data -> PoP IAD
    assert ecs_option(r).scopelen == 26  # consulted but unknown: SCOPE = SOURCE (R-ANS-50)


def _dyn(fx, s_rtt):
    now = time.monotonic()
    return {p: PoolRtt(ms, now, 180.0) for p, ms in s_rtt.items()}


def test_ex33_dynamic_latency(fx, serve):
    fx.lb["steering_policy"] = "dynamic_latency"
    s = serve(fx)
    s.set_health(rtt=_dyn(fx, {"p-us-east": 80, "p-us-west": 30, "p-eu": 150}))
    assert addresses(s.query("lb.example.com")) == WEST
    s.set_health({("p-us-west", "w1"): U, ("p-us-west", "w2"): U},
                 rtt=_dyn(fx, {"p-us-east": 80, "p-us-west": 30, "p-eu": 150}))
    assert addresses(s.query("lb.example.com")) == EAST
    s.set_health()
    assert addresses(s.query("lb.example.com")) == EAST  # no RTT data: failover order
    s.set_health(rtt=_dyn(fx, {"p-eu": 150}))
    assert addresses(s.query("lb.example.com")) == EU


def test_ex33_stale_rtt_is_not_current(fx, serve):
    fx.lb["steering_policy"] = "dynamic_latency"
    s = serve(fx)
    old = time.monotonic() - 1000
    s.set_health(rtt={"p-eu": PoolRtt(10, old, 180.0)})
    assert addresses(s.query("lb.example.com")) == EAST


def test_ex40_dns_persistence_geo_by_pop(fx, serve):
    fx.lb["default_pools"] = ["p-us-east", "p-us-west"]
    fx.lb["steering_policy"] = "geo"
    fx.lb["region_pools"] = {"ENAM": ["p-us-west", "p-us-east"]}
    fx.lb["location_strategy"] = {"prefer_ecs": "never", "mode": "pop"}
    s = serve(fx)
    for src, ecs in (("127.0.0.1", None), (resolver("198.51.100.130"), "203.0.113.0/24")):
        assert addresses(s.query("lb.example.com", pop="IAD", source=src, ecs=ecs)) == WEST
        for pop in ("SJC", "LHR"):
            assert addresses(s.query("lb.example.com", pop=pop, source=src, ecs=ecs)) == EAST


def test_ex48_ecs_echo_udp_and_tcp(fx, serve):
    _prox(fx)
    s = serve(fx)
    for tcp in (False, True):
        r = s.query("lb.example.com", ecs="198.51.100.64/26", tcp=tcp)
        assert addresses(r) == WEST
        opt = ecs_option(r)
        assert (opt.family, opt.srclen, opt.scopelen, opt.address) == (1, 26, 26, "198.51.100.64")
    r = s.query("lb.example.com")
    assert addresses(r) == EAST and r.edns == 0 and ecs_option(r) is None
    r = s.query("lb.example.com", edns=False)
    assert r.edns < 0


def test_ex48_5_malformed_ecs_formerr(fx, serve):
    _prox(fx)
    s = serve(fx)
    q = dns.message.make_query("lb.example.com", "A", use_edns=0)
    # family 1, source 20, scope 0, address 203.0.113 (bits beyond /20 set: 113 = 0x71)
    bad = dns.edns.GenericOption(8, struct.pack("!HBB", 1, 20, 0) + bytes([203, 0, 113]))
    q.use_edns(0, options=[bad])
    reply = s.raw(q.to_wire())
    assert reply is not None
    r = dns.message.from_wire(reply)
    assert r.rcode() == dns.rcode.FORMERR and r.id == q.id


def test_ecs_source_zero_treated_as_absent(fx, serve):
    _prox(fx)
    s = serve(fx)
    r = s.query("lb.example.com", pop="IAD", ecs="0.0.0.0/0")
    assert addresses(r) == EAST
    opt = ecs_option(r)
    assert (opt.srclen, opt.scopelen) == (0, 0)


def _ecs_wire(addr: str, plen: int, qid: int = 7) -> bytes:
    q = dns.message.make_query("lb.example.com", "A", use_edns=0, options=[dns.edns.ECSOption(addr, plen)])
    q.flags &= ~dns.flags.RD
    q.id = qid
    return q.to_wire()


def _summary(msg: dns.message.Message) -> tuple:
    opt = ecs_option(msg)
    return (msg.rcode(), msg.flags, addresses(msg), opt.family, opt.srclen, opt.scopelen, opt.address)


def test_ecs_plan_matches_strict_path(fx, serve):
    """Queries that differ only in the ECS address are answered from the serving plan's selection
    for the address's GeoIP record (lbdns/serving.py): same answers, ECS echo and scope as the
    strict path (``Handler.strict``), following health, and never for an address with bits
    beyond its prefix (FORMERR)."""
    _prox(fx)
    s = serve(fx)
    handler = s.app.handler
    cases = {"198.51.100.64": WEST, "198.51.100.128": ASIA, "203.0.113.192": EAST, "198.51.100.0": None}
    for addr in cases:  # warm: the strict path fills the plan's selections
        for _ in range(2):
            s.raw(_ecs_wire(addr, 26))
    plan = s.app.ref.current.plan
    assert any(getattr(e, "by_location", None) for e in plan.names.values())
    for addr, expected in cases.items():
        wire = _ecs_wire(addr, 26, qid=0x4242)
        hit = plan.respond(wire, "127.0.0.1", False, "IAD", handler)
        assert hit is not None, addr
        got = dns.message.from_wire(hit[0])
        strict = dns.message.from_wire(handler.strict(wire, "127.0.0.1", False, s.app.pops["IAD"],
                                                      s.app.ref.current))
        assert _summary(got) == _summary(strict), addr
        assert got.id == 0x4242
        if expected is not None:
            assert addresses(got) == expected
        udp = dns.message.from_wire(s.raw(wire))
        assert _summary(udp) == _summary(strict)
    # health: the same shape now steers to the next nearest pool
    s.set_health({("p-us-west", "w1"): U, ("p-us-west", "w2"): U})
    assert addresses(dns.message.from_wire(s.raw(_ecs_wire("198.51.100.64", 26)))) == EAST
    # bits beyond the /26 prefix: FORMERR from the strict path, never a memoised answer
    bad = bytearray(_ecs_wire("198.51.100.64", 26))
    bad[-1] |= 0x01
    assert s.app.ref.current.plan.respond(bytes(bad), "127.0.0.1", False, "IAD", handler) is None
    assert dns.message.from_wire(s.raw(bytes(bad))).rcode() == dns.rcode.FORMERR
    # IPv6 /56 (7 address octets)
    for _ in range(2):
        s.raw(_ecs_wire("2001:db8:1::", 56))
    v6 = dns.message.from_wire(s.raw(_ecs_wire("2001:db8:1::", 56)))
    assert addresses(v6) == ASIA and ecs_option(v6).scopelen == 48


def test_non_flattened_cname_into_geo_lb_keeps_ecs_scope(fx, serve):
    """A flatten_cname: false origin whose target is a geo-steered LB served here: the chased
    answer depends on the client subnet, so the ECS scope is the inner LB's (R-ANS-32, R-ANS-50)."""
    fx.account["pools"].append({"name": "p-to-geo", "origins": [
        {"name": "c", "address": "geo.example.com", "flatten_cname": False}]})
    fx.zone["load_balancers"]["front"] = {"default_pools": ["p-to-geo"], "steering_policy": "off"}
    fx.zone["load_balancers"]["geo"] = {"default_pools": ["p-us-east"], "country_pools": {"JP": ["p-asia"]},
                                        "fallback_pool": "p-fallback", "steering_policy": "geo",
                                        "location_strategy": {"prefer_ecs": "geo", "mode": "pop"}}
    s = serve(fx)
    for subnet, expected in (("198.51.100.128/26", ASIA), ("198.51.100.0/26", EAST)):
        r = s.query("front.example.com", pop="IAD", ecs=subnet)
        assert addresses(r) == expected
        assert ecs_option(r).scopelen == 26
