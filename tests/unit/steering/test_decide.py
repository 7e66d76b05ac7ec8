"""Table-driven unit tests of :func:`lbdns.steering.decide.decide`: every steering policy,
endpoint steering (single vs multi answer, weights, hash), load shedding, fallback and
``minimum_origins`` — in process, with an injected ``random.Random(seed)``, clock, locator
and hostname lookup (Cloudflare docs: Load Balancing › Traffic steering; › Load shedding;
docs/steering.md).

The configurations are the base fixture of ``tests/integration/harness.py`` (SPEC-EXAMPLES
§0.1) compiled by the real loader; the statistics draw 10,000 decisions from a seeded rng
(milliseconds) instead of 10,000 queries over sockets.
"""

from __future__ import annotations

import functools
import ipaddress
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import dns.name
import pytest

from lbdns.health.view import EMPTY_HEALTH, HealthView, OriginState, PoolRtt
from lbdns.steering.decide import ClientLocation, Decision, Query, decide
from lbdns.steering.origins import HostAddresses
from lbdns.steering.plan import Effective
from tests.fixtures.snapshots import Built, build, healthy
from tests.integration.harness import Fixture

U = OriginState.UNHEALTHY
K = OriginState.UNKNOWN
A, CNAME, MX, AAAA, SRV = 1, 5, 15, 28, 33
EAST = frozenset({"192.0.2.10", "192.0.2.11"})
WEST = frozenset({"192.0.2.20", "192.0.2.21"})
EU = frozenset({"192.0.2.30", "192.0.2.31"})
ASIA = frozenset({"192.0.2.40"})
FALLBACK = frozenset({"192.0.2.99"})
WA, WB, WC = frozenset({"192.0.2.60"}), frozenset({"192.0.2.61"}), frozenset({"192.0.2.62"})
NODATA: frozenset[str] = frozenset()
DOWN = {key: U for key in [("p-us-east", "e1"), ("p-us-east", "e2"), ("p-us-west", "w1"), ("p-us-west", "w2"),
                           ("p-eu", "eu1"), ("p-eu", "eu2"), ("p-fallback", "fb1")]}
EAST_DOWN = {("p-us-east", "e1"): U, ("p-us-east", "e2"): U}
WEST_DOWN = {("p-us-west", "w1"): U, ("p-us-west", "w2"): U}
N = 10_000
"""Draws per statistic: the standard error of a share p is sqrt(p(1-p)/N) ≤ 0.005."""
TOL = 0.02
"""Four standard errors at N draws: a seeded draw is deterministic, and any seed passes."""

Modify = Callable[[Fixture], Any]


def query(qtype: int = A, *, resolver: str = "198.51.100.5", pop: str = "IAD", region: str = "ENAM",
          now: float = 1000.0) -> Query:
    return Query(qtype, resolver, pop, region, now)


@functools.cache
def rdata_text(rtype: int, rdata: bytes) -> str:
    if rtype in (A, AAAA):
        return str(ipaddress.ip_address(rdata))
    if rtype == CNAME:
        return dns.name.from_wire(rdata, 0)[0].to_text()
    return rdata.hex()


def answer(d: Decision) -> frozenset[str]:
    """The answer records of a decision as a set of texts."""
    return frozenset(rdata_text(t, rd) for t, rd in d.records)


def compiled(fx: Fixture, tmp_path, modify: Modify | None = None, **settings: Any) -> Built:
    if modify is not None:
        modify(fx)
    return build(fx, tmp_path, **settings)


def run(b: Built, view: HealthView | None = None, *, q: Query | None = None, seed: int = 1,
        eff: Effective | None = None, **kw: Any) -> Decision:
    return decide(eff or b.lb.base, q or query(), view if view is not None else healthy(b.snapshot),
                  random.Random(seed), **kw)


def tally(b: Built, view: HealthView | None = None, *, n: int = N, seed: int = 7,
          resolvers: Callable[[int], str] | None = None, **kw: Any) -> Counter[frozenset[str]]:
    """Answers of ``n`` decisions drawn from one seeded rng (as the server's single rng does)."""
    rng = random.Random(seed)
    view = view if view is not None else healthy(b.snapshot)
    eff = b.lb.base
    out: Counter[frozenset[str]] = Counter()
    for i in range(n):
        q = query(resolver=resolvers(i) if resolvers else "198.51.100.5")
        out[answer(decide(eff, q, view, rng, **kw))] += 1
    return out


def share(c: Counter[frozenset[str]], key: frozenset[str]) -> float:
    return c[key] / sum(c.values())


