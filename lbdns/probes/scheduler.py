"""The probe scheduler (SPEC.md §10.1, R-MON-01; DESIGN.md "One probe result").

Targets are built from the configuration model by :func:`build_targets`: one
:class:`ProbeTarget` per (pool, enabled origin, monitor) — a monitor-group pool yields one per
enabled member monitor. Targets sharing (pool, monitor) form a *job*: its probe round runs every
``interval`` seconds, its origins concurrently (their starts paced at ``round_rate`` per
second so a large pool is not one burst), and the pool RTT sample of R-MON-25 is the mean over
one round. Jobs sit in a due-time heap; the first round of each job starts after a
random jitter of at most ``min(interval, jitter)`` seconds, later rounds at fixed rate
``due + interval``. A semaphore caps concurrent probes. Nothing here blocks the event loop.

Each result goes to :meth:`HealthBook.record`; a state change produces one log line (the
R-LOG-01 JSON on logger ``lbdns.health``) and one call of the notification hook. New health
views are published through ``publish(view)``, coalesced to at most one per ``coalesce_ms``,
but at once when an origin becomes UNHEALTHY.

This server is a single vantage (R-MON-20 with the default local vantage): the aggregated
round result of R-MON-19 equals the probe result.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from lbdns.config.model import Monitor, MonitorGroup, Origin, Pool
from lbdns.health.book import HealthBook, MemberKey
from lbdns.health.expected_codes import ExpectedCodes, parse_expected_codes
from lbdns.health.pool_health import pool_healthy
from lbdns.health.tracker import MemberSpec, Thresholds, Transition
from lbdns.health.view import HealthView, OriginState
from lbdns.probes import result as r
from lbdns.probes.http import check_http, make_session
from lbdns.probes.icmp import IcmpPinger, check_icmp
from lbdns.probes.notify import HealthEvent, NotificationHook, build_event
from lbdns.probes.result import ProbeResult, resolve_host
from lbdns.probes.smtp import DEFAULT_HELO, check_smtp
from lbdns.probes.tcp import check_tcp
from lbdns.probes.udp import check_udp_icmp

health_log = logging.getLogger("lbdns.health")
log = logging.getLogger("lbdns.probes")

DEFAULT_JITTER = 5.0
"""Cap of the first-round start jitter in seconds (R-MON-01: at most min(interval, 5 s))."""


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class ProbeTarget:
    """One (pool, origin, monitor) to probe.

    ``group`` holds the pool's monitor-group members (None for a single ``monitor``);
    ``expected`` the pre-parsed ``expected_codes`` of an http/https monitor (None otherwise or
    when unparsable — the check then reports "Monitor Config Error").
    """

    pool: Pool
    origin: Origin
    monitor: Monitor
    group: tuple[MemberSpec, ...] | None = None
    expected: ExpectedCodes | None = None

    @property
    def key(self) -> MemberKey:
        """(pool id, origin name, monitor id): the identity carried over on reloads."""
        return (self.pool.id, self.origin.name, self.monitor.id)

    @property
    def job_key(self) -> tuple[str, str]:
        """(pool id, monitor id): targets probed together as one round."""
        return (self.pool.id, self.monitor.id)

    @property
    def thresholds(self) -> Thresholds:
        """The monitor's ``consecutive_up`` / ``consecutive_down`` (R-MON-18)."""
        return Thresholds(self.monitor.consecutive_up, self.monitor.consecutive_down)

    @property
    def votes(self) -> bool:
        """True unless this is a disabled or monitoring-only group member (R-MON-21, R-GTS-53)."""
        if self.group is None:
            return True
        spec = next((m for m in self.group if m.monitor_id == self.monitor.id), None)
        return spec is None or spec.votes


def _expected(monitor: Monitor) -> ExpectedCodes | None:
    if monitor.type not in ("http", "https"):
        return None
    try:
        return parse_expected_codes(monitor.expected_codes)
    except ValueError:
        return None


