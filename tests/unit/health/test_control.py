"""Operator states and the one usable rule (issue 15 items 1 and 3): a table over
:func:`lbdns.health.pool_health.can_serve` and everything built on it — steering's
``CompiledPool.state``, the reported pool status and the event ``pool.healthy`` — so they can
never disagree; the health book's operator entries, ``forget`` and ``adopt``; the state file."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest

from lbdns.config.model import Pool
from lbdns.health.book import HealthBook
from lbdns.health.control import Control, ControlEntry, PushedReport
from lbdns.health.pool_health import PoolStatus, pool_healthy, pool_status, serving_origins, usable_for_steering
from lbdns.health.tracker import MemberSpec, Thresholds
from lbdns.health.view import HealthView, OriginHealth, OriginState
from lbdns.health_owner import FileControlStore
from lbdns.snapshot import compile_pool

H, X, U = OriginState.HEALTHY, OriginState.UNHEALTHY, OriginState.UNKNOWN
UP, DOWN, DRAIN, AUTO = Control.FORCE_UP, Control.FORCE_DOWN, Control.DRAIN, Control.AUTO


def model(monitored: bool = True, **fields: Any) -> Pool:
    spec: dict[str, Any] = {"name": "p", "origins": [{"name": "a", "address": "192.0.2.1"},
                                                     {"name": "b", "address": "192.0.2.2"}]}
    if monitored:
        spec["monitor"] = "m"
    spec.update(fields)
    return Pool.model_validate(spec)


def view(states: dict[str, OriginState], controls: dict[str | None, Control] | None = None) -> HealthView:
    return HealthView(1, MappingProxyType({("p", k): OriginHealth(v) for k, v in states.items()}),
                      controls=MappingProxyType({("p", k): ControlEntry(c) for k, c in (controls or {}).items()}))


W0 = {"origins": [{"name": "a", "address": "192.0.2.1", "weight": 0}, {"name": "b", "address": "192.0.2.2"}]}

CASES: list[tuple[str, bool, dict[str, Any], dict[str, OriginState], dict[str | None, Control], list[str], bool,
                  PoolStatus]] = [
    ("probes-decide", True, {}, {"a": H, "b": X}, {}, ["a"], True, PoolStatus.DEGRADED),
    ("weight-zero-only-healthy", True, W0, {"a": H, "b": X}, {}, ["a"], False, PoolStatus.CRITICAL),
    ("weight-zero-only-unmonitored", False, {**W0, "origins": W0["origins"][:1]}, {}, {}, ["a"], False,
     PoolStatus.CRITICAL),
    ("force-up-failing-origin", True, {}, {"a": X, "b": X}, {"a": UP}, ["a"], True, PoolStatus.DEGRADED),
    ("force-up-unknown-origin", True, {}, {}, {"a": UP, "b": UP}, ["a", "b"], True, PoolStatus.HEALTHY),
    ("drain-healthy-origin", True, {}, {"a": H, "b": H}, {"a": DRAIN}, ["b"], True, PoolStatus.DEGRADED),
    ("force-down-unmonitored", False, {}, {}, {"b": DOWN}, ["a"], True, PoolStatus.DEGRADED),
    ("drain-whole-pool", True, {}, {"a": H, "b": H}, {None: DRAIN}, [], False, PoolStatus.CRITICAL),
    ("force-up-whole-pool", True, {}, {"a": X}, {None: UP}, ["a", "b"], True, PoolStatus.HEALTHY),
    ("origin-down-beats-pool-up", True, {}, {}, {None: UP, "b": DOWN}, ["a"], True, PoolStatus.DEGRADED),
    ("disabled-origin-stays-out", True, {"origins": [{"name": "a", "address": "192.0.2.1", "enabled": False},
                                                      {"name": "b", "address": "192.0.2.2"}]},
     {"b": H}, {"a": UP}, ["b"], True, PoolStatus.HEALTHY),
    ("unmonitored-no-controls", False, {}, {}, {}, ["a", "b"], True, PoolStatus.UNKNOWN),
    ("monitored-all-unknown", True, {}, {}, {}, [], False, PoolStatus.UNKNOWN),
]


@pytest.mark.parametrize(("monitored", "fields", "states", "controls", "healthy", "usable", "status"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_rule_for_steering_status_and_events(monitored, fields, states, controls, healthy, usable, status):
    m = model(monitored, **fields)
    v = view(states, controls)
    compiled = compile_pool(m).state(v)
    assert [o.name for o in compiled.healthy] == [o.name for o in serving_origins(m, v)] == healthy
    assert compiled.usable is usable_for_steering(m, v) is pool_healthy(m, v) is usable
    assert pool_status(m, v) is status
    assert (status in (PoolStatus.CRITICAL, PoolStatus.UNKNOWN)) is (not usable) or not monitored


class Result:
    def __init__(self, passed: bool, rtt_ms: float | None = None) -> None:
        self.passed, self.rtt_ms, self.at, self.response_code = passed, rtt_ms, 1.0, None
        self.failure_reason = "" if passed else "TCP connection failed"


def test_book_controls_change_the_token_and_survive_carry_over():
    book = HealthBook()
    book.record("p", "a", Result(True), Thresholds(1, 1), 0.0, monitor_id="m")
    v1 = book.freeze(1)
    assert book.set_control("p", "a", ControlEntry(DRAIN, "ops", "patch", 5.0)) is None
    v2 = book.freeze(2)
    assert v2.states_token is not v1.states_token and v2.control("p", "a") is DRAIN
    assert v2.state("p", "a") is H  # the monitor state is kept apart from the operator state
    carried = HealthBook.carry_over(book, [("p", "a", "m")])
    assert carried.control("p", "a") is DRAIN
    old = carried.set_control("p", "a", ControlEntry(AUTO))
    assert old is not None and old.why == "patch" and carried.control("p", "a") is AUTO
    assert dict(carried.controls) == {}


def test_forget_turns_a_pushed_result_into_no_data():
    book = HealthBook()
    report = PushedReport(True, 12.0, "", 1.0)
    book.record("p", "a", report, Thresholds(1, 1), 0.0, monitor_id="ext")
    assert book.state("p", "a") is H
    tr = book.forget(("p", "a", "ext"))
    assert tr is not None and (tr.old, tr.new) == (H, U)
    assert book.origin("p", "a").failure_reason == "No data"
    assert book.forget(("p", "a", "ext")) is None


def test_forget_in_a_group_leaves_the_rest_of_the_quorum():
    group = (MemberSpec("http"), MemberSpec("ext", must_be_healthy=True))
    book = HealthBook()
    book.record("p", "a", Result(True), Thresholds(1, 1), 0.0, monitor_id="http", group=group)
    book.record("p", "a", PushedReport(True, 5.0, "", 1.0), Thresholds(1, 1), 0.0, monitor_id="ext", group=group)
    assert book.state("p", "a") is H
    tr = book.forget(("p", "a", "ext"), group)
    assert tr is not None and tr.new is X  # the must-be-healthy member has no data any more
    assert book.member("p", "a", "http") is not None
    book2 = HealthBook()
    book2.adopt(HealthView(3, MappingProxyType({("p", "a"): OriginHealth(H)})))
    assert book2.state("p", "a") is H and book2.member_keys() == set()


def test_state_file_round_trip_is_atomic(tmp_path):
    store = FileControlStore(tmp_path / "sub" / "state.json")
    assert store.load() == {}
    entries = {("p", "a"): ControlEntry(DRAIN, "alice", "kernel", 10.0), ("q", None): ControlEntry(DOWN)}
    store.save(entries)
    assert store.load() == entries
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["state.json"]  # no temporary file left
    doc = json.loads((tmp_path / "sub" / "state.json").read_text())
    assert doc["entries"][0] == {"pool": "p", "origin": "a", "state": "drain", "who": "alice", "why": "kernel",
                                 "at": 10.0}
    (tmp_path / "sub" / "state.json").write_text('{"entries": [{"pool": "p", "state": "sideways"}]}')
    with pytest.raises(ValueError, match="malformed operator state"):
        store.load()
