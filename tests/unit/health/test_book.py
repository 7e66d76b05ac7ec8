"""HealthBook: recording, freezing, RTT EWMA, monitor groups and carry-over
(SPEC.md R-HLT-01, R-MON-18, R-MON-21, R-MON-25, R-GTS-52/53, R-MNT-03; EX-33 item 5)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lbdns.health.book import HealthBook, carry_over, ewma, round_sample
from lbdns.health.pool_health import usable_for_steering
from lbdns.health.tracker import MemberSpec, Thresholds, Transition
from lbdns.health.view import OriginState

U, H, X = OriginState.UNKNOWN, OriginState.HEALTHY, OriginState.UNHEALTHY
ONE = Thresholds()


@dataclass(frozen=True)
class Res:
    passed: bool
    rtt_ms: float | None = None
    failure_reason: str = "No failures"
    response_code: int | None = 200
    at: float = 1_700_000_000.0


OK = Res(True, 10.0)
BAD = Res(False, None, "TCP connection failed", None)


def test_ex33_5_ewma_arithmetic() -> None:
    book = HealthBook()  # alpha 0.3
    book.record_round("p-us-east", {"e1": Res(True, 100.0)}, ONE, now=10.0, monitor_id="m")
    rtt = book.pool_rtt("p-us-east")
    assert rtt is not None and rtt.ewma_ms == pytest.approx(100.0) and rtt.updated_at == 10.0
    book.record_round("p-us-east", {"e1": Res(True, 40.0), "e2": Res(True, 60.0)}, ONE, now=20.0,
                      monitor_id="m")
    rtt = book.pool_rtt("p-us-east")
    assert rtt is not None and rtt.ewma_ms == pytest.approx(85.0) and rtt.updated_at == 20.0
    assert book.freeze(1).pool_rtt["p-us-east"].ewma_ms == pytest.approx(85.0)


def test_round_sample_uses_passing_only_and_no_sample_keeps_value() -> None:
    book = HealthBook(rtt_alpha=0.5)
    book.record_round("p", {"a": Res(True, 10.0), "b": Res(False, 999.0, "x")}, ONE, now=1.0)
    assert book.pool_rtt("p").ewma_ms == pytest.approx(10.0)  # type: ignore[union-attr]
    book.record_round("p", {"a": BAD}, ONE, now=2.0)  # no passing origin ⇒ no sample
    assert book.pool_rtt("p").ewma_ms == pytest.approx(10.0)  # type: ignore[union-attr]
    assert book.pool_rtt("p").updated_at == 1.0  # type: ignore[union-attr]
    assert round_sample([]) is None
    assert round_sample([None, 4.0, 6.0]) == 5.0
    assert ewma(None, 7.0, 0.3) == 7.0


def test_rtt_alpha_validated() -> None:
    with pytest.raises(ValueError, match="rtt_alpha"):
        HealthBook(rtt_alpha=0.0)
    with pytest.raises(ValueError, match="rtt_alpha"):
        HealthBook(rtt_alpha=1.5)


def test_rtt_max_age_and_group_latency() -> None:
    book = HealthBook()
    book.add_round_rtt("p", [10.0], 100.0, monitor_id="A", max_age=30.0)
    book.add_round_rtt("p", [30.0], 105.0, monitor_id="B", max_age=30.0)
    book.add_round_rtt("p", [500.0], 106.0, monitor_id="D", voting=False, max_age=30.0)
    rtt = book.pool_rtt("p")
    assert rtt is not None
    assert rtt.ewma_ms == pytest.approx(20.0)  # mean of voting monitors (R-GTS-53)
    assert rtt.updated_at == 105.0
    assert rtt.is_current(134.0) and not rtt.is_current(135.0)


def test_record_state_machine_and_details() -> None:
    book = HealthBook()
    th = Thresholds(consecutive_up=2, consecutive_down=1)
    assert book.record("p", "a", Res(True, 12.5, at=5.0), th, 1.0) is None
    assert book.state("p", "a") is U
    tr = book.record("p", "a", Res(True, 13.0, at=6.0), th, 2.0)
    assert tr == Transition(U, H, "p", "a", None)
    h = book.origin("p", "a")
    assert (h.state, h.failure_reason, h.last_probe_at, h.rtt_ms, h.response_code) == (
        H, "No failures", 6.0, 13.0, 200)
    tr = book.record("p", "a", Res(False, None, "Response code mismatch error", 503, at=7.0), th, 3.0)
    assert tr == Transition(H, X, "p", "a", None)
    h = book.origin("p", "a")
    # rtt_ms stays the last passing probe's RTT
    assert (h.state, h.failure_reason, h.last_probe_at, h.rtt_ms, h.response_code) == (
        X, "Response code mismatch error", 7.0, 13.0, 503)


def test_freeze_is_immutable_snapshot() -> None:
    book = HealthBook()
    book.record("p", "a", OK, ONE, 1.0)
    v1 = book.freeze(1)
    assert v1.version == 1 and v1.state("p", "a") is H
    with pytest.raises(TypeError):
        v1.origins[("p", "b")] = v1.origin("p", "a")  # type: ignore[index]
    book.record("p", "a", BAD, ONE, 2.0)
    assert v1.state("p", "a") is H  # the old view does not change
    assert book.freeze(2).state("p", "a") is X
    assert v1.state("p", "zzz") is U


def test_states_token_changes_only_with_a_state() -> None:
    """Views share a states_token while no pair state changes, so steering caches survive
    publishes that only carry new probe details (times, RTTs)."""
    book = HealthBook()
    th = Thresholds(consecutive_up=2, consecutive_down=2)
    v0 = book.freeze(0)
    book.record("p", "a", Res(True, 10.0), th, 1.0)  # one pass of two: still UNKNOWN
    v1 = book.freeze(1)
    assert v1.states_token is v0.states_token and v1 is not v0
    book.record("p", "a", Res(True, 11.0), th, 2.0)  # UNKNOWN → HEALTHY
    v2 = book.freeze(2)
    assert v2.states_token is not v1.states_token
    book.add_round_rtt("p", [30.0], 2.5)
    book.record("p", "a", Res(True, 50.0, at=9.0), th, 3.0)  # new details, same state
    book.record("p", "a", BAD, th, 4.0)  # one failure of two: still HEALTHY
    v3 = book.freeze(3)
    assert v3.states_token is v2.states_token
    assert v3.origin("p", "a").failure_reason != v2.origin("p", "a").failure_reason
    assert v3.pool_rtt != v2.pool_rtt
    book.record("p", "a", BAD, th, 5.0)  # HEALTHY → UNHEALTHY
    assert book.freeze(4).states_token is not v3.states_token
    kept = carry_over(book, [("p", "a", "")])
    assert kept.freeze(5).states_token is not book.freeze(5).states_token  # a reload starts afresh


def test_group_record_aggregates_and_member_transitions() -> None:
    group = (MemberSpec("A", must_be_healthy=True), MemberSpec("B"), MemberSpec("C"),
             MemberSpec("D", monitoring_only=True))
    book = HealthBook()
    # first result: A healthy, others unknown (vote unhealthy): 2 of 3 voters unhealthy ⇒ unhealthy
    tr = book.record("p", "o", OK, ONE, 1.0, monitor_id="A", group=group)
    assert tr == Transition(U, X, "p", "o", None)
    tr = book.record("p", "o", OK, ONE, 2.0, monitor_id="B", group=group)
    assert tr == Transition(X, H, "p", "o", None)  # 1 of 3 unhealthy
    # monitoring-only member fails: origin unchanged, member-level transition reported
    tr = book.record("p", "o", BAD, ONE, 3.0, monitor_id="D", group=group)
    assert tr == Transition(U, X, "p", "o", "D")
    assert book.state("p", "o") is H
    assert book.origin("p", "o").failure_reason == "No failures"  # details from voters only
    # must_be_healthy veto
    tr = book.record("p", "o", BAD, ONE, 4.0, monitor_id="A", group=group)
    assert tr == Transition(H, X, "p", "o", None)
    assert set(book.members("p", "o")) == {"A", "B", "D"}


def test_carry_over_keeps_existing_keys_only() -> None:
    book = HealthBook(rtt_alpha=0.5)
    book.record_round("p1", {"a": OK, "b": BAD}, ONE, 1.0, monitor_id="m")
    book.record_round("p2", {"c": OK}, ONE, 1.0, monitor_id="m")
    new = carry_over(book, [("p1", "a", "m"), ("p1", "new", "m"), ("p2", "c", "other")])
    assert new.rtt_alpha == 0.5
    assert new.state("p1", "a") is H  # kept
    assert new.state("p1", "b") is U  # origin removed
    assert new.state("p1", "new") is U  # new origin starts UNKNOWN
    assert new.state("p2", "c") is U  # monitor changed ⇒ new triple
    assert new.pool_rtt("p1") is not None and new.pool_rtt("p2") is None
    assert new.member_keys() == {("p1", "a", "m")}
    # counters carry over: one more failure with consecutive_down 2 needs two failures
    th = Thresholds(consecutive_up=1, consecutive_down=2)
    assert new.record("p1", "a", BAD, th, 2.0, monitor_id="m") is None
    assert new.record("p1", "a", BAD, th, 3.0, monitor_id="m") == Transition(H, X, "p1", "a", None)
    assert book.state("p1", "a") is H  # the old book is untouched


def test_book_is_a_health_lookup() -> None:
    from lbdns.config.model import Pool

    p = Pool.model_validate({"name": "p", "monitor": "m", "origins": [{"name": "a", "address": "192.0.2.1"}]})
    book = HealthBook()
    assert not usable_for_steering(p, book)
    book.record("p", "a", OK, ONE, 1.0, monitor_id="m")
    assert usable_for_steering(p, book)
    assert HealthBook().freeze(0).pool_rtt.get("p") is None
