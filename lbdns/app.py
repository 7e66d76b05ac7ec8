"""The composition root (DESIGN.md ``app.py``): builds the snapshot, the GeoIP database, the
health state, the listeners, the probe scheduler and the admin listener; reloads on SIGHUP,
file change or ``POST /reload`` (built in a child process, installed in slices, then one
reference swapped; a failed reload keeps the last good config); stops cleanly on SIGTERM.

Reloads are serialised and coalesced: at most one runs; any request during it schedules
exactly one more, which reads the disk when it starts, so what is served converges to what is
on disk (docs/operations.md "Reloading").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lbdns.builder import Assembly, Builder, BuildError, lean_config, yield_to_queries
from lbdns.config.settings import ServerSettings
from lbdns.config.validate import LoadedConfig, load_config
from lbdns.errors import ConfigError, Issue
from lbdns.geo.data import default_regions
from lbdns.geo.pops import Pop
from lbdns.geo.regions import RegionMap
from lbdns.health.overrides import apply_overrides
from lbdns.health.view import HealthView
from lbdns.listeners import BoundListener, ListenError, bind_cause, grow_rcvbuf
from lbdns.server.counters import QueryCounters
from lbdns.server.handler import Handler
from lbdns.server.hostnames import HostnameResolver, hostnames_of
from lbdns.server.local_names import LocalAnswers
from lbdns.server.state import Current, StateRef
from lbdns.server.transports import TcpServer, serve_udp
from lbdns.serving import ServingPlan
from lbdns.snapshot import Snapshot, build_snapshot

if TYPE_CHECKING:
    from lbdns.health_owner import HealthRecorder
    from lbdns.health_runtime import HealthRuntime
    from lbdns.workers import WorkerPool

log = logging.getLogger("lbdns")

RETIRE_SLICE = 500
"""Owner names (or answer-memo entries) of a replaced snapshot released per event-loop iteration
(freeing 30,000 names at once holds the loop ~40 ms; 500 take ~1 ms)."""
GC_SETTLE_S = 1.0
"""Seconds between freezes of the objects that survived the young collections (see
:func:`_settle_heap`)."""


@dataclass
class ReloadStats:
    """Reload counters for ``/metrics``: ``ok`` (published), ``failures`` by reason —
    ``config`` (rejected: errors in the files) and ``exception`` (the build failed: builder
    crash, timeout, an unexpected error) — and ``last_seconds`` (duration of the last one)."""

    ok: int = 0
    failures: dict[str, int] = field(default_factory=lambda: {"config": 0, "exception": 0})
    last_seconds: float = 0.0


@dataclass
class App:
    """A running lbdns instance. ``zones_dir`` holds the zone YAML; ``geo`` is a
    ``lookup(ip) -> GeoRecord | None`` (None: the embedded default database, or no GeoIP
    when ``use_geoip`` is False); ``pops`` maps PoP codes to :class:`Pop`; ``regions`` is the
    region table (country / US-CA subdivision → region, valid countries) handed to the
    validation, the PoP catalogue and the query handler."""

    settings: ServerSettings
    zones_dir: Path
    geo: Any = None
    asn_of: Any = None
    pops: dict[str, Pop] = field(default_factory=dict)
    regions: RegionMap = field(default_factory=default_regions)
    use_geoip: bool = True
    rng: random.Random = field(default_factory=random.Random)
    listeners: list[BoundListener] = field(default_factory=list)
    counters: QueryCounters = field(default_factory=QueryCounters)
    rule_errors: Counter[str] = field(default_factory=Counter)
    """Rule conditions that failed at run time (counted as not matching), per condition text: the
    conditions this process compiles count into it (``lbdns_rule_runtime_errors``)."""
    ref: StateRef | None = None
    handler: Handler | None = None
    loaded: LoadedConfig | None = None
    generation: int = 0
    health_runtime: HealthRuntime | None = None
    notifier: Any = None
    """The :class:`~lbdns.probes.notify.WebhookNotifier` of ``notification_webhook`` (None: off);
    health events and reload-made pool-enablement changes go through it."""
    health: HealthRecorder | None = None
    """The health owner: the one writer of health (probe results, pushed reports, operator states)."""
    admin: Any = None
    _watch: asyncio.Task[None] | None = None
    _mtimes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    _stopping: asyncio.Event | None = None
    extra_on_answer: Callable[..., None] | None = None
    query_log: Any = None
    geo_db: Any = None
    """The opened :class:`~lbdns.geo.mmdb.GeoDatabase` (None: none opened by this App)."""
    builder_command: Sequence[str] | None = None
    """argv of the snapshot builder (None: this interpreter running ``-m lbdns.builder``)."""
    prestart_builder: bool = False
    """Start the snapshot builder before loading the configuration (``lbdns serve``): starting
    it later forks a large process, which holds answering for ~20 ms per 200 MB."""
    startup_sighups: list[float] = field(default_factory=list)
    """SIGHUPs caught before :meth:`run_forever` took over (filled by the CLI's early handler)."""
    reload_stats: ReloadStats = field(default_factory=ReloadStats)
    last_rejection: tuple[str, ...] = ()
    """The issues of the last rejected reload (empty after a successful one)."""
    last_errors: tuple[str, ...] = ()
    """Why the last reload failed: its errors (empty after a successful one)."""
    resolver: HostnameResolver | None = None
    """Addresses of hostname origins, resolved ahead of queries (docs/steering.md › Hostname origins)."""
    _builder: Builder | None = None
    _reload_task: asyncio.Task[None] | None = None
    _reload_next: asyncio.Future[bool] | None = None
    _background: set[asyncio.Task[Any]] = field(default_factory=set)
    _logged_warnings: tuple[str, ...] = ()
    workers: WorkerPool | None = None
    """The answering worker processes (``workers`` > 1; None: this process answers)."""

    # -- construction ------------------------------------------------------------------------
    def load(self) -> Snapshot:
        """Validate the zones and build a snapshot in this process (start-up); raises
        :class:`ConfigError`."""
        loaded = load_config(self.zones_dir, self.settings, regions=self.regions, rule_errors=self.rule_errors)
        for w in loaded.config.warnings:
            log.warning("%s", w)
        self._logged_warnings = tuple(str(w) for w in loaded.config.warnings)
        self.generation += 1
        snap = build_snapshot(loaded, self.settings, self.generation)
        self.loaded = loaded
        return replace(snap, config=lean_config(snap.config))

    def _open_geo(self) -> None:
        if self.geo is not None or not self.use_geoip:
            return
        from lbdns.geo.mmdb import GeoDatabase

        if self.settings.geoip_city_db:
            db = GeoDatabase.open(self.settings.geoip_city_db, self.settings.geoip_asn_db)
        else:
            db = GeoDatabase.default()
        self.geo_db = db
        self.geo = db.lookup
        self.asn_of = lambda ip: (rec.asn if (rec := db.lookup(ip)) is not None else None)

    def pop_of(self, code: str) -> Pop:
        """The PoP ``code`` from :attr:`pops`, else from the catalogue (``pops_file`` or the
        shipped one). Raises :class:`ConfigError` (``E-POP``) for an unknown code."""
        pop = self.pops.get(code)
        if pop is None:
            from lbdns.errors import Issue, Location
            from lbdns.geo.data import load_pops

            pop = load_pops(Path(self.settings.pops_file) if self.settings.pops_file else None,
                            self.regions).get(code)
            if pop is None:
                raise ConfigError([Issue(Location("settings"), "pop", "E-POP",
                                         f"unknown PoP {code!r}: not in the PoP catalogue (IATA codes such as "
                                         "IAD, LHR, NRT; set pops_file for your own)")])
            self.pops[code] = pop
        return pop

    async def start(self) -> None:
        """Load the configuration and bind every listener. Raises :class:`ConfigError`
        (config or PoP problems) or OSError (bind failures)."""
        self._builder = Builder(self.builder_command)
        if self.prestart_builder:
            try:
                await self._builder.start()
            except BuildError as exc:
                log.warning("%s; reloads will try again", exc)
        self._mtimes = self._scan()  # before reading: a change made while loading is noticed
        snap = self.load()
        self._open_geo()
        ref = self.ref = self._make_ref(Current(snap, apply_overrides(HealthView(), self.settings.health_overrides)))
        gc.collect()  # the start-up load's garbage, once, before anything listens
        gc.freeze()
        self._spawn(self._settle_periodically())
        resolver = self.resolver = HostnameResolver(self.settings.upstream_resolvers,
                                                    max_ttl=float(self.settings.hostname_cache_max_ttl))
        resolver.use_local(LocalAnswers(lambda: ref.current, self.pop_of(self.settings.pop), resolver.lookup_for_local))
        names = hostnames_of(snap.pools.values())
        await resolver.prepare(names)  # before warm start and the listeners: the first answers have them
        resolver.track(names)
        resolver.start()
        self._start_notifier()
        self._start_health_owner(snap)  # after the resolver: in-zone hostname origins are probed at its answers
        from lbdns.querylog import open_query_log

        try:
            # with workers, each worker writes its own query log (docs/operations.md "Workers")
            self.query_log = open_query_log(self.settings.query_log if self.workers is None else None)
        except OSError as exc:
            from lbdns.errors import Issue, Location

            raise ConfigError([Issue(Location("lbdns.yaml"), "query_log", "E-SETTINGS",
                                     f"cannot open the query log {self.settings.query_log!r}: {exc}")]) from None
        hooks = [h for h in ((self.query_log.on_answer if self.query_log else None), self.extra_on_answer) if h]

        def fanout(*a: Any) -> None:
            for h in hooks:
                h(*a)

        on_answer = None if not hooks else hooks[0] if len(hooks) == 1 else fanout
        self.handler = Handler(ref, geo=self.geo, asn_of=self.asn_of, lookup=resolver.addresses, rng=self.rng,
                               counters=self.counters, on_answer=on_answer, regions=self.regions)
        await self._start_health(snap)
        if self.workers is not None:
            self.workers.bind(self.listeners)
            await self.workers.start(ref.current.snapshot)
        for lst in self.settings.listen if self.workers is None else ():
            code = lst.pop or self.settings.pop
            pop = self.pop_of(code)
            family = socket.AF_INET6 if ":" in lst.address else socket.AF_INET
            # with port 0 and both transports, retry until UDP and TCP share one free port
            for attempt in range(20):
                bound: list[BoundListener] = []
                try:
                    await self._bind(lst.address, lst.port, lst.transport, family, pop, code, bound)
                except OSError:
                    for b in bound:
                        b.closer()
                    if lst.port != 0 or attempt == 19:
                        raise
                    continue
                self.listeners.extend(bound)
                break
        for b in self.listeners:
            log.info("listening on %s", b)
        await self._start_admin()
        if self.admin is not None and self.workers is not None:
            self.admin.registry.register(self.workers.collector())

    def _make_ref(self, current: Current) -> StateRef:
        """The published state: with workers (``workers`` > 1) a :class:`~lbdns.workers.FanoutRef`
        that also sends every publication to them."""
        if self.settings.worker_count > 1:
            from lbdns.workers import FanoutRef, WorkerPool

            self.workers = WorkerPool(self, self.settings.worker_count)
            return FanoutRef(current, self.workers)
        return StateRef(current)

    async def _bind(self, address: str, port: int, transport: str, family: int, pop: Pop, code: str,
                    out: list[BoundListener]) -> None:
        loop = asyncio.get_running_loop()
        assert self.handler is not None
        handler = self.handler
        tcp_port = port
        if transport in ("udp", "both"):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((address, port))
            except OSError as exc:
                sock.close()
                raise ListenError("udp", address, port, bind_cause(exc)) from exc
            bound_port = sock.getsockname()[1]
            grow_rcvbuf(sock, self.settings.udp_rcvbuf)
            closer = await serve_udp(sock, handler, pop, self.settings.udp_batch)
            out.append(BoundListener("udp", address, bound_port, code, closer))
            tcp_port = bound_port
        if transport in ("tcp", "both"):
            factory = TcpServer(handler, pop, idle_timeout=self.settings.tcp_idle_timeout,
                                max_connections=self.settings.tcp_max_connections)
            try:
                server = await loop.create_server(factory, address, tcp_port, family=family, reuse_address=True)
            except OSError as exc:
                raise ListenError("tcp", address, tcp_port, bind_cause(exc)) from exc
            out.append(BoundListener("tcp", address, server.sockets[0].getsockname()[1], code, server.close))

    def _start_notifier(self) -> None:
        """Create the webhook notifier when ``notification_webhook`` is set. Raises
        :class:`ConfigError` when its secret file cannot be read."""
        hook = self.settings.notification_webhook
        if hook is None:
            return
        from lbdns.probes.notify import WebhookNotifier

        try:
            self.notifier = WebhookNotifier.from_settings(hook)
        except ValueError as exc:
            from lbdns.errors import Issue, Location

            raise ConfigError([Issue(Location("lbdns.yaml"), "notification_webhook.secret_file", "E-SETTINGS",
                                     str(exc))]) from None
    def _start_health_owner(self, snap: Snapshot) -> None:
        """Create the health owner, hand it the configuration and restore the operator states
        from the state file."""
        from lbdns.health_owner import FileControlStore, HealthRecorder, default_state_path
        from lbdns.health_runtime import wire_targets

        assert self.ref is not None
        path = Path(self.settings.operator_state_file) if self.settings.operator_state_file else default_state_path()
        self.health = HealthRecorder(self.publish_health, rtt_alpha=self.settings.rtt_ewma_alpha,
                                     initial_version=self.ref.current.health.version, store=FileControlStore(path))
        self.health.on_event = self.notifier
        wire_targets(self.health, snap, publish=False, local_address=self._local_address())
        if self.health.load_controls():
            self.health.publish_now()

    def _local_address(self) -> Callable[[str], str | None] | None:
        """Hostname → the address lbdns answers for it (names in its own zones), None before start."""
        return self.resolver.local_address if self.resolver is not None else None

    async def _start_health(self, snap: Snapshot) -> None:
        """Start probing when the config has monitors that are probed (and probes are enabled)."""
        from lbdns.config.monitor_types import MONITOR_KINDS

        if not self.settings.probes_enabled or not any(MONITOR_KINDS[m.type].probed
                                                       for m in snap.config.monitors.values()):
            return
        from lbdns.health_runtime import HealthRuntime

        assert self.health is not None
        pop = self.pop_of(self.settings.pop) if self.settings.cluster is not None else None
        self.health_runtime = HealthRuntime(self.settings, self.health, self.notifier, pop)
        await self.health_runtime.start(warm_start=self.settings.warm_start)

    async def _start_admin(self) -> None:
        if not self.settings.admin.enabled:
            return
        from lbdns.admin import AdminServer

        self.admin = AdminServer(self, self, self.health, self)
        try:
            await self.admin.start()
        except OSError as exc:
            a = self.settings.admin
            raise ListenError("admin http", a.address, a.port, bind_cause(exc)) from exc

    # -- what the admin listener reads (lbdns.admin's StateReader and Telemetry) -------------------
    def served(self) -> Current | None:
        """The published (snapshot, health view), None before start."""
        return self.ref.current if self.ref is not None else None

    def rule_runtime_errors(self) -> int:
        """Rule condition evaluations that failed in this process (see :attr:`rule_errors`)."""
        return sum(self.rule_errors.values())

    def rrl_stats(self) -> Any:
        """The response rate limiter (its counters), None when off."""
        return self.handler.rrl if self.handler is not None else None

    def probe_metrics(self) -> dict[str, Any] | None:
        """The probe figures (:meth:`HealthRuntime.metrics` plus ``worker``: True when probes run
        in a worker process), None while nothing is probed."""
        rt = self.health_runtime
        return None if rt is None else {**rt.metrics(), "worker": rt.worker is not None}

    def probe_worker_pid(self) -> int | None:
        """Process id of the probe worker (None inline, while it is down, or without probes)."""
        return self.health_runtime.worker_pid if self.health_runtime is not None else None

    def cluster_status(self) -> dict[str, Any] | None:
        """The shared-health section of ``/status`` (store state, vantages), None without ``cluster:``."""
        rt = self.health_runtime
        return rt.cluster.status() if rt is not None and rt.cluster is not None else None

    def cluster_metrics(self) -> dict[str, Any] | None:
        """The shared-health store figures for ``/metrics``, None without ``cluster:``."""
        rt = self.health_runtime
        return rt.cluster.metrics() if rt is not None and rt.cluster is not None else None

    def webhook_metrics(self) -> dict[str, int] | None:
        """The notification webhook's delivery counters (``sent``, ``failed``, ``dropped``,
        ``attempts_failed``, ``pending``), None without ``notification_webhook``."""
        n = self.notifier
        if n is None:
            return None
        return {"sent": n.sent, "failed": n.failed, "dropped": n.dropped, "attempts_failed": n.attempts_failed,
                "pending": n.pending}

    async def refresh_workers(self) -> None:
        """With workers (``workers`` > 1): collect their counters into :attr:`counters` (and the
        response rate limiter's), for ``/metrics`` and ``/status``; nothing otherwise."""
        if self.workers is not None:
            self.counters = await self.workers.refresh()

    def workers_status(self) -> list[dict[str, Any]] | None:
        """The ``workers`` section of ``/status`` (one entry per worker), None without workers."""
        return self.workers.status() if self.workers is not None else None

    def query_log_dropped(self) -> int | None:
        """Query log lines dropped, None without a query log."""
        return int(self.query_log.dropped) if self.query_log is not None else None

    # -- reload ------------------------------------------------------------------------------
    def publish_health(self, view: HealthView) -> None:
        """Publish a new health view (static overrides re-applied). A view not made by the
        health owner (tests, tools) gets the owner's operator states attached."""
        assert self.ref is not None
        if self.health is not None and dict(view.controls) != dict(owned := self.health.book.controls):
            view = replace(view, controls=MappingProxyType(dict(owned)))
        if self.health_runtime is not None:
            view = self.health_runtime.decorate(view)
        self.ref.publish_health(apply_overrides(view, self.settings.health_overrides))
        if self.resolver is not None:
            self.resolver.health_changed()  # names lbdns answers itself may follow health

    async def reload(self) -> bool:
        """Reload and wait for the result: True when a reload that began after this call
        published the files on disk, False when it was rejected or failed (logged; the last good
        configuration keeps serving). See :meth:`request_reload`."""
        return await asyncio.shield(self.request_reload("reload request"))

    def request_reload(self, trigger: str) -> asyncio.Future[bool]:
        """Ask for a reload; ``trigger`` ("SIGHUP", "file change", "POST /reload", …) is logged.

        Reloads are serialised and coalesced: with none running, one starts now; during one,
        every request shares exactly one more, which starts when the running one ends and reads
        the disk then. Returns the future of the reload that serves this request."""
        loop = asyncio.get_running_loop()
        if self._reload_task is None:
            fut: asyncio.Future[bool] = loop.create_future()
            self._reload_task = loop.create_task(self._run_reloads(fut, trigger), name="lbdns-reload")
            return fut
        if self._reload_next is None:
            self._reload_next = loop.create_future()
            log.info("%s during a reload: one more reload follows it", trigger)
        return self._reload_next

    async def _run_reloads(self, fut: asyncio.Future[bool], trigger: str) -> None:
        try:
            while True:
                try:
                    ok = await self._reload_once(trigger)
                except Exception as exc:
                    self.reload_stats.failures["exception"] += 1
                    self.last_errors = (f"{type(exc).__name__}: {exc}",)
                    assert self.ref is not None
                    log.exception("reload failed; still serving generation %d", self.ref.current.snapshot.generation)
                    ok = False
                if not fut.done():
                    fut.set_result(ok)
                nxt, self._reload_next = self._reload_next, None
                if nxt is None:
                    return
                fut, trigger = nxt, "queued request"
        finally:
            self._reload_task = None
            for f in (fut, self._reload_next):
                if f is not None and not f.done():
                    f.cancel()
            self._reload_next = None

    async def _reload_once(self, trigger: str) -> bool:
        assert self.ref is not None
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        # what this build reads is at least this new: a change after it is noticed by the watch
        self._mtimes = await loop.run_in_executor(None, self._scan)
        serving = self.ref.current.snapshot.generation
        log.info("reloading the configuration (%s)", trigger)
        try:
            if self._builder is None:
                self._builder = Builder(self.builder_command)
            snap = await self._build(serving + 1)
        except ConfigError as exc:
            self.reload_stats.failures["config"] += 1
            self._log_rejection(exc.issues, serving)
            return False
        except BuildError as exc:
            self.reload_stats.failures["exception"] += 1
            self.last_errors = (str(exc),)
            log.error("reload failed: %s; still serving generation %d", exc, serving)
            return False
        names = await self._prepare_hostnames(snap)
        old, old_plan = self.ref.current.snapshot, self.ref.current.plan
        self.ref.publish_snapshot(snap)
        self._track_hostnames(names)
        if self.notifier is not None:
            from lbdns.probes.notify import enablement_changes

            self.notifier.pools_enabled_changed(enablement_changes(old.config.pools, snap.config.pools),
                                                generation=snap.generation)
        self.generation = snap.generation
        self.last_rejection = self.last_errors = ()
        self._log_warnings(snap.config.warnings)
        if self.health is not None:
            from lbdns.health_runtime import wire_targets

            wire_targets(self.health, snap, local_address=self._local_address())
        if self.health_runtime is not None:
            await self.health_runtime.reconfigure(snap)
        elif self.settings.probes_enabled and snap.config.monitors:
            await self._start_health(snap)
        if self.workers is not None and not await self.workers.wait_generation(snap.generation, 60.0):
            log.warning("reload: not every worker installed generation %d within 60 s", snap.generation)
        self.reload_stats.ok += 1
        self.reload_stats.last_seconds = time.monotonic() - t0
        log.info("reloaded configuration (generation %d, %d zones) in %.1f s", snap.generation, len(snap.zones),
                 self.reload_stats.last_seconds)
        self._spawn(self._retire(old, old_plan))
        return True

    async def _build(self, generation: int) -> Snapshot:
        """Build ``generation`` in the builder; with workers, relay it to them as it arrives
        (dropped by them when the build fails)."""
        assert self._builder is not None
        assembly = self.workers.assembly(self.rule_errors) if self.workers is not None else Assembly(self.rule_errors)
        try:
            return await self._builder.build(self.zones_dir, self.settings, generation, between_parts=_settle_heap,
                                             assembly=assembly)
        except BaseException:
            if self.workers is not None:
                self.workers.abort()
            raise

    async def _prepare_hostnames(self, snap: Snapshot) -> frozenset[str]:
        return await prepare_hostnames(self.resolver, self.ref, snap)

    def _track_hostnames(self, names: frozenset[str]) -> None:
        if self.resolver is not None:
            self.resolver.track(names)

    def _log_rejection(self, issues: Sequence[Issue], serving: int) -> None:
        """Log a rejected configuration once: warnings at WARNING, errors at ERROR, then which
        generation still serves. The same issues again (another trigger, nothing fixed) get
        one line."""
        key = tuple(str(i) for i in issues)
        errors = [i for i in issues if i.is_error]
        self.last_errors = tuple(str(i) for i in errors)
        if key == self.last_rejection:
            log.warning("reload rejected: the same %d error(s) as before, logged above; still serving generation %d",
                        len(errors), serving)
            return
        self.last_rejection = key
        for issue in issues:
            if not issue.is_error:
                log.warning("reload: %s", issue)
        for issue in errors:
            log.error("reload rejected: %s", issue)
        log.error("reload rejected: %d error(s), %d warning(s); still serving generation %d",
                  len(errors), len(issues) - len(errors), serving)

    def _log_warnings(self, warnings: Sequence[Issue]) -> None:
        """Log a new configuration's warnings, unless they are the ones already logged."""
        key = tuple(str(w) for w in warnings)
        if key == self._logged_warnings:
            if key:
                log.info("reload: the same %d warning(s) as before", len(key))
            return
        self._logged_warnings = key
        for w in warnings:
            log.warning("%s", w)

    async def _retire(self, old: Snapshot, old_plan: ServingPlan) -> None:
        await retire_snapshot(old, old_plan)

    async def _settle_periodically(self) -> None:
        while True:
            await asyncio.sleep(GC_SETTLE_S)
            _settle_heap()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _scan(self) -> dict[str, tuple[int, int, int]]:
        """Every zone file's (mtime ns, size, inode) — a rewrite, a rename or a touch changes it."""
        out: dict[str, tuple[int, int, int]] = {}
        try:
            for p in self.zones_dir.rglob("*"):
                if p.suffix in (".yaml", ".yml"):
                    st = p.stat()
                    out[str(p)] = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            pass
        return out

    async def watch(self, interval: float = 2.0) -> None:
        """Poll the zones directory every ``interval`` seconds; request a reload on change."""
        while True:
            await asyncio.sleep(interval)
            now = await asyncio.get_running_loop().run_in_executor(None, self._scan)
            if now != self._mtimes:
                self._mtimes = now
                self.request_reload("file change")

    # -- run / stop --------------------------------------------------------------------------
    async def run_forever(self, *, watch: bool = True) -> None:
        """Serve until SIGTERM/SIGINT; SIGHUP reopens the query log and requests a reload (one
        queued during start-up is done now; one while stopping is ignored)."""
        loop = asyncio.get_running_loop()
        stopping = self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)

        def hup() -> None:
            if stopping.is_set():
                log.info("SIGHUP while stopping: ignored")
                return
            if self.query_log is not None:
                self.query_log.reopen()  # logrotate
            if self.workers is not None:
                self.workers.reopen_logs()
            self.request_reload("SIGHUP")

        loop.add_signal_handler(signal.SIGHUP, hup)
        if self.startup_sighups:
            log.info("SIGHUP during start-up (%d): reloading now that the server is up", len(self.startup_sighups))
            self.startup_sighups.clear()
            hup()
        if watch:
            self._watch = asyncio.ensure_future(self.watch())
        await stopping.wait()
        log.info("stopping")
        await self.stop()

    async def stop(self) -> None:
        """Close listeners, stop probes, reloads and the admin listener."""
        if self._watch is not None:
            self._watch.cancel()
        pending = [t for t in (self._reload_task, *self._background) if t is not None]
        for t in pending:
            t.cancel()  # a reload in progress: its builder process is killed
        await asyncio.gather(*pending, return_exceptions=True)
        if self._builder is not None:
            await self._builder.stop()
        if self.health_runtime is not None:
            await self.health_runtime.stop()
        if self.health is not None:
            self.health.flush()
        if self.notifier is not None:
            await self.notifier.aclose()
        if self.resolver is not None:
            await self.resolver.stop()
        if self.admin is not None:
            await self.admin.stop()
        if self.workers is not None:
            await self.workers.stop()
        for b in self.listeners:
            b.closer()
        self.listeners.clear()
        if self.query_log is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.query_log.stop)
            self.query_log = None
        gc.unfreeze()

    def port(self, transport: str = "udp") -> int:
        """The bound port of the first listener of ``transport``."""
        return next(b.port for b in self.listeners if b.transport == transport)


