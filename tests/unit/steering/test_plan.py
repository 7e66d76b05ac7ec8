"""Unit tests of :class:`lbdns.steering.plan.CompiledPool.state`: which origins count as healthy
and whether a pool is usable, memoised on the health view (Cloudflare docs: Load
Balancing › Manage pools › Health threshold; docs/architecture.md › Compile once)."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import pytest

from lbdns.config.model import Pool
from lbdns.health.view import HealthView, OriginHealth, OriginState
from lbdns.snapshot import compile_pool
from lbdns.steering.plan import CompiledPool

H, U, K = OriginState.HEALTHY, OriginState.UNHEALTHY, OriginState.UNKNOWN


def pool(monitored: bool = True, **fields: Any) -> CompiledPool:
    spec: dict[str, Any] = {"name": "p", "origins": [{"name": "a", "address": "192.0.2.1"},
                                                     {"name": "b", "address": "192.0.2.2"},
                                                     {"name": "c", "address": "192.0.2.3"}]}
    if monitored:
        spec["monitor"] = "m"
    spec.update(fields)
    return compile_pool(Pool.model_validate(spec))


def view(**states: OriginState) -> HealthView:
    return HealthView(1, MappingProxyType({("p", k): OriginHealth(v) for k, v in states.items()}))


STATES: list[tuple[str, dict[str, Any], dict[str, OriginState], list[str], bool]] = [
    ("all-healthy", {}, {"a": H, "b": H, "c": H}, ["a", "b", "c"], True),
    ("unknown-is-not-healthy", {}, {"a": H, "b": K}, ["a"], True),
    ("none-healthy", {}, {"a": U, "b": U, "c": K}, [], False),
    ("minimum-origins-met", {"minimum_origins": 2}, {"a": H, "b": H, "c": U}, ["a", "b"], True),
    ("minimum-origins-missed", {"minimum_origins": 2}, {"a": H, "b": U, "c": U}, ["a"], False),
    ("pool-disabled", {"enabled": False}, {"a": H, "b": H, "c": H}, ["a", "b", "c"], False),
    ("disabled-origin-never-healthy", {"origins": [{"name": "a", "address": "192.0.2.1", "enabled": False},
                                                   {"name": "b", "address": "192.0.2.2"}]},
     {"a": H, "b": H}, ["b"], True),
    ("only-weight-zero-healthy", {"origins": [{"name": "a", "address": "192.0.2.1", "weight": 0},
                                              {"name": "b", "address": "192.0.2.2"}]},
     {"a": H, "b": U}, ["a"], False),
]


@pytest.mark.parametrize(("fields", "states", "healthy", "usable"), [c[1:] for c in STATES],
                         ids=[c[0] for c in STATES])
def test_state_table(fields, states, healthy, usable):
    st = pool(**fields).state(view(**states))
    assert [o.name for o in st.healthy] == healthy
    assert st.usable is usable


def test_unmonitored_pool_ignores_health():
    p = pool(monitored=False)
    st = p.state(view(a=U, b=U, c=U))
    assert [o.name for o in st.healthy] == ["a", "b", "c"] and st.usable


def test_state_is_memoised_on_the_view_not_on_the_pool():
    """The facts are kept in the published view (``pool_states``), never written to the compiled
    pool (part of the immutable snapshot): a new view starts empty, and a pool compiled again
    (a reload) under the same id is not served the old pool's entry."""
    p = pool()
    v1 = view(a=H)
    first = p.state(v1)
    assert p.state(v1) is first and v1.pool_states == {"p": first}
    same_states = HealthView(2, v1.origins, states_token=v1.states_token)  # new details, same states
    again = p.state(same_states)
    assert again is not first and again == first and same_states.pool_states == {"p": again}
    changed = v1.with_states({("p", "b"): H})
    assert [o.name for o in p.state(changed).healthy] == ["a", "b"]
    assert p.state(v1) is first  # the old view keeps its own facts
    reloaded = pool(minimum_origins=2)
    assert not reloaded.state(v1).usable and v1.pool_states["p"].pool is reloaded
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.enabled = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.origins[0].weight = 0.5  # type: ignore[misc]
