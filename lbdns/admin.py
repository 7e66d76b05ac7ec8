"""The admin HTTP listener (loopback by default): ``/metrics`` (Prometheus text format),
``/status`` (pools, origins and load balancers as JSON, SPEC.md R-LOG-06), ``/healthz``,
``POST /reload``, and ``POST /health`` to set a static health state for one (pool, origin) —
the "admin command marking an origin down" used before monitors exist. Who may use it (a
bearer token for every POST, no cross-site requests, bounded connections and bodies):
:mod:`lbdns.admin_guard`.

Metrics are produced at scrape time by a custom prometheus-client collector that reads the
plain counters the query path increments (no per-query metric objects).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from lbdns import logpipe
from lbdns.admin_guard import Guard, exposure_warning, json_error, read_json
from lbdns.health.view import HealthView, OriginHealth, OriginState
from lbdns.server.counters import QTYPE_NAMES
from lbdns.snapshot import Snapshot

if TYPE_CHECKING:
    from lbdns.app import App

log = logging.getLogger("lbdns.admin")

_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}


def qtype_name(qtype: int) -> str:
    """The ``qtype`` label of a counted QTYPE bucket: its mnemonic, or ``other`` (see
    :data:`lbdns.server.counters.QTYPE_BUCKET`)."""
    return QTYPE_NAMES.get(qtype, "other")


def serving_fallbacks(snapshot: Snapshot, view: HealthView) -> dict[str, list[str]]:
    """Pool id → names of the enabled load balancers whose every query currently goes to that
    pool as their ``fallback_pool``: none of the LB's pools (default, region, country and PoP
    pools) is usable for steering (SPEC.md R-HLT-11, A-48; R-GTS-02). Rules are not
    considered."""
    from lbdns.config.refs import pool_refs
    from lbdns.health.pool_health import usable_for_steering

    pools = snapshot.config.pools
    out: dict[str, list[str]] = {}
    for name, plan in sorted(snapshot.plans.items()):
        lb = plan.model
        fallback = lb.fallback_pool
        if not lb.enabled or fallback is None or fallback not in pools or not pools[fallback].enabled:
            continue  # a disabled fallback serves nothing (NODATA, R-HLT-20)
        candidates = {name for _, name in pool_refs(lb, fallback=False, rules=False)}
        if not any(usable_for_steering(pools[p], view) for p in candidates if p in pools):
            out.setdefault(pools[fallback].id, []).append(name)
    return out


def pool_status(snapshot: Snapshot, view: HealthView, pool_id: str,
                fallback_for: Sequence[str] = ()) -> dict[str, Any]:
    """JSON-ready status of one pool: health status (SPEC.md R-HLT-11) and its origins.
    ``fallback_for`` names the LBs it is serving as fallback pool for (status ``no_health``,
    see :func:`serving_fallbacks`)."""
    from lbdns.health.pool_health import pool_status as compute_status

    pool_model = snapshot.config.pools[pool_id]
    status = compute_status(pool_model, view, serving_as_fallback=bool(fallback_for))
    origins = []
    for o in pool_model.origins:
        h: OriginHealth = view.origin(pool_model.id, o.name)
        origins.append({
            "name": o.name, "address": o.address, "enabled": o.enabled, "weight": o.weight,
            "health": h.state.name.lower() if pool_model.monitored else "not monitored",
            "healthy_for_steering": o.enabled and (not pool_model.monitored or h.state is OriginState.HEALTHY),
            "last_probe_at": h.last_probe_at, "failure_reason": h.failure_reason or None,
            "response_code": h.response_code, "rtt_ms": h.rtt_ms,
        })
    rtt = view.pool_rtt.get(pool_model.id)
    return {
        "id": pool_model.id, "name": pool_model.name, "enabled": pool_model.enabled,
        "monitor": pool_model.monitor, "monitor_group": pool_model.monitor_group,
        "minimum_origins": pool_model.minimum_origins, "status": str(status),
        "serving_as_fallback_for": list(fallback_for),
        "rtt_ewma_ms": rtt.ewma_ms if rtt else None, "origins": origins,
    }


_go_float = cast(Callable[[float], str], floatToGoString)
"""prometheus_client's float formatting (Go's: ``+Inf``, ``1.5e+06``), typed."""


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def render_text(metrics: Iterable[Metric]) -> str:
    """The Prometheus text exposition (format 0.0.4) of ``metrics``: the output of
    :func:`prometheus_client.generate_latest` for the metric and label names lbdns uses (valid
    legacy names, so only label values and help texts are escaped), at a small fraction of its
    cost (it validates every label name of every sample)."""
    out: list[str] = []
    for metric in metrics:
        name, mtype = metric.name, metric.type
        if mtype == "counter":
            name += "_total"
        elif mtype == "unknown":
            mtype = "untyped"
        doc = metric.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {mtype}\n")
        for sample in metric.samples:
            value = sample.value
            text = repr(float(value)) if 0 <= value < 1e6 else _go_float(value)
            if sample.labels:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
                out.append(f"{sample.name}{{{labels}}} {text}\n")
            else:
                out.append(f"{sample.name} {text}\n")
    return "".join(out)


def pool_families(snap: Snapshot, view: HealthView, pause: Callable[[], None] | None = None) -> list[Metric]:
    """The pool and origin families of ``/metrics`` (``lbdns_origin_healthy``,
    ``lbdns_pool_status``, ``lbdns_pool_rtt_ewma_ms``, ``lbdns_origin_probe_rtt_ms``) for one
    published (snapshot, health view). Reads only those immutable objects, so it may run off
    the event loop; ``pause`` is called every 20 pools (a worker thread passes
    ``time.sleep(0)`` to hand the GIL back to the query loop often)."""
    from lbdns.health.pool_health import pool_status as compute_status

    og = GaugeMetricFamily("lbdns_origin_healthy", "1 when the origin counts as healthy for steering, 0 otherwise",
                           labels=["pool", "origin"])
    pg = GaugeMetricFamily("lbdns_pool_status", "Pool health status (1 for the current status)",
                           labels=["pool", "status"])
    rt = GaugeMetricFamily("lbdns_pool_rtt_ewma_ms", "RTT EWMA of the pool in milliseconds", labels=["pool"])
    fallbacks = serving_fallbacks(snap, view)
    healthy = OriginState.HEALTHY
    for i, (pid, pool_model) in enumerate(snap.config.pools.items()):
        if pause is not None and i % 20 == 19:
            pause()
        pg.add_metric([pool_model.name, str(compute_status(pool_model, view, serving_as_fallback=pid in fallbacks))],
                      1)
        monitored = pool_model.monitored
        for o in pool_model.origins:
            ok = o.enabled and (not monitored or view.origin(pid, o.name).state is healthy)
            og.add_metric([pool_model.name, o.name], 1 if ok else 0)
        rtt_ewma = view.pool_rtt.get(pid)
        if rtt_ewma is not None:
            rt.add_metric([pool_model.name], rtt_ewma.ewma_ms)
    rtt = GaugeMetricFamily("lbdns_origin_probe_rtt_ms", "Last passing probe round-trip time (ms)",
                            labels=["pool", "origin"])
    for (pid, origin), h in sorted(view.origins.items()):
        if h.rtt_ms is not None:
            rtt.add_metric([pid, origin], h.rtt_ms)
    return [og, pg, rt, rtt]


def _pool_text(snap: Snapshot, view: HealthView) -> str:
    return render_text(pool_families(snap, view, lambda: time.sleep(0)))


class _Collector(Collector):
    """The lbdns families. :meth:`collect` reads the counters the query path increments
    (bounded label sets, cheap); the pool and origin families, whose size grows with the
    configuration, are rendered once per published (snapshot, health view) — off the event
    loop by :meth:`pool_text` — and reused by every scrape until either changes."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._pools_key: tuple[int, int, int, int] | None = None
        self._pools_text = ""

    @staticmethod
    def _key(snap: Snapshot, view: HealthView) -> tuple[int, int, int, int]:
        return id(snap), snap.generation, id(view), view.version

    async def pool_text(self) -> str:
        """The pool and origin families as exposition text for the current published state,
        rendered in a worker thread when the state changed since the last scrape."""
        if self.app.ref is None:
            return ""
        cur = self.app.ref.current
        key = self._key(cur.snapshot, cur.health)
        if key != self._pools_key:
            text = await asyncio.get_running_loop().run_in_executor(None, _pool_text, cur.snapshot, cur.health)
            self._pools_key, self._pools_text = key, text
        return self._pools_text

    def collect_pools(self) -> Iterator[Any]:
        """The per-pool and per-origin families, computed now (see :meth:`pool_text`)."""
        if self.app.ref is not None:
            cur = self.app.ref.current
            yield from pool_families(cur.snapshot, cur.health)

    def collect(self) -> Iterator[Any]:
        """Every lbdns family except the per-pool and per-origin ones (:meth:`pool_text`)."""
        app = self.app
        c = app.counters
        q = CounterMetricFamily("lbdns_queries", "DNS queries answered, by transport, qtype and rcode",
                                labels=["transport", "qtype", "rcode"])
        for (transport, qtype, rcode), n in sorted(c.queries.items()):
            q.add_metric([transport, qtype_name(qtype), _RCODES.get(rcode, "other")], n)
        yield q
        d = CounterMetricFamily("lbdns_lb_decisions", "Load-balancer decisions by load balancer and pool",
                                labels=["load_balancer", "pool", "fallback"])
        for (lb, pool, fb), n in sorted(c.decisions.items()):
            d.add_metric([lb, pool, "true" if fb else "false"], n)
        yield d
        r = CounterMetricFamily("lbdns_rule_matches", "Custom rules that matched", labels=["load_balancer", "rule"])
        for (lb, rule), n in sorted(c.rule_matches.items()):
            r.add_metric([lb, rule], n)
        yield r
        from lbdns.rules import RUNTIME_ERRORS

        yield CounterMetricFamily("lbdns_rule_runtime_errors", "Rule conditions that failed at run time (not matched)",
                                  value=sum(RUNTIME_ERRORS.values()))
        yield CounterMetricFamily("lbdns_internal_errors", "Queries answered SERVFAIL after an internal error",
                                  value=c.internal_errors)
        yield CounterMetricFamily("lbdns_dropped_packets", "Packets dropped (unanswerable)", value=c.dropped)
        yield CounterMetricFamily("lbdns_deferred_lookups", "Queries that waited for hostname-origin lookups",
                                  value=c.deferred_lookups)
        yield CounterMetricFamily("lbdns_tcp_evicted",
                                  "TCP connections closed to make room for a new one over the cap",
                                  value=c.tcp_evicted)
        yield CounterMetricFamily("lbdns_tcp_slow_closed",
                                  "TCP connections closed for not completing a message within tcp_message_timeout",
                                  value=c.tcp_slow_closed)
        rrl = app.handler.rrl if app.handler is not None else None
        if rrl is not None:
            yield CounterMetricFamily("lbdns_rrl_dropped", "UDP responses dropped by response rate limiting",
                                      value=rrl.dropped)
            yield CounterMetricFamily("lbdns_rrl_slipped",
                                      "UDP responses sent truncated (TC=1) by response rate limiting",
                                      value=rrl.slipped)
            yield CounterMetricFamily("lbdns_rrl_evicted", "Rate-limit table entries evicted (table full)",
                                      value=rrl.evicted)
            nets, buckets = rrl.sizes()
            size = GaugeMetricFamily("lbdns_rrl_table_entries", "Entries in the rate-limit tables",
                                     labels=["table"])
            size.add_metric(["networks"], nets)
            size.add_metric(["responses"], buckets)
            yield size
        if app.ref is not None:
            yield GaugeMetricFamily("lbdns_config_generation", "Configuration generation being served",
                                    value=app.ref.current.snapshot.generation)
        sched = app.health_runtime
        if sched is not None:
            m = sched.metrics()
            yield CounterMetricFamily("lbdns_probes", "Health probes run", value=m["probes_run"])
            yield CounterMetricFamily("lbdns_probes_failed", "Health probes that failed", value=m["probes_failed"])
            yield CounterMetricFamily("lbdns_health_transitions", "Origin health transitions", value=m["events"])
            lag = HistogramMetricFamily("lbdns_probe_schedule_lag_seconds",
                                        "Probe start time behind schedule (seconds), recent samples")
            lag.add_metric([], m["lag_buckets"], m["lag_sum"])
            yield lag
            lq = GaugeMetricFamily("lbdns_probe_schedule_lag_quantile_seconds",
                                   "Probe start lag behind schedule over recent samples (seconds)",
                                   labels=["quantile"])
            lq.add_metric(["0.5"], m["lag_p50"])
            lq.add_metric(["0.99"], m["lag_p99"])
            yield lq
            yield CounterMetricFamily("lbdns_probe_worker_restarts", "Probe worker processes restarted after dying",
                                      value=m["worker_restarts"])
            if sched.cluster is not None:
                cm = sched.cluster.metrics()
                yield GaugeMetricFamily("lbdns_cluster_store_up",
                                        "1 while the shared health store is reachable, 0 while this instance "
                                        "decides health on its own probes", value=cm["store_up"])
                yield CounterMetricFamily("lbdns_cluster_store_errors", "Failed operations on the shared health store",
                                          value=cm["store_errors"])
                yield GaugeMetricFamily("lbdns_cluster_vantages", "Vantages (instances) whose results count, "
                                        "this one included", value=cm["vantages"])
                yield CounterMetricFamily("lbdns_cluster_store_commands", "Commands sent to the shared health store",
                                          value=cm["store_commands"])
        yield CounterMetricFamily("lbdns_log_lines_dropped", "Log lines dropped because stderr was not keeping up",
                                  value=logpipe.dropped())
        qlog = app.query_log
        if qlog is not None:
            yield CounterMetricFamily("lbdns_query_log_dropped", "Query log lines dropped (writer behind)",
                                      value=qlog.dropped)


