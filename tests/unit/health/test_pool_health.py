"""Pool and load-balancer status (SPEC.md R-HLT-02..R-HLT-30; SPEC-EXAMPLES.md EX-49)."""

from __future__ import annotations

from typing import Any

import pytest

from lbdns.config.model import Pool
from lbdns.health.pool_health import (
    LbStatus,
    PoolStatus,
    healthy_origin_count,
    lb_status,
    pool_healthy,
    pool_status,
    usable_for_steering,
)
from lbdns.health.view import EMPTY_HEALTH, HealthView, OriginState

U, H, X = OriginState.UNKNOWN, OriginState.HEALTHY, OriginState.UNHEALTHY


def pool(name: str, origins: list[str], **kw: Any) -> Pool:
    kw.setdefault("monitor", "m-http")
    return Pool.model_validate(
        {"name": name,
         "origins": [{"name": o, "address": f"192.0.2.{i + 10}"} for i, o in enumerate(origins)],
         **kw}
    )


# Base fixture B (SPEC-EXAMPLES.md §0.1), the pools used by lb.example.com.
EAST = pool("p-us-east", ["e1", "e2"])
WEST = pool("p-us-west", ["w1", "w2"])
EU = pool("p-eu", ["eu1", "eu2"])
FALLBACK = pool("p-fallback", ["fb1"])
DEFAULT_POOLS = [EAST, WEST, EU]
ALL = [*DEFAULT_POOLS, FALLBACK]


def view(states: dict[tuple[str, str], OriginState], default: OriginState = H) -> HealthView:
    base = {(p.id, o.name): default for p in ALL for o in p.origins}
    base.update(states)
    return EMPTY_HEALTH.with_states(base)


def test_ex49_1_one_origin_down_degraded() -> None:
    v = view({("p-us-east", "e2"): X})
    assert pool_status(EAST, v) is PoolStatus.DEGRADED
    assert [pool_status(p, v) for p in (WEST, EU, FALLBACK)] == [PoolStatus.HEALTHY] * 3
    assert lb_status(DEFAULT_POOLS, v) is LbStatus.HEALTHY
    assert usable_for_steering(EAST, v)  # still gets traffic (EX-03)


def test_ex49_2_primary_critical_lb_degraded() -> None:
    v = view({("p-us-east", "e1"): X, ("p-us-east", "e2"): X})
    assert pool_status(EAST, v) is PoolStatus.CRITICAL
    assert not usable_for_steering(EAST, v)
    assert lb_status(DEFAULT_POOLS, v) is LbStatus.DEGRADED


def test_ex49_3_all_critical_lb_critical_fallback_no_health() -> None:
    v = view({(p.id, o.name): X for p in DEFAULT_POOLS for o in p.origins})
    assert all(pool_status(p, v) is PoolStatus.CRITICAL for p in DEFAULT_POOLS)
    assert lb_status(DEFAULT_POOLS, v) is LbStatus.CRITICAL
    assert pool_status(FALLBACK, v, serving_as_fallback=True) is PoolStatus.NO_HEALTH


def test_ex49_4_startup_unknown_not_usable() -> None:
    v = EMPTY_HEALTH  # every pair UNKNOWN
    for p in ALL:
        assert pool_status(p, v) is PoolStatus.UNKNOWN
        assert not usable_for_steering(p, v)  # EX-07: monitored + unknown ⇒ down
    assert lb_status(DEFAULT_POOLS, v) is LbStatus.CRITICAL


def test_ex49_5_unmonitored_unknown_but_usable() -> None:
    p = pool("p-plain", ["a", "b"], monitor=None)
    v = EMPTY_HEALTH.with_states({("p-plain", "a"): X})  # ignored: health not considered
    assert pool_status(p, v) is PoolStatus.UNKNOWN
    assert usable_for_steering(p, v)
    assert healthy_origin_count(p, v) == 2
    assert lb_status([p], v) is LbStatus.HEALTHY


def test_minimum_origins_ex04() -> None:
    p = pool("p-us-east", ["e1", "e2"], minimum_origins=2)
    v = view({("p-us-east", "e2"): X})
    assert pool_status(p, v) is PoolStatus.CRITICAL
    assert not usable_for_steering(p, v)
    assert usable_for_steering(EAST, v)


def test_unknown_counts_down_in_monitored_pool() -> None:
    v = view({("p-us-east", "e2"): U})
    assert healthy_origin_count(EAST, v) == 1
    assert pool_status(EAST, v) is PoolStatus.DEGRADED
    v2 = view({("p-us-east", "e1"): U, ("p-us-east", "e2"): X})
    assert pool_status(EAST, v2) is PoolStatus.CRITICAL


def test_weight_zero_counts_disabled_never() -> None:
    p = Pool.model_validate({
        "name": "p", "monitor": "m", "minimum_origins": 2,
        "origins": [
            {"name": "a", "address": "192.0.2.1", "weight": 0},
            {"name": "b", "address": "192.0.2.2"},
            {"name": "c", "address": "192.0.2.3", "enabled": False},
        ],
    })
    v = EMPTY_HEALTH.with_states({("p", "a"): H, ("p", "b"): H, ("p", "c"): H})
    assert healthy_origin_count(p, v) == 2  # weight 0 counts (R-HLT-12), disabled never
    assert pool_status(p, v) is PoolStatus.HEALTHY  # every *enabled* origin healthy
    v2 = v.with_states({("p", "a"): X})
    assert healthy_origin_count(p, v2) == 1
    assert pool_status(p, v2) is PoolStatus.CRITICAL


def test_disabled_pool_never_usable_but_reports_computed_state() -> None:
    p = pool("p-us-east", ["e1", "e2"], enabled=False)
    v = view({})
    assert pool_healthy(p, v)
    assert not usable_for_steering(p, v)
    assert pool_status(p, v) is PoolStatus.HEALTHY
    assert lb_status([p, WEST], v) is LbStatus.DEGRADED


def test_unmonitored_pool_with_no_enabled_origins_is_not_usable() -> None:
    p = Pool.model_validate(
        {"name": "p", "origins": [{"name": "a", "address": "192.0.2.1", "enabled": False}]}
    )
    assert not usable_for_steering(p, EMPTY_HEALTH)


@pytest.mark.parametrize(("usable", "status"), [
    ((True, True), LbStatus.HEALTHY), ((True, False), LbStatus.DEGRADED),
    ((False, False), LbStatus.CRITICAL), ((), LbStatus.CRITICAL),
])
def test_lb_status_table(usable: tuple[bool, ...], status: LbStatus) -> None:
    pools = [pool(f"p{i}", ["a"]) for i in range(len(usable))]
    v = EMPTY_HEALTH.with_states({(p.id, "a"): (H if u else X) for p, u in zip(pools, usable, strict=True)})
    assert lb_status(pools, v) is status