RESOLVERS = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(N)]


def distinct_resolvers(i: int) -> str:
    """The ``i``-th of ``N`` distinct resolver addresses (10.0.0.0 + i)."""
    return RESOLVERS[i]


def lb(**fields: Any) -> Modify:
    return lambda fx: fx.lb.update(fields)


def pool(name: str, **fields: Any) -> Modify:
    return lambda fx: fx.pool(name).update(fields)


def origin(p: str, o: str, **fields: Any) -> Modify:
    return lambda fx: fx.origin(p, o).update(fields)


def both(*mods: Modify) -> Modify:
    def apply(fx: Fixture) -> None:
        for m in mods:
            m(fx)
    return apply


def add_origin(p: str, **o: Any) -> Modify:
    return lambda fx: fx.pool(p)["origins"].append(o)


# --- off (failover), fallback, minimum_origins, disabled, weight 0 ----------------------------

FAILOVER: list[tuple[str, Modify | None, dict[tuple[str, str], OriginState] | None, int, frozenset[str],
                     str | None, bool]] = [
    # id, fixture change, health (None: all healthy; {}: nothing known), qtype, answer, pool, fallback
    ("ex01-all-healthy-multi", None, None, A, EAST, "p-us-east", False),
    ("ex02-primary-critical", None, EAST_DOWN, A, WEST, "p-us-west", False),
    ("ex03-degraded-one-left", None, {("p-us-east", "e2"): U}, A, frozenset({"192.0.2.10"}), "p-us-east", False),
    ("ex04-minimum-origins-2", pool("p-us-east", minimum_origins=2), {("p-us-east", "e2"): U}, A, WEST,
     "p-us-west", False),
    ("ex05-all-critical-fallback-health-ignored", None, DOWN, A, FALLBACK, "p-fallback", True),
    ("ex06-fallback-pool-disabled", pool("p-fallback", enabled=False), DOWN, A, NODATA, None, False),
    ("ex06-fallback-origin-disabled", origin("p-fallback", "fb1", enabled=False), DOWN, A, NODATA,
     "p-fallback", True),
    ("ex07-unknown-is-down", None, {}, A, FALLBACK, "p-fallback", True),
    ("ex07-explicit-unknown", None, {k: K for k in DOWN}, A, FALLBACK, "p-fallback", True),
    ("ex08-unmonitored-primary", both(*(lambda fx, n=n: fx.pool(n).pop("monitor") for n in
                                        ("p-us-east", "p-us-west", "p-eu"))), {}, A, EAST, "p-us-east", False),
    ("ex09-disabled-pool-skipped", pool("p-us-east", enabled=False), None, A, WEST, "p-us-west", False),
    ("ex09-all-disabled-fallback", both(*(pool(n, enabled=False) for n in ("p-us-east", "p-us-west", "p-eu"))),
     None, A, FALLBACK, "p-fallback", True),
    ("ex10-disabled-origin-not-counted", both(pool("p-us-east", minimum_origins=2),
                                              origin("p-us-east", "e2", enabled=False)), None, A, WEST,
     "p-us-west", False),
    ("ex11-weight-zero-never-returned", add_origin("p-us-east", name="e3", address="192.0.2.12", weight=0),
     None, A, EAST, "p-us-east", False),
    ("weight-zero-counts-for-minimum", both(add_origin("p-us-east", name="e3", address="192.0.2.12", weight=0),
                                            pool("p-us-east", minimum_origins=3)), None, A, EAST, "p-us-east",
     False),
    ("only-weight-zero-healthy-not-usable", add_origin("p-us-east", name="e3", address="192.0.2.12", weight=0),
     EAST_DOWN, A, WEST, "p-us-west", False),
    ("ex12-aaaa-on-ipv4-pool-nodata", None, None, AAAA, NODATA, "p-us-east", False),
    ("ex12-cname-on-ip-pool-nodata", None, None, CNAME, NODATA, "p-us-east", False),
    ("ex18-mixed-a", lb(default_pools=["p-mixed"]), None, A, frozenset({"192.0.2.50"}), "p-mixed", False),
    ("ex18-mixed-aaaa", lb(default_pools=["p-mixed"]), None, AAAA, frozenset({"2001:db8::50", "2001:db8::51"}),
     "p-mixed", False),
    ("ex18-mixed-aaaa-one-down", lb(default_pools=["p-mixed"]), {("p-mixed", "m6a"): U}, AAAA,
     frozenset({"2001:db8::51"}), "p-mixed", False),
    ("ex18-mixed-a-v6-down", lb(default_pools=["p-mixed"]), {("p-mixed", "m6a"): U}, A,
     frozenset({"192.0.2.50"}), "p-mixed", False),
    ("ex39-all-shed-fallback-never-shed",
     both(lb(default_pools=["p-us-east", "p-us-west"]),
          *(pool(n, load_shedding={"default_percent": 100}) for n in ("p-us-east", "p-us-west", "p-fallback"))),
     None, A, FALLBACK, "p-fallback", True),
    ("session-percent-has-no-effect", pool("p-us-east", load_shedding={"session_percent": 100}), None, A, EAST,
     "p-us-east", False),
    ("empty-policy-without-maps-is-off", lb(steering_policy=""), EAST_DOWN, A, WEST, "p-us-west", False),
]