def build_targets(
    pools: Mapping[str, Pool],
    monitors: Mapping[str, Monitor],
    monitor_groups: Mapping[str, MonitorGroup] | None = None,
) -> list[ProbeTarget]:
    """Every probe target of a configuration (SPEC.md R-MON-01, R-MON-21).

    Takes pools, monitors and monitor groups by id. Returns one target per enabled origin of
    every pool that has a ``monitor`` — disabled pools included, disabled origins excluded
    (R-HLT-04) — and, for a ``monitor_group``, one per enabled member monitor. References to
    unknown monitors or groups are skipped (the validator rejects them, ``E-REF``).
    """
    groups = monitor_groups or {}
    out: list[ProbeTarget] = []
    for pool in pools.values():
        origins = [o for o in pool.origins if o.enabled]
        if pool.monitor is not None:
            mon = monitors.get(pool.monitor)
            if mon is not None:
                exp = _expected(mon)
                out.extend(ProbeTarget(pool, o, mon, None, exp) for o in origins)
        elif pool.monitor_group is not None:
            grp = groups.get(pool.monitor_group)
            if grp is None:
                continue
            specs = tuple(
                MemberSpec(m.monitor_id, m.enabled, m.monitoring_only, m.must_be_healthy)
                for m in grp.members
            )
            for member in grp.members:
                mon = monitors.get(member.monitor_id)
                if not member.enabled or mon is None:
                    continue
                exp = _expected(mon)
                out.extend(ProbeTarget(pool, o, mon, specs, exp) for o in origins)
    return out


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ProbeContext:
    """Shared resources of the checks: the aiohttp session, TLS trust, ICMP mode, options."""

    session: aiohttp.ClientSession | None = None
    ssl_context: ssl.SSLContext | None = None
    strict_public: bool = False
    pinger: IcmpPinger = field(default_factory=IcmpPinger)
    smtp_helo: str = DEFAULT_HELO


def _port(monitor: Monitor, origin: Origin) -> int:
    return monitor.port or origin.port or 0