class _ControlCollector(Collector):
    """Contained control-plane failures: reloads, admin requests, the probe worker watchdog."""

    def __init__(self, admin: AdminServer) -> None:
        self.admin = admin

    def collect(self) -> Iterator[Any]:
        app = self.admin.app
        stats = app.reload_stats
        yield CounterMetricFamily("lbdns_reloads", "Reloads that published a new configuration", value=stats.ok)
        failures = CounterMetricFamily("lbdns_reload_failures",
                                       "Reloads that kept the previous configuration, by reason "
                                       "(config: rejected errors; exception: the build failed)", labels=["reason"])
        for reason, n in sorted(stats.failures.items()):
            failures.add_metric([reason], n)
        yield failures
        yield GaugeMetricFamily("lbdns_reload_last_duration_seconds", "Duration of the last successful reload",
                                value=stats.last_seconds)
        guard = self.admin.guard
        if guard is not None:
            yield CounterMetricFamily("lbdns_admin_errors", "Admin requests that failed with an unhandled error (500)",
                                      value=guard.stats.errors)
            rejected = CounterMetricFamily("lbdns_admin_rejected", "Admin requests or connections refused, by reason",
                                           labels=["reason"])
            for reason, n in sorted(guard.stats.rejected.items()):
                rejected.add_metric([reason], n)
            yield rejected
            yield GaugeMetricFamily("lbdns_admin_connections", "Open admin connections", value=len(guard.conns))
        rt = app.health_runtime
        if rt is not None and rt.worker is not None:
            m = rt.metrics()
            yield CounterMetricFamily("lbdns_probe_worker_stalls",
                                      "Probe workers killed by the watchdog after reporting nothing",
                                      value=m["worker_stalls"])
            yield GaugeMetricFamily("lbdns_probe_worker_silent_seconds",
                                    "Seconds since the probe worker last reported", value=m["worker_silent_s"])