@pytest.mark.parametrize(("modify", "states", "qtype", "expected", "pool_name", "fallback"),
                         [c[1:] for c in FAILOVER], ids=[c[0] for c in FAILOVER])
def test_failover_table(fx, tmp_path, modify, states, qtype, expected, pool_name, fallback):
    b = compiled(fx, tmp_path, modify)
    view = EMPTY_HEALTH if states == {} else healthy(b.snapshot, states)
    for seed in (1, 2, 3):  # "off" never draws: the answer set is the same for every rng
        d = run(b, view, q=query(qtype), seed=seed)
        assert answer(d) == expected
        assert (d.pool.name if d.pool else None, d.fallback) == (pool_name, fallback)
        # memoisable by the edge unless shedding draws (even at 100 %, conservatively)
        assert d.cacheable == (not any(p.shed_percent for p in b.snapshot.pools.values()))


def test_failback_follows_the_health_view_only(fx, tmp_path):
    b = compiled(fx, tmp_path)
    assert answer(run(b, healthy(b.snapshot, EAST_DOWN))) == WEST
    assert answer(run(b, healthy(b.snapshot))) == EAST


# --- endpoint steering: single vs multi answer ------------------------------------------------

def test_equal_weights_multi_answer_all_addresses(fx, tmp_path):
    b = compiled(fx, tmp_path)
    d = run(b)
    assert d.multi and answer(d) == EAST and [o.name for o in d.origins] == ["e1", "e2"]


def test_ex23_unequal_weights_single_answer_70_30(fx, tmp_path):
    b = compiled(fx, tmp_path, lb(default_pools=["p-weighted"]))
    c = tally(b)
    assert set(c) == {WA, WB}
    assert abs(share(c, WA) - 0.70) <= TOL
    d = run(b)
    assert not d.multi and len(d.records) == 1
    assert d.cacheable and d.weighted is not None and sorted(w for w, _ in d.weighted) == [0.3, 0.7]


def test_ex24_weights_41_18_41_and_health_switches_to_multi(fx, tmp_path):
    b = compiled(fx, tmp_path, both(add_origin("p-weighted", name="wc", address="192.0.2.62", weight=0.7),
                                    lb(default_pools=["p-weighted"])))
    c = tally(b)
    assert set(c) == {WA, WB, WC}
    for key, p in ((WA, 0.7 / 1.7), (WB, 0.3 / 1.7), (WC, 0.7 / 1.7)):
        assert abs(share(c, key) - p) <= TOL
    down = healthy(b.snapshot, {("p-weighted", "wb"): U})
    c = tally(b, down, n=200)
    assert c == Counter({WA | WC: 200})  # the eligible origins now share one weight: multi-answer


@pytest.mark.parametrize("policy", ["random", "least_outstanding_requests", "least_connections"])
def test_ex26_origin_policies_other_than_hash_are_weighted_random(fx, tmp_path, policy):
    b = compiled(fx, tmp_path, both(lb(default_pools=["p-weighted"]),
                                    pool("p-weighted", origin_steering={"policy": policy})))
    c = tally(b)
    assert abs(share(c, WA) - 0.70) <= TOL
    assert ("W-LOR-DNS" in {w.code for w in b.loaded.config.warnings}) == (policy != "random")


