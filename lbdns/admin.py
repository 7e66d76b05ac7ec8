"""The admin HTTP listener (loopback by default): ``/metrics`` (Prometheus text format),
``/status`` (pools, origins, load balancers and operator states as JSON), ``/healthz``,
``POST /reload``, ``POST /control`` (operator state of a pool or origin: auto, force_up,
force_down, drain), ``POST /report`` (pushed health of an origin) and ``POST /health`` (the
older form of ``/control``). Who may use it (a bearer token for every POST, no cross-site
requests, bounded connections and bodies): :mod:`lbdns.admin_guard`.

The listener is handed narrow interfaces, not the application: :class:`StateReader` (the
served snapshot and health), :class:`ReloadControl`, :class:`HealthControl` (the health owner)
and :class:`Telemetry` (the plain counters ``/metrics`` reads).

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
from typing import Any, Protocol, cast

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from lbdns import logpipe
from lbdns.admin_guard import Guard, exposure_warning, json_error, read_json
from lbdns.config.settings import ServerSettings
from lbdns.health.control import Control, ControlEntry, NotPushable, UnknownTarget
from lbdns.health.pool_health import origin_counts_healthy
from lbdns.health.view import HealthView, OriginHealth
from lbdns.server.counters import QTYPE_NAMES, QueryCounters
from lbdns.snapshot import Snapshot

log = logging.getLogger("lbdns.admin")


class Served(Protocol):
    """The published (snapshot, health view) pair."""

    @property
    def snapshot(self) -> Snapshot: ...
    @property
    def health(self) -> HealthView: ...


class StateReader(Protocol):
    """Read access to the server: its settings and what it serves (None before start)."""

    @property
    def settings(self) -> ServerSettings: ...
    def served(self) -> Served | None: ...


class ReloadControl(Protocol):
    """Reloads: request one (see ``App.request_reload``) and read their outcome."""

    def request_reload(self, trigger: str) -> asyncio.Future[bool]: ...
    @property
    def reload_stats(self) -> Any: ...
    @property
    def last_errors(self) -> tuple[str, ...]: ...


class HealthControl(Protocol):
    """The health owner (:class:`lbdns.health_owner.HealthRecorder`): operator states and pushed
    reports, with their audit records and counters."""

    async def set_control(self, pool: str, origin: str | None, state: Control, *, who: str = "",
                          why: str = "") -> tuple[Control, ControlEntry]: ...
    def push(self, pool: str, origin: str, *, healthy: bool, rtt_ms: float | None = None, reason: str = "",
             expires_in: float | None = None) -> tuple[Any, float]: ...
    @property
    def audit(self) -> Iterable[Any]: ...
    @property
    def control_changes(self) -> dict[str, int]: ...
    @property
    def reports(self) -> int: ...
    @property
    def reports_expired(self) -> int: ...


class Telemetry(Protocol):
    """The plain counters of the query path and the probes that ``/metrics`` reads."""

    @property
    def counters(self) -> QueryCounters: ...
    def rule_runtime_errors(self) -> int: ...
    def rrl_stats(self) -> Any: ...
    def probe_metrics(self) -> dict[str, Any] | None: ...
    def probe_worker_pid(self) -> int | None: ...
    def query_log_dropped(self) -> int | None: ...
    def cluster_status(self) -> dict[str, Any] | None: ...
    def cluster_metrics(self) -> dict[str, Any] | None: ...
    def webhook_metrics(self) -> dict[str, int] | None: ...
    async def refresh_workers(self) -> None: ...
    def workers_status(self) -> list[dict[str, Any]] | None: ...


_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}


def qtype_name(qtype: int) -> str:
    """The ``qtype`` label of a counted QTYPE bucket: its mnemonic, or ``other`` (see
    :data:`lbdns.server.counters.QTYPE_BUCKET`)."""
    return QTYPE_NAMES.get(qtype, "other")


def cluster_families(cm: dict[str, Any] | None) -> Iterator[Any]:
    """The shared-health store families of ``/metrics`` from the cluster figures (none
    without ``cluster:``)."""
    if cm is None:
        return
    yield GaugeMetricFamily("lbdns_cluster_store_up",
                            "1 while the shared health store is reachable, 0 while this instance "
                            "decides health on its own probes", value=cm["store_up"])
    yield CounterMetricFamily("lbdns_cluster_store_errors", "Failed operations on the shared health store",
                              value=cm["store_errors"])
    yield GaugeMetricFamily("lbdns_cluster_vantages", "Vantages (instances) whose results count, "
                            "this one included", value=cm["vantages"])
    yield CounterMetricFamily("lbdns_cluster_store_commands", "Commands sent to the shared health store",
                              value=cm["store_commands"])


def webhook_families(wm: dict[str, int] | None) -> Iterator[Any]:
    """The notification webhook families of ``/metrics`` from its delivery counters (none
    without ``notification_webhook``)."""
    if wm is None:
        return
    ev = CounterMetricFamily("lbdns_webhook_events", "Notification webhook events by outcome: sent "
                             "(2xx), failed (gave up after retry_for), dropped (queue full)",
                             labels=["outcome"])
    for outcome in ("sent", "failed", "dropped"):
        ev.add_metric([outcome], wm[outcome])
    yield ev
    yield CounterMetricFamily("lbdns_webhook_attempts_failed", "Webhook delivery attempts that failed "
                              "and were retried or given up", value=wm["attempts_failed"])
    yield GaugeMetricFamily("lbdns_webhook_pending", "Webhook events waiting to be delivered",
                            value=wm["pending"])


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
    from lbdns.health.pool_health import usable_for_steering

    pool_model = snapshot.config.pools[pool_id]
    status = compute_status(pool_model, view, serving_as_fallback=bool(fallback_for))
    origins = []
    for o in pool_model.origins:
        h: OriginHealth = view.origin(pool_model.id, o.name)
        origins.append({
            "name": o.name, "address": o.address, "enabled": o.enabled, "weight": o.weight,
            "health": h.state.name.lower() if pool_model.monitored else "not monitored",
            "healthy_for_steering": origin_counts_healthy(pool_model, o, view),
            "control": _control_json(view, pool_model.id, o.name),
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
        "usable_for_steering": usable_for_steering(pool_model, view),
        "control": _control_json(view, pool_model.id, None),
    }


def _control_json(view: HealthView, pool_id: str, origin: str | None) -> dict[str, Any] | None:
    entry = view.controls.get((pool_id, origin))
    return entry.to_json() if entry is not None else None


def _peer(request: web.Request) -> str:
    """Who sent an admin request, when the body does not say: ``admin@<peer address>``."""
    return f"admin@{request.remote or '?'}"


def answer_ttls(snapshot: Snapshot) -> dict[str, int]:
    """Pool id → the largest TTL of the enabled load balancers that can answer from it (any
    pool reference, rules included): how long a resolver may keep an answer from that pool."""
    from lbdns.config.refs import pool_refs

    pools = snapshot.config.pools
    by_name = {p.name: p.id for p in pools.values()}
    out: dict[str, int] = {}
    for plan in snapshot.plans.values():
        lb = plan.model
        if not lb.enabled:
            continue
        ttls = [lb.ttl, *(r.overrides.ttl for r in lb.rules if r.overrides.ttl is not None)]
        for _, name in pool_refs(lb):
            pid = by_name.get(name, name)
            out[pid] = max(out.get(pid, 0), *ttls)
    return out


def _add_drain_progress(snapshot: Snapshot, pools: dict[str, dict[str, Any]], now: float) -> None:
    """Add to every drain entry of the ``/status`` pools (Cloudflare docs: Load Balancing ›
    Perform planned maintenance: wait for cached answers to expire): ``left_answers_at`` (the
    drain took effect at once, so no answer after it holds the origin), ``ttl`` (the longest
    answer TTL of the load balancers using the pool), ``complete_at`` and ``complete``."""
    ttls = answer_ttls(snapshot)
    for pid, doc in pools.items():
        ttl = ttls.get(pid, 0)
        for entry in [doc.get("control"), *(o.get("control") for o in doc["origins"])]:
            if entry is None or entry["state"] != str(Control.DRAIN):
                continue
            done_at = entry["at"] + ttl
            entry["drain"] = {"left_answers_at": entry["at"], "ttl": ttl, "complete_at": done_at,
                              "complete": now >= done_at}


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
    for i, (pid, pool_model) in enumerate(snap.config.pools.items()):
        if pause is not None and i % 20 == 19:
            pause()
        pg.add_metric([pool_model.name, str(compute_status(pool_model, view, serving_as_fallback=pid in fallbacks))],
                      1)
        for o in pool_model.origins:
            ok = origin_counts_healthy(pool_model, o, view)
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

    def __init__(self, state: StateReader, telemetry: Telemetry) -> None:
        self.state = state
        self.telemetry = telemetry
        self._pools_key: tuple[int, int, int, int] | None = None
        self._pools_text = ""

    @staticmethod
    def _key(snap: Snapshot, view: HealthView) -> tuple[int, int, int, int]:
        return id(snap), snap.generation, id(view), view.version

    async def pool_text(self) -> str:
        """The pool and origin families as exposition text for the current published state,
        rendered in a worker thread when the state changed since the last scrape."""
        cur = self.state.served()
        if cur is None:
            return ""
        key = self._key(cur.snapshot, cur.health)
        if key != self._pools_key:
            text = await asyncio.get_running_loop().run_in_executor(None, _pool_text, cur.snapshot, cur.health)
            self._pools_key, self._pools_text = key, text
        return self._pools_text

    def collect_pools(self) -> Iterator[Any]:
        """The per-pool and per-origin families, computed now (see :meth:`pool_text`)."""
        cur = self.state.served()
        if cur is not None:
            yield from pool_families(cur.snapshot, cur.health)

    def collect(self) -> Iterator[Any]:
        """Every lbdns family except the per-pool and per-origin ones (:meth:`pool_text`)."""
        tel = self.telemetry
        c = tel.counters
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
        yield CounterMetricFamily("lbdns_rule_runtime_errors", "Rule conditions that failed at run time (not matched)",
                                  value=tel.rule_runtime_errors())
        yield CounterMetricFamily("lbdns_internal_errors", "Queries answered SERVFAIL after an internal error",
                                  value=c.internal_errors)
        yield CounterMetricFamily("lbdns_dropped_packets", "Packets dropped (unanswerable)", value=c.dropped)
        yield CounterMetricFamily("lbdns_tcp_evicted",
                                  "TCP connections closed to make room for a new one over the cap",
                                  value=c.tcp_evicted)
        yield CounterMetricFamily("lbdns_tcp_slow_closed",
                                  "TCP connections closed for not completing a message within tcp_message_timeout",
                                  value=c.tcp_slow_closed)
        yield CounterMetricFamily("lbdns_udp_send_failed",
                                  "UDP answers the kernel did not send (full socket buffer, refused destination)",
                                  value=c.udp_send_failed)
        rrl = tel.rrl_stats()
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
        cur = self.state.served()
        if cur is not None:
            yield GaugeMetricFamily("lbdns_config_generation", "Configuration generation being served",
                                    value=cur.snapshot.generation)
        m = tel.probe_metrics()
        if m is not None:
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
        yield from cluster_families(tel.cluster_metrics())
        yield from webhook_families(tel.webhook_metrics())
        yield CounterMetricFamily("lbdns_log_lines_dropped", "Log lines dropped because stderr was not keeping up",
                                  value=logpipe.dropped())
        dropped = tel.query_log_dropped()
        if dropped is not None:
            yield CounterMetricFamily("lbdns_query_log_dropped", "Query log lines dropped (writer behind)",
                                      value=dropped)


class _ControlCollector(Collector):
    """Contained control-plane failures: reloads, admin requests, the probe worker watchdog."""

    def __init__(self, admin: AdminServer) -> None:
        self.admin = admin

    def collect(self) -> Iterator[Any]:
        stats = self.admin.reloads.reload_stats
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
        hc = self.admin.health
        if hc is not None:
            changes = CounterMetricFamily("lbdns_operator_changes",
                                          "Operator state changes (POST /control), by new state", labels=["state"])
            for state, n in sorted(hc.control_changes.items()):
                changes.add_metric([state], n)
            yield changes
            cur = self.admin.state.served()
            if cur is not None:
                active = GaugeMetricFamily("lbdns_operator_overrides",
                                           "Pools and origins whose operator state is not auto, by state",
                                           labels=["state"])
                counts = {str(c): 0 for c in Control if c is not Control.AUTO}
                for entry in cur.health.controls.values():
                    counts[str(entry.state)] += 1
                for state, n in sorted(counts.items()):
                    active.add_metric([state], n)
                yield active
            yield CounterMetricFamily("lbdns_health_reports", "Pushed health reports accepted (POST /report)",
                                      value=hc.reports)
            yield CounterMetricFamily("lbdns_health_reports_expired", "Pushed health reports that expired (no data)",
                                      value=hc.reports_expired)
        m = self.admin.telemetry.probe_metrics()
        if m is not None and m.get("worker"):
            yield CounterMetricFamily("lbdns_probe_worker_stalls",
                                      "Probe workers killed by the watchdog after reporting nothing",
                                      value=m["worker_stalls"])
            yield GaugeMetricFamily("lbdns_probe_worker_silent_seconds",
                                    "Seconds since the probe worker last reported", value=m["worker_silent_s"])


class AdminServer:
    """aiohttp application bound to ``settings.admin`` (address, port). Takes the narrow
    interfaces it uses: ``state`` (read), ``reloads``, ``health`` (None: no health control) and
    ``telemetry``."""

    def __init__(self, state: StateReader, reloads: ReloadControl, health: HealthControl | None,
                 telemetry: Telemetry) -> None:
        self.state = state
        self.reloads = reloads
        self.health = health
        self.telemetry = telemetry
        # collectors rendered on the event loop at every scrape: register only cheap ones whose
        # size does not grow with the configuration (see metrics())
        self.registry = CollectorRegistry()
        self.collector = _Collector(state, telemetry)
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
        pid = self.telemetry.probe_worker_pid()
        return pid if pid is not None else "no-worker"  # an unreadable /proc path ⇒ no metrics

    def web_app(self) -> web.Application:
        """The aiohttp application with every route (and, once started, the guard's middlewares)."""
        s = self.state.settings.admin
        wa = web.Application(client_max_size=s.max_body_bytes,
                             middlewares=self.guard.middlewares if self.guard is not None else ())
        wa.router.add_get("/metrics", self.metrics)
        wa.router.add_get("/status", self.status)
        wa.router.add_get("/healthz", self.healthz)
        wa.router.add_post("/health", self.set_health)
        wa.router.add_post("/control", self.set_control)
        wa.router.add_post("/report", self.report)
        wa.router.add_post("/reload", self.reload)
        return wa

    async def start(self) -> None:
        """Load the token and bind the listener (``port`` 0 picks one; the bound port is in
        :attr:`port`). Raises OSError when the address cannot be bound."""
        s = self.state.settings.admin
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
        await self.telemetry.refresh_workers()  # with workers: their summed counters, fresh
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
        """The ``/status`` JSON document: generation, health version, load balancers, pools
        (with their origins and operator states; a drain carries when its last answer expires
        from caches) and the recent operator changes."""
        from lbdns.health.pool_health import lb_status

        cur = self.state.served()
        assert cur is not None
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
        _add_drain_progress(snap, pools, time.time())
        doc: dict[str, Any] = {
            "generation": snap.generation, "health_version": view.version, "load_balancers": lbs,
            "pools": list(pools.values()),
            "operator_log": [a.to_json() for a in self.health.audit] if self.health is not None else []}
        cluster = self.telemetry.cluster_status()
        if cluster is not None:
            doc["cluster"] = cluster
        workers = self.telemetry.workers_status()
        if workers is not None:
            doc["workers"] = workers
        return doc

    async def status(self, request: web.Request) -> web.Response:
        """``GET /status``: JSON of load balancers, pools and origins."""
        await self.telemetry.refresh_workers()  # with workers: each worker's figures, fresh
        return web.Response(text=json.dumps(self.status_document(), indent=2), content_type="application/json")

    def _health_or_503(self) -> HealthControl:
        if self.health is None:
            raise web.HTTPServiceUnavailable(text=json.dumps({"error": "health control is not running"}),
                                             content_type="application/json")
        return self.health

    async def _apply_control(self, pool: str, origin: str | None, state: Control, who: str,
                             why: str) -> web.Response:
        health = self._health_or_503()
        try:
            old, entry = await health.set_control(pool, origin, state, who=who, why=why)
        except UnknownTarget as exc:
            return web.json_response({"error": str(exc), f"valid_{exc.what}s": exc.valid}, status=404)
        except OSError as exc:
            log.error("operator state not saved: %s", exc)
            return json_error(500, f"the state applies but could not be saved: {exc.strerror or exc}")
        return web.json_response({"ok": True, "pool": pool, "origin": origin, "previous": str(old),
                                  **entry.to_json()})

    async def set_control(self, request: web.Request) -> web.Response:
        """``POST /control`` with ``{"pool": …, "origin": … (optional: the whole pool), "state":
        "auto|force_up|force_down|drain", "who": …, "why": …}``: a durable operator state
        (:mod:`lbdns.health.control`). 200 with the entry and the previous state; 400 for a bad
        body; 404 ``{"error", "valid_pools" | "valid_origins"}`` for an unknown name."""
        body = await read_json(request, self.state.settings.admin.idle_timeout)
        try:
            pool = str(body["pool"])
            origin = None if body.get("origin") is None else str(body["origin"])
            state = Control(str(body["state"]))
            who, why = str(body.get("who", "")), str(body.get("why", ""))
        except (KeyError, ValueError, TypeError, AttributeError):
            return json_error(400, "expected {pool, origin (optional), state: auto|force_up|force_down|drain, "
                                   "who, why}")
        return await self._apply_control(pool, origin, state, who or _peer(request), why)

    async def set_health(self, request: web.Request) -> web.Response:
        """``POST /health`` with ``{"pool": …, "origin": …, "state": "healthy|unhealthy|unknown"}``:
        the older form of ``POST /control`` — healthy is ``force_up``, unhealthy ``force_down``,
        unknown ``auto`` — and as durable."""
        body = await read_json(request, self.state.settings.admin.idle_timeout)
        try:
            pool, origin = str(body["pool"]), str(body["origin"])
            state = {"healthy": Control.FORCE_UP, "unhealthy": Control.FORCE_DOWN,
                     "unknown": Control.AUTO}[str(body["state"])]
        except (KeyError, ValueError, TypeError, IndexError):
            return json_error(400, "expected {pool, origin, state: healthy|unhealthy|unknown}")
        return await self._apply_control(pool, origin, state, _peer(request), "POST /health")

    async def report(self, request: web.Request) -> web.Response:
        """``POST /report`` with ``{"pool": …, "origin": …, "healthy": true|false, "rtt_ms": …
        (optional), "reason": … (optional), "expires_in": seconds (optional)}``: pushed health,
        one result of the pool's ``external`` monitor (see
        :meth:`lbdns.health_owner.HealthRecorder.push`). 200 ``{"ok", "expires_in"}``; 400 bad
        body; 404 unknown name (with the valid ones); 409 the pool has no external monitor."""
        body = await read_json(request, self.state.settings.admin.idle_timeout)
        try:
            pool, origin = str(body["pool"]), str(body["origin"])
            healthy = body["healthy"]
            if not isinstance(healthy, bool):
                raise TypeError("healthy")
            rtt = body.get("rtt_ms")
            rtt_ms = None if rtt is None else float(rtt)
            life = body.get("expires_in")
            expires_in = None if life is None else float(life)
            reason = str(body.get("reason", ""))
        except (KeyError, ValueError, TypeError, AttributeError):
            return json_error(400, "expected {pool, origin, healthy: true|false, rtt_ms, reason, expires_in}")
        health = self._health_or_503()
        try:
            _target, life_s = health.push(pool, origin, healthy=healthy, rtt_ms=rtt_ms, reason=reason,
                                          expires_in=expires_in)
        except UnknownTarget as exc:
            return web.json_response({"error": str(exc), f"valid_{exc.what}s": exc.valid}, status=404)
        except NotPushable as exc:
            return json_error(409, str(exc))
        except ValueError as exc:
            return json_error(400, str(exc))
        return web.json_response({"ok": True, "expires_in": life_s})

    async def reload(self, request: web.Request) -> web.Response:
        """``POST /reload``: the same as SIGHUP, answered when a reload that began after this
        request ends (coalesced with any other request): 200 ``{"ok": true, "generation": N}``,
        or 409 ``{"ok": false, "errors": [...]}`` when the files are rejected or the build fails."""
        try:
            ok = await asyncio.shield(self.reloads.request_reload("POST /reload"))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return json_error(503, "the server is stopping; the reload was abandoned")
        cur = self.state.served()
        assert cur is not None
        body: dict[str, Any] = {"ok": ok, "generation": cur.snapshot.generation}
        if not ok:
            body["errors"] = list(self.reloads.last_errors)
        return web.json_response(body, status=200 if ok else 409)
