"""The server's health owner (docs/architecture.md › One probe result): the one writer of the
:class:`HealthBook` — probe results, pushed (external) reports and operator states all go
through it — and the publisher of the immutable :class:`HealthView` objects steering reads
(Cloudflare docs: Load Balancing › How endpoints and pools become unhealthy; Global traffic
steering › Dynamic; Analytics › Logs).

A :class:`HealthRecorder` is the receiving end of a probe scheduler (a
:class:`~lbdns.probes.sink.ProbeSink`) — in this process or in the probe worker process. It
knows the current targets by key ``(pool id, origin name, monitor id)``, feeds each result into
the book (the pure consecutive up/down trackers), writes one log line per health transition
(logger ``lbdns.health``: readable text, the event JSON attached as ``record.event``), calls the
notification hook once per origin event, and publishes views through ``publish(view)``:
coalesced to at most one per ``coalesce_ms``, but at once when an origin becomes UNHEALTHY or an
operator state changes.

Pushed reports (:meth:`HealthRecorder.push`) are results of a pool's ``external`` monitor: they
count with that monitor's thresholds, vote in its monitor group, feed its RTT into the pool's
EWMA, and expire into "no data" (the member's result is dropped). Operator states
(:meth:`HealthRecorder.set_control`) are kept in the book and saved through a
:class:`ControlStore` (a JSON file written atomically by :class:`FileControlStore`).

It also keeps the probe figures ``/metrics`` exports: probes run and failed, transitions and
recent schedule-lag samples (seconds a probe started behind its due time).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lbdns.config.model import Pool
from lbdns.config.monitor_types import MONITOR_KINDS
from lbdns.health.book import HealthBook, MemberKey, ProbeOutcome
from lbdns.health.control import Control, ControlEntry, ControlKey, NotPushable, PushedReport, UnknownTarget
from lbdns.health.pool_health import pool_healthy
from lbdns.health.tracker import Transition
from lbdns.health.view import HealthView, OriginState
from lbdns.probes.notify import HealthEvent, NotificationHook, build_event, event_line
from lbdns.probes.result import ProbeResult
from lbdns.probes.sink import JobKey, ProbeSink
from lbdns.probes.targets import ProbeTarget

health_log = logging.getLogger("lbdns.health")
log = logging.getLogger("lbdns.probes")

MAX_REPORT_LIFETIME = 7 * 86400.0
"""The longest ``expires_in`` a pushed report may ask for (seconds)."""
STATE_FILE = "operator-state.json"


class ControlStore(Protocol):
    """Where operator states live between restarts (a file here; a shared store can implement
    the same three calls). ``load`` returns every entry; ``save`` replaces them all."""

    def load(self) -> dict[ControlKey, ControlEntry]:
        """Every stored entry (empty when nothing is stored). Raises OSError/ValueError."""
        ...

    def save(self, entries: Mapping[ControlKey, ControlEntry]) -> None:
        """Store exactly ``entries``, durably, before returning. Raises OSError."""
        ...


def default_state_path() -> Path:
    """Where the operator-state file is by default: systemd's state directory
    (``$STATE_DIRECTORY``), else the working directory."""
    base = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(base or ".") / STATE_FILE


class FileControlStore:
    """A :class:`ControlStore` in one JSON file, replaced atomically (written to a temporary
    file in the same directory, fsync'd, renamed over the old one, the directory fsync'd), so a
    crash leaves either the old or the new file. Format::

        {"version": 1, "entries": [{"pool": "p", "origin": "o" | null, "state": "drain",
                                    "who": "...", "why": "...", "at": 1700000000.0}, ...]}
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[ControlKey, ControlEntry]:
        """The entries of the file (none when it does not exist). Raises OSError or ValueError
        (not JSON, or an entry without a valid pool or state)."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        doc = json.loads(raw)
        out: dict[ControlKey, ControlEntry] = {}
        try:
            for item in doc["entries"]:
                origin = item.get("origin")
                out[(str(item["pool"]), None if origin is None else str(origin))] = ControlEntry.from_json(item)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.path}: malformed operator state ({exc})") from None
        return out

    def save(self, entries: Mapping[ControlKey, ControlEntry]) -> None:
        """Replace the file with ``entries`` (atomically and durably). Raises OSError."""
        doc = {"version": 1, "entries": [{"pool": p, "origin": o, **e.to_json()}
                                         for (p, o), e in sorted(entries.items(), key=lambda kv: (kv[0][0],
                                                                                                   kv[0][1] or ""))]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One operator change, for ``/status``: the key, the old and new entries."""

    pool: str
    origin: str | None
    old: Control
    new: ControlEntry

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"pool": self.pool, "origin": self.origin, "from": str(self.old), **self.new.to_json()}