async def run_check(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """Run the check of ``target`` once (all attempts) and return its result; never raises.

    Hostname origins are resolved first (R-MON-16). tcp/smtp/udp_icmp without a port, an
    unknown type or an http probe without a session ⇒ "Monitor Config Error" (R-MON-24).
    """
    mon, origin = target.monitor, target.origin
    try:
        ip, failure = await resolve_host(origin.address, mon.timeout, strict_public=ctx.strict_public)
        if failure is not None or ip is None:
            return failure or r.failed(r.DNS_UNKNOWN_HOST)
        kind = mon.type
        if kind in ("http", "https"):
            if ctx.session is None:
                return r.failed(r.MONITOR_CONFIG_ERROR, detail="no HTTP session")
            return await check_http(mon, origin, target.pool.id, ctx.session, ip=ip,
                                    ssl_context=ctx.ssl_context, expected=target.expected)
        if kind == "icmp_ping":
            return await check_icmp(ip, mon.timeout, mon.retries, pinger=ctx.pinger)
        port = _port(mon, origin)
        if kind in ("tcp", "smtp", "udp_icmp") and not port:
            return r.failed(r.MONITOR_CONFIG_ERROR, detail=f"{kind} monitor {mon.id!r} has no port")
        if kind == "tcp":
            return await check_tcp(ip, port, mon.timeout, mon.retries)
        if kind == "smtp":
            return await check_smtp(ip, port, mon.timeout, mon.retries, helo=ctx.smtp_helo)
        if kind == "udp_icmp":
            return await check_udp_icmp(ip, port, mon.timeout, mon.retries, pinger=ctx.pinger)
        return r.failed(r.MONITOR_CONFIG_ERROR, detail=f"unsupported monitor type {kind!r}")
    except Exception as exc:  # a check never raises
        return r.failed(r.OTHER_FAILURE, detail=f"{type(exc).__name__}: {exc}")


Checker = Callable[[ProbeTarget, ProbeContext], Awaitable[ProbeResult]]


# ---------------------------------------------------------------------------------------------
# Scheduler
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Job:
    key: tuple[str, str]
    targets: list[ProbeTarget]
    interval: float
    due: float = 0.0
    token: int = 0
    running: bool = False
    retired: bool = False


def _jobs_of(targets: Iterable[ProbeTarget]) -> dict[tuple[str, str], list[ProbeTarget]]:
    jobs: dict[tuple[str, str], list[ProbeTarget]] = {}
    for t in targets:
        jobs.setdefault(t.job_key, []).append(t)
    return jobs


class ProbeScheduler:
    """Runs every target's probe each monitor ``interval`` and publishes health views.

    Takes the targets (:func:`build_targets`) and ``publish(view)``, called with every new
    :class:`HealthView` (versions strictly increase, starting after ``initial_version``).
    Options: ``concurrency`` — max probes in flight; ``jitter`` — cap in seconds of the
    first-round jitter (``min(interval, jitter)``; 0 = start at once); ``clock`` — monotonic
    seconds (due times, lag, RTT freshness); ``coalesce_ms`` — min gap between publishes
    (UNHEALTHY transitions publish at once); ``on_event`` — notification hook called once per
    health event; ``rtt_alpha`` — EWMA factor (R-GTS-52); ``rtt_max_age`` — RTT freshness in
    seconds (None ⇒ 3 × the monitor interval, R-GTS-51); ``ssl_context`` — trust for HTTPS
    verification (None ⇒ system store); ``strict_public_endpoints`` (R-MON-16);
    ``icmp_privileged`` — see :class:`IcmpPinger`; ``session`` — an aiohttp session to use
    (otherwise one is created by :meth:`start` and closed by :meth:`stop`); ``checker`` —
    replaces :func:`run_check` (tests); ``rng`` — jitter randomness; ``round_rate`` — probes
    of one round (one pool and monitor) start at most this many per second, spread over at
    most half the interval, so a pool with many origins does not start them all at once.

    ``schedule_lag`` holds recent samples (seconds) of actual probe start − due time.
    """

    def __init__(
        self,
        targets: Sequence[ProbeTarget],
        publish: Callable[[HealthView], None],
        *,
        concurrency: int = 256,
        jitter: float = DEFAULT_JITTER,
        clock: Callable[[], float] = time.monotonic,
        coalesce_ms: float = 200.0,
        on_event: NotificationHook | None = None,
        book: HealthBook | None = None,
        rtt_alpha: float = 0.3,
        rtt_max_age: float | None = None,
        initial_version: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        strict_public_endpoints: bool = False,
        icmp_privileged: bool | None = None,
        session: aiohttp.ClientSession | None = None,
        checker: Checker | None = None,
        rng: random.Random | None = None,
        lag_samples: int = 100_000,
        round_rate: float = 500.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency {concurrency} is invalid (≥ 1)")
        if round_rate <= 0:
            raise ValueError(f"round_rate {round_rate} is invalid (> 0)")
        self.round_rate = round_rate
        self._publish_cb = publish
        self.concurrency = concurrency
        self.jitter = max(0.0, jitter)
        self.clock = clock
        self.coalesce = max(0.0, coalesce_ms) / 1000.0
        self.on_event = on_event
        self.rtt_max_age = rtt_max_age
        self.book = book if book is not None else HealthBook(rtt_alpha=rtt_alpha)
        self._version = initial_version
        self._view = self.book.freeze(initial_version)
        self._ctx = ProbeContext(session, ssl_context, strict_public_endpoints,
                                 IcmpPinger(icmp_privileged))
        self._own_session = session is None
        self._checker: Checker = checker or run_check
        self._rng = rng or random.Random()
        self._sem = asyncio.Semaphore(concurrency)
        self.schedule_lag: deque[float] = deque(maxlen=lag_samples)
        self.probes_run = 0
        self.probes_failed = 0
        self.events = 0
        self._heap: list[tuple[float, int, int, _Job]] = []
        self._seq = itertools.count()
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._targets: list[ProbeTarget] = []
        self._keys: set[MemberKey] = set()
        self._pools: dict[str, Pool] = {}
        self._pool_ok: dict[str, bool] = {}
        self._runner: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._publish_handle: asyncio.TimerHandle | None = None
        self._last_publish = -float("inf")
        self._set_targets(list(targets))

    # -- public API --------------------------------------------------------------------------

    @property
    def view(self) -> HealthView:
        """The newest published (or initial) health view."""
        return self._view

    @property
    def targets(self) -> list[ProbeTarget]:
        """The current targets."""
        return list(self._targets)

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._runner is not None and not self._runner.done()

    async def start(self) -> None:
        """Start probing (needs a running loop). Schedules every job's first round within
        ``min(interval, jitter)`` seconds. Calling it twice is harmless."""
        if self.running:
            return
        self._ensure_session()
        self._wake = asyncio.Event()
        now = self.clock()
        for job in self._jobs.values():
            if not job.running:
                self._push(job, now + self._first_delay(job.interval))
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="lbdns-probe-scheduler")

    async def stop(self) -> None:
        """Stop probing: cancel the scheduler and in-flight probes, flush a pending publish,
        close the scheduler's own HTTP session. Safe to call when not started."""
        runner, self._runner = self._runner, None
        tasks = list(self._tasks)
        if runner is not None:
            runner.cancel()
            tasks.append(runner)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._heap.clear()
        for job in self._jobs.values():
            job.running = False
        if self._publish_handle is not None:
            self._publish_now()
        if self._own_session and self._ctx.session is not None:
            await self._ctx.session.close()
            self._ctx.session = None

    async def run_one_round(self, timeout: float | None = None, *, settle: bool = True) -> HealthView:
        """Warm start: probe every target once, concurrently, and publish the result.

        With ``settle`` (default), targets whose pair is still UNKNOWN after a pass (because
        ``consecutive_up`` > 1, R-MON-18) are probed again at once, until they reach HEALTHY,
        fail, or time runs out — so a restart with healthy origins does not send traffic to
        the fallback pool (R-HLT-05). Failing pairs are not re-probed (UNKNOWN is already
        down for steering, R-HLT-02). Everything is bounded by ``timeout`` seconds (None ⇒ the
        largest ``timeout × (retries + 1)`` of the monitors, plus 1 s for name resolution);
        probes still running then are cancelled and leave their pairs unchanged. Returns the
        published view.
        """
        self._ensure_session()
        bound = timeout
        if bound is None:
            bound = max((t.monitor.timeout * (t.monitor.retries + 1) for t in self._targets),
                        default=0) + 1.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound
        batch = {key: list(job.targets) for key, job in self._jobs.items()}
        while batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await self._probe_batch(batch, remaining)
            if not settle:
                break
            batch = {}
            for key, job in self._jobs.items():
                progressing = [t for t in job.targets if self._settling(t)]
                if progressing:
                    batch[key] = progressing
        self._publish_now()
        return self._view

    def _settling(self, target: ProbeTarget) -> bool:
        rec = self.book.member(*target.key)
        return rec is not None and rec.state is OriginState.UNKNOWN and rec.tracker.passes > 0

    async def _probe_batch(self, batch: Mapping[tuple[str, str], Sequence[ProbeTarget]],
                           limit: float) -> None:
        loop = asyncio.get_running_loop()
        per_job = {key: [loop.create_task(self._probe(t, None)) for t in ts] for key, ts in batch.items()}
        all_tasks = [t for ts in per_job.values() for t in ts]
        _done, pending = await asyncio.wait(all_tasks, timeout=limit)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        now = self.clock()
        for key, ts in per_job.items():
            job = self._jobs.get(key)
            if job is not None:
                results = [t.result() if t.done() and not t.cancelled() else None for t in ts]
                self._record_round_rtt(job, results, now)

    def replace_targets(self, new_targets: Sequence[ProbeTarget]) -> None:
        """Switch to a reloaded configuration's targets (SPEC.md R-MNT-03).

        Health of (pool, origin, monitor) keys that still exist is carried over; jobs that
        still exist keep their schedule; new jobs start within the first-round jitter; removed
        jobs stop (their in-flight results are discarded). Publishes a new view at once.
        """
        self.book = HealthBook.carry_over(self.book, (t.key for t in new_targets))
        self._set_targets(list(new_targets))
        self._publish_now()

    # -- internals -----------------------------------------------------------------------------

    def _ensure_session(self) -> None:
        if self._ctx.session is None and any(t.monitor.type in ("http", "https") for t in self._targets):
            self._ctx.session = make_session(self.concurrency)

    def _first_delay(self, interval: float) -> float:
        cap = min(interval, self.jitter)
        return self._rng.uniform(0.0, cap) if cap > 0 else 0.0

    def _set_targets(self, targets: list[ProbeTarget]) -> None:
        self._targets = targets
        self._keys = {t.key for t in targets}
        self._pools = {t.pool.id: t.pool for t in targets}
        self._pool_ok = {pid: pool_healthy(p, self.book) for pid, p in self._pools.items()}
        if self._ctx.session is None and self.running:
            self._ensure_session()
        now = self.clock()
        new_jobs = _jobs_of(targets)
        old_jobs = self._jobs
        self._jobs = {}
        for key, job_targets in new_jobs.items():
            interval = float(max(job_targets[0].monitor.interval, 1))
            job = old_jobs.pop(key, None)
            if job is not None and not job.retired:
                job.targets = job_targets
                if job.interval != interval:
                    job.interval = interval
                    if self.running and not job.running:
                        self._push(job, min(job.due, now + interval))
                self._jobs[key] = job
            else:
                job = _Job(key, job_targets, interval)
                self._jobs[key] = job
                if self.running:
                    self._push(job, now + self._first_delay(interval))
        for job in old_jobs.values():
            job.retired = True

    def _push(self, job: _Job, due: float) -> None:
        job.due = due
        job.token += 1
        heapq.heappush(self._heap, (due, next(self._seq), job.token, job))
        if self._wake is not None:
            self._wake.set()

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("probe round failed", exc_info=task.exception())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            now = self.clock()
            while self._heap and self._heap[0][0] <= now:
                due, _seq, token, job = heapq.heappop(self._heap)
                if job.retired or token != job.token or job.running:
                    continue
                job.running = True
                self._spawn(self._run_round(job, due))
            self._wake.clear()
            handle = None
            if self._heap:
                handle = loop.call_later(max(0.0, self._heap[0][0] - now), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if handle is not None:
                    handle.cancel()

    async def _run_round(self, job: _Job, due: float) -> None:
        try:
            n = len(job.targets)
            step = min(1.0 / self.round_rate, job.interval / 2.0 / n) if n > 1 else 0.0
            results = await asyncio.gather(
                *(self._probe(t, due + i * step) for i, t in enumerate(job.targets))
            )
            self._record_round_rtt(job, list(results), self.clock())
        finally:
            job.running = False
        if job.retired or not self.running:
            return
        now = self.clock()
        nxt = due + job.interval
        self._push(job, nxt if nxt >= now else now)

    async def _probe(self, target: ProbeTarget, due: float | None) -> ProbeResult | None:
        if due is not None:
            delay = due - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
        async with self._sem:
            if due is not None:
                self.schedule_lag.append(self.clock() - due)
            try:
                res = await self._checker(target, self._ctx)
            except Exception as exc:  # a custom checker broke its contract; keep probing
                log.exception("check of %s raised", target.key)
                res = r.failed(r.OTHER_FAILURE, detail=f"{type(exc).__name__}: {exc}")
        self.probes_run += 1
        if not res.passed:
            self.probes_failed += 1
        if target.key not in self._keys:
            return None
        self._handle_result(target, res)
        return res

    def _record_round_rtt(self, job: _Job, results: Sequence[ProbeResult | None], now: float) -> None:
        if job.retired or not job.targets:
            return
        first = job.targets[0]
        rtts = [res.rtt_ms for res in results if res is not None and res.passed]
        max_age = self.rtt_max_age if self.rtt_max_age is not None else 3.0 * job.interval
        self.book.add_round_rtt(first.pool.id, rtts, now, monitor_id=first.monitor.id,
                                voting=first.votes, max_age=max_age)
        self._mark_dirty()

    def _handle_result(self, target: ProbeTarget, res: ProbeResult) -> None:
        tr = self.book.record(target.pool.id, target.origin.name, res, target.thresholds,
                              self.clock(), monitor_id=target.monitor.id, group=target.group)
        if tr is None:
            self._mark_dirty()
            return
        self._emit(target, tr, res)
        self._mark_dirty(urgent=tr.monitor_id is None and tr.new is OriginState.UNHEALTHY)

    def _emit(self, target: ProbeTarget, tr: Transition, res: ProbeResult) -> None:
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
            monitor_id=tr.monitor_id, at=res.at,
        )
        self.events += 1
        line = json.dumps(event.body, separators=(",", ":"))
        if tr.monitor_id is not None:
            health_log.info("health monitor %s %s->%s %s", tr.monitor_id, tr.old.name,
                            tr.new.name, line)
        elif tr.new is OriginState.UNHEALTHY:
            health_log.warning("health %s->%s %s", tr.old.name, tr.new.name, line)
        else:
            health_log.info("health %s->%s %s", tr.old.name, tr.new.name, line)
        if self.on_event is not None and origin_changed:
            self._notify(event)

    def _notify(self, event: HealthEvent) -> None:
        assert self.on_event is not None
        try:
            self.on_event(event)
        except Exception:  # a broken hook must not stop probing
            log.exception("notification hook failed")

    def _mark_dirty(self, urgent: bool = False) -> None:
        if urgent:
            self._publish_now()
            return
        if self._publish_handle is not None:
            return
        delay = max(0.0, self._last_publish + self.coalesce - self.clock())
        self._publish_handle = asyncio.get_running_loop().call_later(delay, self._publish_now)

    def _publish_now(self) -> None:
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
