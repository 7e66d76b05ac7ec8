"""The health state machine and result aggregation.

Pure functions over immutable data, in the manner of h11's ``_state.py``:

* :func:`apply` — the ``consecutive_up`` / ``consecutive_down`` state machine (Cloudflare docs:
  Load Balancing › Manage monitors; 0 ≡ 1 is an lbdns decision, docs/decisions.md › Health and
  probes);
* :func:`region_healthy`, :func:`aggregate_round`, :func:`select_vantages` — majority voting
  over vantages and regions (Cloudflare docs: Load Balancing › Monitors › Health monitor
  regions; strict majorities and the vantage model are lbdns decisions);
* :func:`group_verdict`, :func:`group_state` — the monitor-group quorum (Cloudflare docs: Load
  Balancing › Monitor Groups › Endpoint health with Monitor Groups).

Rules of :func:`apply` (``up``/``down`` are ``max(consecutive_*, 1)``)::

    state      on pass                          on fail
    UNKNOWN    passes+1; HEALTHY if ≥ up       fails+1; UNHEALTHY if ≥ down
    HEALTHY    passes+1 (stays)                 fails+1; UNHEALTHY if ≥ down
    UNHEALTHY  passes+1; HEALTHY if ≥ up       fails+1 (stays)

A pass resets the failure counter and vice versa.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lbdns.health.view import OriginState

# ---------------------------------------------------------------------------------------------
# Consecutive up/down
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``consecutive_up`` / ``consecutive_down`` of a monitor as configured (0 allowed).

    Use :attr:`up_needed` / :attr:`down_needed`, which apply the 0 ≡ 1 rule (lbdns decision).
    """

    consecutive_up: int = 0
    consecutive_down: int = 0

    @property
    def up_needed(self) -> int:
        """Consecutive passes needed to become HEALTHY (≥ 1)."""
        return max(self.consecutive_up, 1)

    @property
    def down_needed(self) -> int:
        """Consecutive failures needed to become UNHEALTHY (≥ 1)."""
        return max(self.consecutive_down, 1)