class HealthRecorder:
    """Turns probe results into published health views (a :class:`ProbeSink`).

    Takes ``publish(view)``, called with every new :class:`HealthView` (versions strictly
    increase, starting after ``initial_version``). Options: ``book`` (default: a new
    :class:`HealthBook` with ``rtt_alpha``); ``coalesce_ms`` — min gap between publishes
    (UNHEALTHY transitions publish at once); ``clock`` — monotonic seconds (tracker time, RTT
    freshness); ``on_event`` — notification hook called once per origin health event;
    ``rtt_max_age`` — RTT freshness in seconds (None ⇒ 3 × the monitor interval,
    docs/decisions.md › Health and probes);
    ``lag_samples`` — how many recent schedule-lag samples to keep. Publishing is scheduled on
    the running event loop; without one (plain unit use) it happens at once.
    """

    def __init__(
        self,
        publish: Callable[[HealthView], None],
        *,
        book: HealthBook | None = None,
        rtt_alpha: float = 0.3,
        coalesce_ms: float = 200.0,
        clock: Callable[[], float] = time.monotonic,
        on_event: NotificationHook | None = None,
        rtt_max_age: float | None = None,
        initial_version: int = 0,
        lag_samples: int = 100_000,
        store: ControlStore | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._publish_cb = publish
        self.book = book if book is not None else HealthBook(rtt_alpha=rtt_alpha)
        self.coalesce = max(0.0, coalesce_ms) / 1000.0
        self.clock = clock
        self.on_event = on_event
        self.rtt_max_age = rtt_max_age
        self._version = initial_version
        self._view = self.book.freeze(initial_version)
        self.schedule_lag: deque[float] = deque(maxlen=lag_samples)
        self.probes_run = 0
        self.probes_failed = 0
        self.events = 0
        self._targets: dict[MemberKey, ProbeTarget] = {}
        self._jobs: dict[JobKey, ProbeTarget] = {}
        self._pool_ok: dict[str, bool] = {}
        self._publish_handle: asyncio.TimerHandle | None = None
        self._last_publish = -float("inf")
        self.store = store
        self.wall_clock = wall_clock
        self.pools: dict[str, Pool] = {}
        self._external: dict[tuple[str, str], ProbeTarget] = {}
        self._expiry: dict[MemberKey, asyncio.TimerHandle] = {}
        self.audit: deque[AuditRecord] = deque(maxlen=100)
        self.control_changes: dict[str, int] = {str(c): 0 for c in Control}
        self.reports = 0
        self.reports_expired = 0
        self._save_lock: asyncio.Lock | None = None

    # -- reading -------------------------------------------------------------------------------

    @property
    def view(self) -> HealthView:
        """The newest published (or initial) health view."""
        return self._view

    @property
    def targets(self) -> list[ProbeTarget]:
        """The current targets, in configuration order."""
        return list(self._targets.values())

    # -- targets ---------------------------------------------------------------------------------

    def set_targets(self, targets: Iterable[ProbeTarget], *, publish: bool = True,
                    pools: Mapping[str, Pool] | None = None) -> None:
        """Switch to a (re)loaded configuration's targets (docs/operations.md › Reloading).

        ``pools`` are every pool of the configuration by id (default: those of the targets).
        Health of keys that still exist is carried over, everything else starts UNKNOWN;
        operator states are kept; results for keys no longer present are counted but ignored.
        With ``publish`` (default) a new view is published at once.
        """
        new = list(targets)
        self.book = HealthBook.carry_over(self.book, (t.key for t in new))
        self._targets = {t.key: t for t in new}
        self._jobs = {}
        for t in new:
            self._jobs.setdefault(t.job_key, t)
        self._external = {(t.pool.id, t.origin.name): t for t in new if not MONITOR_KINDS[t.monitor.type].probed}
        self.pools = dict(pools) if pools is not None else {t.pool.id: t.pool for t in new}
        self._pool_ok = {pid: pool_healthy(p, self.book) for pid, p in self.pools.items()}
        if publish:
            self.publish_now()

    # -- ProbeSink -------------------------------------------------------------------------------

    def probe_done(self, key: MemberKey, result: ProbeResult, lag: float | None) -> None:
        """Record one probe result (see :class:`ProbeSink`)."""
        self.count_probe(result, lag)
        self.record_result(key, result)

    def count_probe(self, result: ProbeResult, lag: float | None) -> None:
        """Count one probe run here (``/metrics``) without recording it into health."""
        self.probes_run += 1
        if not result.passed:
            self.probes_failed += 1
        if lag is not None:
            self.schedule_lag.append(lag)

    def record_result(self, key: MemberKey, result: ProbeOutcome) -> None:
        """Step the state machine of target ``key`` with one (possibly aggregated) result,
        without counting it as a probe run here (the cluster's vote over vantages feeds its
        aggregate through this, docs/scaling.md). Unknown keys are ignored."""
        target = self._targets.get(key)
        if target is None:  # removed by a reload while the probe ran
            return
        tr = self.book.record(target.pool.id, target.origin.name, result, target.thresholds,
                              self.clock(), monitor_id=target.monitor.id, group=target.group)
        if tr is None:
            self._mark_dirty()
            return
        self._emit(target, tr, result.at)
        self._mark_dirty(urgent=tr.monitor_id is None and tr.new is OriginState.UNHEALTHY)

    # -- operator states ---------------------------------------------------------------------------

    def resolve(self, pool: str, origin: str | None) -> tuple[Pool, str | None]:
        """The configured pool named (or with the id) ``pool`` and the origin name ``origin``
        of it. Raises :class:`UnknownTarget` with the valid names."""
        found = self.pools.get(pool) or next((p for p in self.pools.values() if p.name == pool), None)
        if found is None:
            raise UnknownTarget("pool", pool, sorted(p.name for p in self.pools.values()))
        if origin is not None and all(o.name != origin for o in found.origins):
            raise UnknownTarget("origin", origin, [o.name for o in found.origins])
        return found, origin

    def adopt(self, view: HealthView) -> HealthView:
        """Take the states and RTTs of ``view`` into the book (a static health source such as a
        test or a tool) and publish; operator states still apply. Returns the published view."""
        self.book.adopt(view)
        self._pool_ok = {pid: pool_healthy(p, self.book) for pid, p in self.pools.items()}
        return self.publish_now()

    def load_controls(self) -> int:
        """Apply the stored operator states (start-up); returns how many. A store that cannot be
        read is logged and skipped (the server starts with every state ``auto``)."""
        if self.store is None:
            return 0
        try:
            entries = self.store.load()
        except (OSError, ValueError) as exc:
            health_log.error("operator state not loaded: %s; every origin starts in state auto", exc)
            return 0
        self.book.replace_controls(entries)
        for (pool, origin), e in sorted(entries.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            health_log.info("operator state restored: pool %s%s: %s (by %s at %s: %s)", pool,
                            f" origin {origin}" if origin else "", e.state, e.who or "-",
                            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.at)), e.why or "-")
        return len(entries)

    async def set_control(self, pool: str, origin: str | None, state: Control, *, who: str = "",
                          why: str = "") -> tuple[Control, ControlEntry]:
        """Set the operator state of ``pool`` (name or id) — or of its origin ``origin`` — and
        publish at once; the change is logged (logger ``lbdns.health``), counted, kept for
        ``/status`` and saved to the store before this returns. Returns (old state, new entry).
        Raises :class:`UnknownTarget`, or OSError when the store cannot be written (the state
        still applies to this process)."""
        found, origin = self.resolve(pool, origin)
        entry = ControlEntry(state, who[:200], why[:1000], self.wall_clock())
        old = self.book.set_control(found.id, origin, entry)
        old_state = old.state if old is not None else Control.AUTO
        self.control_changes[str(state)] += 1
        self.audit.append(AuditRecord(found.id, origin, old_state, entry))
        self._pool_ok[found.id] = pool_healthy(found, self.book)
        health_log.warning("operator: pool %s%s: %s -> %s by %s: %s", found.name,
                           f" origin {origin}" if origin else "", old_state, state, who or "-", why or "-",
                           extra={"event": {"operator": AuditRecord(found.id, origin, old_state, entry).to_json()}})
        self.publish_now()
        await self._save()
        return old_state, entry

    async def _save(self) -> None:
        if self.store is None:
            return
        if self._save_lock is None:
            self._save_lock = asyncio.Lock()
        async with self._save_lock:  # one writer at a time, the newest entries last
            await asyncio.to_thread(self.store.save, dict(self.book.controls))

    # -- pushed reports ------------------------------------------------------------------------------

    def push(self, pool: str, origin: str, *, healthy: bool, rtt_ms: float | None = None, reason: str = "",
             expires_in: float | None = None) -> tuple[ProbeTarget, float]:
        """Record a pushed (external) report of ``origin`` of ``pool`` as one result of the
        pool's ``external`` monitor: its ``consecutive_up``/``consecutive_down`` apply, it votes
        in the pool's monitor group, a healthy report's ``rtt_ms`` (milliseconds) feeds the
        pool's RTT EWMA (Cloudflare docs: Load Balancing › Global traffic steering › Dynamic),
        and after ``expires_in`` seconds (default 3 × the monitor's interval) the result is
        dropped ("no data": the origin's state becomes UNKNOWN, or what the rest of its monitor
        group says). Returns (the target, expires_in). Raises :class:`UnknownTarget`,
        :class:`NotPushable` (no ``external`` monitor) or ValueError (a bad value)."""
        found, _ = self.resolve(pool, origin)
        target = self._external.get((found.id, origin))
        if target is None:
            raise NotPushable(f"pool {found.name!r} has no monitor of type external (directly or in its "
                              "monitor group): reported health would not be read")
        if rtt_ms is not None and not (0.0 <= rtt_ms < 3_600_000.0):
            raise ValueError("rtt_ms must be between 0 and 3600000")
        life = float(expires_in) if expires_in is not None else 3.0 * max(target.monitor.interval, 1)
        if not (0.0 < life <= MAX_REPORT_LIFETIME):
            raise ValueError(f"expires_in must be > 0 and at most {MAX_REPORT_LIFETIME:g} seconds")
        self.reports += 1
        now = self.clock()
        reason = reason[:200] if not healthy else ""
        report = PushedReport(healthy, rtt_ms if healthy else None, reason or ("" if healthy else "Reported down"),
                              self.wall_clock())
        tr = self.book.record(found.id, origin, report, target.thresholds, now, monitor_id=target.monitor.id,
                              group=target.group)
        if healthy and rtt_ms is not None:
            self.book.add_round_rtt(found.id, (rtt_ms,), now, monitor_id=target.monitor.id, voting=target.votes,
                                    max_age=life)
        self._arm_expiry(target, life)
        if tr is None:
            self._mark_dirty()
        else:
            self._emit(target, tr, report.at)
            self._mark_dirty(urgent=tr.monitor_id is None and tr.new is OriginState.UNHEALTHY)
        return target, life

    def _arm_expiry(self, target: ProbeTarget, life: float) -> None:
        old = self._expiry.pop(target.key, None)
        if old is not None:
            old.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._expiry[target.key] = loop.call_later(life, self.expire, target.key)

    def expire(self, key: MemberKey) -> None:
        """Drop the pushed result of ``key`` (its report expired): "no data"."""
        self._expiry.pop(key, None)
        target = self._targets.get(key)
        if target is None:
            return
        self.reports_expired += 1
        tr = self.book.forget(key, target.group)
        if tr is not None:
            self._emit(target, tr, self.wall_clock())
        self.publish_now()

    def round_done(self, job: JobKey, rtts_ms: list[float]) -> None:
        """Feed a finished round's RTTs into the pool EWMA (Cloudflare docs: Load Balancing ›
        Global traffic steering › Dynamic)."""
        first = self._jobs.get(job)
        if first is None:
            return
        interval = float(max(first.monitor.interval, 1))
        max_age = self.rtt_max_age if self.rtt_max_age is not None else 3.0 * interval
        self.book.add_round_rtt(first.pool.id, rtts_ms, self.clock(), monitor_id=first.monitor.id,
                                voting=first.votes, max_age=max_age)
        self._mark_dirty()

    # -- publishing ------------------------------------------------------------------------------

    def publish_now(self) -> HealthView:
        """Freeze and publish a new view at once (cancelling a pending coalesced publish);
        returns it. A publish callback that raises is logged, never propagated."""
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
        return self._view

    def flush(self) -> None:
        """Publish now if a coalesced publish is pending; cancel report expiries (stopping)."""
        for handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        if self._publish_handle is not None:
            self.publish_now()

    def _mark_dirty(self, urgent: bool = False) -> None:
        if urgent:
            self.publish_now()
            return
        if self._publish_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.publish_now()
            return
        delay = max(0.0, self._last_publish + self.coalesce - self.clock())
        self._publish_handle = loop.call_later(delay, self.publish_now)

    # -- transitions -----------------------------------------------------------------------------

    def _emit(self, target: ProbeTarget, tr: Transition, at: float) -> None:
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
            monitor_id=tr.monitor_id, at=at,
        )
        self.events += 1
        # one readable line; the JSON event rides along for `log_format: json` (lbdns.logpipe)
        line = event_line(event, tr.old, tr.new)
        extra = {"event": event.body}
        if tr.monitor_id is None and tr.new is OriginState.UNHEALTHY:
            health_log.warning("%s", line, extra=extra)
        else:
            health_log.info("%s", line, extra=extra)
        if self.on_event is not None and origin_changed:
            self._notify(event)

    def _notify(self, event: HealthEvent) -> None:
        assert self.on_event is not None
        try:
            self.on_event(event)
        except Exception:  # a broken hook must not stop probing
            log.exception("notification hook failed")


__all__: Sequence[str] = ("ControlStore", "FileControlStore", "HealthRecorder", "JobKey", "ProbeSink")
