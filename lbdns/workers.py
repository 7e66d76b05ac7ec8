"""Answering on several CPUs (``workers: N`` in lbdns.yaml; docs/architecture.md "Workers",
docs/operations.md "Workers"): the control-process side.

With N > 1 the lbdns process becomes the *control process*: it loads the configuration, runs
the probes, serves the admin API and builds reloads as before, but answers no query. It binds N
SO_REUSEPORT UDP sockets and N TCP listening sockets per listener — the kernel spreads packets
and connections over the sockets of one port by a hash of the client's address and port — keeps
them open, and starts one worker process (:mod:`lbdns.worker_main`) per slot with that
slot's sockets. A worker that dies is started again on the same sockets: what arrived in the
meantime waits in them.

Publication. Every snapshot and health view published to the control process's
:class:`FanoutRef` goes to every worker over its stdin pipe:

- snapshots as the snapshot builder's frames (:func:`lbdns.builder.snapshot_frames`): a
  reload's frames are relayed to the workers while the control process receives them
  (:class:`TeeAssembly`), so every worker installs the new generation in parallel, and a
  ``commit`` follows when the control process publishes it (``abort`` when the build fails).
  The frames of the serving generation are kept to start a worker (or restart one);
- health views whole (states, details, pool RTTs), applied by the workers as they arrive.

``/metrics`` asks every worker for its counters (:meth:`WorkerPool.refresh`) and serves the
sum (query, decision and rule counters, errors, response-rate-limiting counts), plus what exited
workers had last reported; ``/status`` lists every worker (pid,
generation, health version, queries answered, restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lbdns.builder import Assembly, snapshot_frames
from lbdns.health.view import HealthView
from lbdns.ipc import MAX_FRAME, encode, read_message
from lbdns.listeners import BoundListener, ListenError, grow_rcvbuf
from lbdns.server.counters import QueryCounters
from lbdns.server.state import Current, StateRef
from lbdns.snapshot import Snapshot

if TYPE_CHECKING:
    from lbdns.config.settings import ServerSettings
    from lbdns.geo.pops import Pop

log = logging.getLogger("lbdns.workers")

READY_TIMEOUT_S = 120.0
"""Seconds a starting worker may take to install the snapshot and report ready."""
STATS_TIMEOUT_S = 0.5
"""Seconds ``/metrics`` waits for the workers' counters (a late worker's last figures count)."""
STOP_TIMEOUT_S = 5.0
"""Seconds a stopping worker may take before it is killed."""
RESTART_BACKOFF_S = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)
"""Delay before restarting a worker that died, by how many times it died in the last minute."""


def worker_command() -> tuple[str, ...]:
    """The worker argv: this interpreter running ``-m lbdns.worker_main``."""
    return (sys.executable, "-m", "lbdns.worker_main")


@dataclass(frozen=True, slots=True)
class WorkerSocket:
    """One inherited listening socket: ``transport`` ``udp`` or ``tcp``, its file descriptor
    number in the worker, and the PoP its queries arrive at."""

    transport: str
    fd: int
    pop: Pop


@dataclass(frozen=True, slots=True)
class WorkerInit:
    """What a worker needs besides the snapshot: its number (1…N), the settings it serves with
    (its own NSID and query-log path), the server-cookie secret every worker shares (RFC 7873
    §7.1: a cookie one worker issued is valid at any other), its sockets, the log level, the
    server's PoP (where names in served zones are answered from, for hostname origins) and
    whether to use GeoIP (the database of the settings, else the embedded one)."""

    index: int
    settings: ServerSettings
    cookie_secret: bytes
    sockets: tuple[WorkerSocket, ...]
    log_level: int
    pop: Pop
    use_geoip: bool = True


class WorkerStartError(OSError):
    """The answering workers could not be started (one exited, or they took too long)."""


class FanoutRef(StateRef):
    """The control process's :class:`StateRef`: every publication also goes to the workers."""

    __slots__ = ("pool",)

    def __init__(self, current: Current, pool: WorkerPool) -> None:
        super().__init__(current)
        self.pool = pool

    def publish_health(self, view: HealthView) -> None:
        super().publish_health(view)
        self.pool.send_health(view)

    def publish_snapshot(self, snapshot: Snapshot, view: HealthView | None = None) -> None:
        super().publish_snapshot(snapshot, view)
        self.pool.commit(snapshot)
        if view is not None:
            self.pool.send_health(view)