def test_ex25_hash_is_sticky_per_resolver_and_weighted(fx, tmp_path):
    b = compiled(fx, tmp_path, both(lb(default_pools=["p-weighted"]),
                                    pool("p-weighted", origin_steering={"policy": "hash"})))
    view = healthy(b.snapshot)
    first = tally(b, view, resolvers=distinct_resolvers, seed=1)
    # another rng, the same choices (checked on the first 1,000 resolvers)
    assert tally(b, view, n=1000, resolvers=distinct_resolvers, seed=99) == tally(
        b, view, n=1000, resolvers=distinct_resolvers, seed=1)
    assert abs(share(first, WA) - 0.70) <= TOL
    for i in range(50):  # per resolver: the same origin whatever the rng
        q = query(resolver=distinct_resolvers(i))
        assert len({answer(run(b, view, q=q, seed=s)) for s in range(5)}) == 1
    d = run(b, view)
    assert not d.cacheable and d.weighted is None  # keyed by the resolver: never memoised


def test_hash_with_equal_weights_is_multi_answer(fx, tmp_path):
    b = compiled(fx, tmp_path, pool("p-us-east", origin_steering={"policy": "hash"}))
    assert {answer(run(b, q=query(resolver=distinct_resolvers(i)))) for i in range(20)} == {EAST}


def test_hash_moves_only_the_resolvers_of_a_removed_origin(fx, tmp_path):
    """Rendezvous hashing: taking one origin out re-homes only the resolvers it had."""
    b = compiled(fx, tmp_path, both(lb(default_pools=["p-weighted"]),
                                    pool("p-weighted", origin_steering={"policy": "hash"}),
                                    add_origin("p-weighted", name="wc", address="192.0.2.62", weight=0.5)))
    full = healthy(b.snapshot)
    less = healthy(b.snapshot, {("p-weighted", "wc"): U})
    for i in range(500):
        q = query(resolver=distinct_resolvers(i))
        before, after = answer(run(b, full, q=q)), answer(run(b, less, q=q))
        assert before in (after, WC)


# --- random pool steering (random, least_outstanding_requests, least_connections) ------------

def random_lb(policy: str = "random", **rs: Any) -> Modify:
    return lb(steering_policy=policy, random_steering=rs or {"default_weight": 0.2,
                                                            "pool_weights": {"p-us-east": 0.3, "p-us-west": 0.5}})


@pytest.mark.parametrize("policy", ["random", "least_outstanding_requests", "least_connections"])
def test_ex27_pool_weights_30_50_20(fx, tmp_path, policy):
    b = compiled(fx, tmp_path, random_lb(policy))
    c = tally(b)
    assert set(c) == {EAST, WEST, EU}
    for key, p in ((EAST, 0.3), (WEST, 0.5), (EU, 0.2)):
        assert abs(share(c, key) - p) <= TOL
    assert ("W-LOR-DNS" in {w.code for w in b.loaded.config.warnings}) == (policy != "random")
    assert not run(b).cacheable  # a real draw between pools


def test_ex27_unhealthy_pool_is_left_out_of_the_draw(fx, tmp_path):
    b = compiled(fx, tmp_path, random_lb())
    c = tally(b, healthy(b.snapshot, WEST_DOWN))
    assert set(c) == {EAST, EU}
    assert abs(share(c, EAST) - 0.6) <= TOL


def test_ex27_zero_weights_fallback(fx, tmp_path):
    b = compiled(fx, tmp_path, random_lb(default_weight=0, pool_weights={"p-us-east": 0, "p-us-west": 0}))
    assert tally(b, n=200) == Counter({FALLBACK: 200})


def test_random_weight_zero_pool_never_drawn(fx, tmp_path):
    b = compiled(fx, tmp_path, random_lb(default_weight=0, pool_weights={"p-us-west": 0.5}))
    assert tally(b, n=200) == Counter({WEST: 200})
    d = run(b)
    assert d.cacheable  # one candidate pool: no draw


# --- geo ---------------------------------------------------------------------------------------

class Locator:
    """An injected client location; records what steering asked for."""

    def __init__(self, country: str | None = None, lat: float | None = None, lon: float | None = None, *,
                 region: str | None = None, source: str = "ecs") -> None:
        self.loc = ClientLocation(source, country, lat, lon, region)
        self.calls: list[dict[str, str]] = []

    def __call__(self, *, need: str, prefer_ecs: str, mode: str, policy: str) -> ClientLocation:
        self.calls.append({"need": need, "prefer_ecs": prefer_ecs, "mode": mode, "policy": policy})
        return self.loc


NOWHERE = Locator()
TOKYO = Locator("JP", 35.69, 139.69, region="NEAS")
LONDON = Locator("GB", 51.51, -0.13, region="WEU")
SAN_FRANCISCO = Locator("US", 37.77, -122.42, region="WNAM")
NEW_YORK = Locator("US", 40.71, -74.01, region="ENAM")
FRANKFURT = Locator("DE", 50.11, 8.68, region="WEU")

