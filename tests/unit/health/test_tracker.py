"""State machine, region majority and monitor-group quorum (SPEC.md R-MON-18..R-MON-21;
SPEC-EXAMPLES.md EX-44, EX-45, EX-46)."""

from __future__ import annotations

import pytest

from lbdns.health.tracker import (
    INITIAL,
    MemberSpec,
    MemberVote,
    Thresholds,
    TrackerState,
    Transition,
    aggregate_round,
    apply,
    group_state,
    group_verdict,
    region_healthy,
    run_sequence,
    select_vantages,
)
from lbdns.health.view import OriginState

U, H, X = OriginState.UNKNOWN, OriginState.HEALTHY, OriginState.UNHEALTHY
P, F = True, False

# ------------------------------------------------------------------------------------- EX-44


def test_ex44_state_table() -> None:
    rounds = [P, P, F, P, P, P, F, F, P]
    expected = [U, U, U, U, U, H, H, X, X]
    got = run_sequence(rounds, up_needed=3, down_needed=2)
    assert [s for s, _ in got] == expected
    # Health events are logged after round 6 (healthy) and round 8 (unhealthy) only.
    events = [(i + 1, t) for i, (_, t) in enumerate(got) if t is not None]
    assert events == [(6, Transition(U, H)), (8, Transition(H, X))]
    # Counts as healthy for steering only after rounds 6 and 7.
    assert [i + 1 for i, (s, _) in enumerate(got) if s is H] == [6, 7]


def test_ex44_zero_thresholds_mean_one() -> None:
    th = Thresholds(0, 0)
    assert (th.up_needed, th.down_needed) == (1, 1)
    got = run_sequence([P, P, F, P, P, P, F, F, P], th.up_needed, th.down_needed)
    assert got[0][0] is H  # after round 1
    assert got[2][0] is X  # after round 3
    assert [s for s, _ in got] == [H, H, X, H, H, H, X, X, H]


@pytest.mark.parametrize(
    ("start", "passed", "up", "down", "new_state", "transition"),
    [
        (TrackerState(U, 0, 0), P, 1, 1, TrackerState(H, 1, 0), Transition(U, H)),
        (TrackerState(U, 0, 0), F, 1, 1, TrackerState(X, 0, 1), Transition(U, X)),
        (TrackerState(U, 1, 0), P, 3, 2, TrackerState(U, 2, 0), None),
        (TrackerState(U, 2, 0), F, 3, 2, TrackerState(U, 0, 1), None),  # a failure resets passes
        (TrackerState(H, 5, 0), F, 3, 2, TrackerState(H, 0, 1), None),
        (TrackerState(H, 0, 1), F, 3, 2, TrackerState(X, 0, 2), Transition(H, X)),
        (TrackerState(X, 0, 4), P, 3, 2, TrackerState(X, 1, 0), None),
        (TrackerState(X, 2, 0), P, 3, 2, TrackerState(H, 3, 0), Transition(X, H)),
        (TrackerState(X, 2, 0), F, 3, 2, TrackerState(X, 0, 1), None),
        (TrackerState(H, 0, 0), P, 0, 0, TrackerState(H, 1, 0), None),  # 0 ≡ 1
        (TrackerState(H, 0, 0), F, -1, 0, TrackerState(X, 0, 1), Transition(H, X)),
    ],
)
def test_apply_rules(
    start: TrackerState, passed: bool, up: int, down: int, new_state: TrackerState,
    transition: Transition | None,
) -> None:
    assert apply(start, passed, up, down) == (new_state, transition)


def test_initial_is_unknown() -> None:
    assert TrackerState(U, 0, 0) == INITIAL


# ------------------------------------------------------------------------------------- EX-45


def _region(passes: int, total: int = 3) -> list[bool]:
    return [True] * passes + [False] * (total - passes)


@pytest.mark.parametrize(
    ("regions", "ok"),
    [
        ({"WNAM": _region(3), "ENAM": _region(1), "WEU": _region(2)}, True),  # EX-45.1
        ({"WNAM": _region(3), "ENAM": _region(1), "WEU": _region(1)}, False),  # EX-45.2
        ({"WNAM": _region(3), "ENAM": _region(1)}, False),  # EX-45.3 tie fails
        ({"local": [True]}, True),  # EX-45.4 single local vantage = its result
        ({"local": [False]}, False),
        ({}, False),
        ({"A": _region(2, 4)}, False),  # 2 of 4 vantages is not a strict majority
        ({"A": _region(3, 4)}, True),
    ],
)
def test_ex45_aggregate_round(regions: dict[str, list[bool]], ok: bool) -> None:
    assert aggregate_round(regions) is ok


