"""Wiring of the probe scheduler into a running server (edge): build probe targets from the
snapshot, warm start, publish health views into the server state, carry health over on
reload, optional notification webhook, and the probe figures ``/metrics`` exports.

Warm start (beyond Cloudflare, documented in docs/operations.md): before the listeners open,
one round of probes runs, bounded by the largest ``timeout × (retries + 1)`` of the monitors,
so a restart does not send every query to the fallback pool while health is UNKNOWN
(SPEC.md R-HLT-05). ``warm_start: false`` in lbdns.yaml (or ``--no-warm-start``) turns it off.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from lbdns.probes.notify import WebhookNotifier
from lbdns.probes.scheduler import ProbeScheduler, build_targets
from lbdns.snapshot import Snapshot

if TYPE_CHECKING:
    from lbdns.app import App

log = logging.getLogger("lbdns.health")

LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class HealthRuntime:
    """Owns the :class:`ProbeScheduler` of an :class:`~lbdns.app.App`."""

    def __init__(self, app: App, snapshot: Snapshot) -> None:
        self.app = app
        s = app.settings
        self.notifier = WebhookNotifier(s.notification_webhook) if s.notification_webhook else None
        cfg = snapshot.config
        self.scheduler = ProbeScheduler(
            build_targets(cfg.pools, cfg.monitors, cfg.monitor_groups),
            app.publish_health,
            concurrency=s.probe_concurrency,
            rtt_alpha=s.rtt_ewma_alpha,
            strict_public_endpoints=s.strict_public_endpoints,
            on_event=self.notifier,
            initial_version=app.ref.current.health.version if app.ref is not None else 0,
        )

    async def start(self, *, warm_start: bool) -> None:
        """Optionally run one warm-start round, then start periodic probing."""
        if warm_start and self.scheduler.targets:
            view = await self.scheduler.run_one_round()
            healthy = sum(1 for h in view.origins.values() if h.state.name == "HEALTHY")
            log.info("warm start: %d probe(s), %d healthy", len(self.scheduler.targets), healthy)
        await self.scheduler.start()

    async def reconfigure(self, snapshot: Snapshot) -> None:
        """Switch to a reloaded configuration's targets, keeping health by identity."""
        cfg = snapshot.config
        self.scheduler.replace_targets(build_targets(cfg.pools, cfg.monitors, cfg.monitor_groups))

    async def stop(self) -> None:
        """Stop probing and close the webhook session."""
        await self.scheduler.stop()
        if self.notifier is not None:
            await self.notifier.aclose()

    def metrics(self) -> dict[str, Any]:
        """Probe counters and the schedule-lag distribution for ``/metrics``: ``probes_run``,
        ``probes_failed``, ``events`` (health transitions); ``lag_buckets`` cumulative (upper
        bound s, count) pairs, ``lag_sum``, ``lag_p50``, ``lag_p99`` in seconds."""
        sch = self.scheduler
        ordered = sorted(sch.schedule_lag)
        buckets = [(str(b), bisect_right(ordered, b)) for b in LAG_BUCKETS]
        buckets.append(("+Inf", len(ordered)))
        p99 = ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0
        p50 = ordered[int(0.5 * (len(ordered) - 1))] if ordered else 0.0
        return {
            "probes_run": sch.probes_run, "probes_failed": sch.probes_failed, "events": sch.events,
            "lag_buckets": buckets, "lag_sum": sum(ordered), "lag_p50": p50, "lag_p99": p99,
            "notifications_sent": self.notifier.sent if self.notifier else 0,
        }
