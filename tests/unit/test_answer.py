"""Table-driven unit tests of :func:`lbdns.answer.resolve` over snapshots compiled from small
configurations: zone match, referrals, wildcards, CNAME chasing, NXDOMAIN/NODATA, ANY, load
balancer precedence, custom rules and the ECS scope (RFC 1034 §4.3.2, RFC 2308, RFC 4592,
RFC 6604, RFC 7871 §7.2.1, RFC 8482; Cloudflare docs: Load Balancing › DNS-only load balancing;
› Create custom rules; docs/decisions.md › Answers and precedence).

In process: the answer is rendered with :func:`lbdns.wire.render.build_response` and decoded
with dnspython; health, rng, clock and client location are injected through ``QueryEnv``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from lbdns.answer import MAX_CNAME_CHAIN, Answer, NeedsEnv, QueryEnv, find_zone, label_offsets, resolve
from lbdns.geo.location import StaticGeoTable
from lbdns.health.view import HealthView, OriginState
from lbdns.snapshot import Snapshot
from lbdns.steering.decide import ClientLocation
from lbdns.wire.codec import ClientSubnet
from tests.fixtures.geo import BASE_GEO_TABLE
from tests.fixtures.snapshots import Built, build, build_dir, decoded, healthy, parsed
from tests.integration.harness import Fixture
from tests.integration.static_zone import BIG_ADDRS, COM_NEG_SOA, NET_NEG_SOA, write_static_zones
from tests.integration.test_rules_scenarios import _ex36 as ex36

NOERROR, NXDOMAIN, REFUSED = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED
U = OriginState.UNHEALTHY
EAST = {"192.0.2.10", "192.0.2.11"}
WEST = {"192.0.2.20", "192.0.2.21"}
EU = {"192.0.2.30", "192.0.2.31"}
ASIA = {"192.0.2.40"}
LB_SOA = ("example.com.", 300, "SOA", "ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300")
GEO = StaticGeoTable.from_mapping(BASE_GEO_TABLE)

RR = tuple[str, int, str, str]


def rrs(section: list[Any]) -> set[RR]:
    return {(r.name.to_text(), r.ttl, dns.rdatatype.to_text(r.rdtype), rd.to_text()) for r in section for rd in r}


def ask(snap: Snapshot, name: str, rdtype: str = "A",
        env: QueryEnv | None = None) -> tuple[Answer, dns.message.Message]:
    q = parsed(name, rdtype)
    ans = resolve(snap, q.qname_lower, q.qtype, env)
    return ans, decoded(q, ans)


def ecs(subnet: str) -> ClientSubnet:
    e = parsed("x.example.com", ecs=subnet).edns
    assert e is not None and e.ecs is not None
    return e.ecs


def env(b: Built, *, health: HealthView | None = None, resolver: str = "198.51.100.5", subnet: str | None = None,
        pop: str = "IAD", region: str = "ENAM", seed: int = 1, locator: Any = None, **kw: Any) -> QueryEnv:
    def asn_of(ip: Any) -> int | None:
        rec = GEO.lookup(ip)
        return rec.asn if rec is not None else None

    def country_of(ip: Any) -> str | None:
        rec = GEO.lookup(ip)
        return rec.country if rec is not None else None

    return QueryEnv(resolver_ip=resolver, ecs=ecs(subnet) if subnet else None, pop=pop, pop_region=region,
                    health=health if health is not None else healthy(b.snapshot), rng=random.Random(seed),
                    now=1000.0, locator=locator, asn_of=asn_of, country_of=country_of, **kw)


# --- ordinary authoritative data (the static two-zone fixture) --------------------------------

@pytest.fixture(scope="module")
def static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snapshot]:
    d: Path = tmp_path_factory.mktemp("static")
    yield build_dir(write_static_zones(d)).snapshot


C = "example.com."
STATIC: list[tuple[str, str, int, bool, set[RR], set[RR], set[RR]]] = [
    # qname, qtype, rcode, AA, answer, authority, additional
    ("www.example.com", "A", NOERROR, True, {("www." + C, 300, "A", "192.0.2.80")}, set(), set()),
    ("www.example.com", "AAAA", NOERROR, True, {("www." + C, 300, "AAAA", "2001:db8::80")}, set(), set()),
    ("www.example.com", "MX", NOERROR, True, set(), {COM_NEG_SOA}, set()),
    ("nope.example.com", "A", NXDOMAIN, True, set(), {COM_NEG_SOA}, set()),
    ("example.com", "MX", NOERROR, True, {(C, 3600, "MX", "10 mail.example.com.")}, set(), set()),
    ("example.com", "NS", NOERROR, True, {(C, 3600, "NS", "ns1.example.com.")}, set(), set()),
    ("example.com", "A", NOERROR, True, set(), {COM_NEG_SOA}, set()),
    ("chain-a.example.com", "A", NOERROR, True,
     {("chain-a." + C, 300, "CNAME", "chain-b.example.com."), ("chain-b." + C, 300, "CNAME", "chain-c.example.com."),
      ("chain-c." + C, 300, "A", "192.0.2.3")}, set(), set()),
    ("chain-a.example.com", "CNAME", NOERROR, True, {("chain-a." + C, 300, "CNAME", "chain-b.example.com.")},
     set(), set()),
    ("out.example.com", "A", NOERROR, True, {("out." + C, 300, "CNAME", "www.example.org.")}, set(), set()),
    ("xz.example.com", "A", NOERROR, True,
     {("xz." + C, 300, "CNAME", "target.example.net."), ("target.example.net.", 300, "A", "198.51.100.7")},
     set(), set()),
    ("hop.example.net", "A", NOERROR, True,
     {("hop.example.net.", 300, "CNAME", "chain-c.example.com."), ("chain-c." + C, 300, "A", "192.0.2.3")},
     set(), set()),
    ("dangling.example.com", "A", NXDOMAIN, True, {("dangling." + C, 300, "CNAME", "nothere.example.com.")},
     {COM_NEG_SOA}, set()),
    ("dangling-net.example.com", "A", NXDOMAIN, True,
     {("dangling-net." + C, 300, "CNAME", "missing.example.net.")}, {NET_NEG_SOA}, set()),
    ("www.example.com", "CNAME", NOERROR, True, set(), {COM_NEG_SOA}, set()),
    # wildcards (RFC 4592)
    ("foo.w.example.com", "A", NOERROR, True, {("foo.w." + C, 300, "A", "192.0.2.77")}, set(), set()),
    ("a.foo.w.example.com", "A", NOERROR, True, {("a.foo.w." + C, 300, "A", "192.0.2.77")}, set(), set()),
    ("real.w.example.com", "A", NOERROR, True, {("real.w." + C, 300, "A", "192.0.2.78")}, set(), set()),
    ("foo.w.example.com", "AAAA", NOERROR, True, set(), {COM_NEG_SOA}, set()),
    ("e.w.example.com", "A", NOERROR, True, set(), {COM_NEG_SOA}, set()),  # empty non-terminal blocks *.w
    ("y.e.w.example.com", "A", NXDOMAIN, True, set(), {COM_NEG_SOA}, set()),  # closest encloser e.w: no *.e.w
    ("*.w.example.com", "A", NOERROR, True, {("*.w." + C, 300, "A", "192.0.2.77")}, set(), set()),
    ("foo.cw.example.com", "A", NOERROR, True,
     {("foo.cw." + C, 300, "CNAME", "www.example.com."), ("www." + C, 300, "A", "192.0.2.80")}, set(), set()),
    ("b.c.example.com", "A", NOERROR, True, set(), {COM_NEG_SOA}, set()),
    ("c.example.com", "TXT", NOERROR, True, set(), {COM_NEG_SOA}, set()),
    # delegation (RFC 1034 §4.3.2 step 3b): AA clear, NS in authority, glue in additional
    ("sub.example.com", "A", NOERROR, False, set(), {("sub." + C, 3600, "NS", "ns.sub.example.com.")},
     {("ns.sub." + C, 3600, "A", "192.0.2.53")}),
    ("deep.x.sub.example.com", "AAAA", NOERROR, False, set(), {("sub." + C, 3600, "NS", "ns.sub.example.com.")},
     {("ns.sub." + C, 3600, "A", "192.0.2.53")}),
    ("ns.sub.example.com", "A", NOERROR, False, set(), {("sub." + C, 3600, "NS", "ns.sub.example.com.")},
     {("ns.sub." + C, 3600, "A", "192.0.2.53")}),
    ("sub.example.com", "DS", NOERROR, True, set(), {COM_NEG_SOA}, set()),  # parent side (RFC 4035 §3.1.4.1)
    ("sub.example.com", "NS", NOERROR, False, set(), {("sub." + C, 3600, "NS", "ns.sub.example.com.")},
     {("ns.sub." + C, 3600, "A", "192.0.2.53")}),
    # ANY (RFC 8482 §4.1): one RRset
    ("www.example.com", "ANY", NOERROR, True, {("www." + C, 300, "A", "192.0.2.80")}, set(), set()),
    ("example.com", "ANY", NOERROR, True, {(C, 3600, "MX", "10 mail.example.com.")}, set(), set()),
    ("b.c.example.com", "ANY", NOERROR, True, set(), {COM_NEG_SOA}, set()),
    ("nope.example.com", "ANY", NXDOMAIN, True, set(), {COM_NEG_SOA}, set()),
    # not ours
    ("www.example.org", "A", REFUSED, False, set(), set(), set()),
    ("example", "A", REFUSED, False, set(), set(), set()),
    ("net", "A", REFUSED, False, set(), set(), set()),
]


@pytest.mark.parametrize(("qname", "qtype", "rcode", "aa", "answer", "authority", "additional"), STATIC,
                         ids=[f"{c[0]}/{c[1]}" for c in STATIC])
def test_static_table(static, qname, qtype, rcode, aa, answer, authority, additional):
    ans, msg = ask(static, qname, qtype)
    assert msg.rcode() == rcode
    assert bool(msg.flags & dns.flags.AA) is aa
    assert (rrs(msg.answer), rrs(msg.authority), rrs(msg.additional)) == (answer, authority, additional)
    assert ans.static and ans.lb is None


def test_big_rrset_and_soa(static):
    ans, msg = ask(static, "big.example.com")
    assert ans.ancount == len(BIG_ADDRS) and {r[3] for r in rrs(msg.answer)} == set(BIG_ADDRS)
    _, soa = ask(static, "example.com", "SOA")
    assert rrs(soa.answer) == {(C, 3600, "SOA", "ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 "
                                                "1209600 300")}


def test_cname_loop_stops_at_the_chain_limit(static):
    ans, msg = ask(static, "loop-x.example.com")
    assert msg.rcode() == NOERROR and ans.ancount == MAX_CNAME_CHAIN
    assert {r[2] for r in rrs(msg.answer)} == {"CNAME"}


def test_resolve_without_env_is_static_or_needs_env(static, tmp_path):
    """``resolve`` keeps no memo (the serving plan does); without a QueryEnv it answers static
    data and raises NeedsEnv where a load balancer would be consulted."""
    q = parsed("www.example.com")
    first = resolve(static, q.qname_lower, q.qtype, None)
    again = resolve(static, q.qname_lower, q.qtype, None)
    assert again is not first and again == first and first.static
    lb = compiled(tmp_path).snapshot
    with pytest.raises(NeedsEnv):
        resolve(lb, parsed("lb.example.com").qname_lower, 1, None)


def test_refused_answers_are_not_shared(static):
    """Every REFUSED answer is its own object: a caller filling one in changes no later one."""
    q = parsed("www.example.org")
    first = resolve(static, q.qname_lower, q.qtype, None)
    first.matched_rules.append("touched")
    first.ancount = 9
    again = resolve(static, q.qname_lower, q.qtype, None)
    assert again is not first and again.rcode == REFUSED
    assert (again.matched_rules, again.ancount) == ([], 0)


def test_find_zone_picks_the_closest_enclosing_zone(tmp_path):
    fx = Fixture()
    fx.write(tmp_path)
    (tmp_path / "zones" / "sub.yaml").write_text(
        "zone: deep.example.com\nsoa: {mname: ns1.example.com., rname: h.example.com., serial: 1}\n"
        "ns: [ns1.example.com.]\n")
    snap = build_dir(tmp_path / "zones").snapshot
    for name, origin in (("a.deep.example.com", "deep.example.com."), ("deep.example.com", "deep.example.com."),
                         ("a.example.com", "example.com."), ("example.com", "example.com.")):
        z, offs, k = find_zone(snap, parsed(name).qname_lower)
        assert z is not None and z.origin_text == origin
        assert len(offs) == len(name.split(".")) and k == len(offs) - len(origin.rstrip(".").split("."))
    assert find_zone(snap, parsed("example.org").qname_lower)[0] is None
    assert label_offsets(b"\x01a\x02bc\x00") == [0, 2]


# --- load balancers: precedence and answers -----------------------------------------------------

def compiled(tmp_path: Path, **changes: Any) -> Built:
    fx = Fixture()
    for key, value in changes.items():
        if key == "records":
            fx.zone["records"].update(value)
        elif key == "lbs":
            fx.zone["load_balancers"] = value
        elif key == "pools":
            fx.account["pools"].extend(value)
        else:
            fx.lb[key] = value
    return build(fx, tmp_path)


BASE_LB = Fixture().lb
LB_NAME = "lb." + C


def test_lb_answer_multi_rotates_with_the_rng(tmp_path):
    b = compiled(tmp_path)
    orders = set()
    for seed in range(8):
        ans, msg = ask(b.snapshot, "lb.example.com", env=env(b, seed=seed))
        assert msg.rcode() == NOERROR and msg.flags & dns.flags.AA
        assert rrs(msg.answer) == {(LB_NAME, 30, "A", a) for a in EAST}
        assert not ans.static and ans.lb is b.lb and ans.ecs_scope is None
        assert len(ans.rrs) == 2  # cacheable: the edge may rotate these itself
        orders.add(tuple(rd.to_text() for r in msg.answer for rd in r))
    assert orders == {("192.0.2.10", "192.0.2.11"), ("192.0.2.11", "192.0.2.10")}


def test_lb_weighted_single_answer_carries_its_candidates(tmp_path):
    b = compiled(tmp_path, default_pools=["p-weighted"])
    ans, msg = ask(b.snapshot, "lb.example.com", env=env(b))
    assert len(msg.answer[0]) == 1 and ans.rrs == ()
    assert sorted(w for w, _ in ans.weighted) == [0.3, 0.7]


def test_lb_nodata_has_soa_and_is_not_static(tmp_path):
    b = compiled(tmp_path)
    for qtype in ("AAAA", "MX", "SRV"):
        ans, msg = ask(b.snapshot, "lb.example.com", qtype, env=env(b))
        assert (msg.rcode(), rrs(msg.answer), rrs(msg.authority)) == (NOERROR, set(), {LB_SOA})
        assert not ans.static


LB_PRECEDENCE: list[tuple[str, dict[str, Any], str, str, int, set[RR]]] = [
    ("ex13-lb-supersedes-a", {"records": {"lb": [{"type": "A", "ttl": 300, "value": "192.0.2.250"},
                                                 {"type": "TXT", "ttl": 300, "value": "v=test"}]}},
     "lb.example.com", "A", NOERROR, {(LB_NAME, 30, "A", a) for a in EAST}),
    ("ex13-txt-still-answered", {"records": {"lb": [{"type": "A", "ttl": 300, "value": "192.0.2.250"},
                                                    {"type": "TXT", "ttl": 300, "value": "v=test"}]}},
     "lb.example.com", "TXT", NOERROR, {(LB_NAME, 300, "TXT", '"v=test"')}),
    ("ex13-disabled-lb-serves-record", {"records": {"lb": {"type": "A", "ttl": 300, "value": "192.0.2.250"}},
                                        "enabled": False},
     "lb.example.com", "A", NOERROR, {(LB_NAME, 300, "A", "192.0.2.250")}),
    ("ex14-disabled-lb-without-records", {"enabled": False}, "lb.example.com", "A", NXDOMAIN, set()),
    ("lb-supersedes-cname-a", {"records": {"lb": {"type": "CNAME", "ttl": 300, "value": "elsewhere.example.net."}}},
     "lb.example.com", "A", NOERROR, {(LB_NAME, 30, "A", a) for a in EAST}),
    ("lb-supersedes-cname-cname", {"records": {"lb": {"type": "CNAME", "ttl": 300,
                                                      "value": "elsewhere.example.net."}}},
     "lb.example.com", "CNAME", NOERROR, set()),
    ("lb-supersedes-aaaa", {"records": {"lb": {"type": "AAAA", "ttl": 300, "value": "2001:db8::99"}}},
     "lb.example.com", "AAAA", NOERROR, set()),
    ("ex17-any-hinfo", {}, "lb.example.com", "ANY", NOERROR, {(LB_NAME, 30, "HINFO", '"RFC8482" ""')}),
    ("ex12-lb-ttl", {"ttl": 120}, "lb.example.com", "A", NOERROR, {(LB_NAME, 120, "A", a) for a in EAST}),
    ("ex15-specific-record-beats-wildcard-lb", {"lbs": {"*": BASE_LB},
                                                "records": {"y": {"type": "A", "ttl": 300, "value": "192.0.2.201"},
                                                            "*": {"type": "A", "ttl": 300, "value": "192.0.2.202"}}},
     "y.example.com", "A", NOERROR, {("y." + C, 300, "A", "192.0.2.201")}),
    ("ex15-wildcard-lb-beats-wildcard-record",
     {"lbs": {"*": BASE_LB}, "records": {"*": {"type": "A", "ttl": 300, "value": "192.0.2.202"}}},
     "z.example.com", "A", NOERROR, {("z." + C, 30, "A", a) for a in EAST}),
    ("ex16-txt-only-name-blocks-wildcard-lb",
     {"lbs": {"*": BASE_LB}, "records": {"t": {"type": "TXT", "ttl": 300, "value": "x"}}},
     "t.example.com", "A", NOERROR, set()),
    ("disabled-wildcard-lb-synthesizes-nothing", {"lbs": {"*": dict(BASE_LB, enabled=False)}},
     "anything.example.com", "A", NXDOMAIN, set()),
    ("ex19-cname-chased-into-lb", {"records": {"alias": {"type": "CNAME", "ttl": 300, "value": "lb.example.com."}}},
     "alias.example.com", "A", NOERROR,
     {("alias." + C, 300, "CNAME", "lb.example.com."), *((LB_NAME, 30, "A", a) for a in EAST)}),
    ("ex50-apex-lb", {"lbs": {"": BASE_LB}}, "example.com", "A", NOERROR, {(C, 30, "A", a) for a in EAST}),
    ("ex50-apex-lb-ns-still-served", {"lbs": {"": BASE_LB}}, "example.com", "NS", NOERROR,
     {(C, 3600, "NS", "ns1.example.com.")}),
    ("ex50-apex-lb-mx-nodata", {"lbs": {"": BASE_LB}}, "example.com", "MX", NOERROR, set()),
]


@pytest.mark.parametrize(("changes", "qname", "qtype", "rcode", "answer"), [c[1:] for c in LB_PRECEDENCE],
                         ids=[c[0] for c in LB_PRECEDENCE])
def test_lb_precedence_table(tmp_path, changes, qname, qtype, rcode, answer):
    b = compiled(tmp_path, **changes)
    _, msg = ask(b.snapshot, qname, qtype, env=env(b))
    assert (msg.rcode(), rrs(msg.answer)) == (rcode, answer)
    assert bool(msg.flags & dns.flags.AA)
    if not answer:
        assert rrs(msg.authority) == {LB_SOA}


def test_lb_cname_origin_chased_when_target_served_here(tmp_path):
    b = compiled(tmp_path, pools=[{"name": "p-cname", "origins": [
        {"name": "c", "address": "www.example.com", "flatten_cname": False}]}],
        records={"www": {"type": "A", "ttl": 300, "value": "192.0.2.80"}}, default_pools=["p-cname"])
    ans, msg = ask(b.snapshot, "lb.example.com", env=env(b))
    assert rrs(msg.answer) == {(LB_NAME, 30, "CNAME", "www.example.com."), ("www." + C, 300, "A", "192.0.2.80")}
    assert not ans.rrs and not ans.weighted  # chased per answer: never memoised by the edge
    _, msg = ask(b.snapshot, "lb.example.com", "CNAME", env=env(b))
    assert rrs(msg.answer) == {(LB_NAME, 30, "CNAME", "www.example.com.")}


# --- custom rules -------------------------------------------------------------------------------

def ex35(**r2_extra: Any) -> list[dict[str, Any]]:
    return [{"name": "r1", "priority": 10, "condition": "dns.qry.type == 1", "overrides": {"ttl": 60}},
            {"name": "r2", "priority": 5, "condition": 'cf.load_balancer.region == "ENAM"',
             "overrides": {"ttl": 120, "default_pools": ["p-eu"]}, **r2_extra}]


def _ex36_rules() -> list[dict[str, Any]]:
    fx = Fixture()
    ex36(fx)  # the EX-36 rules of the black-box scenario, on default pools [p-us-east]
    rules: list[dict[str, Any]] = fx.lb["rules"]
    return rules


EX36 = _ex36_rules()

RULES: list[tuple[str, list[dict[str, Any]], str, dict[str, Any], set[tuple[int, str]], list[str]]] = [
    # id, rules, qtype, env arguments, {(ttl, address)}, matched rule names
    ("ex35-priority-order", ex35(), "A", {"region": "ENAM"}, {(60, a) for a in EU}, ["r2", "r1"]),
    ("ex35-only-r1", ex35(), "A", {"pop": "LHR", "region": "WEU"}, {(60, a) for a in EAST}, ["r1"]),
    ("ex35-terminates", ex35(terminates=True), "A", {"region": "ENAM"}, {(120, a) for a in EU}, ["r2"]),
    ("ex35-disabled", ex35(disabled=True), "A", {"region": "ENAM"}, {(60, a) for a in EAST}, ["r1"]),
    ("ex35-array-order-last-wins", [{"condition": "", "overrides": {"ttl": 60}},
                                    {"condition": "", "overrides": {"ttl": 90}}], "A", {},
     {(90, a) for a in EAST}, ["rules[0]", "rules[1]"]),
    ("ex36-qtype", EX36, "AAAA", {}, {(45, "2001:db8::50"), (45, "2001:db8::51")}, ["v6", "name"]),
    ("ex36-ecs-fields", EX36, "A", {"subnet": "203.0.113.0/24"}, {(45, a) for a in EU}, ["ecs", "name"]),
    ("ex36-asn", EX36, "A", {"resolver": "198.51.100.130"}, {(45, "192.0.2.40")}, ["name", "asn"]),
    ("ex34-ip-src-resolver", [{"name": "low", "condition": "ip.src in {0.0.0.0/1}",
                               "overrides": {"default_pools": ["p-us-west"]}}], "A", {"resolver": "10.1.2.3"},
     {(30, a) for a in WEST}, ["low"]),
    ("ex34-ip-src-outside", [{"name": "low", "condition": "ip.src in {0.0.0.0/1}",
                              "overrides": {"default_pools": ["p-us-west"]}}], "A", {"resolver": "198.51.100.5"},
     {(30, a) for a in EAST}, []),
    ("ex34-ip-src-is-ecs", [{"name": "low", "condition": "ip.src in {0.0.0.0/1}",
                             "overrides": {"default_pools": ["p-us-west"]}}], "A",
     {"resolver": "198.51.100.5", "subnet": "10.20.0.0/24"}, {(30, a) for a in WEST}, ["low"]),
    ("ex34-ip-src-uses-ecs-false", [{"name": "low", "condition": "ip.src in {10.0.0.0/8}",
                                     "overrides": {"default_pools": ["p-us-west"]}}], "A",
     {"resolver": "198.51.100.5", "subnet": "10.20.0.0/24", "ip_src_uses_ecs": False}, {(30, a) for a in EAST}, []),
    ("ex47-proxied-field-never-matches", [{"condition": 'http.request.uri.path contains "/x"',
                                           "overrides": {"ttl": 5}}], "A", {}, {(30, a) for a in EAST}, []),
    ("ex47-fixed-response-stops", [{"condition": "", "fixed_response": {"status_code": 503}, "overrides": {"ttl": 10}},
                                   {"condition": "", "overrides": {"ttl": 77}}], "A", {},
     {(10, a) for a in EAST}, ["rules[0]"]),
    ("rule-policy-off-ignores-maps", [{"condition": "", "overrides": {"region_pools": {"WEU": ["p-eu"]}}}], "A",
     {"pop": "LHR", "region": "WEU"}, {(30, a) for a in EAST}, ["rules[0]"]),
    ("rule-sets-policy-geo", [{"condition": "", "overrides": {"region_pools": {"WEU": ["p-eu"]},
                                                              "steering_policy": "geo"}}], "A",
     {"pop": "LHR", "region": "WEU"}, {(30, a) for a in EU}, ["rules[0]"]),
    ("rule-fallback-override", [{"condition": "", "overrides": {"fallback_pool": "p-asia",
                                                                "default_pools": ["p-eu"]}}], "A",
     {"health": "eu-down"}, {(30, "192.0.2.40")}, ["rules[0]"]),
]


@pytest.mark.parametrize(("rules", "qtype", "env_args", "expected", "matched"), [c[1:] for c in RULES],
                         ids=[c[0] for c in RULES])
def test_rules_table(tmp_path, rules, qtype, env_args, expected, matched):
    b = compiled(tmp_path, rules=rules)
    if env_args.get("health") == "eu-down":
        env_args = dict(env_args, health=healthy(b.snapshot, {("p-eu", "eu1"): U, ("p-eu", "eu2"): U}))
    ans, msg = ask(b.snapshot, "lb.example.com", qtype, env=env(b, **env_args))
    assert {(ttl, a) for _, ttl, _, a in rrs(msg.answer)} == expected
    assert ans.matched_rules == matched
    assert not ans.rrs and not ans.weighted  # rules make LB answers per query


def test_rule_empty_policy_reresolved_to_geo_after_overrides(tmp_path):
    b = compiled(tmp_path, steering_policy="", rules=[{"condition": "", "overrides": {"region_pools": {
        "WEU": ["p-eu"]}}}])
    _, msg = ask(b.snapshot, "lb.example.com", env=env(b, pop="LHR", region="WEU"))
    assert {r[3] for r in rrs(msg.answer)} == EU


def test_rule_location_strategy_merge(tmp_path):
    b = compiled(tmp_path, steering_policy="proximity", default_pools=["p-us-east", "p-us-west", "p-eu", "p-asia"],
                 location_strategy={"prefer_ecs": "never", "mode": "pop"},
                 rules=[{"condition": "dns.rr.opt.client",
                         "overrides": {"location_strategy": {"prefer_ecs": "always"}}}])
    seen: list[str] = []

    def locator(*, need: str, prefer_ecs: str, mode: str, policy: str) -> ClientLocation:
        seen.append(f"{prefer_ecs}/{mode}")
        return ClientLocation("ecs", "JP", 35.69, 139.69) if prefer_ecs == "always" else ClientLocation(
            "pop", "US", 38.94, -77.46)

    _, msg = ask(b.snapshot, "lb.example.com", env=env(b, subnet="198.51.100.128/26", locator=locator))
    assert {r[3] for r in rrs(msg.answer)} == ASIA
    _, msg = ask(b.snapshot, "lb.example.com", env=env(b, locator=locator))
    assert {r[3] for r in rrs(msg.answer)} == EAST
    assert seen == ["always/pop", "never/pop"]


# --- ECS scope (RFC 7871 §7.2.1) --------------------------------------------------------------

def fixed(loc: ClientLocation) -> Any:
    def locate(*, need: str, prefer_ecs: str, mode: str, policy: str) -> ClientLocation:
        return loc
    return locate


SF = (37.77, -122.42)
SCOPES: list[tuple[str, dict[str, Any], str | None, ClientLocation | None, int | None]] = [
    # id, LB fields, ECS, client location, scope
    ("no-ecs-no-option", {}, None, None, None),
    ("ecs-location-unused-scope-0", {}, "203.0.113.0/24", None, 0),
    ("ecs-decided-by-geoip-network", {"steering_policy": "proximity"}, "198.51.100.64/26",
     ClientLocation("ecs", "US", *SF, network_prefix=24, ecs_consulted=True), 24),
    ("geoip-network-longer-than-source", {"steering_policy": "proximity"}, "198.51.100.64/26",
     ClientLocation("ecs", "US", *SF, network_prefix=28, ecs_consulted=True), 26),
    ("ecs-consulted-without-data-scope-source", {"steering_policy": "proximity"}, "203.0.113.192/26",
     ClientLocation("pop", "US", 38.94, -77.46, ecs_consulted=True), 26),
    ("ecs-not-consulted", {"steering_policy": "proximity"}, "198.51.100.64/26",
     ClientLocation("resolver", "US", *SF), 0),
    ("rule-reads-ecs-scope-source", {"rules": [{"condition": "dns.rr.opt.client", "overrides": {"ttl": 5}}]},
     "198.51.100.64/25", None, 25),
    ("rule-reads-ip-src-from-ecs", {"rules": [{"condition": "ip.src in {10.0.0.0/8}", "overrides": {"ttl": 5}}]},
     "198.51.100.0/24", None, 24),
    ("rule-without-ecs-field-scope-0", {"rules": [{"condition": "dns.qry.type == 1", "overrides": {"ttl": 5}}]},
     "198.51.100.0/24", None, 0),
]


@pytest.mark.parametrize(("fields", "subnet", "loc", "scope"), [c[1:] for c in SCOPES], ids=[c[0] for c in SCOPES])
def test_ecs_scope_table(tmp_path, fields, subnet, loc, scope):
    fields = dict(fields)
    if fields.get("steering_policy") == "proximity":
        fields["default_pools"] = ["p-us-east", "p-us-west", "p-eu", "p-asia"]
    b = compiled(tmp_path, **fields)
    ans, _ = ask(b.snapshot, "lb.example.com", env=env(b, subnet=subnet, locator=fixed(loc) if loc else None))
    assert ans.ecs_scope == scope


def test_ip_src_uses_ecs_false_keeps_scope_zero(tmp_path):
    b = compiled(tmp_path, rules=[{"condition": "ip.src in {10.0.0.0/8}", "overrides": {"ttl": 5}}])
    ans, _ = ask(b.snapshot, "lb.example.com", env=env(b, subnet="10.20.0.0/24", ip_src_uses_ecs=False))
    assert ans.ecs_scope == 0


def test_chased_geo_lb_scope_counts(tmp_path):
    """A ``flatten_cname: false`` origin pointing at a geo LB served here: the chased LB's location
    sets the scope."""
    b = compiled(tmp_path, pools=[{"name": "p-to-geo", "origins": [
        {"name": "c", "address": "geo.example.com", "flatten_cname": False}]}],
        lbs={"front": {"default_pools": ["p-to-geo"], "steering_policy": "off"},
             "geo": {"default_pools": ["p-us-east"], "country_pools": {"JP": ["p-asia"]},
                     "fallback_pool": "p-fallback", "steering_policy": "geo"}})
    tokyo = ClientLocation("ecs", "JP", 35.69, 139.69, network_prefix=26, ecs_consulted=True)
    ans, msg = ask(b.snapshot, "front.example.com", env=env(b, subnet="198.51.100.128/26", locator=fixed(tokyo)))
    assert rrs(msg.answer) == {("front." + C, 30, "CNAME", "geo.example.com."), ("geo." + C, 30, "A", "192.0.2.40")}
    assert ans.ecs_scope == 26