class TeeAssembly(Assembly):
    """An :class:`Assembly` that also relays every message it takes to the workers."""

    def __init__(self, pool: WorkerPool, rule_errors: MutableMapping[str, int] | None = None) -> None:
        super().__init__(rule_errors)
        self.pool = pool

    def take(self, msg: tuple[Any, ...]) -> bool:
        self.pool.relay(encode(msg))
        return super().take(msg)


@dataclass
class Slot:
    """One worker slot (1…N): its sockets, its current process and what it last reported."""

    index: int
    sockets: list[WorkerSocket]
    proc: asyncio.subprocess.Process | None = None
    pid: int | None = None
    ready: bool = False
    generation: int = 0
    health_version: int = 0
    started_at: float = 0.0
    restarts: int = 0
    deaths: list[float] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    waiter: asyncio.Future[dict[str, Any]] | None = None
    task: asyncio.Task[None] | None = None
    reader: asyncio.Task[None] | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class WorkerHost(Protocol):
    """What the worker pool reads from the process that owns it (:class:`lbdns.app.App`): the
    settings, the PoPs, the published state and the response rate limiter."""

    @property
    def settings(self) -> ServerSettings: ...
    @property
    def use_geoip(self) -> bool: ...
    def pop_of(self, code: str) -> Pop: ...
    def served(self) -> Current | None: ...
    def rrl_stats(self) -> Any: ...


