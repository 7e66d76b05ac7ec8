"""SPEC-EXAMPLES.md EX-34…EX-36, EX-41 and the EX-47 rule rows: custom rules over UDP.

Resolver addresses are loopback stand-ins (harness.resolver); where a scenario needs a
resolver outside 0.0.0.0/1 (which no IPv4 loopback address is), the rule is written on the
equivalent loopback split instead, as noted per test.
"""

from __future__ import annotations

from tests.integration.harness import addresses, answer_set, ecs_option, resolver

EAST = {"192.0.2.10", "192.0.2.11"}
WEST = {"192.0.2.20", "192.0.2.21"}
EU = {"192.0.2.30", "192.0.2.31"}


def _ex34(fx, condition="ip.src in {0.0.0.0/1}"):
    fx.lb["default_pools"] = ["p-us-east", "p-us-west"]
    fx.lb["rules"] = [{"name": "lower-half", "condition": condition,
                       "overrides": {"default_pools": ["p-us-west", "p-us-east"]}}]


def test_ex34_1_resolver_in_lower_half(fx, serve):
    _ex34(fx)
    s = serve(fx)
    assert addresses(s.query("lb.example.com", source="127.1.2.3")) == WEST  # 10.1.2.3 in the scenario


def test_ex34_2_resolver_outside(fx, serve):
    # 198.51.100.5 is outside 0.0.0.0/1; on loopback the same split is 127.0.0.0/9 vs 127.128.0.0/9
    _ex34(fx, "ip.src in {127.0.0.0/9}")
    s = serve(fx)
    assert addresses(s.query("lb.example.com", source="127.200.0.5")) == EAST


def test_ex34_3_ecs_address_is_ip_src_scope_source(fx, serve):
    _ex34(fx)
    s = serve(fx)
    r = s.query("lb.example.com", source="127.200.0.5", ecs="10.20.0.0/24")
    assert addresses(r) == WEST
    assert ecs_option(r).scopelen == 24


def test_ex34_4_ip_src_uses_ecs_false(fx, serve):
    _ex34(fx, "ip.src in {10.0.0.0/8}")
    s = serve(fx, ip_src_uses_ecs=False)
    r = s.query("lb.example.com", source="127.200.0.5", ecs="10.20.0.0/24")
    assert addresses(r) == EAST
    assert ecs_option(r).scopelen == 0


def test_ex34_5_ecs_zero_prefix_absent(fx, serve):
    _ex34(fx, "ip.src in {10.0.0.0/8}")
    s = serve(fx)
    assert addresses(s.query("lb.example.com", source="127.200.0.5", ecs="0.0.0.0/0")) == EAST


def _ex35(fx, r2_extra=None):
    r2 = {"name": "r2", "priority": 5, "condition": 'cf.load_balancer.region == "ENAM"',
          "overrides": {"ttl": 120, "default_pools": ["p-eu"]}, **(r2_extra or {})}
    fx.lb["rules"] = [{"name": "r1", "priority": 10, "condition": "dns.qry.type == 1", "overrides": {"ttl": 60}}, r2]


def ttl_and_addrs(msg):
    return {(t, a) for _, t, _, a in answer_set(msg)}


def test_ex35_1_priority_order(fx, serve):
    _ex35(fx)
    s = serve(fx)
    assert ttl_and_addrs(s.query("lb.example.com", pop="IAD")) == {(60, a) for a in EU}


def test_ex35_2_only_r1(fx, serve):
    _ex35(fx)
    s = serve(fx)
    assert ttl_and_addrs(s.query("lb.example.com", pop="LHR")) == {(60, a) for a in EAST}


def test_ex35_3_terminates(fx, serve):
    _ex35(fx, {"terminates": True})
    s = serve(fx)
    assert ttl_and_addrs(s.query("lb.example.com", pop="IAD")) == {(120, a) for a in EU}


def test_ex35_4_disabled(fx, serve):
    _ex35(fx, {"disabled": True})
    s = serve(fx)
    assert ttl_and_addrs(s.query("lb.example.com", pop="IAD")) == {(60, a) for a in EAST}


def test_ex35_5_array_order_last_wins(fx, serve):
    fx.lb["rules"] = [{"condition": "", "overrides": {"ttl": 60}}, {"condition": "", "overrides": {"ttl": 90}}]
    s = serve(fx)
    assert {t for t, _ in ttl_and_addrs(s.query("lb.example.com"))} == {90}