EX30 = lb(steering_policy="geo", pop_pools={"LHR": ["p-us-west"]}, country_pools={"GB": ["p-asia"]},
          region_pools={"WEU": ["p-eu"]})
EX40 = lb(default_pools=["p-us-east", "p-us-west"], steering_policy="geo",
          region_pools={"ENAM": ["p-us-west", "p-us-east"]}, location_strategy={"prefer_ecs": "never", "mode": "pop"})

GEO: list[tuple[str, Modify, str, str, Locator, frozenset[str]]] = [
    # id, fixture change, PoP, PoP region, client location, answer
    ("ex28-region-by-pop-lhr", lb(steering_policy="", region_pools={"WEU": ["p-eu", "p-us-east"]}), "LHR", "WEU",
     NOWHERE, EU),
    ("ex28-region-by-pop-iad", lb(steering_policy="", region_pools={"WEU": ["p-eu", "p-us-east"]}), "IAD", "ENAM",
     NOWHERE, EAST),
    ("ex28-location-never-changes-region", lb(steering_policy="", region_pools={"WEU": ["p-eu", "p-us-east"]}),
     "LHR", "WEU", TOKYO, EU),
    ("ex29-country", lb(steering_policy="geo", country_pools={"JP": ["p-asia"]}), "SJC", "WNAM", TOKYO, ASIA),
    ("ex29-other-country-default", lb(steering_policy="geo", country_pools={"JP": ["p-asia"]}), "SJC", "WNAM",
     SAN_FRANCISCO, EAST),
    ("ex29-no-country-default", lb(steering_policy="geo", country_pools={"JP": ["p-asia"]}), "SJC", "WNAM",
     NOWHERE, EAST),
    ("ex30-pop-before-country", EX30, "LHR", "WEU", LONDON, WEST),
    ("ex30-country-before-region", EX30, "FRA", "WEU", LONDON, ASIA),
    ("ex30-region-last", EX30, "FRA", "WEU", FRANKFURT, EU),
    ("ex31-empty-list-is-undefined", lb(steering_policy="geo", region_pools={"WEU": []}), "LHR", "WEU", NOWHERE,
     EAST),
    ("ex40-persistence-by-pop-iad", EX40, "IAD", "ENAM", LONDON, WEST),
    ("ex40-persistence-by-pop-sjc", EX40, "SJC", "WNAM", NEW_YORK, EAST),
]


@pytest.mark.parametrize(("modify", "pop", "region", "locator", "expected"), [c[1:] for c in GEO],
                         ids=[c[0] for c in GEO])
def test_geo_table(fx, tmp_path, modify, pop, region, locator, expected):
    b = compiled(fx, tmp_path, modify)
    d = run(b, q=query(pop=pop, region=region), locate=locator)
    assert answer(d) == expected
    assert d.cacheable


def test_geo_asks_for_the_country_with_the_lb_location_strategy(fx, tmp_path):
    b = compiled(fx, tmp_path, lb(steering_policy="geo", country_pools={"JP": ["p-asia"]},
                                  location_strategy={"prefer_ecs": "always", "mode": "resolver_ip"}))
    loc = Locator("JP")
    d = run(b, locate=loc)
    assert loc.calls == [{"need": "country", "prefer_ecs": "always", "mode": "resolver_ip", "policy": "geo"}]
    assert d.location is loc.loc


def test_geo_pop_mapping_needs_no_location(fx, tmp_path):
    b = compiled(fx, tmp_path, EX30)
    loc = Locator("GB")
    d = run(b, q=query(pop="LHR", region="WEU"), locate=loc)
    assert answer(d) == WEST and loc.calls == [] and d.location is None


def test_ex31_exhausted_mapped_list_fallback_without_cascade(fx, tmp_path):
    b = compiled(fx, tmp_path, lb(steering_policy="geo", region_pools={"WEU": ["p-eu"]}))
    d = run(b, healthy(b.snapshot, {("p-eu", "eu1"): U, ("p-eu", "eu2"): U}), q=query(pop="LHR", region="WEU"))
    assert answer(d) == FALLBACK and d.fallback


def test_geo_default_pools_cascade_when_unmapped(fx, tmp_path):
    b = compiled(fx, tmp_path, lb(steering_policy="geo", region_pools={"WEU": ["p-eu"]}))
    assert answer(run(b, healthy(b.snapshot, EAST_DOWN))) == WEST