async def prepare_hostnames(resolver: HostnameResolver | None, ref: StateRef | None,
                            snap: Snapshot) -> frozenset[str]:
    """Resolve the hostname origins of ``snap`` before it is published (names in served zones
    answered from ``snap`` itself), bounded by the resolver timeout; returns them."""
    names = hostnames_of(snap.pools.values())
    if resolver is None or ref is None:
        return names
    local = resolver.local
    if local is not None:
        local.state = lambda: Current(snap, ref.current.health)
    try:
        await resolver.prepare(names)
    finally:
        if local is not None:
            local.state = lambda: ref.current
    return names


async def retire_snapshot(old: Snapshot, old_plan: ServingPlan | None = None) -> None:
    """Release a replaced snapshot's owner names and its serving plan a slice
    (:data:`RETIRE_SLICE` entries) per loop iteration, pausing between slices
    (:func:`~lbdns.builder.yield_to_queries`). Nothing reads a replaced snapshot's names: a
    query reads :attr:`StateRef.current` once and answers without awaiting (a query that waits
    for a hostname lookup reads it again after)."""
    tables: list[dict[Any, Any]] = list(old_plan.tables()) if old_plan is not None else []
    for zone in old.zones.values():
        tables += [t for t in gc.get_referents(zone.nodes) if type(t) is dict]  # behind the read-only proxy
    for table in tables:
        while table:
            started = time.perf_counter()
            for _ in range(min(RETIRE_SLICE, len(table))):
                table.popitem()
            await yield_to_queries(started)


def _settle_heap() -> None:
    """Collect the young garbage, then freeze every surviving object — a snapshot being
    installed, answer caches that filled up — so that the collector never scans them again.
    Without it, a full collection scans the whole heap in one go and holds the query loop:
    ~0.2 s with 30,000 records and warm caches, over a second while a reload built in this
    process. Frozen objects are still freed by reference counting when dropped (snapshots
    hold no reference cycles); only a reference cycle that became garbage after being frozen
    is never collected (``gc.get_freeze_count()`` shows the frozen total)."""
    gc.collect(1)
    gc.freeze()