def _ex36(fx):
    fx.lb["default_pools"] = ["p-us-east"]
    fx.lb["rules"] = [
        {"name": "v6", "condition": "dns.qry.type eq 28", "overrides": {"default_pools": ["p-mixed"]}},
        {"name": "ecs", "condition": 'dns.rr.opt.client and dns.rr.opt.client.addr eq "203.0.113.0"',
         "overrides": {"default_pools": ["p-eu"]}},
        {"name": "name", "condition": 'dns.qry.name eq "lb.example.com." and dns.qry.name.len eq 15',
         "overrides": {"ttl": 45}},
        {"name": "asn", "condition": "ip.src.asnum in {64502}", "overrides": {"default_pools": ["p-asia"]}},
    ]


def test_ex36_1_qtype(fx, serve):
    _ex36(fx)
    s = serve(fx)
    assert answer_set(s.query("lb.example.com", "AAAA")) == {("lb.example.com.", 45, "AAAA", "2001:db8::50"),
                                                             ("lb.example.com.", 45, "AAAA", "2001:db8::51")}


def test_ex36_2_mixed_case_name(fx, serve):
    _ex36(fx)
    s = serve(fx)
    r = s.query("LB.Example.COM", "A")
    assert answer_set(r) == {("LB.Example.COM.", 45, "A", "192.0.2.10"), ("LB.Example.COM.", 45, "A", "192.0.2.11")}


def test_ex36_3_ecs_fields(fx, serve):
    _ex36(fx)
    s = serve(fx)
    r = s.query("lb.example.com", ecs="203.0.113.0/24")
    assert ttl_and_addrs(r) == {(45, a) for a in EU}
    assert ecs_option(r).scopelen == 24


def test_ex36_4_asn(fx, serve):
    _ex36(fx)
    s = serve(fx)
    assert ttl_and_addrs(s.query("lb.example.com", source=resolver("198.51.100.130"))) == {(45, "192.0.2.40")}


def test_ex41_rules_with_geo_still_evaluated(fx, serve):
    fx.lb["steering_policy"] = ""
    fx.lb["region_pools"] = {"WEU": ["p-eu", "p-us-east"]}
    fx.lb["rules"] = [{"condition": "dns.qry.type == 1", "overrides": {"ttl": 99}}]
    s = serve(fx)
    assert "W-RULES-GEO" in {w.code for w in s.app.loaded.config.warnings}
    assert ttl_and_addrs(s.query("lb.example.com", pop="LHR")) == {(99, a) for a in EU}


def test_ex47_proxied_field_never_matches(fx, serve):
    fx.lb["rules"] = [{"condition": 'http.request.uri.path contains "/x"', "overrides": {"ttl": 5}}]
    s = serve(fx)
    assert {t for t, _ in ttl_and_addrs(s.query("lb.example.com"))} == {30}


def test_ex47_fixed_response_applies_overrides_and_stops(fx, serve):
    fx.lb["rules"] = [{"condition": "", "fixed_response": {"status_code": 503}, "overrides": {"ttl": 10}},
                      {"condition": "", "overrides": {"ttl": 77}}]
    s = serve(fx)
    assert {t for t, _ in ttl_and_addrs(s.query("lb.example.com"))} == {10}


def test_rule_overrides_steering_policy_and_geo_maps(fx, serve):
    fx.lb["rules"] = [{"condition": 'cf.load_balancer.name == "lb.example.com"',
                       "overrides": {"region_pools": {"WEU": ["p-eu"]}}}]
    s = serve(fx)
    # policy "off" stays off: maps are ignored unless the policy resolves to geo
    assert addresses(s.query("lb.example.com", pop="LHR")) == EAST
    fx.lb["steering_policy"] = ""
    s2 = serve(fx)
    assert addresses(s2.query("lb.example.com", pop="LHR")) == EU  # "" re-resolved to geo after overrides


def test_rule_location_strategy_merge(fx, serve):
    fx.lb["steering_policy"] = "proximity"
    fx.lb["default_pools"] = ["p-us-east", "p-us-west", "p-eu", "p-asia"]
    fx.lb["location_strategy"] = {"prefer_ecs": "never", "mode": "pop"}
    fx.lb["rules"] = [{"condition": "dns.rr.opt.client", "overrides": {"location_strategy": {"prefer_ecs": "always"}}}]
    s = serve(fx)
    assert addresses(s.query("lb.example.com", pop="IAD", ecs="198.51.100.128/26")) == {"192.0.2.40"}
    assert addresses(s.query("lb.example.com", pop="IAD")) == EAST
