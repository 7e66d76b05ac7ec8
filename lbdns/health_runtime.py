"""Wiring of health probing into a running server (edge): build probe targets from the
snapshot, run the checks (in the probe worker process by default, see
:mod:`lbdns.probes.worker`; in the server's own event loop with ``probe_isolation: inline``),
record results into health views published to the server state, carry health over on reload,
the health events for the notification webhook (owned by the App), and the probe figures ``/metrics`` exports.

Warm start (beyond Cloudflare, documented in docs/operations.md): before the listeners open,
one round of probes runs, bounded by the largest ``timeout × (retries + 1)`` of the monitors,
so a restart does not send every query to the fallback pool while health is UNKNOWN
(SPEC.md R-HLT-05). ``warm_start: false`` in lbdns.yaml (or ``--no-warm-start``) turns it off.
"""

from __future__ import annotations

import logging
import socket
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lbdns.config.monitor_types import MONITOR_KINDS
from lbdns.config.settings import ServerSettings
from lbdns.health.view import HealthView
from lbdns.health_owner import HealthRecorder
from lbdns.probes.scheduler import ProbeScheduler
from lbdns.probes.sink import ProbeSink
from lbdns.probes.targets import ProbeTarget, build_targets
from lbdns.probes.worker import ProbeWorker, WorkerOptions
from lbdns.snapshot import Snapshot

if TYPE_CHECKING:
    from lbdns.cluster.node import ClusterNode
    from lbdns.geo.pops import Pop

log = logging.getLogger("lbdns.health")

LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _cluster_node(settings: ServerSettings, pop: Pop, recorder: HealthRecorder,
                  retarget: Callable[[list[ProbeTarget]], None]) -> ClusterNode:
    """The cluster side of this instance: vantage id ``cluster.instance_id`` (default
    ``<pop>-<host name>``) in the region of the server's PoP ``pop``."""
    from lbdns.cluster.node import ClusterNode
    from lbdns.cluster.store import connect

    s = settings
    assert s.cluster is not None
    vantage = s.cluster.instance_id or f"{pop.code}-{socket.gethostname()}"
    return ClusterNode(connect(s.cluster), s.cluster.key_prefix, vantage, pop.region, pop.code, recorder,
                       sync_interval=s.cluster.sync_interval, timeout=s.cluster.timeout,
                       rtt_by_region=s.rtt_scope == "region", prober=s.cluster.probe, retarget=retarget)


def all_targets(snapshot: Snapshot, local_address: Callable[[str], str | None] | None = None) -> list[ProbeTarget]:
    """Every monitor target of a snapshot's configuration, ``external`` ones included; a
    hostname origin in lbdns's own zones carries the address lbdns answers for it
    (``local_address``: hostname → address or None)."""
    cfg = snapshot.config
    targets = build_targets(cfg.pools, cfg.monitors, cfg.monitor_groups)
    if local_address is None:
        return targets
    return [t if (host := t.origin.hostname) is None or (ip := local_address(host)) is None
            else replace(t, local_ip=ip) for t in targets]


def probed(targets: list[ProbeTarget]) -> list[ProbeTarget]:
    """The targets that are probed (``external`` monitors are pushed to, never probed)."""
    return [t for t in targets if MONITOR_KINDS[t.monitor.type].probed]


def wire_targets(recorder: HealthRecorder, snapshot: Snapshot, *, publish: bool = True,
                 local_address: Callable[[str], str | None] | None = None) -> list[ProbeTarget]:
    """Hand a (re)loaded snapshot's pools and targets to the health owner; returns the targets
    to probe."""
    targets = all_targets(snapshot, local_address)
    recorder.set_targets(targets, publish=publish, pools=snapshot.config.pools)
    return probed(targets)


