"""The health book: the single mutable owner of health state (docs/architecture.md › One probe
result).

A :class:`HealthBook` keeps, per (pool id, origin name, monitor id) *member*, the
consecutive up/down tracker state and the newest result details; per (pool id, origin name)
*pair*, the aggregated :class:`~lbdns.health.view.OriginHealth` (single monitor: the member's
state; monitor group: the group's quorum, Cloudflare docs: Load Balancing › Monitor Groups); and
per pool the RTT EWMA of dynamic steering (Cloudflare docs: Load Balancing › Global traffic
steering › Dynamic; Load Balancing › Monitor Groups › Latency for Steering).

Only the health owner (:mod:`lbdns.health_owner`) mutates a book — probe results, pushed
reports and operator states alike — from one asyncio task context; everyone else reads an
immutable :class:`~lbdns.health.view.HealthView` made by :meth:`HealthBook.freeze`. Pure module:
times are passed in (``now`` = monotonic seconds; results carry their wall-clock ``at``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from lbdns.health.control import Control, ControlEntry, ControlKey, control_of
from lbdns.health.tracker import (
    INITIAL,
    MemberSpec,
    Thresholds,
    TrackerState,
    Transition,
    apply,
    group_state,
)
from lbdns.health.view import HealthView, OriginHealth, OriginState, PoolRtt

DEFAULT_RTT_ALPHA = 0.3
"""EWMA smoothing factor for pool RTT (default of the server setting ``rtt_ewma_alpha``)."""

NO_FAILURES = "No failures"

PairKey = tuple[str, str]
"""(pool id, origin name)."""
MemberKey = tuple[str, str, str]
"""(pool id, origin name, monitor id)."""


class ProbeOutcome(Protocol):
    """What the book needs from a probe result (structurally a ``lbdns.probes.ProbeResult``).

    ``rtt_ms`` in milliseconds (None when not measured), ``at`` wall-clock UNIX seconds.
    """

    @property
    def passed(self) -> bool: ...
    @property
    def rtt_ms(self) -> float | None: ...
    @property
    def failure_reason(self) -> str: ...
    @property
    def response_code(self) -> int | None: ...
    @property
    def at(self) -> float: ...


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One member's tracker state and newest result (for the ``monitors`` entries of health
    events, Cloudflare docs: Load Balancing › Analytics › Logs).

    ``recorded_at`` is the monotonic time (seconds) of the newest result.
    """

    tracker: TrackerState
    health: OriginHealth
    recorded_at: float

    @property
    def state(self) -> OriginState:
        """The member's own state."""
        return self.tracker.state


def ewma(previous: float | None, sample: float, alpha: float) -> float:
    """One EWMA step (Cloudflare docs: Load Balancing › Global traffic steering › Dynamic):
    ``alpha·sample + (1−alpha)·previous``; the first
    sample (``previous`` None) initialises. Milliseconds in, milliseconds out."""
    if previous is None:
        return sample
    return alpha * sample + (1.0 - alpha) * previous


def round_sample(rtts_ms: Iterable[float | None]) -> float | None:
    """The pool RTT sample of one round (lbdns decision): the mean RTT in milliseconds of the
    enabled origins that passed; ``None`` entries (no RTT) are skipped; None when empty."""
    vals = [r for r in rtts_ms if r is not None]
    if not vals:
        return None
    return math.fsum(vals) / len(vals)


@dataclass(frozen=True, slots=True)
class _RttEntry:
    rtt: PoolRtt
    voting: bool