class WorkerPool:
    """The N answering workers of a :class:`WorkerHost` (the :class:`~lbdns.app.App`; see the
    module docstring)."""

    def __init__(self, app: WorkerHost, count: int, command: tuple[str, ...] | None = None) -> None:
        self.app = app
        self.count = count
        self.command = command or worker_command()
        self.slots = [Slot(i + 1, []) for i in range(count)]
        self.socks: list[socket.socket] = []
        self.cookie_secret = os.urandom(16)
        self.frames: list[bytes] = []
        """The serving generation's frames, ending with its ``commit``."""
        self.pending: list[bytes] | None = None
        """The frames relayed so far of a reload being built (None: none)."""
        self.view: HealthView | None = None
        """The last health view sent (a new worker gets it whole)."""
        self.restarts = 0
        self.retired: dict[str, Any] = {}
        """The sum of the last figures of workers that exited."""
        self._token: tuple[int, object] = (0, object())
        self._stopping = False
        self._changed = asyncio.Event()
        self._stats_request = 0

    # -- sockets -----------------------------------------------------------------------------
    def bind(self, out: list[BoundListener]) -> None:
        """Bind every listener's SO_REUSEPORT sockets (one UDP and one TCP per slot; port 0:
        one free port for all) and add one :class:`BoundListener` per listener and transport
        to ``out``. Raises :class:`~lbdns.listeners.ListenError`."""
        for lst in self.app.settings.listen:
            code = lst.pop or self.app.settings.pop
            pop = self.app.pop_of(code)
            family = socket.AF_INET6 if ":" in lst.address else socket.AF_INET
            kinds = [k for k in ("udp", "tcp") if lst.transport in (k, "both")]
            for attempt in range(20):
                port = lst.port
                made: list[tuple[str, socket.socket]] = []
                kind = kinds[0]
                try:
                    if port:  # SO_REUSEPORT would join another server's group on the port
                        for kind in kinds:
                            _check_free(kind, family, lst.address, port)
                    for kind in kinds:
                        for _ in self.slots:
                            sock = _reuseport_socket(kind, family, lst.address, port)
                            made.append((kind, sock))
                            port = sock.getsockname()[1]
                except OSError as exc:
                    for _, sock in made:
                        sock.close()
                    if lst.port == 0 and attempt < 19 and exc.errno == errno.EADDRINUSE:
                        continue
                    raise ListenError(kind, lst.address, port, exc) from exc
                break
            for i, (kind, sock) in enumerate(made):
                if kind == "udp":
                    grow_rcvbuf(sock, self.app.settings.udp_rcvbuf)
                self.slots[i % self.count].sockets.append(WorkerSocket(kind, sock.fileno(), pop))
                self.socks.append(sock)
            for kind in kinds:
                out.append(BoundListener(kind, lst.address, port, code, lambda: None))

    # -- workers -----------------------------------------------------------------------------
    async def start(self, snapshot: Snapshot) -> None:
        """Start every worker with ``snapshot`` and the current health view; return when all
        answer. Raises OSError (cannot start a process) or :class:`WorkerStartError` (a worker
        exited while starting, or was not ready within :data:`READY_TIMEOUT_S`)."""
        self.frames = [*snapshot_frames(snapshot), encode(("commit", snapshot.generation))]
        served = self.app.served()
        assert served is not None
        self.send_health(served.health)
        for slot in self.slots:
            await self._spawn(slot)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(s.ready for s in self.slots):
            if time.monotonic() > deadline:
                raise WorkerStartError("the answering workers did not start within "
                                   f"{READY_TIMEOUT_S:.0f} s")
            dead = [s for s in self.slots if s.proc is not None and s.proc.returncode is not None and not s.ready]
            if dead:
                raise WorkerStartError(f"worker {dead[0].index} exited while starting "
                                   f"(status {dead[0].proc.returncode if dead[0].proc else '?'})")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.5)
        for slot in self.slots:
            slot.task = asyncio.ensure_future(self._watch(slot))
        log.info("%d answering workers started (pids %s)", self.count, ", ".join(str(s.pid) for s in self.slots))

    def _init(self, slot: Slot) -> WorkerInit:
        s = self.app.settings
        updates: dict[str, Any] = {}
        if s.nsid is not None:
            updates["nsid"] = f"{s.nsid}-w{slot.index}"
        if s.query_log and s.query_log != "-":
            updates["query_log"] = f"{s.query_log}.w{slot.index}"
        return WorkerInit(slot.index, s.model_copy(update=updates), self.cookie_secret, tuple(slot.sockets),
                          logging.getLogger().getEffectiveLevel(), self.app.pop_of(s.pop), self.app.use_geoip)

    async def _spawn(self, slot: Slot) -> None:
        fds = [ws.fd for ws in slot.sockets]
        proc = await asyncio.create_subprocess_exec(*self.command, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, pass_fds=fds, limit=MAX_FRAME)
        assert proc.stdin is not None
        slot.proc, slot.pid, slot.ready, slot.started_at = proc, proc.pid, False, time.monotonic()
        slot.stats = {}
        # the serving generation, the health view, and what a reload in progress sent so far,
        # written without awaiting: later broadcasts follow in order
        proc.stdin.write(encode(("init", self._init(slot))))
        for f in self.frames:
            proc.stdin.write(f)
        if self.view is not None:
            proc.stdin.write(self._health_message(self.view, None))
        for f in self.pending or ():
            proc.stdin.write(f)
        slot.reader = asyncio.ensure_future(self._read(slot, proc))

    async def _read(self, slot: Slot, proc: asyncio.subprocess.Process) -> None:
        """Take one worker's reports until its stdout closes."""
        assert proc.stdout is not None
        try:
            while (msg := await read_message(proc.stdout)) is not None:
                kind = msg[0]
                if kind == "ready":
                    slot.ready, slot.generation, slot.health_version = True, msg[2], msg[3]
                elif kind == "installed":
                    slot.generation = msg[1]
                elif kind == "stats":
                    slot.stats = msg[2]
                    slot.generation, slot.health_version = msg[2]["generation"], msg[2]["health_version"]
                    if slot.waiter is not None and not slot.waiter.done():
                        slot.waiter.set_result(msg[2])
                self._changed.set()
        except (ValueError, EOFError, OSError) as exc:
            log.error("worker %d sent an unreadable message: %s", slot.index, exc)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        self._changed.set()

    async def _watch(self, slot: Slot) -> None:
        """Restart the slot's worker whenever it exits while the pool runs."""
        while not self._stopping:
            proc = slot.proc
            assert proc is not None
            status = await proc.wait()
            if self._stopping:
                return
            self._retire(slot)
            self.restarts += 1
            slot.restarts += 1
            now = time.monotonic()
            slot.deaths = [t for t in slot.deaths if now - t < 60.0] + [now]
            delay = RESTART_BACKOFF_S[min(len(slot.deaths) - 1, len(RESTART_BACKOFF_S) - 1)]
            cause = f"signal {-status}" if status < 0 else f"status {status}"
            log.error("worker %d (pid %s) exited with %s; restarting it%s (restart %d)", slot.index, slot.pid, cause,
                      f" in {delay:g} s" if delay else "", self.restarts)
            if delay:
                await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn(slot)
            except OSError as exc:
                log.error("cannot restart worker %d: %s", slot.index, exc)
                await asyncio.sleep(1.0)
                continue
            log.info("worker %d restarted (pid %s)", slot.index, slot.pid)

    def _retire(self, slot: Slot) -> None:
        """Keep the last figures of an exited worker in :attr:`retired`."""
        if slot.stats:
            self.retired = _add(self.retired, slot.stats)
        slot.stats, slot.ready = {}, False

    def _write(self, data: bytes) -> None:
        for slot in self.slots:
            proc = slot.proc
            if proc is not None and proc.returncode is None and proc.stdin is not None \
                    and not proc.stdin.is_closing():
                proc.stdin.write(data)

    # -- publication (called by FanoutRef and the reload) ------------------------------------
    def send_health(self, view: HealthView) -> None:
        """Send a published health view to every worker: the origins whose health object
        changed since the last view sent (a probe publishes only what it changed; unchanged
        entries keep their object) and those removed, plus the pool RTTs."""
        token_id, token = self._token
        if view.states_token is not token:
            self._token = (token_id + 1, view.states_token)
        last = self.view
        self.view = view
        self._write(self._health_message(view, last))

    def _health_message(self, view: HealthView, last: HealthView | None) -> bytes:
        """``("health", version, changed, removed, rest, token)``; ``removed`` None: the whole
        view (``changed`` is every origin); ``rest``: the view's other fields (pool RTTs, operator
        states, …) as plain dicts (:func:`_view_rest`)."""
        rest = _view_rest(view)
        if last is None:
            return encode(("health", view.version, dict(view.origins), None, rest, self._token[0]))
        before = last.origins
        changed = {k: h for k, h in view.origins.items() if before.get(k) is not h}
        removed = list(before.keys() - view.origins.keys())
        return encode(("health", view.version, changed, removed, rest, self._token[0]))

    def assembly(self, rule_errors: MutableMapping[str, int] | None = None) -> TeeAssembly:
        """The assembly of a reload's build: relays its frames to the workers (its conditions
        count their run-time errors into ``rule_errors``, this process's counter)."""
        self.pending = []
        return TeeAssembly(self, rule_errors)

    def relay(self, frame: bytes) -> None:
        """Send one frame of a reload being built to every worker."""
        if self.pending is None:
            self.pending = []
        self.pending.append(frame)
        self._write(frame)

    def abort(self) -> None:
        """The reload being built failed: the workers drop what they received of it."""
        if self.pending is not None:
            self.pending = None
            self._write(encode(("abort",)))

    def commit(self, snapshot: Snapshot) -> None:
        """``snapshot`` was published: the workers publish it too (its frames were relayed
        during the build; a snapshot published without a relayed build is sent whole)."""
        done = encode(("commit", snapshot.generation))
        if self.pending is None:
            self.pending = list(snapshot_frames(snapshot))
            self._write(b"".join(self.pending))
        self.frames = [*self.pending, done]
        self.pending = None
        self._write(done)

    async def wait_generation(self, generation: int, timeout: float) -> bool:
        """Wait until every running worker serves ``generation`` (or later); False after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while any(s.alive() and s.ready and s.generation < generation for s in self.slots):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return True

    def reopen_logs(self) -> None:
        """Ask every worker to reopen its query log (after log rotation)."""
        self._write(encode(("reopen",)))

    # -- figures -----------------------------------------------------------------------------
    async def refresh(self, timeout: float = STATS_TIMEOUT_S) -> QueryCounters:
        """Ask every ready worker for its counters (waiting at most ``timeout`` seconds) and
        return the sum over the workers and the exited ones."""
        loop = asyncio.get_running_loop()
        self._stats_request += 1
        waiting = []
        for slot in self.slots:
            proc = slot.proc
            if slot.ready and proc is not None and proc.returncode is None and proc.stdin is not None:
                slot.waiter = loop.create_future()
                waiting.append(slot.waiter)
                proc.stdin.write(encode(("stats", self._stats_request)))
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)
        limiter = self.app.rrl_stats()
        rrl = self.totals().get("rrl")
        if limiter is not None and rrl:
            # the control process's limiter sees no query: it shows the workers' sums
            limiter.dropped, limiter.slipped, limiter.evicted = rrl
        return self.counters()

    def totals(self) -> dict[str, Any]:
        """The figures of every worker (last reported) plus those of exited workers."""
        total = dict(self.retired)
        for slot in self.slots:
            if slot.stats:
                total = _add(total, slot.stats)
        return total

    def counters(self) -> QueryCounters:
        """:meth:`totals` as :class:`QueryCounters` (what ``/metrics`` exports)."""
        t = self.totals()
        return QueryCounters(Counter(t.get("queries", {})), Counter(t.get("decisions", {})),
                             Counter(t.get("rule_matches", {})), t.get("internal_errors", 0), t.get("dropped", 0),
                             t.get("tcp_evicted", 0), t.get("tcp_slow_closed", 0),
                             t.get("udp_send_failed", 0))

    def status(self) -> list[dict[str, Any]]:
        """One entry per worker for ``/status``: ``worker`` (1…N), ``pid``, ``running``,
        ``generation``, ``health_version``, ``queries`` (answered, as last reported),
        ``restarts`` and ``uptime_s``."""
        now = time.monotonic()
        return [{
            "worker": s.index, "pid": s.pid, "running": s.alive() and s.ready, "generation": s.generation,
            "health_version": s.health_version, "queries": sum(s.stats.get("queries", {}).values()),
            "restarts": s.restarts, "uptime_s": round(now - s.started_at, 1) if s.alive() else 0.0,
        } for s in self.slots]

    def collector(self) -> Collector:
        """The ``lbdns_worker*`` families for the admin registry."""
        return _WorkerCollector(self)

    async def stop(self) -> None:
        """Stop every worker (``stop``, then SIGKILL after :data:`STOP_TIMEOUT_S`) and close
        the sockets."""
        self._stopping = True
        for slot in self.slots:
            if slot.task is not None:
                slot.task.cancel()
        self._write(encode(("stop",)))
        for slot in self.slots:
            proc = slot.proc
            if proc is None:
                continue
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for sock in self.socks:
            sock.close()
        self.socks.clear()


def _view_rest(view: HealthView) -> dict[str, Any]:
    """Every field of ``view`` but ``version``, ``origins``, ``states_token`` and the memo
    (``pool_states``), mappings as plain dicts (a mapping proxy does not pickle)."""
    out: dict[str, Any] = {}
    for f in fields(view):
        if f.init and f.name not in ("version", "origins", "states_token"):
            value = getattr(view, f.name)
            out[f.name] = dict(value) if isinstance(value, Mapping) else value
    return out


def _check_free(kind: str, family: int, address: str, port: int) -> None:
    """Raise OSError (EADDRINUSE) when something listens on ``address:port`` already — also a
    group of SO_REUSEPORT sockets, which a socket with SO_REUSEPORT would silently join (two
    servers splitting one port's traffic). Binds without SO_REUSEPORT and closes at once."""
    with socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as probe:
        if kind == "tcp":  # as the listener: connections in TIME_WAIT do not count
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((address, port))


def _reuseport_socket(kind: str, family: int, address: str, port: int) -> socket.socket:
    """A bound UDP socket or listening TCP socket with SO_REUSEPORT (and SO_REUSEADDR for TCP,
    as a single-process server binds). Raises OSError."""
    sock = socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if kind == "tcp" and family == socket.AF_INET6:  # as asyncio's create_server
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        if kind == "tcp":
            sock.listen(socket.SOMAXCONN)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The sum of two workers' figures (counters added key by key; generation and health
    version dropped)."""
    out: dict[str, Any] = {}
    for key in ("queries", "decisions", "rule_matches"):
        c: Counter[Any] = Counter(a.get(key, {}))
        c.update(b.get(key, {}))
        out[key] = dict(c)
    for key in ("internal_errors", "dropped", "tcp_evicted", "tcp_slow_closed", "udp_send_failed",
                "rule_runtime_errors"):
        out[key] = a.get(key, 0) + b.get(key, 0)
    ra, rb = a.get("rrl"), b.get("rrl")
    out["rrl"] = (tuple(x + y for x, y in zip(ra, rb, strict=True)) if ra and rb else ra or rb)
    return out


class _WorkerCollector(Collector):
    """``lbdns_workers``, ``lbdns_worker_restarts``, per-worker generation and queries, and the
    workers' rule run-time errors."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Any]:
        pool = self.pool
        yield GaugeMetricFamily("lbdns_workers", "Answering worker processes running",
                                value=sum(1 for s in pool.slots if s.alive() and s.ready))
        yield CounterMetricFamily("lbdns_worker_restarts", "Answering worker processes restarted after exiting",
                                  value=pool.restarts)
        gen = GaugeMetricFamily("lbdns_worker_generation", "Configuration generation each worker serves",
                                labels=["worker"])
        q = CounterMetricFamily("lbdns_worker_queries", "Queries answered by each worker process since it started",
                                labels=["worker"])
        for s in pool.slots:
            gen.add_metric([str(s.index)], s.generation)
            q.add_metric([str(s.index)], sum(s.stats.get("queries", {}).values()))
        yield gen
        yield q
        yield CounterMetricFamily("lbdns_worker_rule_runtime_errors",
                                  "Rule conditions that failed at run time in the workers (not matched)",
                                  value=pool.totals().get("rule_runtime_errors", 0))

