"""The probe scheduler (docs/operations.md › Health monitoring; docs/architecture.md › One probe
result).

Runs the checks of :class:`~lbdns.probes.targets.ProbeTarget` objects on time and reports each
result to a :class:`~lbdns.probes.sink.ProbeSink` — a :class:`HealthRecorder` in this
process, or the pipe of the probe worker process (:mod:`lbdns.probes.worker`), which is how a
serving lbdns runs it. The scheduler itself keeps no health.

Targets sharing (pool, monitor) form a *job*: its probe round runs every ``interval`` seconds,
its origins concurrently (their starts paced at ``round_rate`` per second so a large pool is
not one burst), and the pool RTT sample is the mean over one round
(:meth:`ProbeSink.round_done`). Jobs sit in a due-time heap; the first round of each job
starts after a random jitter of at most ``min(interval, jitter)`` seconds, later rounds at
fixed rate ``due + interval``. A semaphore caps concurrent probes. Nothing here blocks the
event loop.

This server is a single vantage: the majority vote over health monitor regions (Cloudflare
docs: Load Balancing › Monitors › Health monitor regions) reduces to the probe result (lbdns
decision, docs/decisions.md › Health and probes).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import dns.asyncresolver

from lbdns.config.model import Monitor, Origin
from lbdns.config.monitor_types import MONITOR_KINDS
from lbdns.probes import result as r
from lbdns.probes.http import check_http, make_session
from lbdns.probes.icmp import IcmpPinger, check_icmp
from lbdns.probes.result import ProbeResult, resolve_host
from lbdns.probes.sink import JobKey, ProbeSink
from lbdns.probes.smtp import DEFAULT_HELO, check_smtp
from lbdns.probes.targets import ProbeTarget, warm_start_bound
from lbdns.probes.tcp import check_tcp
from lbdns.probes.udp import check_udp_icmp
from lbdns.upstream import make_resolver

log = logging.getLogger("lbdns.probes")

DEFAULT_JITTER = 5.0
"""Cap of the first-round start jitter in seconds (lbdns decision: at most min(interval, 5 s))."""


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ProbeContext:
    """Shared resources of the checks: the aiohttp session, TLS trust, ICMP mode, options, and
    the resolver for hostname origins (None: the system resolver), and the local address TCP,
    HTTP(S) and SMTP probes connect from (None: the kernel's choice)."""

    session: aiohttp.ClientSession | None = None
    ssl_context: ssl.SSLContext | None = None
    strict_public: bool = False
    pinger: IcmpPinger = field(default_factory=IcmpPinger)
    smtp_helo: str = DEFAULT_HELO
    resolver: dns.asyncresolver.Resolver | None = None
    source_address: str | None = None


def _port(monitor: Monitor, origin: Origin) -> int:
    return monitor.port or origin.port or 0


async def _http(target: ProbeTarget, ctx: ProbeContext, ip: str, port: int) -> ProbeResult:
    if ctx.session is None:
        return r.failed(r.MONITOR_CONFIG_ERROR, detail="no HTTP session")
    return await check_http(target.monitor, target.origin, target.pool.id, ctx.session, ip=ip,
                            ssl_context=ctx.ssl_context, expected=target.expected)


async def _icmp_ping(target: ProbeTarget, ctx: ProbeContext, ip: str, port: int) -> ProbeResult:
    return await check_icmp(ip, target.monitor.timeout, target.monitor.retries, pinger=ctx.pinger)


async def _tcp(target: ProbeTarget, ctx: ProbeContext, ip: str, port: int) -> ProbeResult:
    return await check_tcp(ip, port, target.monitor.timeout, target.monitor.retries, source=ctx.source_address)


async def _smtp(target: ProbeTarget, ctx: ProbeContext, ip: str, port: int) -> ProbeResult:
    return await check_smtp(ip, port, target.monitor.timeout, target.monitor.retries, helo=ctx.smtp_helo,
                            source=ctx.source_address)


async def _udp_icmp(target: ProbeTarget, ctx: ProbeContext, ip: str, port: int) -> ProbeResult:
    return await check_udp_icmp(ip, port, target.monitor.timeout, target.monitor.retries, pinger=ctx.pinger)


def _is_http(target: ProbeTarget) -> bool:
    kind = MONITOR_KINDS.get(target.monitor.type)
    return kind is not None and kind.http


TypeCheck = Callable[[ProbeTarget, ProbeContext, str, int], Awaitable[ProbeResult]]
"""One monitor type's check: (target, context, origin IP, port — 0 when the type needs none)."""

CHECKS: Mapping[str, TypeCheck] = {
    "http": _http, "https": _http, "tcp": _tcp, "udp_icmp": _udp_icmp, "icmp_ping": _icmp_ping, "smtp": _smtp,
}
"""The check of each monitor ``type``; the types and what they need are
:data:`lbdns.config.monitor_types.MONITOR_KINDS` (one entry there, one here)."""


async def run_check(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """Run the check of ``target`` once (all attempts) and return its result; never raises.

    Hostname origins are resolved first ("DNS Unknown Host" / "DNS Internal"). A type that needs
    a port without one, an unknown type or an http probe without a session ⇒ "Monitor Config
    Error" (failure reasons of Cloudflare docs: Load Balancing › Common error codes).
    """
    mon, origin = target.monitor, target.origin
    try:
        ip, failure = await resolve_host(origin.address, mon.timeout, strict_public=ctx.strict_public,
                                         resolver=ctx.resolver, known=target.local_ip)
        if failure is not None or ip is None:
            return failure or r.failed(r.DNS_UNKNOWN_HOST)
        kind, check = MONITOR_KINDS.get(mon.type), CHECKS.get(mon.type)
        if kind is None or check is None:
            return r.failed(r.MONITOR_CONFIG_ERROR, detail=f"unsupported monitor type {mon.type!r}")
        port = _port(mon, origin) if kind.needs_port else 0
        if kind.needs_port and not port:
            return r.failed(r.MONITOR_CONFIG_ERROR, detail=f"{mon.type} monitor {mon.id!r} has no port")
        return await check(target, ctx, ip, port)
    except Exception as exc:  # a check never raises
        return r.failed(r.OTHER_FAILURE, detail=f"{type(exc).__name__}: {exc}")


Checker = Callable[[ProbeTarget, ProbeContext], Awaitable[ProbeResult]]


# ---------------------------------------------------------------------------------------------
# Scheduler
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Job:
    key: JobKey
    targets: list[ProbeTarget]
    interval: float
    due: float = 0.0
    token: int = 0
    running: bool = False
    retired: bool = False


def _jobs_of(targets: Iterable[ProbeTarget]) -> dict[JobKey, list[ProbeTarget]]:
    jobs: dict[JobKey, list[ProbeTarget]] = {}
    for t in targets:
        jobs.setdefault(t.job_key, []).append(t)
    return jobs


def settle_passes(target: ProbeTarget) -> int:
    """Passes in a row that take a fresh target from UNKNOWN to HEALTHY: its monitor's
    ``consecutive_up``, where 0 counts as 1 (lbdns decision, docs/decisions.md › Health and
    probes)."""
    return max(1, target.monitor.consecutive_up)


class ProbeScheduler:
    """Runs every target's check each monitor ``interval`` and reports to ``sink``.

    Takes the targets (:func:`build_targets`) and the :class:`ProbeSink`. Options:
    ``concurrency`` — max probes in flight; ``jitter`` — cap in seconds of the first-round
    jitter (``min(interval, jitter)``; 0 = start at once); ``clock`` — monotonic seconds (due
    times and lag); ``ssl_context`` — trust for HTTPS verification (None ⇒ system store);
    ``strict_public_endpoints`` (hostnames resolving to non-public addresses fail with "DNS
    Internal"); ``icmp_privileged`` — see :class:`IcmpPinger`; ``session`` — an aiohttp
    session to use (otherwise one is created when needed and closed by :meth:`stop`);
    ``checker`` — replaces :func:`run_check` (tests); ``rng`` — jitter randomness;
    ``round_rate`` — probes of one round (one pool and monitor) start at most this many per
    second, spread over at most half the interval, so a pool with many origins does not start
    them all at once; ``upstream_resolvers`` — resolve hostname origins through these
    (the ``upstream_resolvers`` setting, as answers do; empty: the system resolver);
    ``source_address`` — local address of TCP, HTTP(S) and SMTP probes (the
    ``probe_source_address`` setting; None: the kernel's choice). Raises
    ValueError for ``concurrency`` < 1, ``round_rate`` ≤ 0 or a malformed upstream.
    """

    def __init__(
        self,
        targets: Sequence[ProbeTarget],
        sink: ProbeSink,
        *,
        concurrency: int = 256,
        jitter: float = DEFAULT_JITTER,
        clock: Callable[[], float] = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
        strict_public_endpoints: bool = False,
        icmp_privileged: bool | None = None,
        session: aiohttp.ClientSession | None = None,
        checker: Checker | None = None,
        rng: random.Random | None = None,
        round_rate: float = 500.0,
        upstream_resolvers: Sequence[str] = (),
        source_address: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency {concurrency} is invalid (≥ 1)")
        if round_rate <= 0:
            raise ValueError(f"round_rate {round_rate} is invalid (> 0)")
        self.sink = sink
        self.round_rate = round_rate
        self.concurrency = concurrency
        self.jitter = max(0.0, jitter)
        self.clock = clock
        self._ctx = ProbeContext(session, ssl_context, strict_public_endpoints,
                                 IcmpPinger(icmp_privileged),
                                 resolver=make_resolver(upstream_resolvers, 30.0) if upstream_resolvers else None,
                                 source_address=source_address)
        self._own_session = session is None
        self._checker: Checker = checker or run_check
        self._rng = rng or random.Random()
        self._sem = asyncio.Semaphore(concurrency)
        self._heap: list[tuple[float, int, int, _Job]] = []
        self._seq = itertools.count()
        self._jobs: dict[JobKey, _Job] = {}
        self._targets: list[ProbeTarget] = []
        self._runner: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._set_targets(list(targets))

    # -- public API --------------------------------------------------------------------------

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
        """Stop probing: cancel the scheduler and in-flight probes (their results are not
        reported) and close the scheduler's own HTTP session. Safe to call when not started."""
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
        if self._own_session and self._ctx.session is not None:
            await self._ctx.session.close()
            self._ctx.session = None

    async def run_one_round(self, timeout: float | None = None, *, settle: bool = True) -> int:
        """Warm start: probe every target once, concurrently, reporting as usual.

        With ``settle`` (default) a target that passed is probed again at once until it has
        passed :func:`settle_passes` times in a row — so a restart with healthy origins and
        ``consecutive_up`` > 1 does not send traffic to the fallback pool (docs/operations.md ›
        Warm start). A target that fails is not re-probed (UNKNOWN is already down for
        steering, Cloudflare docs: Load Balancing › How endpoints and pools become unhealthy).
        Everything is bounded by ``timeout`` seconds (None ⇒ the largest ``timeout ×
        (retries + 1)`` of the monitors, plus 1 s for name resolution); probes still running
        then are cancelled and not reported. Returns the number of probes reported.
        """
        self._ensure_session()
        bound = timeout if timeout is not None else warm_start_bound(self._targets)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound
        passes: dict[int, int] = {}
        batch = {key: list(job.targets) for key, job in self._jobs.items()}
        reported = 0
        while batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            results = await self._probe_batch(batch, remaining)
            reported += sum(1 for _t, res in results if res is not None)
            if not settle:
                break
            batch = {}
            for t, res in results:
                if res is None or not res.passed:
                    continue
                passes[id(t)] = passes.get(id(t), 0) + 1
                if passes[id(t)] < settle_passes(t):
                    batch.setdefault(t.job_key, []).append(t)
        return reported

    async def _probe_batch(self, batch: Mapping[JobKey, Sequence[ProbeTarget]],
                           limit: float) -> list[tuple[ProbeTarget, ProbeResult | None]]:
        loop = asyncio.get_running_loop()
        per_job = {key: [(t, loop.create_task(self._probe(t, None))) for t in ts] for key, ts in batch.items()}
        all_tasks = [task for ts in per_job.values() for _t, task in ts]
        _done, pending = await asyncio.wait(all_tasks, timeout=limit)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        out: list[tuple[ProbeTarget, ProbeResult | None]] = []
        for key, ts in per_job.items():
            results = [(t, task.result() if task.done() and not task.cancelled() else None) for t, task in ts]
            out.extend(results)
            if key in self._jobs:
                self._report_round(key, [res for _t, res in results])
        return out

    def replace_targets(self, new_targets: Sequence[ProbeTarget]) -> None:
        """Switch to a reloaded configuration's targets (docs/operations.md › Reloading).

        Jobs that still exist keep their schedule; new jobs start within the first-round
        jitter; removed jobs stop (their in-flight results are still reported; the sink
        ignores keys it no longer knows).
        """
        self._set_targets(list(new_targets))

    # -- internals -----------------------------------------------------------------------------

    def _ensure_session(self) -> None:
        if self._ctx.session is None and any(_is_http(t) for t in self._targets):
            self._ctx.session = make_session(self.concurrency, source=self._ctx.source_address)

    def _first_delay(self, interval: float) -> float:
        cap = min(interval, self.jitter)
        return self._rng.uniform(0.0, cap) if cap > 0 else 0.0

    def _set_targets(self, targets: list[ProbeTarget]) -> None:
        self._targets = targets
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
            if not job.retired:
                self._report_round(job.key, list(results))
        finally:
            job.running = False
        if job.retired or not self.running:
            return
        now = self.clock()
        nxt = due + job.interval
        self._push(job, nxt if nxt >= now else now)

    async def _probe(self, target: ProbeTarget, due: float | None) -> ProbeResult:
        if due is not None:
            delay = due - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
        async with self._sem:
            lag = self.clock() - due if due is not None else None
            try:
                res = await self._checker(target, self._ctx)
            except Exception as exc:  # a custom checker broke its contract; keep probing
                log.exception("check of %s raised", target.key)
                res = r.failed(r.OTHER_FAILURE, detail=f"{type(exc).__name__}: {exc}")
        self._report(target, res, lag)
        return res

    def _report(self, target: ProbeTarget, res: ProbeResult, lag: float | None) -> None:
        try:
            self.sink.probe_done(target.key, res, lag)
        except Exception:  # a broken sink must not stop probing
            log.exception("probe sink failed")

    def _report_round(self, job: JobKey, results: Sequence[ProbeResult | None]) -> None:
        rtts = [res.rtt_ms for res in results if res is not None and res.passed and res.rtt_ms is not None]
        try:
            self.sink.round_done(job, rtts)
        except Exception:  # a broken sink must not stop probing
            log.exception("probe sink failed")


__all__ = ["DEFAULT_JITTER", "Checker", "ProbeContext", "ProbeScheduler", "run_check", "settle_passes"]