class HealthBook:
    """Mutable owner of per-pair health and per-pool RTT; freezes into a :class:`HealthView`.

    ``rtt_alpha`` is the EWMA factor in (0, 1] (default 0.3, ``rtt_ewma_alpha``). Raises
    :class:`ValueError` for an alpha outside (0, 1].
    """

    def __init__(self, *, rtt_alpha: float = DEFAULT_RTT_ALPHA) -> None:
        if not (0.0 < rtt_alpha <= 1.0):
            raise ValueError(f"rtt_alpha {rtt_alpha} is invalid (0 < alpha ≤ 1)")
        self.rtt_alpha = rtt_alpha
        self._members: dict[MemberKey, MemberRecord] = {}
        self._origins: dict[PairKey, OriginHealth] = {}
        self._rtt: dict[tuple[str, str], _RttEntry] = {}
        self._pool_rtt: dict[str, PoolRtt] = {}
        self._controls: dict[ControlKey, ControlEntry] = {}
        self._states_token = object()  # replaced whenever a pair's aggregated state or a control changes

    # -- reading -------------------------------------------------------------------------------

    def state(self, pool_id: str, origin_name: str) -> OriginState:
        """The aggregated state of (pool, origin); UNKNOWN when nothing was recorded."""
        h = self._origins.get((pool_id, origin_name))
        return h.state if h is not None else OriginState.UNKNOWN

    def origin(self, pool_id: str, origin_name: str) -> OriginHealth:
        """The aggregated health of (pool, origin); an UNKNOWN record when nothing was recorded."""
        return self._origins.get((pool_id, origin_name), OriginHealth())

    def member(self, pool_id: str, origin_name: str, monitor_id: str) -> MemberRecord | None:
        """The member record of (pool, origin, monitor), or None before its first result."""
        return self._members.get((pool_id, origin_name, monitor_id))

    def members(self, pool_id: str, origin_name: str) -> dict[str, MemberRecord]:
        """Monitor id → member record for every recorded member of (pool, origin)."""
        return {k[2]: v for k, v in self._members.items() if k[0] == pool_id and k[1] == origin_name}

    def pool_rtt(self, pool_id: str) -> PoolRtt | None:
        """The pool's RTT EWMA, or None without samples."""
        return self._pool_rtt.get(pool_id)

    def control(self, pool_id: str, origin_name: str | None) -> Control:
        """The operator state of (pool, origin), or of the pool with ``origin_name`` None."""
        return control_of(self._controls, pool_id, origin_name)

    @property
    def controls(self) -> Mapping[ControlKey, ControlEntry]:
        """Every operator entry (read-only view)."""
        return MappingProxyType(self._controls)

    def member_keys(self) -> set[MemberKey]:
        """Every (pool, origin, monitor) key with a recorded result."""
        return set(self._members)

    # -- writing -------------------------------------------------------------------------------

    def record(
        self,
        pool_id: str,
        origin_name: str,
        result: ProbeOutcome,
        thresholds: Thresholds,
        now: float,
        *,
        monitor_id: str = "",
        group: Sequence[MemberSpec] | None = None,
    ) -> Transition | None:
        """Record one aggregated probe result of (pool, origin) from monitor ``monitor_id``.

        ``thresholds`` are that monitor's ``consecutive_*``; ``now`` is the monotonic time in
        seconds. ``group`` is the pool's monitor-group members, or None for a single monitor.
        Returns the pair's :class:`Transition` when its aggregated state changed; otherwise, for a
        group, a member-level transition (``monitor_id`` set) when only the member's own state
        changed; otherwise None.
        """
        mkey = (pool_id, origin_name, monitor_id)
        prev = self._members.get(mkey)
        tracker, member_tr = apply(
            prev.tracker if prev is not None else INITIAL,
            result.passed, thresholds.up_needed, thresholds.down_needed,
        )
        old_rtt = prev.health.rtt_ms if prev is not None else None
        member_health = OriginHealth(
            tracker.state,
            result.failure_reason or (NO_FAILURES if result.passed else "Other Failure"),
            result.at,
            result.rtt_ms if result.passed and result.rtt_ms is not None else old_rtt,
            result.response_code,
        )
        self._members[mkey] = MemberRecord(tracker, member_health, now)

        pkey = (pool_id, origin_name)
        old = self._origins.get(pkey, OriginHealth())
        if group is None:
            new_state = tracker.state
            updates_details = True
        else:
            new_state = self._group_state(pool_id, origin_name, group)
            spec = next((m for m in group if m.monitor_id == monitor_id), None)
            updates_details = spec is None or spec.votes or not any(m.votes for m in group)
        if updates_details:
            self._origins[pkey] = OriginHealth(
                new_state, member_health.failure_reason, result.at,
                member_health.rtt_ms, result.response_code,
            )
        else:
            self._origins[pkey] = OriginHealth(
                new_state, old.failure_reason, result.at, old.rtt_ms, old.response_code
            )
        if new_state is not old.state:
            self._states_token = object()
            return Transition(old.state, new_state, pool_id, origin_name, None)
        if group is not None and member_tr is not None:
            return Transition(member_tr.old, member_tr.new, pool_id, origin_name, monitor_id)
        return None

    def set_control(self, pool_id: str, origin_name: str | None, entry: ControlEntry) -> ControlEntry | None:
        """Set the operator state of (pool, origin) — of the pool with ``origin_name`` None —
        (:mod:`lbdns.health.control`); AUTO removes the entry. Returns the previous entry."""
        key = (pool_id, origin_name)
        old = self._controls.pop(key, None)
        if entry.state is not Control.AUTO:
            self._controls[key] = entry
        if (old.state if old else Control.AUTO) is not entry.state:
            self._states_token = object()
        return old

    def replace_controls(self, entries: Mapping[ControlKey, ControlEntry]) -> None:
        """Replace every operator entry (loading a state file); AUTO entries are dropped."""
        self._controls = {k: e for k, e in entries.items() if e.state is not Control.AUTO}
        self._states_token = object()

    def adopt(self, view: HealthView) -> None:
        """Take every pair state and pool RTT from ``view`` (a static health source: tests,
        tools), dropping the member records; operator states are kept."""
        self._members.clear()
        self._rtt.clear()
        self._origins = dict(view.origins)
        self._pool_rtt = dict(view.pool_rtt)
        self._states_token = object()

    def forget(self, key: MemberKey, group: Sequence[MemberSpec] | None = None) -> Transition | None:
        """Drop the result of member ``key`` — an expired pushed report becomes "no data" — and
        recompute its pair: with a single monitor the pair becomes UNKNOWN, in a ``group`` the
        quorum is taken over the remaining members (Cloudflare docs: Load Balancing › Monitor
        Groups). Returns the pair's :class:`Transition` when its state changed."""
        if self._members.pop(key, None) is None:
            return None
        pool_id, origin_name, _monitor = key
        pkey = (pool_id, origin_name)
        old = self._origins.get(pkey, OriginHealth())
        new_state = OriginState.UNKNOWN if group is None else self._group_state(pool_id, origin_name, group)
        self._origins[pkey] = OriginHealth(new_state, "No data" if new_state is OriginState.UNKNOWN
                                           else old.failure_reason, old.last_probe_at, old.rtt_ms,
                                           old.response_code)
        if new_state is old.state:
            return None
        self._states_token = object()
        return Transition(old.state, new_state, pool_id, origin_name, None)

    def add_round_rtt(
        self,
        pool_id: str,
        rtts_ms: Iterable[float | None],
        now: float,
        *,
        monitor_id: str = "",
        voting: bool = True,
        max_age: float = math.inf,
    ) -> PoolRtt | None:
        """Feed one round's RTTs (ms) of the pool's passing, enabled origins into the EWMA.

        The round sample is their mean; the (pool, monitor) EWMA is updated with
        :attr:`rtt_alpha`; the pool value is the mean of the EWMAs of its voting monitors
        (Cloudflare docs: Load Balancing › Monitor Groups › Latency for Steering; a single
        monitor: its own). ``now`` is monotonic seconds, stored as ``updated_at``; ``max_age``
        seconds is the freshness limit (RTT data must be "current", Cloudflare docs: Load
        Balancing › Global traffic steering › Dynamic). Returns the new
        pool RTT, or the unchanged one (possibly None) when the round had no sample.
        """
        sample = round_sample(rtts_ms)
        if sample is None:
            return self._pool_rtt.get(pool_id)
        key = (pool_id, monitor_id)
        prev = self._rtt.get(key)
        value = ewma(prev.rtt.ewma_ms if prev is not None else None, sample, self.rtt_alpha)
        self._rtt[key] = _RttEntry(PoolRtt(value, now, max_age), voting)
        self._recompute_pool_rtt(pool_id)
        return self._pool_rtt.get(pool_id)

    def record_round(
        self,
        pool_id: str,
        results: Mapping[str, ProbeOutcome],
        thresholds: Thresholds,
        now: float,
        *,
        monitor_id: str = "",
        group: Sequence[MemberSpec] | None = None,
        max_age: float = math.inf,
    ) -> list[Transition]:
        """Record a whole round (origin name → result) of one monitor for one pool.

        Calls :meth:`record` for each origin (in mapping order), then :meth:`add_round_rtt`
        with the RTTs of the passing ones. Returns the transitions, in order.
        """
        out: list[Transition] = []
        for name, res in results.items():
            tr = self.record(pool_id, name, res, thresholds, now, monitor_id=monitor_id, group=group)
            if tr is not None:
                out.append(tr)
        voting = True
        if group is not None:
            spec = next((m for m in group if m.monitor_id == monitor_id), None)
            voting = spec is None or spec.votes
        self.add_round_rtt(
            pool_id, (r.rtt_ms for r in results.values() if r.passed), now,
            monitor_id=monitor_id, voting=voting, max_age=max_age,
        )
        return out

    def _group_state(self, pool_id: str, origin_name: str, group: Sequence[MemberSpec]) -> OriginState:
        """The monitor-group quorum of (pool, origin) over its members' recorded states."""
        states = {
            m.monitor_id: rec.tracker.state
            for m in group
            if (rec := self._members.get((pool_id, origin_name, m.monitor_id))) is not None
        }
        return group_state(group, states)

    def _recompute_pool_rtt(self, pool_id: str) -> None:
        entries = [e.rtt for (p, _m), e in self._rtt.items() if p == pool_id and e.voting]
        if not entries:
            self._pool_rtt.pop(pool_id, None)
            return
        self._pool_rtt[pool_id] = PoolRtt(
            math.fsum(e.ewma_ms for e in entries) / len(entries),
            max(e.updated_at for e in entries),
            max(e.max_age for e in entries),
        )

    # -- snapshots and reloads -----------------------------------------------------------------

    def freeze(self, version: int) -> HealthView:
        """An immutable :class:`HealthView` of the current state with the given ``version``;
        its ``states_token`` is shared with earlier views while no pair state changed."""
        return HealthView(
            version, MappingProxyType(dict(self._origins)), MappingProxyType(dict(self._pool_rtt)),
            self._states_token, MappingProxyType(dict(self._controls)),
        )

    @classmethod
    def carry_over(
        cls, old_book: HealthBook, new_keys: Iterable[MemberKey], *, rtt_alpha: float | None = None
    ) -> HealthBook:
        """A new book for a reloaded configuration (docs/operations.md › Reloading).

        Takes the old book and the (pool id, origin name, monitor id) keys that the new
        configuration probes. Keeps the member states whose key still exists, the aggregated
        pair states that keep at least one member, and the RTT of (pool, monitor) pairs that
        still exist. Everything else starts UNKNOWN. ``rtt_alpha`` defaults to the old book's.
        """
        book = cls(rtt_alpha=old_book.rtt_alpha if rtt_alpha is None else rtt_alpha)
        book._controls = dict(old_book._controls)  # operator states outlive reloads
        keys = set(new_keys)
        for k in keys:
            rec = old_book._members.get(k)
            if rec is not None:
                book._members[k] = rec
        kept_pairs = {(p, o) for (p, o, _m) in book._members}
        for pair in kept_pairs:
            h = old_book._origins.get(pair)
            if h is not None:
                book._origins[pair] = h
        pool_monitors = {(p, m) for (p, _o, m) in keys}
        for pm, entry in old_book._rtt.items():
            if pm in pool_monitors:
                book._rtt[pm] = entry
        for pool_id in {p for (p, _m) in book._rtt}:
            book._recompute_pool_rtt(pool_id)
        return book


def carry_over(old_book: HealthBook, new_keys: Iterable[MemberKey]) -> HealthBook:
    """Module-level alias of :meth:`HealthBook.carry_over`."""
    return HealthBook.carry_over(old_book, new_keys)