@pytest.mark.parametrize(("source", "expected"), [("ecs", ASIA), ("resolver", ASIA), ("pop", EAST)])
def test_geo_region_source_location(fx, tmp_path, source, expected):
    """``geo_region_source: location``: the client location's region picks ``region_pools``,
    unless the location is only the PoP's."""
    b = compiled(fx, tmp_path, lb(steering_policy="geo", region_pools={"NEAS": ["p-asia"]}),
                 geo_region_source="location")
    d = run(b, locate=Locator("JP", region="NEAS", source=source))
    assert answer(d) == expected


def test_geo_region_source_pop_ignores_location_region(fx, tmp_path):
    b = compiled(fx, tmp_path, lb(steering_policy="geo", region_pools={"NEAS": ["p-asia"]}))
    assert answer(run(b, locate=Locator("JP", region="NEAS"))) == EAST


# --- proximity ---------------------------------------------------------------------------------

PROX = lb(steering_policy="proximity", default_pools=["p-us-east", "p-us-west", "p-eu", "p-asia"])

PROXIMITY: list[tuple[str, Locator | None, dict[tuple[str, str], OriginState] | None, frozenset[str]]] = [
    ("ex32-san-francisco-west", SAN_FRANCISCO, None, WEST),
    ("ex32-new-york-east", NEW_YORK, None, EAST),
    ("ex32-london-eu", LONDON, None, EU),
    ("ex32-tokyo-asia", TOKYO, None, ASIA),
    ("ex32-nearest-critical-next-nearest", SAN_FRANCISCO, WEST_DOWN, EAST),
    ("ex32-tokyo-asia-critical-next-west", TOKYO, {("p-asia", "as1"): U}, WEST),
    ("no-coordinates-default-order", NOWHERE, None, EAST),
    ("no-locator-default-order", None, None, EAST),
]


@pytest.mark.parametrize(("locator", "states", "expected"), [c[1:] for c in PROXIMITY],
                         ids=[c[0] for c in PROXIMITY])
def test_proximity_table(fx, tmp_path, locator, states, expected):
    b = compiled(fx, tmp_path, PROX)
    d = run(b, healthy(b.snapshot, states), locate=locator)
    assert answer(d) == expected
    if locator is not None:
        assert locator.calls[-1]["need"] == "coordinates" and locator.calls[-1]["policy"] == "proximity"


def test_proximity_pools_without_coordinates_come_last(fx, tmp_path):
    b = compiled(fx, tmp_path, lb(steering_policy="proximity", default_pools=["p-weighted", "p-eu", "p-asia"]))
    assert answer(run(b, locate=TOKYO)) == ASIA
    d = run(b, healthy(b.snapshot, {("p-asia", "as1"): U, ("p-eu", "eu1"): U, ("p-eu", "eu2"): U}), locate=TOKYO)
    assert d.pool is not None and d.pool.name == "p-weighted"


def test_proximity_order_is_the_same_on_repeat(fx, tmp_path):
    """The memoised distance order gives the same answer as the first computation."""
    b = compiled(fx, tmp_path, PROX)
    view = healthy(b.snapshot)
    assert {answer(run(b, view, locate=LONDON)) for _ in range(3)} == {EU}
    assert {answer(run(b, view, locate=TOKYO)) for _ in range(3)} == {ASIA}


# --- dynamic_latency ---------------------------------------------------------------------------

def rtts(now: float, **ms: float) -> dict[str, PoolRtt]:
    return {k.replace("_", "-"): PoolRtt(v, now - 1.0, 180.0) for k, v in ms.items()}


LATENCY: list[tuple[str, dict[str, PoolRtt], dict[tuple[str, str], OriginState] | None, frozenset[str]]] = [
    ("ex33-fastest", rtts(1000.0, p_us_east=80, p_us_west=30, p_eu=150), None, WEST),
    ("ex33-fastest-critical", rtts(1000.0, p_us_east=80, p_us_west=30, p_eu=150), WEST_DOWN, EAST),
    ("ex33-no-rtt-failover-order", {}, None, EAST),
    ("ex33-pools-with-rtt-first", rtts(1000.0, p_eu=150), None, EU),
    ("ex33-stale-rtt-not-current", {"p-eu": PoolRtt(10, 1000.0 - 1000, 180.0)}, None, EAST),
    ("rtt-just-inside-max-age", {"p-eu": PoolRtt(10, 1000.0 - 179.9, 180.0)}, None, EU),
    ("rtt-at-max-age-is-stale", {"p-eu": PoolRtt(10, 1000.0 - 180.0, 180.0)}, None, EAST),
]