@dataclass(frozen=True, slots=True)
class TrackerState:
    """State of one tracked pair (or group member): the state plus the consecutive counters."""

    state: OriginState = OriginState.UNKNOWN
    passes: int = 0
    fails: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change produced by :func:`apply` or by a :class:`~lbdns.health.book.HealthBook`.

    ``pool_id``/``origin_name`` identify the pair ("" when produced by :func:`apply` alone);
    ``monitor_id`` is ``None`` for the pair's aggregated state and a member monitor id for a
    monitor-group member's own state change that did not change the aggregated state.
    """

    old: OriginState
    new: OriginState
    pool_id: str = ""
    origin_name: str = ""
    monitor_id: str | None = None

    @property
    def to_unhealthy(self) -> bool:
        """True when the new state is UNHEALTHY."""
        return self.new is OriginState.UNHEALTHY


INITIAL = TrackerState()
"""The state of a pair that has no result yet (UNKNOWN "until the results of the first check are
available", Cloudflare docs: Load Balancing › Manage monitors; counters 0)."""


def apply(
    state: TrackerState, passed: bool, up_needed: int, down_needed: int
) -> tuple[TrackerState, Transition | None]:
    """Feed one aggregated round result into the state machine (Cloudflare docs: Load Balancing ›
    Manage monitors: ``consecutive_up`` / ``consecutive_down``).

    Takes the current :class:`TrackerState`, whether the round passed, and the thresholds
    (values < 1 are treated as 1). Returns the new state and a :class:`Transition` when the
    :class:`OriginState` changed (``None`` otherwise). Never raises.
    """
    up = max(up_needed, 1)
    down = max(down_needed, 1)
    if passed:
        passes, fails = state.passes + 1, 0
        new = OriginState.HEALTHY if passes >= up else state.state
    else:
        passes, fails = 0, state.fails + 1
        new = OriginState.UNHEALTHY if fails >= down else state.state
    nxt = TrackerState(new, passes, fails)
    if new is state.state:
        return nxt, None
    return nxt, Transition(state.state, new)


def run_sequence(
    results: Iterable[bool], up_needed: int, down_needed: int, start: TrackerState = INITIAL
) -> list[tuple[OriginState, Transition | None]]:
    """Apply a sequence of round results; returns the state (and transition) after each round.

    Convenience for tests and ``explain`` tooling.
    """
    out: list[tuple[OriginState, Transition | None]] = []
    st = start
    for passed in results:
        st, tr = apply(st, passed, up_needed, down_needed)
        out.append((st.state, tr))
    return out


# ---------------------------------------------------------------------------------------------
# Regions and vantages
# ---------------------------------------------------------------------------------------------


def region_healthy(vantage_results: Sequence[bool]) -> bool:
    """True when strictly more than half of a region's vantages passed (Cloudflare docs: Load
    Balancing › Monitors › Health monitor regions: "the majority of data centers").

    An empty sequence is not healthy.
    """
    return 2 * sum(1 for r in vantage_results if r) > len(vantage_results)


def aggregate_round(results_by_region: Mapping[str, Sequence[bool]]) -> bool:
    """Aggregate one probe round over regions (Cloudflare docs: Load Balancing › Monitors ›
    Health monitor regions).

    Takes region code → the pass/fail results of that region's vantages. A region is healthy
    iff strictly more than half of its vantages passed; the round passes iff strictly more
    than half of the regions are healthy (a tie fails; no regions fails). With one region and
    one vantage the result is that vantage's result.
    """
    healthy = sum(1 for res in results_by_region.values() if region_healthy(res))
    return 2 * healthy > len(results_by_region)


ALL_REGIONS = "ALL_REGIONS"


def select_vantages(
    check_regions: Sequence[str] | None, vantages: Mapping[str, str]
) -> dict[str, list[str]]:
    """Group vantage ids into voting regions for a pool (lbdns decision: a self-hosted prober has
    its own vantages instead of Cloudflare's three data centers per region).

    Takes the pool's ``check_regions`` (``None`` ⇒ all vantages form one "All Data Centers"
    group; a list containing ``ALL_REGIONS`` ⇒ every region) and vantage id → region code.
    Returns region key → vantage ids, in vantage order. Only selected regions with at least one
    vantage take part; when none has one, all vantages form a single group (key ``"*"``).
    """
    if check_regions is None:
        return {"*": list(vantages)} if vantages else {}
    wanted = None if ALL_REGIONS in check_regions else set(check_regions)
    groups: dict[str, list[str]] = {}
    for vid, region in vantages.items():
        if wanted is None or region in wanted:
            groups.setdefault(region, []).append(vid)
    if not groups and vantages:
        return {"*": list(vantages)}
    return groups


# ---------------------------------------------------------------------------------------------
# Monitor groups
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """One monitor-group member as configured (Cloudflare docs: Load Balancing › Monitor Groups)."""

    monitor_id: str
    enabled: bool = True
    monitoring_only: bool = False
    must_be_healthy: bool = False

    @property
    def votes(self) -> bool:
        """True when the member takes part in the quorum (enabled, not monitoring-only)."""
        return self.enabled and not self.monitoring_only


@dataclass(frozen=True, slots=True)
class MemberVote:
    """A member and what it currently reports: ``healthy`` is ``None`` when it has no result
    yet (which counts as unhealthy, lbdns decision, docs/decisions.md › Health and probes)."""

    spec: MemberSpec
    healthy: bool | None


def group_verdict(members: Sequence[MemberVote]) -> bool:
    """The monitor-group quorum for one endpoint (Cloudflare docs: Load Balancing › Monitor
    Groups › Endpoint health with Monitor Groups; the corner cases below are lbdns decisions,
    docs/decisions.md › Health and probes). True = healthy.

    * disabled members are ignored; ``monitoring_only`` members never vote nor veto;
    * any enabled ``must_be_healthy`` member not reporting healthy ⇒ unhealthy;
    * otherwise unhealthy iff strictly more than 50 % of the voting members report unhealthy
      (exactly 50 % ⇒ healthy); no voting member ⇒ healthy.
    """
    voters = [m for m in members if m.spec.votes]
    if any(m.spec.must_be_healthy and m.healthy is not True for m in voters):
        return False
    unhealthy = sum(1 for m in voters if m.healthy is not True)
    return 2 * unhealthy <= len(voters)


def group_state(members: Sequence[MemberSpec], states: Mapping[str, OriginState]) -> OriginState:
    """The aggregated state of an endpoint of a monitor-group pool (Cloudflare docs: Load
    Balancing › Monitor Groups › Endpoint health with Monitor Groups).

    Takes the group's members and member monitor id → that member's own tracked state (absent
    ⇒ UNKNOWN). Returns UNKNOWN while no enabled member has a determined state,
    else HEALTHY/UNHEALTHY per :func:`group_verdict` (UNKNOWN members vote unhealthy).
    """
    enabled = [m for m in members if m.enabled]
    got = {m.monitor_id: states.get(m.monitor_id, OriginState.UNKNOWN) for m in enabled}
    if all(s is OriginState.UNKNOWN for s in got.values()):
        return OriginState.UNKNOWN
    votes = [
        MemberVote(m, None if got[m.monitor_id] is OriginState.UNKNOWN
                   else got[m.monitor_id] is OriginState.HEALTHY)
        for m in enabled
    ]
    return OriginState.HEALTHY if group_verdict(votes) else OriginState.UNHEALTHY