class HealthRuntime:
    """Owns the probing for a health owner (:class:`HealthRecorder`, created by the
    application): a :class:`ProbeWorker` (``probe_isolation: process``, the default) or a
    :class:`ProbeScheduler` in this event loop (``inline``) reporting to it — through the
    cluster node when ``cluster:`` is set (docs/scaling.md). Takes the server settings, the
    health owner (its targets already set by :func:`wire_targets`), the webhook notifier whose
    count /metrics shows (owned and closed by the application) and the server's PoP (the
    vantage's region in a cluster)."""

    def __init__(self, settings: ServerSettings, recorder: HealthRecorder, notifier: Any = None,
                 pop: Pop | None = None) -> None:
        s = settings
        self.settings = settings
        self.notifier = notifier
        self.recorder = recorder
        self.cluster: ClusterNode | None = None
        targets = probed(recorder.targets)
        sink: ProbeSink = recorder
        if s.cluster is not None:
            assert pop is not None
            self.cluster = _cluster_node(s, pop, recorder, self._retarget)
            sink = self.cluster
            targets = self.cluster.set_targets(targets)
        self._probe_targets = targets
        self.worker: ProbeWorker | None = None
        self.scheduler: ProbeScheduler | None = None
        if s.probe_isolation == "process":
            self.worker = ProbeWorker(sink, WorkerOptions(
                concurrency=s.probe_concurrency, strict_public_endpoints=s.strict_public_endpoints,
                cpus=tuple(s.probe_cpus) if s.probe_cpus else None, nice=s.probe_nice,
                log_level=logging.getLogger().getEffectiveLevel(),
                upstream_resolvers=tuple(s.upstream_resolvers), source_address=s.probe_source_address))
        else:
            self.scheduler = ProbeScheduler(targets, sink, concurrency=s.probe_concurrency,
                                            strict_public_endpoints=s.strict_public_endpoints,
                                            upstream_resolvers=s.upstream_resolvers,
                                            source_address=s.probe_source_address)

    def decorate(self, view: HealthView) -> HealthView:
        """``view`` with the cluster's per-region RTTs when ``rtt_scope: region`` (the
        application applies this to every view it publishes); ``view`` itself otherwise."""
        if self.cluster is not None and self.settings.rtt_scope == "region":
            return replace(view, region_rtt=MappingProxyType(dict(self.cluster.region_rtt)))
        return view

    def _retarget(self, targets: list[ProbeTarget]) -> None:
        """The cluster changed which targets this vantage probes (store lost or back)."""
        self._probe_targets = targets
        if self.worker is not None:
            self.worker.replace_targets(targets)
        elif self.scheduler is not None:
            self.scheduler.replace_targets(targets)

    @property
    def worker_pid(self) -> int | None:
        """Process id of the probe worker (None inline or while it is down)."""
        return self.worker.pid if self.worker is not None else None

    async def start(self, *, warm_start: bool) -> None:
        """Optionally run one warm-start round (publishing its result), then start periodic
        probing. Raises OSError when the probe worker cannot be spawned."""
        if self.cluster is not None:
            await self.cluster.start()
        targets = self._probe_targets
        if self.worker is not None:
            await self.worker.start(targets, warm_start=warm_start)
        else:
            assert self.scheduler is not None
            if warm_start and targets:
                await self.scheduler.run_one_round()
            await self.scheduler.start()
        if warm_start and targets:
            view = self.recorder.publish_now()
            healthy = sum(1 for h in view.origins.values() if h.state.name == "HEALTHY")
            log.info("warm start: %d target(s), %d healthy", len(targets), healthy)

    async def reconfigure(self, snapshot: Snapshot) -> None:
        """Switch to a reloaded configuration's targets (the health owner has them already,
        see :func:`wire_targets`)."""
        targets = probed(self.recorder.targets)
        if self.cluster is not None:
            targets = self.cluster.set_targets(targets)
        self._probe_targets = targets
        if self.worker is not None:
            self.worker.replace_targets(targets)
        elif self.scheduler is not None:
            self.scheduler.replace_targets(targets)

    async def stop(self) -> None:
        """Stop probing and publish what is pending."""
        if self.worker is not None:
            await self.worker.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        self.recorder.flush()

    def metrics(self) -> dict[str, Any]:
        """Probe counters and the schedule-lag distribution for ``/metrics``: ``probes_run``,
        ``probes_failed``, ``events`` (health transitions); ``lag_buckets`` cumulative (upper
        bound s, count) pairs, ``lag_sum``, ``lag_p50``, ``lag_p99`` in seconds;
        ``notifications_sent``; ``worker_restarts``; ``worker_stalls`` (workers killed by the
        watchdog); ``worker_silent_s`` (seconds since the worker last reported; 0 inline)."""
        rec = self.recorder
        ordered = sorted(rec.schedule_lag)
        buckets = [(str(b), bisect_right(ordered, b)) for b in LAG_BUCKETS]
        buckets.append(("+Inf", len(ordered)))
        p99 = ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0
        p50 = ordered[int(0.5 * (len(ordered) - 1))] if ordered else 0.0
        return {
            "probes_run": rec.probes_run, "probes_failed": rec.probes_failed, "events": rec.events,
            "lag_buckets": buckets, "lag_sum": sum(ordered), "lag_p50": p50, "lag_p99": p99,
            "notifications_sent": self.notifier.sent if self.notifier else 0,
            "worker_restarts": self.worker.restarts if self.worker is not None else 0,
            "worker_stalls": self.worker.stalls if self.worker is not None else 0,
            "worker_silent_s": self.worker.silent_for if self.worker is not None else 0.0,
        }