@pytest.mark.parametrize(("rtt", "states", "expected"), [c[1:] for c in LATENCY], ids=[c[0] for c in LATENCY])
def test_dynamic_latency_table(fx, tmp_path, rtt, states, expected):
    b = compiled(fx, tmp_path, lb(steering_policy="dynamic_latency"))
    d = run(b, healthy(b.snapshot, states, rtt=rtt), q=query(now=1000.0))
    assert answer(d) == expected
    assert not d.cacheable  # depends on RTT freshness, i.e. on the clock


def test_dynamic_latency_reads_the_injected_clock(fx, tmp_path):
    b = compiled(fx, tmp_path, lb(steering_policy="dynamic_latency"))
    view = healthy(b.snapshot, rtt={"p-eu": PoolRtt(10, 1000.0, 60.0)})
    assert answer(run(b, view, q=query(now=1059.0))) == EU
    assert answer(run(b, view, q=query(now=1061.0))) == EAST


def test_dynamic_latency_ignores_rtt_of_unmonitored_pool(fx, tmp_path):
    b = compiled(fx, tmp_path, both(lb(steering_policy="dynamic_latency"), lambda fx: fx.pool("p-eu").pop("monitor")))
    assert answer(run(b, healthy(b.snapshot, rtt=rtts(1000.0, p_eu=1)))) == EAST


# --- load shedding ---------------------------------------------------------------------------

def test_ex37_random_shedding_half_the_queries(fx, tmp_path):
    b = compiled(fx, tmp_path, pool("p-us-east", load_shedding={"default_percent": 50, "default_policy": "random"}))
    c = tally(b)
    assert set(c) == {EAST, WEST}
    assert abs(share(c, EAST) - 0.5) <= TOL
    assert not run(b).cacheable


@pytest.mark.parametrize("percent", [10, 50, 90])
def test_random_shedding_percentages(fx, tmp_path, percent):
    b = compiled(fx, tmp_path, pool("p-us-east", load_shedding={"default_percent": percent}))
    assert abs(share(tally(b), WEST) - percent / 100) <= TOL


def test_ex38_hash_shedding_is_per_resolver_and_half_of_them(fx, tmp_path):
    b = compiled(fx, tmp_path, both(lb(default_pools=["p-us-east", "p-us-west"]),
                                    pool("p-us-east", load_shedding={"default_percent": 50, "default_policy": "hash"},
                                         origin_steering={"policy": "hash"})))
    view = healthy(b.snapshot)
    first = tally(b, view, resolvers=distinct_resolvers, seed=1)
    assert tally(b, view, n=1000, resolvers=distinct_resolvers, seed=2) == tally(
        b, view, n=1000, resolvers=distinct_resolvers, seed=1)  # the rng plays no part
    assert set(first) == {EAST, WEST}
    assert abs(share(first, EAST) - 0.5) <= TOL


def test_hash_shedding_keeps_a_resolver_when_its_pool_is_kept(fx, tmp_path):
    b = compiled(fx, tmp_path, pool("p-us-east", load_shedding={"default_percent": 30, "default_policy": "hash"}))
    view = healthy(b.snapshot)
    for i in range(100):
        q = query(resolver=distinct_resolvers(i))
        assert len({answer(run(b, view, q=q, seed=s)) for s in range(4)}) == 1


def test_shedding_moves_on_to_next_pool_in_every_policy(fx, tmp_path):
    b = compiled(fx, tmp_path, both(random_lb(default_weight=0, pool_weights={"p-us-east": 1, "p-us-west": 1}),
                                    pool("p-us-east", load_shedding={"default_percent": 100})))
    assert tally(b, n=200) == Counter({WEST: 200})


# --- hostname origins, CNAME, MX and SRV ------------------------------------------------------

HOSTS = {"a.example.net.": HostAddresses(True, (bytes([192, 0, 2, 70]), bytes([192, 0, 2, 71])),
                                         (ipaddress.IPv6Address("2001:db8::70").packed,)),
         "b.example.net.": HostAddresses(True, (bytes([192, 0, 2, 80]),))}


def hosts(name: str) -> HostAddresses:
    return HOSTS.get(name, HostAddresses(False))


def host_pool(*origins: dict[str, Any], **extra: Any) -> Modify:
    def apply(fx: Fixture) -> None:
        fx.account["pools"].append({"name": "p-host", "origins": list(origins), **extra})
        fx.lb["default_pools"] = ["p-host", "p-us-east"]
    return apply