def test_region_healthy_strict_majority() -> None:
    assert region_healthy([True, True, False])
    assert not region_healthy([True, False])
    assert not region_healthy([])


def test_select_vantages() -> None:
    vantages = {"v1": "WNAM", "v2": "WNAM", "v3": "ENAM", "v4": "WEU"}
    assert select_vantages(["WNAM", "ENAM"], vantages) == {"WNAM": ["v1", "v2"], "ENAM": ["v3"]}
    assert select_vantages(["ALL_REGIONS"], vantages) == {
        "WNAM": ["v1", "v2"], "ENAM": ["v3"], "WEU": ["v4"]
    }
    assert select_vantages(None, vantages) == {"*": ["v1", "v2", "v3", "v4"]}
    # none of the selected regions has a vantage ⇒ all vantages form one group (R-MON-20)
    assert select_vantages(["SAS"], vantages) == {"*": ["v1", "v2", "v3", "v4"]}
    assert select_vantages(["WNAM"], {}) == {}


# ------------------------------------------------------------------------------------- EX-46

A = MemberSpec("A", must_be_healthy=True)
B = MemberSpec("B")
C = MemberSpec("C")
D = MemberSpec("D", monitoring_only=True)
E = MemberSpec("E", enabled=False)
GROUP = (A, B, C, D, E)


@pytest.mark.parametrize(
    ("a", "b", "c", "d", "e", "healthy"),
    [
        (P, F, P, F, F, True),  # 1 of 3 voters unhealthy
        (F, P, P, P, P, False),  # must_be_healthy veto
        (P, F, F, P, P, False),  # 2 of 3 > 50 %
        (P, P, P, F, F, True),  # D does not vote, E disabled
    ],
)
def test_ex46_group_table(a: bool, b: bool, c: bool, d: bool, e: bool, healthy: bool) -> None:
    votes = [MemberVote(s, v) for s, v in zip(GROUP, (a, b, c, d, e), strict=True)]
    assert group_verdict(votes) is healthy
    states = {s.monitor_id: (H if v else X) for s, v in zip(GROUP, (a, b, c, d, e), strict=True)}
    assert group_state(GROUP, states) is (H if healthy else X)


@pytest.mark.parametrize(
    ("members", "results", "healthy"),
    [
        ((A, B), (P, F), True),  # 1 of 2 = 50 %, not more than 50 %
        ((MemberSpec("A"), B), (P, F), True),
        ((MemberSpec("A"), B), (F, F), False),
        ((A, B), (F, P), False),  # veto
    ],
)
def test_ex46_two_member_groups(
    members: tuple[MemberSpec, ...], results: tuple[bool, ...], healthy: bool
) -> None:
    votes = [MemberVote(s, v) for s, v in zip(members, results, strict=True)]
    assert group_verdict(votes) is healthy


def test_group_no_voters_is_healthy_and_no_result_votes_unhealthy() -> None:
    assert group_verdict([MemberVote(D, False)]) is True  # only monitoring_only ⇒ no voters
    assert group_verdict([]) is True
    assert group_verdict([MemberVote(B, True), MemberVote(C, None)]) is True  # 1 of 2
    z = MemberSpec("Z")
    assert group_verdict([MemberVote(B, True), MemberVote(C, None), MemberVote(z, None)]) is False
    assert group_verdict([MemberVote(A, None), MemberVote(B, True)]) is False  # veto by no result


def test_group_state_unknown_until_a_member_decides() -> None:
    assert group_state(GROUP, {}) is U
    assert group_state(GROUP, {"E": H}) is U  # disabled member does not count
    assert group_state((B, C), {"B": H}) is H  # C unknown votes unhealthy: 1 of 2 ⇒ healthy
    assert group_state((B, C), {"B": X}) is X
    assert group_state((D,), {"D": X}) is H  # no voters ⇒ healthy once determined