class AdminServer:
    """aiohttp application bound to ``settings.admin`` (address, port)."""

    def __init__(self, app: App) -> None:
        self.app = app
        # collectors rendered on the event loop at every scrape: register only cheap ones whose
        # size does not grow with the configuration (see metrics())
        self.registry = CollectorRegistry()
        self.collector = _Collector(app)
        self.registry.register(self.collector)
        self.control = _ControlCollector(self)
        self.registry.register(self.control)
        # CPU, memory and file descriptors of this process (process_*) and of the probe worker
        # (lbdns_probe_worker_process_*; absent while no worker runs), read from /proc in a
        # worker thread
        self.process_collectors = (
            ProcessCollector(registry=None),
            ProcessCollector(namespace="lbdns_probe_worker", pid=self._worker_pid, registry=None),
        )
        self.runner: web.AppRunner | None = None
        self.guard: Guard | None = None
        self._server: asyncio.AbstractServer | None = None
        self.port = 0
        self.started = time.time()

    def _worker_pid(self) -> int | str:
        rt = self.app.health_runtime
        pid = rt.worker_pid if rt is not None else None
        return pid if pid is not None else "no-worker"  # an unreadable /proc path ⇒ no metrics

    def web_app(self) -> web.Application:
        """The aiohttp application with every route (and, once started, the guard's middlewares)."""
        s = self.app.settings.admin
        wa = web.Application(client_max_size=s.max_body_bytes,
                             middlewares=self.guard.middlewares if self.guard is not None else ())
        wa.router.add_get("/metrics", self.metrics)
        wa.router.add_get("/status", self.status)
        wa.router.add_get("/healthz", self.healthz)
        wa.router.add_post("/health", self.set_health)
        wa.router.add_post("/reload", self.reload)
        return wa

    async def start(self) -> None:
        """Load the token and bind the listener (``port`` 0 picks one; the bound port is in
        :attr:`port`). Raises OSError when the address cannot be bound."""
        s = self.app.settings.admin
        self.guard = Guard.from_settings(s)
        self.runner = web.AppRunner(self.web_app(), access_log=None, keepalive_timeout=s.idle_timeout)
        await self.runner.setup()
        server = self.runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.guard.protocol_factory(server), s.address, s.port, reuse_address=True)
        self.guard.start()
        sockets: Sequence[Any] = self._server.sockets or ()
        self.port = sockets[0].getsockname()[1] if sockets else s.port
        if (warning := exposure_warning(s.address, read_requires_token=s.read_requires_token)) is not None:
            log.warning("admin: %s", warning)
        log.info("admin listening on http://%s:%d", s.address, self.port)

    async def stop(self) -> None:
        """Close the listener and its connections."""
        if self.guard is not None:
            await self.guard.stop()
        if self._server is not None:
            self._server.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics``: Prometheus text exposition. The pool and origin families come
        rendered from a worker thread (once per published state) and the ``process_*`` ones
        are read there; the collectors of :attr:`registry` (counters, bounded label sets) are
        rendered here with :func:`render_text`."""
        pools = await self.collector.pool_text()
        process = await asyncio.get_running_loop().run_in_executor(None, self._process_text)
        body = render_text(self.registry.collect())
        return web.Response(text=body + pools + process, content_type="text/plain", charset="utf-8")

    def _process_text(self) -> str:
        """The ``process_*`` families (files under /proc: read in a worker thread)."""
        return render_text(itertools.chain.from_iterable(c.collect() for c in self.process_collectors))

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 while serving."""
        return web.json_response({"ok": True, "uptime_s": round(time.time() - self.started, 1)})

    def status_document(self) -> dict[str, Any]:
        """The ``/status`` JSON document."""
        from lbdns.health.pool_health import lb_status

        assert self.app.ref is not None
        cur = self.app.ref.current
        snap, view = cur.snapshot, cur.health
        fallbacks = serving_fallbacks(snap, view)
        pools = {pid: pool_status(snap, view, pid, fallbacks.get(pid, ())) for pid in snap.config.pools}
        lbs = []
        for name, plan in sorted(snap.plans.items()):
            lb = plan.model
            default = [snap.config.pools[p] for p in lb.default_pools if p in snap.config.pools]
            fallback_name = lb.fallback_pool
            lbs.append({
                "name": name, "enabled": lb.enabled, "steering_policy": plan.base.steering_policy,
                "status": str(lb_status(default, view)), "default_pools": lb.default_pools,
                "fallback_pool": fallback_name, "ttl": lb.ttl,
            })
        doc: dict[str, Any] = {"generation": snap.generation, "health_version": view.version,
                               "load_balancers": lbs, "pools": list(pools.values())}
        rt = self.app.health_runtime
        if rt is not None and rt.cluster is not None:
            doc["cluster"] = rt.cluster.status()
        return doc

    async def status(self, request: web.Request) -> web.Response:
        """``GET /status``: JSON of load balancers, pools and origins."""
        return web.Response(text=json.dumps(self.status_document(), indent=2), content_type="application/json")

    async def set_health(self, request: web.Request) -> web.Response:
        """``POST /health`` with ``{"pool": …, "origin": …, "state": "healthy|unhealthy|unknown"}``:
        a health state for one monitored origin, kept until the probe scheduler publishes its
        next health view (pools without a monitor ignore health, SPEC.md R-HLT-03)."""
        body = await read_json(request, self.app.settings.admin.idle_timeout)
        try:
            key = (str(body["pool"]), str(body["origin"]))
            state = {"healthy": OriginState.HEALTHY, "unhealthy": OriginState.UNHEALTHY,
                     "unknown": OriginState.UNKNOWN}[str(body["state"])]
        except (KeyError, ValueError, TypeError, IndexError):
            return json_error(400, "expected {pool, origin, state: healthy|unhealthy|unknown}")
        assert self.app.ref is not None
        cur = self.app.ref.current
        if key[0] not in cur.snapshot.config.pools:
            return web.json_response({"error": f"unknown pool {key[0]!r}"}, status=404)
        self.app.ref.publish_health(cur.health.with_states({key: state}))
        return web.json_response({"ok": True, "pool": key[0], "origin": key[1], "state": state.name.lower()})

    async def reload(self, request: web.Request) -> web.Response:
        """``POST /reload``: the same as SIGHUP, answered when a reload that began after this
        request ends (coalesced with any other request): 200 ``{"ok": true, "generation": N}``,
        or 409 ``{"ok": false, "errors": [...]}`` when the files are rejected or the build fails."""
        try:
            ok = await asyncio.shield(self.app.request_reload("POST /reload"))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return json_error(503, "the server is stopping; the reload was abandoned")
        assert self.app.ref is not None
        body: dict[str, Any] = {"ok": ok, "generation": self.app.ref.current.snapshot.generation}
        if not ok:
            body["errors"] = list(self.app.last_errors)
        return web.json_response(body, status=200 if ok else 409)