def test_flattened_hostname_origin_answers_its_addresses(fx, tmp_path):
    b = compiled(fx, tmp_path, host_pool({"name": "h", "address": "a.example.net"}))
    assert answer(run(b, lookup=hosts)) == {"192.0.2.70", "192.0.2.71"}
    assert answer(run(b, q=query(AAAA), lookup=hosts)) == {"2001:db8::70"}
    assert not run(b, lookup=hosts).cacheable  # depends on the hostname cache


def test_hostname_that_failed_to_resolve_makes_the_pool_unusable(fx, tmp_path):
    b = compiled(fx, tmp_path, host_pool({"name": "h", "address": "nowhere.example.net"}))
    assert answer(run(b, lookup=hosts)) == EAST


def test_failed_hostname_origin_is_skipped_among_others(fx, tmp_path):
    b = compiled(fx, tmp_path, host_pool({"name": "h", "address": "nowhere.example.net"},
                                         {"name": "g", "address": "b.example.net"}))
    assert answer(run(b, lookup=hosts)) == {"192.0.2.80"}


def test_non_flattened_hostname_is_a_single_cname(fx, tmp_path):
    b = compiled(fx, tmp_path, host_pool({"name": "h", "address": "a.example.net", "flatten_cname": False},
                                         {"name": "g", "address": "b.example.net", "flatten_cname": False}))
    c = tally(b, n=400, lookup=hosts)
    assert set(c) == {frozenset({"a.example.net."}), frozenset({"b.example.net."})}
    assert answer(run(b, q=query(CNAME), lookup=hosts)) in c


def test_single_answer_origin_with_several_addresses_returns_one(fx, tmp_path):
    b = compiled(fx, tmp_path, host_pool({"name": "h", "address": "a.example.net", "weight": 0.6},
                                         {"name": "g", "address": "b.example.net", "weight": 0.4}))
    c = tally(b, n=2000, lookup=hosts)
    assert set(c) == {frozenset({"192.0.2.70"}), frozenset({"192.0.2.71"}), frozenset({"192.0.2.80"})}
    assert abs(share(c, frozenset({"192.0.2.80"})) - 0.4) <= 0.05


def test_mx_and_srv_from_hostname_origins(fx, tmp_path):
    b = compiled(fx, tmp_path, host_pool({"name": "h", "address": "a.example.net", "port": 25, "mx_preference": 5,
                                          "srv_priority": 1, "srv_weight": 2}))
    mx = run(b, q=query(MX), lookup=hosts)
    assert mx.records == [(MX, b"\x00\x05" + dns.name.from_text("a.example.net").to_wire())]
    srv = run(b, q=query(SRV), lookup=hosts)
    assert srv.records == [(SRV, b"\x00\x01\x00\x02\x00\x19" + dns.name.from_text("a.example.net").to_wire())]
    assert run(b, q=query(MX), lookup=hosts).pool.name == "p-host"
    ip = compiled(Fixture(), tmp_path / "ip")
    assert run(ip, q=query(MX)).records == []  # IP origins have no MX


# --- trace ---------------------------------------------------------------------------------------

def test_trace_only_when_asked(fx, tmp_path):
    b = compiled(fx, tmp_path)
    assert run(b).trail is None
    trail = run(b, healthy(b.snapshot, EAST_DOWN), trace=True).trail
    assert trail is not None and trail[0] == "steering_policy: off"
    assert any(line.startswith("pool p-us-east: not usable") for line in trail)


def test_dynamic_latency_per_region_rtt_of_the_querying_pop(fx, tmp_path):
    """``rtt_scope: region``: the RTT measured from the querying PoP's region orders the pools
    (Cloudflare docs: Load Balancing › Global traffic steering › Dynamic); a region without
    data falls back to the pool's own RTT."""
    from dataclasses import replace
    from types import MappingProxyType

    b = compiled(fx, tmp_path, lb(steering_policy="dynamic_latency"))
    view = healthy(b.snapshot, rtt=rtts(1000.0, p_us_east=80, p_us_west=30, p_eu=150))
    regional = {("p-eu", "WEU"): PoolRtt(5, 999.0, 180.0), ("p-us-east", "ENAM"): PoolRtt(10, 999.0, 180.0)}
    view = replace(view, region_rtt=MappingProxyType(regional))
    assert answer(run(b, view, q=query(pop="IAD", region="ENAM"))) == EAST
    assert answer(run(b, view, q=query(pop="FRA", region="WEU"))) == EU
    assert answer(run(b, view, q=query(pop="NRT", region="NEAS"))) == WEST  # no NEAS data: pool RTTs
