"""An answering worker process (``workers: N`` in lbdns.yaml; docs/architecture.md "Workers").

``python -m lbdns.worker_main`` is started by the control process
(:class:`lbdns.workers.WorkerPool`) with its UDP and TCP sockets — SO_REUSEPORT sockets the
control process bound and keeps open, so packets that arrive while a worker restarts wait in
the socket instead of being lost — passed as inherited file descriptors. It answers queries
with the same :class:`~lbdns.server.handler.Handler` and transports as a single-process
server and does nothing else: no configuration loading, no probes, no admin API.

Protocol (frames of :mod:`lbdns.ipc`). On stdin, from the control process: ``("init",
WorkerInit)`` first; then snapshot frames exactly as the snapshot builder sends them
(``head``, ``nodes``…, ``done``, see :mod:`lbdns.builder`) followed by ``("commit",
generation)`` to publish the assembled snapshot or ``("abort",)`` to drop it; ``("health",
version, changed, removed, rest, token)`` to publish a health view (the origins changed since
the last one and the keys removed, ``removed`` None: ``changed`` is the whole view; ``rest``
the view's other fields); ``("stats", request)``;
``("reopen",)`` (the query log, after rotation); ``("stop",)``. On stdout, to the control
process: ``("ready", pid, generation, health_version)`` once it answers, ``("installed",
generation)`` after each later commit, ``("stats", request, figures)``.

Health views are applied as soon as they arrive, even while a reloaded snapshot is still being
installed: snapshot parts are installed by a separate task, one part per event-loop step with
the pauses of :func:`~lbdns.builder.yield_to_queries`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections import Counter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lbdns.ipc import MAX_FRAME, encode, read_message

if TYPE_CHECKING:
    from lbdns.server.handler import Handler
    from lbdns.server.hostnames import HostnameResolver
    from lbdns.server.state import StateRef
    from lbdns.workers import WorkerInit

log = logging.getLogger("lbdns.worker")


class Worker:
    """The worker's state: the published (snapshot, health) reference once the first snapshot is
    installed, the handler, the transports and the two control-channel tasks."""

    def __init__(self, init: WorkerInit, inp: asyncio.StreamReader, out: asyncio.WriteTransport) -> None:
        self.init = init
        self.settings = init.settings
        self.inp = inp
        self.out = out
        self.ref: StateRef | None = None
        self.handler: Handler | None = None
        self.rule_errors: Counter[str] = Counter()
        """Rule conditions that failed at run time in this worker, per condition text (the
        conditions it assembles count into it)."""
        self.resolver: HostnameResolver | None = None
        self.query_log: Any = None
        self.pending_health: Any = None
        self.installs: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.first = asyncio.Event()
        self.stopping = asyncio.Event()
        self.closers: list[Any] = []
        self.failed = False
        self._tokens: tuple[int, object] = (-1, object())
        self._origins: dict[Any, Any] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def send(self, msg: tuple[Any, ...]) -> None:
        """Write one message to the control process (never blocks: the transport buffers)."""
        if not self.out.is_closing():
            self.out.write(encode(msg))

    # -- control channel ---------------------------------------------------------------------
    async def read_control(self) -> None:
        """Read the control process's messages until ``stop`` or end of file (the control
        process is gone): health and statistics are handled at once, snapshot parts queued
        for :meth:`install`."""
        try:
            while (msg := await read_message(self.inp)) is not None:
                kind = msg[0]
                if kind == "health":
                    self._apply_health(msg)
                elif kind == "stats":
                    self.send(("stats", msg[1], self.stats()))
                elif kind == "reopen":
                    if self.query_log is not None:
                        self.query_log.reopen()
                elif kind == "stop":
                    break
                else:
                    self.installs.put_nowait(msg)
        finally:
            self.stopping.set()

    def _apply_health(self, msg: tuple[Any, ...]) -> None:
        from lbdns.health.view import HealthView

        _, version, changed, removed, rest, token_id = msg
        if removed is None:
            origins = changed
        else:  # a new dict: the published view stays as it was for whoever holds it
            origins = dict(self._origins)
            for key in removed:
                origins.pop(key, None)
            origins.update(changed)
        self._origins = origins
        if token_id != self._tokens[0]:  # equal states in the control process: equal token here
            self._tokens = (token_id, object())
        rest = {k: MappingProxyType(v) if isinstance(v, dict) else v for k, v in rest.items()}
        view = HealthView(version=version, origins=MappingProxyType(origins), states_token=self._tokens[1], **rest)
        if self.ref is None:
            self.pending_health = view
        else:
            self.ref.publish_health(view)
            if self.resolver is not None:
                self.resolver.health_changed()  # names lbdns answers itself may follow health

    async def install(self) -> None:
        """Assemble snapshot parts one per loop step and publish each committed snapshot."""
        from lbdns.app import _settle_heap, prepare_hostnames, retire_snapshot
        from lbdns.builder import Assembly, BuildError, yield_to_queries
        from lbdns.health.view import HealthView
        from lbdns.server.state import Current, StateRef

        asm: Assembly | None = None
        while True:
            msg = await self.installs.get()
            kind = msg[0]
            if kind == "abort":
                asm = None
            elif kind == "commit":
                if asm is None:
                    continue
                try:
                    snap = asm.snapshot(self.settings)
                except BuildError as exc:
                    log.error("worker %d: snapshot %s not installed: %s", self.init.index, msg[1], exc)
                    asm = None
                    continue
                asm = None
                if self.ref is None:
                    self.ref = StateRef(Current(snap, self.pending_health or HealthView()))
                    self.pending_health = None
                    self.first.set()
                else:
                    names = await prepare_hostnames(self.resolver, self.ref, snap)
                    old, old_plan = self.ref.current.snapshot, self.ref.current.plan
                    self.ref.publish_snapshot(snap)
                    if self.resolver is not None:
                        self.resolver.track(names)
                    self.send(("installed", snap.generation))
                    self._spawn(retire_snapshot(old, old_plan))
            else:
                started = time.perf_counter()
                if kind == "head":
                    asm = Assembly(self.rule_errors)
                if asm is None:
                    continue  # the rest of a snapshot whose head this worker did not get
                try:
                    asm.take(msg)
                except BuildError as exc:
                    log.error("worker %d: %s", self.init.index, exc)
                    asm = None
                    continue
                _settle_heap()
                await yield_to_queries(started)

    def stats(self) -> dict[str, Any]:
        """Counters since this worker started, for the control process's ``/metrics``."""
        assert self.handler is not None and self.ref is not None
        c = self.handler.counters
        rrl = self.handler.rrl
        cur = self.ref.current
        return {
            "queries": dict(c.queries), "decisions": dict(c.decisions), "rule_matches": dict(c.rule_matches),
            "internal_errors": c.internal_errors, "dropped": c.dropped, "tcp_evicted": c.tcp_evicted,
            "tcp_slow_closed": c.tcp_slow_closed, "udp_send_failed": c.udp_send_failed,
            "rule_runtime_errors": sum(self.rule_errors.values()),
            "rrl": (rrl.dropped, rrl.slipped, rrl.evicted) if rrl is not None else None,
            "generation": cur.snapshot.generation, "health_version": cur.health.version,
        }

    async def _guard(self, coro: Any) -> None:
        """Run a control-channel task; when it fails, log it and stop with status 1 (the
        control process starts a fresh worker with the current state)."""
        try:
            await coro
        except Exception:
            log.exception("worker %d: control channel failed; exiting to be restarted", self.init.index)
            self.failed = True
            self.stopping.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- answering ---------------------------------------------------------------------------
    async def serve(self) -> int:
        """Wait for the first snapshot, answer on the inherited sockets until told to stop."""
        from lbdns.app import GC_SETTLE_S, _settle_heap
        from lbdns.geo.data import default_regions
        from lbdns.listeners import grow_rcvbuf
        from lbdns.querylog import open_query_log
        from lbdns.server.counters import QueryCounters
        from lbdns.server.handler import Handler
        from lbdns.server.hostnames import HostnameResolver, hostnames_of
        from lbdns.server.local_names import LocalAnswers
        from lbdns.server.transports import TcpServer, serve_udp

        s = self.settings
        self._spawn(self._guard(self.read_control()))
        self._spawn(self._guard(self.install()))
        geo = asn_of = None
        if self.init.use_geoip:
            from lbdns.geo.mmdb import GeoDatabase

            db = GeoDatabase.open(s.geoip_city_db, s.geoip_asn_db) if s.geoip_city_db else GeoDatabase.default()
            geo = db.lookup
            asn_of = lambda ip: (rec.asn if (rec := db.lookup(ip)) is not None else None)  # noqa: E731
        waiting = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait([asyncio.ensure_future(self.first.wait()), waiting], return_when=asyncio.FIRST_COMPLETED)
        if self.ref is None:
            return 0
        try:
            self.query_log = open_query_log(s.query_log)
        except OSError as exc:
            log.error("worker %d: cannot open the query log %s: %s", self.init.index, s.query_log, exc)
            return 1
        resolver = self.resolver = HostnameResolver(s.upstream_resolvers, max_ttl=float(s.hostname_cache_max_ttl))
        ref = self.ref
        resolver.use_local(LocalAnswers(lambda: ref.current, self.init.pop, resolver.lookup_for_local))
        names = hostnames_of(ref.current.snapshot.pools.values())
        await resolver.prepare(names)  # before answering, as a single process does
        resolver.track(names)
        resolver.start()
        handler = self.handler = Handler(self.ref, geo=geo, asn_of=asn_of, lookup=resolver.addresses,
                                         counters=QueryCounters(), regions=default_regions(),
                                         on_answer=self.query_log.on_answer if self.query_log else None)
        handler.cookie_secret = self.init.cookie_secret
        loop = asyncio.get_running_loop()
        for ws in self.init.sockets:
            sock = socket.socket(fileno=ws.fd)
            pop = ws.pop
            if ws.transport == "udp":
                grow_rcvbuf(sock, s.udp_rcvbuf)
                self.closers.append(await serve_udp(sock, handler, pop, s.udp_batch))
            else:
                factory = TcpServer(handler, pop, idle_timeout=s.tcp_idle_timeout,
                                    max_connections=s.tcp_max_connections)
                server = await loop.create_server(factory, sock=sock)
                self.closers.append(server.close)
        cur = self.ref.current
        self.send(("ready", os.getpid(), cur.snapshot.generation, cur.health.version))
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiting), GC_SETTLE_S)
            _settle_heap()
        for close in self.closers:
            close()
        await resolver.stop()
        if self.query_log is not None:
            await loop.run_in_executor(None, self.query_log.stop)
        return 1 if self.failed else 0


async def _main() -> int:
    loop = asyncio.get_running_loop()
    inp = asyncio.StreamReader(limit=MAX_FRAME)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(inp), os.fdopen(0, "rb", buffering=0))
    out_file = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, out_file)
    msg = await read_message(inp)
    if msg is None or msg[0] != "init":
        print("lbdns worker: expected an init message from the control process", file=sys.stderr)
        return 2
    init = msg[1]
    from lbdns import logpipe

    pipe = logpipe.install(init.log_level, fmt=init.settings.log_format)
    try:
        return await Worker(init, inp, out).serve()
    finally:
        pipe.stop()


def main() -> int:
    """Entry point of ``python -m lbdns.worker_main`` (started by the control process)."""
    # the control process's to handle; it stops us. SIGTERM too: systemd sends it to every process
    # of the unit at once, and a worker that died of it would be restarted during the stop
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    return asyncio.run(_main())


if __name__ == "__main__":
    from lbdns.worker_main import main as _main_entry  # pickles must name the module, not __main__

    sys.exit(_main_entry())
