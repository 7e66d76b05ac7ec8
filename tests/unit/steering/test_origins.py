"""Unit tests of endpoint selection primitives (:mod:`lbdns.steering.origins`): weighted random
choice, weighted rendezvous hashing and load-shedding draws, with injected rngs (Cloudflare
docs: Load Balancing › Origin steering; › Load shedding; docs/steering.md)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from lbdns.config.model import Pool
from lbdns.snapshot import compile_pool
from lbdns.steering.origins import choose_single, hash_choice, hash_score, shed, weighted_choice
from lbdns.steering.plan import CompiledPool

N = 10_000
KEYS = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(N)]


def pool(*weights: float, policy: str = "random", shedding: dict[str, object] | None = None) -> CompiledPool:
    return compile_pool(Pool.model_validate({
        "name": "p", "origin_steering": {"policy": policy}, "load_shedding": shedding,
        "origins": [{"name": f"o{i}", "address": f"192.0.2.{i + 1}", "weight": w} for i, w in enumerate(weights)],
    }))


class Fixed:
    """An rng returning the given values in turn."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


@pytest.mark.parametrize(("draw", "expected"), [(0.0, "o0"), (0.6999, "o0"), (0.7, "o1"), (0.9999, "o1")])
def test_weighted_choice_maps_the_unit_interval_by_weight(draw, expected):
    assert weighted_choice(pool(0.7, 0.3).origins, Fixed(draw)).name == expected


def test_weighted_choice_skips_weight_zero():
    p = pool(0.5, 0.0, 0.5)
    assert weighted_choice(p.origins, Fixed(0.5)).name == "o2"
    c = Counter(weighted_choice(p.origins, random.Random(3)).name for _ in range(1000))
    assert "o1" not in c


def test_weighted_choice_shares():
    p = pool(0.5, 0.3, 0.2)
    rng = random.Random(11)
    c = Counter(weighted_choice(p.origins, rng).name for _ in range(N))
    for name, share in (("o0", 0.5), ("o1", 0.3), ("o2", 0.2)):
        assert abs(c[name] / N - share) <= 0.02


def test_hash_choice_is_deterministic_weighted_and_ignores_the_rng():
    p = pool(0.7, 0.3, policy="hash")
    picks = [hash_choice(p.id, p.origins, k).name for k in KEYS]
    assert picks == [choose_single(p, p.origins, random.Random(i), k).name for i, k in enumerate(KEYS)]
    assert abs(picks.count("o0") / N - 0.7) <= 0.02


def test_hash_choice_depends_on_pool_id():
    a, b = pool(0.5, 0.5, policy="hash"), replace(pool(0.5, 0.5, policy="hash"), id="other")
    differ = sum(hash_choice(a.id, a.origins, k).name != hash_choice(b.id, b.origins, k).name for k in KEYS[:1000])
    assert 350 <= differ <= 650  # independent hashes: about half differ


def test_hash_score_scales_with_weight_and_ties_keep_config_order():
    assert hash_score("p", "o", "k", 0.6) == pytest.approx(2 * hash_score("p", "o", "k", 0.3))
    p = pool(0.5, 0.5, policy="hash")
    twins = (p.origins[0], replace(p.origins[0], index=1))  # same name, same weight: the same score
    assert hash_choice(p.id, twins, "k") is twins[0]


def test_choose_single_random_policies_use_the_rng():
    for policy in ("random", "least_outstanding_requests", "least_connections"):
        p = pool(0.7, 0.3, policy=policy)
        assert choose_single(p, p.origins, Fixed(0.1), "k").name == "o0"
        assert choose_single(p, p.origins, Fixed(0.9), "k").name == "o1"


@pytest.mark.parametrize(("percent", "draw", "expected"),
                         [(0, 0.0, False), (50, 0.49, True), (50, 0.5, False), (100, 0.999, True), (25, 0.2, True)])
def test_random_shed_compares_one_draw(percent, draw, expected):
    p = pool(1, shedding={"default_percent": percent})
    rng = Fixed(draw)
    assert shed(p, rng, "k") is expected
    assert rng.values == ([draw] if percent in (0, 100) else [])  # 0 and 100 % draw nothing


@pytest.mark.parametrize("percent", [5, 50, 95])
def test_hash_shed_share_of_resolvers(percent):
    p = pool(1, shedding={"default_percent": percent, "default_policy": "hash"})
    hits = sum(shed(p, Fixed(), k) for k in KEYS)  # Fixed() has no values: the rng must not be read
    assert abs(hits / N - percent / 100) <= 0.02


def test_hash_shed_is_monotonic_in_percent():
    """Raising the percentage only adds resolvers to the shed set (a threshold on one hash)."""
    low = pool(1, shedding={"default_percent": 20, "default_policy": "hash"})
    high = pool(1, shedding={"default_percent": 40, "default_policy": "hash"})
    for k in KEYS[:2000]:
        assert not shed(low, Fixed(), k) or shed(high, Fixed(), k)
