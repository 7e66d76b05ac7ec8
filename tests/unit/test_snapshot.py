"""Unit tests of :func:`lbdns.snapshot.build_snapshot`: the name tree (empty non-terminals,
delegation points, negative-answer SOA), pre-encoded RRsets, compiled pools and load-balancer
plans with their rules (RFC 1034 §4.3.2, RFC 2308 §3/§5, RFC 4592 §2.2.2; Cloudflare docs: Load
Balancing › Create custom rules; Cloudflare API docs: Load Balancer Details ›
``steering_policy``; docs/architecture.md › Compile once)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from lbdns.snapshot import Snapshot, ZoneIndex, name_wire
from lbdns.wire.render import QNAME_POINTER
from tests.fixtures.snapshots import Built, build, build_dir
from tests.integration.harness import Fixture
from tests.integration.static_zone import write_static_zones


def wire(name: str) -> bytes:
    return name_wire(dns.name.from_text(name))


@pytest.fixture(scope="module")
def static(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return build_dir(write_static_zones(tmp_path_factory.mktemp("static"))).snapshot


def zone(snap: Snapshot, origin: str) -> ZoneIndex:
    return snap.zones[wire(origin)]


def test_zones_keyed_by_lower_case_wire_apex(static):
    assert set(static.zones) == {wire("example.com"), wire("example.net")}
    assert zone(static, "example.com").origin_text == "example.com."


def test_empty_non_terminals_exist_without_data(static):
    z = zone(static, "example.com")
    for ent in ("b.c.example.com", "c.example.com", "e.w.example.com"):
        node = z.nodes[wire(ent)]
        assert node.rrsets == {} and node.lb is None
    assert wire("a.b.c.example.com") in z.nodes
    assert wire("nope.example.com") not in z.nodes


def test_delegation_points(static):
    z = zone(static, "example.com")
    assert z.cuts == frozenset({wire("sub.example.com")})
    assert z.nodes[wire("sub.example.com")].is_cut
    assert not z.nodes[wire("example.com")].is_cut  # the apex NS is not a cut


@pytest.mark.parametrize(("origin", "ttl"), [("example.com", 300), ("example.net", 120)])
def test_negative_soa_ttl_is_min_of_ttl_and_minimum(static, origin, ttl):
    z = zone(static, origin)
    owner = wire(origin)
    assert z.negative_soa.startswith(owner)
    rtype, rclass, got_ttl, rdlen = struct.unpack_from("!HHIH", z.negative_soa, len(owner))
    assert (rtype, rclass, got_ttl, rdlen) == (6, 1, ttl, len(z.negative_soa) - len(owner) - 10)


def test_relative_soa_names_are_made_absolute(tmp_path):
    fx = Fixture()
    fx.zone["soa"] = dict(fx.zone["soa"], mname="ns1", rname="hostmaster")
    snap = build(fx, tmp_path).snapshot
    z = zone(snap, "example.com")
    rd = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.SOA, z.negative_soa, len(wire("example.com")) + 10,
                             len(z.negative_soa) - len(wire("example.com")) - 10)
    assert (rd.mname.to_text(), rd.rname.to_text()) == ("ns1.example.com.", "hostmaster.example.com.")


def test_encoded_rrset_tails_pointer_form_and_targets(static):
    z = zone(static, "example.com")
    www = z.nodes[wire("www.example.com")].rrsets[1]
    assert (www.rtype, www.ttl, www.count) == (1, 300, 1)
    assert www.tails == (struct.pack("!HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 80]),)
    assert www.at_qname == QNAME_POINTER + www.tails[0]
    assert www.with_owner(b"\x01x\x00") == b"\x01x\x00" + www.tails[0]
    cname = z.nodes[wire("chain-a.example.com")].rrsets[5]
    assert cname.targets == (wire("chain-b.example.com"),)
    mx = z.nodes[wire("example.com")].rrsets[15]
    assert mx.targets == (wire("mail.example.com"),)
    ns = z.nodes[wire("sub.example.com")].rrsets[2]
    assert ns.targets == (wire("ns.sub.example.com"),)
    assert z.nodes[wire("www.example.com")].rrsets[28].targets == ()


def test_big_rrset_keeps_every_rr(static):
    big = zone(static, "example.com").nodes[wire("big.example.com")].rrsets[1]
    assert big.count == 40 and len(set(big.tails)) == 40


# --- pools and load balancers ---------------------------------------------------------------------

def compiled(tmp_path: Path, **lb: Any) -> Built:
    fx = Fixture()
    fx.lb.update(lb)
    return build(fx, tmp_path)


def test_pools_by_id_and_by_name(tmp_path):
    fx = Fixture()
    fx.pool("p-eu")["id"] = "pool-0042"
    fx.lb["default_pools"] = ["pool-0042"]
    snap = build(fx, tmp_path).snapshot
    assert snap.pools["pool-0042"] is snap.pools["p-eu"]
    assert snap.plans["lb.example.com."].base.default_pools == (snap.pools["p-eu"],)


def test_compiled_pool_fields(tmp_path):
    fx = Fixture()
    fx.pool("p-us-east").update(load_shedding={"default_percent": 25, "default_policy": "hash"},
                                origin_steering={"policy": "hash"}, minimum_origins=2)
    fx.account["pools"].append({"name": "p-host", "origins": [{"name": "h", "address": "A.Example.NET"}]})
    snap = build(fx, tmp_path).snapshot
    east = snap.pools["p-us-east"]
    assert (east.shed_percent, east.shed_policy, east.origin_policy, east.minimum_origins) == (25, "hash", "hash", 2)
    assert (east.latitude, east.longitude, east.monitored, east.has_hostnames) == (39.04, -77.49, True, False)
    assert [(o.index, o.name, o.family, o.packed) for o in east.origins] == [
        (0, "e1", 4, bytes([192, 0, 2, 10])), (1, "e2", 4, bytes([192, 0, 2, 11]))]
    host = snap.pools["p-host"]
    assert host.has_hostnames and not host.monitored
    h = host.origins[0]
    assert (h.family, h.hostname, h.hostname_wire) == (0, "a.example.net.", wire("a.example.net"))
    mixed = snap.pools["p-mixed"]
    assert [o.family for o in mixed.origins] == [4, 6, 6]
    assert snap.pools["p-weighted"].origins[0].weight == 0.7
    assert snap.pools["p-fallback"].shed_percent == 0


POLICIES: list[tuple[str, dict[str, Any], str, str]] = [
    ("off-stays-off", {"steering_policy": "off", "region_pools": {"WEU": ["p-eu"]}}, "off", "off"),
    ("empty-with-maps-is-geo", {"steering_policy": "", "region_pools": {"WEU": ["p-eu"]}}, "geo", ""),
    ("empty-country-map-is-geo", {"steering_policy": "", "country_pools": {"JP": ["p-asia"]}}, "geo", ""),
    ("empty-pop-map-is-geo", {"steering_policy": "", "pop_pools": {"LHR": ["p-eu"]}}, "geo", ""),
    ("empty-without-maps-is-off", {"steering_policy": ""}, "off", ""),
    ("empty-lists-count-as-no-map", {"steering_policy": "", "region_pools": {"WEU": []}}, "off", ""),
    ("random-kept", {"steering_policy": "random"}, "random", "random"),
    ("proximity-kept", {"steering_policy": "proximity"}, "proximity", "proximity"),
]


@pytest.mark.parametrize(("fields", "resolved", "configured"), [c[1:] for c in POLICIES],
                         ids=[c[0] for c in POLICIES])
def test_policy_resolution(tmp_path, fields, resolved, configured):
    base = compiled(tmp_path, **fields).lb.base
    assert (base.steering_policy, base.configured_policy) == (resolved, configured)


def test_base_effective(tmp_path):
    b = compiled(tmp_path, ttl=45, region_pools={"WEU": ["p-eu", "p-us-east"], "ENAM": []},
                 random_steering={"default_weight": 0.2, "pool_weights": {"p-us-east": 0.3}},
                 location_strategy={"prefer_ecs": "always", "mode": "resolver_ip"})
    eff, pools = b.lb.base, b.snapshot.pools
    assert eff.default_pools == (pools["p-us-east"], pools["p-us-west"], pools["p-eu"])
    assert eff.fallback_pool is pools["p-fallback"]
    assert dict(eff.region_pools) == {"WEU": (pools["p-eu"], pools["p-us-east"])}  # empty list: undefined
    assert (eff.ttl, eff.default_weight, dict(eff.pool_weights)) == (45, 0.2, {"p-us-east": 0.3})
    assert (eff.prefer_ecs, eff.location_mode, eff.region_source) == ("always", "resolver_ip", "pop")
    assert build(Fixture(), tmp_path / "loc", geo_region_source="location").lb.base.region_source == "location"


def test_only_enabled_lbs_join_the_name_tree(tmp_path):
    fx = Fixture()
    fx.zone["load_balancers"]["off"] = dict(fx.lb, enabled=False)
    snap = build(fx, tmp_path).snapshot
    z = zone(snap, "example.com")
    assert z.nodes[wire("lb.example.com")].lb is snap.plans["lb.example.com."]
    assert "off.example.com." in snap.plans
    assert wire("off.example.com") not in z.nodes
    plan = snap.plans["lb.example.com."]
    assert (plan.rule_name, plan.zone, plan.serves_mx_srv) == ("lb.example.com", "example.com.", True)


def test_mx_srv_served_by_lbs_only_on_enterprise(tmp_path):
    fx = Fixture()
    fx.account["monitors"] = [m for m in fx.account["monitors"] if m["type"] != "smtp"]  # enterprise-only type
    assert not build(fx, tmp_path, plan="non_enterprise").lb.serves_mx_srv


def test_rules_sorted_by_priority_then_index_disabled_dropped(tmp_path):
    b = compiled(tmp_path, rules=[
        {"name": "c", "priority": 5, "condition": "dns.qry.type == 1"},
        {"name": "a", "priority": 1, "condition": 'cf.load_balancer.region == "WEU"'},
        {"name": "off", "priority": 0, "condition": "ip.src in {10.0.0.0/8}", "disabled": True},
        {"priority": 5, "condition": "", "terminates": True, "overrides": {"ttl": 9}},
    ])
    plan = b.lb
    assert [(r.name, r.index, r.stops) for r in plan.rules] == [("a", 1, False), ("c", 0, False),
                                                                 ("rules[3]", 3, True)]
    assert {"dns.qry.type", "cf.load_balancer.region"} <= plan.rule_fields
    assert "ip.src" not in plan.rule_fields
    assert plan.rules[2].overrides == ("ttl",)


def test_rule_overrides_replace_lists_and_merge_one_level(tmp_path):
    b = compiled(tmp_path, random_steering={"default_weight": 0.2, "pool_weights": {"p-us-east": 0.3}},
                 location_strategy={"prefer_ecs": "never", "mode": "resolver_ip"}, rules=[
                     {"condition": "", "overrides": {
                         "default_pools": ["p-eu"], "fallback_pool": "p-asia", "ttl": 77,
                         "random_steering": {"default_weight": 0.9},
                         "location_strategy": {"prefer_ecs": "always"},
                         "region_pools": {"WEU": ["p-eu"]}}}])
    rule = b.lb.rules[0]
    eff = rule.apply(b.lb.base)
    pools = b.snapshot.pools
    assert (eff.default_pools, eff.fallback_pool, eff.ttl) == ((pools["p-eu"],), pools["p-asia"], 77)
    assert (eff.default_weight, dict(eff.pool_weights)) == (0.9, {"p-us-east": 0.3})  # merged one level deep
    assert (eff.prefer_ecs, eff.location_mode) == ("always", "resolver_ip")
    assert eff.steering_policy == "off"  # configured "off" re-resolved: maps do not switch it on
    assert set(rule.overrides) == {"default_pools", "fallback_pool", "ttl", "random_steering",
                                   "location_strategy", "region_pools"}
    assert b.lb.base.ttl == 30 and b.lb.base.default_weight == 0.2  # the base is untouched


@pytest.mark.parametrize(("configured", "override", "resolved"), [
    ("", {"region_pools": {"WEU": ["p-eu"]}}, "geo"),
    ("", {"steering_policy": "random"}, "random"),
    ("geo", {"steering_policy": ""}, "off"),
    ("off", {"steering_policy": ""}, "off"),
])
def test_rule_policy_re_resolved_after_the_merge(tmp_path, configured, override, resolved):
    b = compiled(tmp_path, steering_policy=configured, rules=[{"condition": "", "overrides": override}])
    assert b.lb.rules[0].apply(b.lb.base).steering_policy == resolved
