"""The immutable health view that steering reads (docs/architecture.md › One probe result).

A :class:`HealthView` maps ``(pool id, origin name)`` to an :class:`OriginHealth` and pool ids
to a :class:`PoolRtt`. Its health data is never mutated: the probe scheduler (or a test, or a
static override) builds a new one and swaps a single reference (only the steering memo
``pool_states`` fills in, and goes with the view). ``version`` increases with every
published view so caches keyed by it stay correct.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any

from lbdns.health.control import Control, ControlEntry, ControlKey, control_of


class OriginState(IntEnum):
    """Aggregated health of one (pool, origin) pair (health is per pool: the same address in two
    pools can have different states)."""

    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2


@dataclass(frozen=True, slots=True)
class OriginHealth:
    """Health of one (pool, origin) pair.

    ``last_probe_at`` is a wall-clock UNIX time in seconds (None before the first probe);
    ``rtt_ms`` the last passing probe's round-trip time in milliseconds; ``failure_reason``
    uses the failure reasons of Cloudflare docs: Load Balancing › Common error codes (``"No
    failures"`` when passing, as in › Analytics › Logs).
    """

    state: OriginState = OriginState.UNKNOWN
    failure_reason: str = ""
    last_probe_at: float | None = None
    rtt_ms: float | None = None
    response_code: int | None = None


@dataclass(frozen=True, slots=True)
class PoolRtt:
    """RTT EWMA of a pool (Cloudflare docs: Load Balancing › Global traffic steering › Dynamic):
    ``ewma_ms`` in milliseconds, ``updated_at`` the monotonic time in seconds of the newest
    sample, ``max_age`` seconds after which the data is no longer "current" (same page)."""

    ewma_ms: float
    updated_at: float
    max_age: float = float("inf")

    def is_current(self, now: float) -> bool:
        """True when the newest sample is younger than ``max_age`` at monotonic time ``now``."""
        return now - self.updated_at < self.max_age


_UNKNOWN = OriginHealth()


@dataclass(frozen=True, slots=True)
class HealthView:
    """An immutable snapshot of health, read by steering once per query.

    ``states_token`` is an identity that two views share only when every origin's ``state``
    is the same in both: caches of state-derived steering facts (pool usability, memoised LB
    answers) key on it, so publishing new probe details (times, RTTs) does not drop them.
    A view built without one gets a fresh token.
    """

    version: int = 0
    origins: Mapping[tuple[str, str], OriginHealth] = field(
        default_factory=lambda: MappingProxyType({})
    )
    pool_rtt: Mapping[str, PoolRtt] = field(default_factory=lambda: MappingProxyType({}))
    states_token: object = field(default_factory=object, compare=False)
    controls: Mapping[ControlKey, ControlEntry] = field(default_factory=lambda: MappingProxyType({}))
    """Operator states by (pool id, origin name or None for the pool), see
    :mod:`lbdns.health.control`; part of what ``states_token`` stands for."""
    region_rtt: Mapping[tuple[str, str], PoolRtt] = field(default_factory=lambda: MappingProxyType({}))
    """(pool id, region code) → the pool's RTT measured from that region's vantages
    (``rtt_scope: region``; empty otherwise)."""
    pool_states: dict[str, Any] = field(default_factory=dict, init=False, compare=False, repr=False)
    """The memo of :meth:`lbdns.steering.plan.CompiledPool.state`: pool id → the pool's
    health-derived facts for this view, filled lazily by steering. The only mutable part of a
    view; it is never copied (:func:`dataclasses.replace` and every new view start empty), so
    publishing a new view drops it."""

    def rtt_for(self, pool_id: str, region: str | None) -> PoolRtt | None:
        """The pool's RTT as seen from ``region`` (Cloudflare docs: Load Balancing › Global
        traffic steering › Dynamic: per-region latency) when that region has data, else the
        pool's own RTT; None without data."""
        if region is not None and self.region_rtt:
            rtt = self.region_rtt.get((pool_id, region))
            if rtt is not None:
                return rtt
        return self.pool_rtt.get(pool_id)

    def origin(self, pool_id: str, origin_name: str) -> OriginHealth:
        """The health of (pool, origin); UNKNOWN when nothing was recorded."""
        return self.origins.get((pool_id, origin_name), _UNKNOWN)

    def state(self, pool_id: str, origin_name: str) -> OriginState:
        """The state of (pool, origin); UNKNOWN when nothing was recorded."""
        h = self.origins.get((pool_id, origin_name))
        return h.state if h is not None else OriginState.UNKNOWN

    def control(self, pool_id: str, origin_name: str | None) -> Control:
        """The operator state of (pool, origin), or of the pool with ``origin_name`` None."""
        return control_of(self.controls, pool_id, origin_name) if self.controls else Control.AUTO

    def with_states(
        self, states: Mapping[tuple[str, str], OriginState], rtt: Mapping[str, PoolRtt] | None = None
    ) -> HealthView:
        """A new view (version + 1) with the given states replaced (a test helper; the server
        writes health only through its health owner)."""
        merged = dict(self.origins)
        for key, st in states.items():
            old = merged.get(key, _UNKNOWN)
            merged[key] = OriginHealth(st, old.failure_reason, old.last_probe_at, old.rtt_ms,
                                       old.response_code)
        new_rtt = dict(self.pool_rtt)
        if rtt:
            new_rtt.update(rtt)
        return HealthView(self.version + 1, MappingProxyType(merged), MappingProxyType(new_rtt),
                          controls=self.controls, region_rtt=self.region_rtt)


EMPTY_HEALTH = HealthView()
