"""Probe results → health (Cloudflare docs: Load Balancing › How endpoints and pools become
unhealthy; Global traffic steering › Dynamic; Analytics › Logs; docs/architecture.md › One probe
result).

A :class:`HealthRecorder` is the receiving end of a probe scheduler — in this process or in
the probe worker process (:mod:`lbdns.probes.worker`). It knows the current targets by key
``(pool id, origin name, monitor id)``, feeds each result into the :class:`HealthBook`
(the pure consecutive up/down trackers), writes one log line per health transition (logger
``lbdns.health``: readable text, the event JSON attached as ``record.event``), calls the
notification hook once per origin event, and publishes immutable :class:`HealthView` objects through ``publish(view)``:
coalesced to at most one per ``coalesce_ms``, but at once when an origin becomes UNHEALTHY.

It also keeps the probe figures ``/metrics`` exports: probes run and failed, transitions and
recent schedule-lag samples (seconds a probe started behind its due time).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from lbdns.config.model import Pool
from lbdns.health.book import HealthBook, MemberKey, ProbeOutcome
from lbdns.health.pool_health import pool_healthy
from lbdns.health.tracker import Transition
from lbdns.health.view import HealthView, OriginState
from lbdns.probes.notify import HealthEvent, NotificationHook, build_event, event_line
from lbdns.probes.result import ProbeResult
from lbdns.probes.targets import ProbeTarget

health_log = logging.getLogger("lbdns.health")
log = logging.getLogger("lbdns.probes")

JobKey = tuple[str, str]
"""(pool id, monitor id): the targets probed together as one round."""


class ProbeSink(Protocol):
    """Where a probe scheduler reports (implemented by :class:`HealthRecorder` and by the
    worker process's pipe writer)."""

    def probe_done(self, key: MemberKey, result: ProbeResult, lag: float | None) -> None:
        """One probe of target ``key`` finished with ``result``; ``lag`` is seconds it started
        behind its due time (None for warm-start probes, which have no due time)."""

    def round_done(self, job: JobKey, rtts_ms: list[float]) -> None:
        """A round of ``job`` finished; ``rtts_ms`` are the passing probes' RTTs (ms)."""


class HealthRecorder:
    """Turns probe results into published health views (a :class:`ProbeSink`).

    Takes ``publish(view)``, called with every new :class:`HealthView` (versions strictly
    increase, starting after ``initial_version``). Options: ``book`` (default: a new
    :class:`HealthBook` with ``rtt_alpha``); ``coalesce_ms`` — min gap between publishes
    (UNHEALTHY transitions publish at once); ``clock`` — monotonic seconds (tracker time, RTT
    freshness); ``on_event`` — notification hook called once per origin health event;
    ``rtt_max_age`` — RTT freshness in seconds (None ⇒ 3 × the monitor interval,
    docs/decisions.md › Health and probes);
    ``lag_samples`` — how many recent schedule-lag samples to keep. Publishing is scheduled on
    the running event loop; without one (plain unit use) it happens at once.
    """

    def __init__(
        self,
        publish: Callable[[HealthView], None],
        *,
        book: HealthBook | None = None,
        rtt_alpha: float = 0.3,
        coalesce_ms: float = 200.0,
        clock: Callable[[], float] = time.monotonic,
        on_event: NotificationHook | None = None,
        rtt_max_age: float | None = None,
        initial_version: int = 0,
        lag_samples: int = 100_000,
    ) -> None:
        self._publish_cb = publish
        self.book = book if book is not None else HealthBook(rtt_alpha=rtt_alpha)
        self.coalesce = max(0.0, coalesce_ms) / 1000.0
        self.clock = clock
        self.on_event = on_event
        self.rtt_max_age = rtt_max_age
        self._version = initial_version
        self._view = self.book.freeze(initial_version)
        self.schedule_lag: deque[float] = deque(maxlen=lag_samples)
        self.probes_run = 0
        self.probes_failed = 0
        self.events = 0
        self._targets: dict[MemberKey, ProbeTarget] = {}
        self._jobs: dict[JobKey, ProbeTarget] = {}
        self._pool_ok: dict[str, bool] = {}
        self._publish_handle: asyncio.TimerHandle | None = None
        self._last_publish = -float("inf")

    # -- reading -------------------------------------------------------------------------------

    @property
    def view(self) -> HealthView:
        """The newest published (or initial) health view."""
        return self._view

    @property
    def targets(self) -> list[ProbeTarget]:
        """The current targets, in configuration order."""
        return list(self._targets.values())

    # -- targets ---------------------------------------------------------------------------------

    def set_targets(self, targets: Iterable[ProbeTarget], *, publish: bool = True) -> None:
        """Switch to a (re)loaded configuration's targets (docs/operations.md › Reloading).

        Health of keys that still exist is carried over, everything else starts UNKNOWN;
        results for keys no longer present are counted but ignored. With ``publish`` (default)
        a new view is published at once.
        """
        new = list(targets)
        self.book = HealthBook.carry_over(self.book, (t.key for t in new))
        self._targets = {t.key: t for t in new}
        self._jobs = {}
        for t in new:
            self._jobs.setdefault(t.job_key, t)
        pools: dict[str, Pool] = {t.pool.id: t.pool for t in new}
        self._pool_ok = {pid: pool_healthy(p, self.book) for pid, p in pools.items()}
        if publish:
            self.publish_now()

    # -- ProbeSink -------------------------------------------------------------------------------

    def probe_done(self, key: MemberKey, result: ProbeResult, lag: float | None) -> None:
        """Record one probe result (see :class:`ProbeSink`)."""
        self.count_probe(result, lag)
        self.record_result(key, result)

    def count_probe(self, result: ProbeResult, lag: float | None) -> None:
        """Count one probe run here (``/metrics``) without recording it into health."""
        self.probes_run += 1
        if not result.passed:
            self.probes_failed += 1
        if lag is not None:
            self.schedule_lag.append(lag)

    def record_result(self, key: MemberKey, result: ProbeOutcome) -> None:
        """Step the state machine of target ``key`` with one (possibly aggregated) result,
        without counting it as a probe run here (the cluster's vote over vantages feeds its
        aggregate through this, docs/scaling.md). Unknown keys are ignored."""
        target = self._targets.get(key)
        if target is None:  # removed by a reload while the probe ran
            return
        tr = self.book.record(target.pool.id, target.origin.name, result, target.thresholds,
                              self.clock(), monitor_id=target.monitor.id, group=target.group)
        if tr is None:
            self._mark_dirty()
            return
        self._emit(target, tr, result.at)
        self._mark_dirty(urgent=tr.monitor_id is None and tr.new is OriginState.UNHEALTHY)

    def round_done(self, job: JobKey, rtts_ms: list[float]) -> None:
        """Feed a finished round's RTTs into the pool EWMA (Cloudflare docs: Load Balancing ›
        Global traffic steering › Dynamic)."""
        first = self._jobs.get(job)
        if first is None:
            return
        interval = float(max(first.monitor.interval, 1))
        max_age = self.rtt_max_age if self.rtt_max_age is not None else 3.0 * interval
        self.book.add_round_rtt(first.pool.id, rtts_ms, self.clock(), monitor_id=first.monitor.id,
                                voting=first.votes, max_age=max_age)
        self._mark_dirty()

    # -- publishing ------------------------------------------------------------------------------

    def publish_now(self) -> HealthView:
        """Freeze and publish a new view at once (cancelling a pending coalesced publish);
        returns it. A publish callback that raises is logged, never propagated."""
        if self._publish_handle is not None:
            self._publish_handle.cancel()
            self._publish_handle = None
        self._version += 1
        self._view = self.book.freeze(self._version)
        self._last_publish = self.clock()
        try:
            self._publish_cb(self._view)
        except Exception:  # a broken consumer must not stop probing
            log.exception("health view publish failed")
        return self._view

    def flush(self) -> None:
        """Publish now if a coalesced publish is pending (used when stopping)."""
        if self._publish_handle is not None:
            self.publish_now()

    def _mark_dirty(self, urgent: bool = False) -> None:
        if urgent:
            self.publish_now()
            return
        if self._publish_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.publish_now()
            return
        delay = max(0.0, self._last_publish + self.coalesce - self.clock())
        self._publish_handle = loop.call_later(delay, self.publish_now)

    # -- transitions -----------------------------------------------------------------------------

    def _emit(self, target: ProbeTarget, tr: Transition, at: float) -> None:
        pool = target.pool
        origin_changed = tr.monitor_id is None
        was = self._pool_ok.get(pool.id, False)
        now_ok = pool_healthy(pool, self.book)
        self._pool_ok[pool.id] = now_ok
        health = self.book.origin(pool.id, target.origin.name)
        event = build_event(
            pool, target.origin, tr.old, health,
            pool_healthy=now_ok, pool_changed=now_ok != was, origin_changed=origin_changed,
            group=target.group,
            members=self.book.members(pool.id, target.origin.name) if target.group else None,
            monitor_id=tr.monitor_id, at=at,
        )
        self.events += 1
        # one readable line; the JSON event rides along for `log_format: json` (lbdns.logpipe)
        line = event_line(event, tr.old, tr.new)
        extra = {"event": event.body}
        if tr.monitor_id is None and tr.new is OriginState.UNHEALTHY:
            health_log.warning("%s", line, extra=extra)
        else:
            health_log.info("%s", line, extra=extra)
        if self.on_event is not None and origin_changed:
            self._notify(event)

    def _notify(self, event: HealthEvent) -> None:
        assert self.on_event is not None
        try:
            self.on_event(event)
        except Exception:  # a broken hook must not stop probing
            log.exception("notification hook failed")


__all__: Sequence[str] = ("HealthRecorder", "JobKey", "ProbeSink")
