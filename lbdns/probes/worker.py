"""The probe worker process: health checks off the query path (issue #4; docs/architecture.md).

A serving lbdns runs its :class:`~lbdns.probes.scheduler.ProbeScheduler` in a child process
(``python -m lbdns.probes.worker``) so that probing — TCP handshakes, TLS, HTTP parsing, about
0.4 ms of CPU per HTTP probe — never competes with the query loop for the GIL, and can run on
another CPU (``probe_cpus``) at a lower priority (``probe_nice``). The health state stays in the
server: the worker only runs checks and streams their results back; the server's
:class:`~lbdns.health_owner.HealthRecorder` turns them into health views.

The channel is the worker's stdin/stdout, each message one frame: a 4-byte big-endian length
and a pickled tuple (a private pipe between two processes of the same installation).

Server → worker: ``("start", WorkerOptions, targets)`` once, then any of
``("targets", targets)`` (reload), ``("warm", timeout_s | None)`` (one warm-start round;
answered by ``("warm_done", probes)``) and ``("run",)`` (start periodic probing). EOF on stdin
stops the worker (it ignores SIGINT, SIGHUP and SIGTERM). Worker → server: ``("events",
[("probe", key, ProbeResult, lag_s | None) | ("round", job, rtts_ms), ...])``, batched at most
every ``BATCH_S`` seconds, in order, and ``("alive",)`` every ``HEARTBEAT_S`` seconds.

:class:`ProbeWorker` is the server side: it spawns the worker, restarts it (with backoff) when
it dies, kills and restarts it when it sends nothing for ``STALL_TIMEOUT_S`` seconds (a
stopped, deadlocked or starved worker: the watchdog), and feeds its results into a
:class:`~lbdns.probes.sink.ProbeSink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lbdns.health.book import MemberKey
from lbdns.ipc import FRAME, MAX_FRAME, encode, read_message
from lbdns.probes.result import ProbeResult
from lbdns.probes.sink import JobKey, ProbeSink
from lbdns.probes.targets import ProbeTarget, warm_start_bound

log = logging.getLogger("lbdns.probes")

BATCH_S = 0.01
"""Seconds the worker gathers results before writing them as one frame."""
START_GRACE_S = 15.0
"""Seconds allowed for the worker to start (interpreter, imports) on top of a warm-start bound."""
RESTART_DELAY_S = (1.0, 30.0)
"""First and largest delay in seconds before a dead worker is restarted (doubling)."""
STOP_TIMEOUT_S = 5.0
"""Seconds a stopping worker gets to exit after its stdin closes, before it is killed."""
HEARTBEAT_S = 1.0
"""Seconds between the worker's ``("alive",)`` messages, sent even when it has nothing to report."""
STALL_TIMEOUT_S = 10.0
"""Seconds without any message after which the server declares the worker stuck (stopped,
deadlocked, or starved), kills it and starts a new one."""

__all__ = ["FRAME", "MAX_FRAME", "ProbeWorker", "WorkerOptions", "encode", "main", "read_message"]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How the worker probes. ``concurrency``: probes in flight at most (≥ 1);
    ``strict_public_endpoints`` (R-MON-16); ``cpus``: CPU ids the worker may run on (None ⇒
    inherited from the server); ``nice``: added to the worker's nice value (0–19, a lower
    priority than the query loop); ``log_level``: the logging level number;
    ``round_rate``, ``upstream_resolvers`` and ``source_address``: see
    :class:`~lbdns.probes.scheduler.ProbeScheduler`."""

    concurrency: int = 256
    strict_public_endpoints: bool = False
    cpus: tuple[int, ...] | None = None
    nice: int = 0
    log_level: int = logging.WARNING
    round_rate: float = 500.0
    upstream_resolvers: tuple[str, ...] = ()
    source_address: str | None = None


# ---------------------------------------------------------------------------------------------
# Worker side (the child process)
# ---------------------------------------------------------------------------------------------


class _PipeSink:
    """A :class:`ProbeSink` that batches events and writes them to the server as frames."""

    def __init__(self, write: Any) -> None:
        self._write = write
        self._events: list[tuple[Any, ...]] = []
        self._handle: asyncio.TimerHandle | None = None

    def probe_done(self, key: MemberKey, result: ProbeResult, lag: float | None) -> None:
        self._events.append(("probe", key, result, lag))
        self._schedule()

    def round_done(self, job: JobKey, rtts_ms: list[float]) -> None:
        self._events.append(("round", job, rtts_ms))
        self._schedule()

    def _schedule(self) -> None:
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(BATCH_S, self.flush)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._events:
            events, self._events = self._events, []
            self._write(encode(("events", events)))


def _apply_placement(options: WorkerOptions) -> None:
    if options.cpus:
        try:
            os.sched_setaffinity(0, set(options.cpus))
        except (OSError, AttributeError) as exc:
            log.warning("probe worker: cannot set CPU affinity %s: %s", list(options.cpus), exc)
    if options.nice:
        try:
            os.nice(options.nice)
        except OSError as exc:
            log.warning("probe worker: cannot change nice value by %d: %s", options.nice, exc)


async def _serve(in_fd: int, out_fd: int) -> None:
    from lbdns.probes.scheduler import ProbeScheduler

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_FRAME)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", 0))
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(out_fd, "wb", 0))
    sink = _PipeSink(transport.write)
    scheduler: ProbeScheduler | None = None

    async def heartbeat() -> None:  # proves to the server that this loop still runs
        while not transport.is_closing():
            transport.write(encode(("alive",)))
            await asyncio.sleep(HEARTBEAT_S)

    beating = loop.create_task(heartbeat())
    try:
        while (msg := await read_message(reader)) is not None:
            kind = msg[0]
            if kind == "start" and scheduler is None:
                options: WorkerOptions = msg[1]
                logging.getLogger().setLevel(options.log_level)
                _apply_placement(options)
                scheduler = ProbeScheduler(msg[2], sink, concurrency=options.concurrency,
                                           strict_public_endpoints=options.strict_public_endpoints,
                                           round_rate=options.round_rate,
                                           upstream_resolvers=options.upstream_resolvers,
                                           source_address=options.source_address)
            elif scheduler is None:
                raise ValueError(f"probe worker: {kind!r} before 'start'")
            elif kind == "targets":
                scheduler.replace_targets(msg[1])
            elif kind == "warm":
                n = await scheduler.run_one_round(msg[1])
                sink.flush()
                transport.write(encode(("warm_done", n)))
            elif kind == "run":
                await scheduler.start()
            else:
                raise ValueError(f"probe worker: unknown message {kind!r}")
    finally:
        beating.cancel()
        if scheduler is not None:
            await scheduler.stop()
        sink.flush()
        transport.close()


def main() -> int:
    """Entry point of ``python -m lbdns.probes.worker``: serve the protocol on stdin/stdout
    until stdin closes. Returns the exit status (0 normally)."""
    out_fd = os.dup(1)
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    # The worker's lifetime is its stdin: the server closes it on stop, and it reaches EOF when
    # the server dies. ^C, SIGHUP and a SIGTERM sent to the whole process group (systemd's
    # default) are the server's to handle; SIGKILL still ends the worker at once.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[probe-worker]: %(message)s")
    try:
        import uvloop

        uvloop.run(_serve(0, out_fd))
    except KeyboardInterrupt:  # pragma: no cover
        return 0
    return 0


# ---------------------------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------------------------


class ProbeWorker:
    """The server's handle on the probe worker process.

    Takes the :class:`ProbeSink` that receives every result (in the server's event loop) and
    the :class:`WorkerOptions`. :meth:`start` spawns the worker and optionally waits for a
    warm-start round; :meth:`replace_targets` forwards a reload; :meth:`stop` ends it. A worker
    that exits unexpectedly is restarted after 1 s (doubling up to 30 s), with the current
    targets and no warm start; ``restarts`` counts that. A worker that sends nothing (results
    or heartbeats) for ``stall_timeout`` seconds is killed (SIGKILL also ends a stopped
    process), logged, counted in ``stalls``, and restarted the same way. ``pid`` is the running
    worker's process id (None when none runs). ``command`` is the worker's argv (default: this
    interpreter running ``-m lbdns.probes.worker``); ``stop_timeout`` the seconds :meth:`stop`
    waits for it to exit before killing it.
    """

    def __init__(self, sink: ProbeSink, options: WorkerOptions, *,
                 restart_delay: tuple[float, float] = RESTART_DELAY_S,
                 command: Sequence[str] = (sys.executable, "-m", "lbdns.probes.worker"),
                 stop_timeout: float = STOP_TIMEOUT_S, stall_timeout: float = STALL_TIMEOUT_S) -> None:
        self.sink = sink
        self.stop_timeout = stop_timeout
        self.stall_timeout = stall_timeout
        self.command = tuple(command)
        self.options = options
        self.restarts = 0
        self.stalls = 0
        self._last_seen = time.monotonic()
        self._watchdog: asyncio.Task[None] | None = None
        self._delay = restart_delay
        self._targets: list[ProbeTarget] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._warm: asyncio.Future[int] | None = None
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the running worker, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def silent_for(self) -> float:
        """Seconds since the worker last sent anything (results or a heartbeat)."""
        return time.monotonic() - self._last_seen

    async def start(self, targets: Sequence[ProbeTarget], *, warm_start: bool,
                    warm_timeout: float | None = None) -> int | None:
        """Spawn the worker with ``targets``; with ``warm_start`` run one warm-start round first
        (see :meth:`ProbeScheduler.run_one_round`; bounded by ``warm_timeout`` or the monitors'
        own bound, plus :data:`START_GRACE_S`), then start periodic probing. Returns the number
        of warm-start probes reported (None without warm start or when the bound passed).
        Raises OSError when the worker cannot be spawned."""
        self._targets = list(targets)
        await self._spawn()
        done: int | None = None
        if warm_start and self._targets:
            done = await self._warm_round(warm_timeout)
        self._send(("run",))
        loop = asyncio.get_running_loop()
        self._supervisor = loop.create_task(self._supervise(), name="lbdns-probe-worker")
        self._watchdog = loop.create_task(self._watch(), name="lbdns-probe-watchdog")
        return done

    def replace_targets(self, targets: Sequence[ProbeTarget]) -> None:
        """Forward a reloaded configuration's targets (the worker keeps unchanged schedules)."""
        self._targets = list(targets)
        self._send(("targets", self._targets))

    async def stop(self) -> None:
        """Close the worker's stdin, wait up to ``stop_timeout`` seconds for it to exit, kill it
        otherwise; deliver the results it flushed on the way out."""
        self._stopping = True
        for task in (self._watchdog, self._supervisor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout)
        except TimeoutError:
            log.warning("probe worker %d did not exit in %.1f s; killing it", proc.pid, self.stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader_task, 1.0)

    # -- internals -------------------------------------------------------------------------------

    async def _spawn(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=MAX_FRAME, start_new_session=False,
        )
        self._last_seen = time.monotonic()
        log.info("probe worker started (pid %d, %d targets)", self._proc.pid, len(self._targets))
        self._send(("start", self.options, self._targets))
        self._reader_task = asyncio.get_running_loop().create_task(self._read(self._proc))

    def _send(self, message: tuple[Any, ...]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        proc.stdin.write(encode(message))

    async def _warm_round(self, timeout: float | None) -> int | None:
        bound = timeout if timeout is not None else warm_start_bound(self._targets)
        self._warm = asyncio.get_running_loop().create_future()
        self._send(("warm", timeout))
        try:
            done = await asyncio.wait_for(asyncio.shield(self._warm), bound + START_GRACE_S)
        except TimeoutError:
            log.warning("warm start: no answer from the probe worker within %.1f s", bound + START_GRACE_S)
            return None
        finally:
            self._warm = None
        if done < 0:
            log.warning("warm start: the probe worker exited before finishing its round")
            return None
        return done

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while (msg := await read_message(proc.stdout)) is not None:
                if proc is self._proc:
                    self._last_seen = time.monotonic()
                if msg[0] == "events":
                    self._deliver(msg[1])
                elif msg[0] == "warm_done" and self._warm is not None and not self._warm.done():
                    self._warm.set_result(int(msg[1]))
        except Exception:
            log.exception("probe worker %d sent an unreadable message; restarting it", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        finally:
            if self._warm is not None and not self._warm.done():
                self._warm.set_result(-1)  # the worker is gone: do not wait for its warm start

    def _deliver(self, events: list[tuple[Any, ...]]) -> None:
        for ev in events:
            try:
                if ev[0] == "probe":
                    self.sink.probe_done(ev[1], ev[2], ev[3])
                else:
                    self.sink.round_done(ev[1], ev[2])
            except Exception:  # a broken sink must not stop the reader
                log.exception("probe sink failed")

    async def _watch(self) -> None:
        """Kill a worker that has been silent for ``stall_timeout`` seconds; the supervisor
        then restarts it. A tick that comes late (this event loop itself was held up) gives
        the worker a new grace period instead of blaming it."""
        tick = min(HEARTBEAT_S, self.stall_timeout / 4)
        last_tick = time.monotonic()
        while not self._stopping:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now - last_tick > 2 * tick + 1.0:
                self._last_seen = max(self._last_seen, now - tick)
            last_tick = now
            proc = self._proc
            if proc is None or proc.returncode is not None or self.silent_for <= self.stall_timeout:
                continue
            self.stalls += 1
            log.error("probe worker %d stopped reporting %.1f s ago (stopped, stuck or starved); killing it, "
                      "a new one starts after the restart delay (health is kept meanwhile)",
                      proc.pid, self.silent_for)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            self._last_seen = now  # one kill per silence

    async def _supervise(self) -> None:
        delay = self._delay[0]
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            code = await proc.wait()
            if self._reader_task is not None:
                with contextlib.suppress(Exception):
                    await self._reader_task
            if self._stopping:
                return
            if time.monotonic() - started > 60.0:
                delay = self._delay[0]
            log.error("probe worker %d exited with status %s; restarting in %.0f s (health is stale meanwhile)",
                      proc.pid, code, delay)
            self.restarts += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._delay[1])
            if self._stopping:
                return
            try:
                await self._spawn()
            except OSError:
                log.exception("probe worker restart failed")
                continue
            self._send(("run",))


if __name__ == "__main__":
    sys.exit(main())
