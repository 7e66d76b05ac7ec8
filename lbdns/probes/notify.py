"""Health events and the optional webhook notifier (Cloudflare docs: Load Balancing › Analytics ›
Logs; How endpoints and pools become unhealthy; Health monitor notifications; Manage pools ›
Set up alerts).

:func:`build_event` produces the health-event JSON shape for one aggregated origin state change
(plus the pool change it may cause); the scheduler logs it as one line and hands it to a
notification hook. :class:`WebhookNotifier` is such a hook: it numbers every event it accepts
(``seq``, persisted across restarts in a small file), queues it and POSTs the queue in order
from one background task, retrying each event with exponential backoff for a bounded time,
optionally signed with HMAC-SHA256; it also sends pool-enablement events
(:func:`enablement_changes`, raised by a reload). Accepting an event never blocks probing or
answering. docs/operations.md › Notification webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from lbdns.config.model import NotificationFilter, Origin, Pool
from lbdns.config.settings import HEALTH_ALERT, POOL_ENABLEMENT_ALERT
from lbdns.health.book import MemberRecord
from lbdns.health.tracker import MemberSpec
from lbdns.health.view import OriginHealth, OriginState

log = logging.getLogger("lbdns.notify")

Source = Literal["origin", "pool"]


def redact_url(url: str) -> str:
    """``url`` without the parts that may hold a secret — user info, query and fragment
    (``https://user:pw@hooks.example/x?token=…`` → ``https://hooks.example/x?…``) — for logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
    except ValueError:
        return "<unparsable URL>"
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))


def _describe(exc: BaseException, url: str) -> str:
    """An exception as a log text that does not repeat ``url``'s secrets."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    text = f"{type(exc).__name__}: {exc}"
    for secret in {url, urlsplit(url).query, urlsplit(url).password or ""} - {""}:
        text = text.replace(secret, "…")
    return text


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """One health change of a (pool, origin) pair, with the pool change it caused.

    ``origin_changed`` False means only a monitor-group member changed (``monitor_id`` set);
    ``body`` is the health-event JSON object (logged as one line and POSTed by webhooks).
    """

    pool: Pool
    origin: Origin
    old_state: OriginState
    new_state: OriginState
    origin_changed: bool
    pool_healthy: bool
    pool_changed: bool
    body: dict[str, Any] = field(default_factory=dict)
    monitor_id: str | None = None

    @property
    def origin_healthy(self) -> bool:
        """True when the origin's new state is HEALTHY."""
        return self.new_state is OriginState.HEALTHY

    def changes(self) -> list[tuple[Source, bool]]:
        """The (source, new healthy?) pairs that changed in this event."""
        out: list[tuple[Source, bool]] = []
        if self.origin_changed:
            out.append(("origin", self.origin_healthy))
        if self.pool_changed:
            out.append(("pool", self.pool_healthy))
        return out


NotificationHook = Callable[[HealthEvent], None]
"""A hook called once per health event; must not block (schedule work instead)."""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def event_line(event: HealthEvent, old: OriginState, new: OriginState) -> str:
    """The one-line log text of a health change: ``pool/origin address old -> new``, then the
    failure reason (and response code) when the new state is not healthy, then the pool's new
    state when it changed, e.g. ``web/p1 192.0.2.10 healthy -> unhealthy: TCP connection failed;
    pool web now unhealthy``. For a monitor-group member change (``event.monitor_id`` set),
    ``old``/``new`` are the member's states and the reason is the member's."""
    origin = event.body["origins"][0]
    reason, code = origin.get("failure_reason"), origin.get("response_code")
    subject = f"{event.pool.name}/{event.origin.name} {event.origin.address}"
    if event.monitor_id is not None:
        subject += f" monitor {event.monitor_id}"
        member = next((m for m in origin.get("monitors", ()) if m["id"] == event.monitor_id), None)
        reason = member["failure_reason"] if member is not None else ""
        code = member["response_code"] if member is not None else None
    text = f"{subject} {old.name.lower()} -> {new.name.lower()}"
    if new is not OriginState.HEALTHY and reason:
        text += f": {reason}" + (f" (response code {code})" if code is not None else "")
    if event.pool_changed:
        text += f"; pool {event.pool.name} now {'healthy' if event.pool_healthy else 'unhealthy'}"
    return text


def build_event(
    pool: Pool,
    origin: Origin,
    old_state: OriginState,
    health: OriginHealth,
    *,
    pool_healthy: bool,
    pool_changed: bool,
    origin_changed: bool = True,
    group: tuple[MemberSpec, ...] | None = None,
    members: Mapping[str, MemberRecord] | None = None,
    monitor_id: str | None = None,
    at: float,
    event_id: str | None = None,
) -> HealthEvent:
    """Build the health event of one change (Cloudflare docs: Load Balancing › Analytics ›
    Logs).

    Takes the pool and origin models, the pair's previous state and new aggregated
    :class:`OriginHealth`, the pool's new health (≥ ``minimum_origins`` healthy) and whether
    it changed, the monitor-group members and their records (``monitors`` list, groups only),
    the wall-clock time ``at`` (UNIX seconds) and an optional id (default: random UUID).
    """
    entry: dict[str, Any] = {
        "name": origin.name,
        "ip": origin.address,
        "enabled": origin.enabled,
        "healthy": health.state is OriginState.HEALTHY,
        "failure_reason": health.failure_reason,
        "response_code": health.response_code,
        "changed": origin_changed,
    }
    if group is not None:
        recs = members or {}
        entry["monitors"] = [
            {
                "id": m.monitor_id,
                "healthy": (rec := recs.get(m.monitor_id)) is not None
                and rec.state is OriginState.HEALTHY,
                "failure_reason": rec.health.failure_reason if rec is not None else "",
                "response_code": rec.health.response_code if rec is not None else None,
                "must_be_healthy": m.must_be_healthy,
                "monitoring_only": m.monitoring_only,
            }
            for m in group
            if m.enabled
        ]
    body: dict[str, Any] = {
        "id": event_id or uuid.uuid4().hex,
        "timestamp": _iso(at),
        "pool": {
            "id": pool.id,
            "name": pool.name,
            "healthy": pool_healthy,
            "changed": pool_changed,
            "minimum_origins": pool.minimum_origins,
        },
        "origins": [entry],
    }
    return HealthEvent(
        pool, origin, old_state, health.state, origin_changed, pool_healthy, pool_changed,
        body, monitor_id,
    )


def filter_allows(flt: NotificationFilter | None, source: Source, healthy: bool) -> bool:
    """Whether a pool's ``notification_filter`` lets a change through (docs/operations.md ›
    Notification webhook).

    ``disable: true`` suppresses the source; ``healthy: null`` allows both directions,
    ``true`` only becoming healthy, ``false`` only becoming unhealthy. No filter ⇒ allowed.
    """
    entry = None if flt is None else (flt.origin if source == "origin" else flt.pool)
    if entry is None:
        return True
    if entry.disable:
        return False
    return entry.healthy is None or entry.healthy == healthy


SIGNATURE_HEADER = "X-Lbdns-Signature"
"""Request header carrying ``sha256=`` + hex HMAC-SHA256 of the exact body bytes, keyed with the
``secret_file`` content (docs/operations.md › Notification webhook › Verifying a signature)."""


def sign(secret: bytes, body: bytes) -> str:
    """The :data:`SIGNATURE_HEADER` value for ``body``: ``"sha256=" + hex(HMAC-SHA256(secret,
    body))`` (RFC 2104 with SHA-256)."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def enablement_changes(old: Mapping[str, Pool], new: Mapping[str, Pool]) -> list[Pool]:
    """The pools of ``new`` (by id) whose ``enabled`` differs from the same id in ``old``, in
    ``new``'s order — the changes a reload makes that Cloudflare's Pool Enablement alert reports
    (Cloudflare docs: Load Balancing › Manage pools › Set up alerts). Pools added or removed by
    the reload are not enablement changes."""
    return [p for pid, p in new.items() if pid in old and old[pid].enabled != p.enabled]


def enablement_body(pool: Pool, *, at: float, generation: int, event_id: str | None = None) -> dict[str, Any]:
    """The JSON object of one pool-enablement event: ``id``, ``timestamp`` (``at``, UNIX
    seconds), ``pool`` {``id``, ``name``, ``enabled`` (new value), ``changed`` true}, ``source``
    ``"reload"`` and the configuration ``generation`` that made the change."""
    return {
        "id": event_id or uuid.uuid4().hex,
        "timestamp": _iso(at),
        "pool": {"id": pool.id, "name": pool.name, "enabled": pool.enabled, "changed": True},
        "source": "reload",
        "generation": generation,
    }


def default_sequence_path() -> Path:
    """Where the sequence file is by default: systemd's state directory, else the working
    directory (like the admin token file)."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state, "webhook.seq") if state else Path("webhook.seq")


class SequenceStore:
    """Hands out the webhook sequence numbers 1, 2, 3, … of one ``stream`` (a random id fixed when
    the numbering starts), persisted in ``path`` (None: in memory only).

    To keep the event loop off the disk, numbers are reserved ``block`` at a time: the file
    records the first number not yet reserved, written (atomically: temporary file, rename)
    when a block is taken; :meth:`close` writes the exact next number. After a clean stop the
    next run continues without a gap; after a crash it skips the rest of the reserved block, so
    a gap is the sign that events may have been lost — numbers never repeat within a stream. A
    missing file starts a new stream at 1; an unreadable one does too, with a warning.
    """

    def __init__(self, path: Path | None, *, block: int = 100) -> None:
        self.path = path
        self.block = block
        self.stream = uuid.uuid4().hex[:16]
        self.next = 1
        if path is not None:
            try:
                data = json.loads(path.read_text())
                self.stream, self.next = str(data["stream"]), int(data["next"])
                if self.next < 1 or not self.stream:
                    raise ValueError("bad values")
            except FileNotFoundError:
                pass
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("webhook sequence file %s unreadable (%s): starting stream %s at 1", path, exc,
                            self.stream)
                self.stream, self.next = uuid.uuid4().hex[:16], 1
        self.limit = self.next
        self._write_failed = False

    def take(self) -> int:
        """The next number (reserving and persisting a new block when needed)."""
        n = self.next
        if n >= self.limit:
            self.limit = n + self.block
            self._write(self.limit)
        self.next = n + 1
        return n

    def close(self) -> None:
        """Persist the exact next number (clean stop)."""
        self._write(self.next)
        self.limit = self.next

    def _write(self, value: int) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"stream": self.stream, "next": value}) + "\n")
            os.replace(tmp, self.path)
            self._write_failed = False
        except OSError as exc:
            if not self._write_failed:
                log.warning("cannot write webhook sequence file %s: %s", self.path, exc.strerror or exc)
            self._write_failed = True


@dataclass(slots=True)
class _Pending:
    seq: int
    body: bytes
    deadline: float


class WebhookNotifier:
    """POSTs health and pool-enablement events as JSON to ``url``, in order, each retried until
    delivered or ``retry_for`` seconds after it was queued (alert filters as in Cloudflare docs:
    Load Balancing › Health monitor notifications; docs/operations.md › Notification webhook).

    Every accepted event gets the next ``seq`` of the :class:`SequenceStore` (``sequence_file``;
    None: not persisted) and its ``stream`` id, plus ``alert_type``; the body is sent as compact
    JSON, signed with ``secret`` (bytes, None: unsigned) in :data:`SIGNATURE_HEADER`. One
    background task sends the queue head; a failed attempt (connection error, ``timeout``
    seconds, or a status outside 2xx) is retried after ``backoff_initial`` seconds, doubling up
    to ``backoff_max`` (a ``Retry-After`` of 429/503 is honoured within the deadline). Delivery
    is at least once: an attempt whose response was lost is sent again with the same ``seq``
    and ``id``. At most ``max_queue`` events wait; beyond that the oldest is dropped (counted,
    logged; a gap in ``seq``).

    Filters (None = all): ``pool_ids``; ``new_health`` ⊆ {"Healthy", "Unhealthy"};
    ``event_source`` ⊆ {"pool", "origin"}; each pool's ``notification_filter``; ``alert_types``.
    ``session`` may be shared; otherwise one is created on first use. ``clock`` is monotonic
    seconds. Call :meth:`aclose` on shutdown.

    Counters: ``sent`` (delivered events), ``failed`` (events given up), ``attempts_failed``,
    ``dropped`` (queue overflow); :attr:`pending`.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retry_for: float = 300.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        secret: bytes | None = None,
        sequence_file: Path | None = None,
        session: aiohttp.ClientSession | None = None,
        pool_ids: Collection[str] | None = None,
        new_health: Collection[str] | None = None,
        event_source: Collection[str] | None = None,
        alert_types: Collection[str] = (HEALTH_ALERT, POOL_ENABLEMENT_ALERT),
        max_queue: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retry_for = retry_for
        self.backoff_initial = backoff_initial
        self.backoff_max = max(backoff_max, backoff_initial)
        self.secret = secret
        self.pool_ids = None if pool_ids is None else frozenset(pool_ids)
        self.new_health = None if new_health is None else frozenset(h.lower() for h in new_health)
        self.event_source = None if event_source is None else frozenset(event_source)
        self.alert_types = frozenset(alert_types)
        self.max_queue = max_queue
        self.clock = clock
        self.seq = SequenceStore(sequence_file)
        self._session = session
        self._own_session = session is None
        self._queue: deque[_Pending] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._given_up: list[int] = []  # seqs given up during the current outage
        self.sent = 0
        self.failed = 0
        self.attempts_failed = 0
        self.dropped = 0

    @classmethod
    def from_settings(cls, s: Any) -> WebhookNotifier:
        """A notifier for a :class:`~lbdns.config.settings.NotificationWebhook` (reads the
        secret file; raises ValueError when it cannot)."""
        from lbdns.config.settings import read_secret

        seq_path = default_sequence_path() if s.sequence_file is None else (
            Path(s.sequence_file) if s.sequence_file else None)
        return cls(s.url, timeout=s.timeout, retry_for=s.retry_for, backoff_initial=s.backoff_initial,
                   backoff_max=s.backoff_max, secret=read_secret(s.secret_file) if s.secret_file else None,
                   sequence_file=seq_path, alert_types=s.alert_types, max_queue=s.max_queue)

    @property
    def pending(self) -> int:
        """Events accepted and not yet delivered or given up."""
        return len(self._queue)

    def wants(self, event: HealthEvent) -> bool:
        """True when some change in ``event`` passes every filter."""
        if HEALTH_ALERT not in self.alert_types:
            return False
        if self.pool_ids is not None and event.pool.id not in self.pool_ids:
            return False
        for source, healthy in event.changes():
            if self.event_source is not None and source not in self.event_source:
                continue
            label = "healthy" if healthy else "unhealthy"
            if self.new_health is not None and label not in self.new_health:
                continue
            if filter_allows(event.pool.notification_filter, source, healthy):
                return True
        return False

    def __call__(self, event: HealthEvent) -> None:
        """Queue ``event`` if wanted; returns at once. Needs a running loop."""
        if self.wants(event):
            self.submit(HEALTH_ALERT, event.body)

    def pools_enabled_changed(self, pools: Iterable[Pool], *, generation: int, at: float | None = None) -> None:
        """Queue one pool-enablement event per pool (see :func:`enablement_changes`), honouring
        ``alert_types`` and ``pool_ids``; ``at`` wall-clock UNIX seconds (default now)."""
        if POOL_ENABLEMENT_ALERT not in self.alert_types:
            return
        when = time.time() if at is None else at
        for p in pools:
            if self.pool_ids is None or p.id in self.pool_ids:
                self.submit(POOL_ENABLEMENT_ALERT, enablement_body(p, at=when, generation=generation))

    def submit(self, alert_type: str, body: Mapping[str, Any]) -> int:
        """Number, serialise and queue one event; returns its ``seq``. The POSTed object is
        ``{"seq", "stream", "alert_type", **body}``. Needs a running loop."""
        seq = self.seq.take()
        data = json.dumps({"seq": seq, "stream": self.seq.stream, "alert_type": alert_type, **body},
                          separators=(",", ":")).encode()
        if len(self._queue) >= self.max_queue:
            # the oldest not being sent right now (the head is in flight while the worker runs)
            at = 1 if self._worker is not None and len(self._queue) > 1 else 0
            old = self._queue[at]
            del self._queue[at]
            self.dropped += 1
            log.warning("webhook %s: %d events waiting, dropping the oldest (seq %d)", redact_url(self.url),
                        len(self._queue) + 1, old.seq)
        self._queue.append(_Pending(seq, data, self.clock() + self.retry_for))
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="lbdns-webhook")
        return seq

    async def _run(self) -> None:
        try:
            while self._queue:
                item = self._queue[0]
                await self._deliver(item)
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
        finally:
            self._worker = None

    async def _deliver(self, item: _Pending) -> None:
        """Send ``item`` until delivered or its deadline passed (then counted as failed)."""
        delay = self.backoff_initial
        attempts = 0
        while True:
            if self._down_since is not None and attempts == 0 and self.clock() >= item.deadline:
                self._give_up(item, attempts, "the receiver is still failing")
                return
            attempts += 1
            retry_after, error = await self._attempt(item)
            if error is None:
                self.sent += 1
                if self._down_since is not None:
                    log.info("webhook %s delivering again (seq %d) after %.1f s of failures", redact_url(self.url),
                             item.seq, self.clock() - self._down_since)
                    self._report_given_up()
                    self._down_since = None
                return
            self.attempts_failed += 1
            if self._down_since is None:
                self._down_since = self.clock()
                log.warning("webhook %s failed: %s; retrying seq %d for up to %g s", redact_url(self.url), error,
                            item.seq, self.retry_for)
            remaining = item.deadline - self.clock()
            if remaining <= 0:
                self._give_up(item, attempts, error)
                return
            await asyncio.sleep(min(max(delay, retry_after), remaining))
            delay = min(delay * 2, self.backoff_max)

    def _give_up(self, item: _Pending, attempts: int, error: str) -> None:
        """Count ``item`` as failed; the first give-up of an outage is logged at once, the rest
        in one line when delivery resumes or the notifier stops."""
        self.failed += 1
        if not self._given_up:
            log.warning("webhook %s: giving up on seq %d after %d attempt(s) (%s); further give-ups are "
                        "reported when delivery resumes", redact_url(self.url), item.seq, attempts, error)
        self._given_up.append(item.seq)

    def _report_given_up(self) -> None:
        more = self._given_up[1:]
        if more:
            log.warning("webhook %s: gave up on %d more event(s) during the outage (seq %d–%d)",
                        redact_url(self.url), len(more), more[0], more[-1])
        self._given_up.clear()

    async def _attempt(self, item: _Pending) -> tuple[float, str | None]:
        """One POST of ``item``: ``(Retry-After seconds or 0, None on success else the error)``."""
        headers = {"Content-Type": "application/json"}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, item.body)
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession(trust_env=False)
            async with asyncio.timeout(self.timeout):
                async with self._session.post(self.url, data=item.body, headers=headers) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        return 0.0, None
                    retry_after = 0.0
                    if resp.status in (429, 503):
                        with contextlib.suppress(ValueError):
                            retry_after = max(0.0, float(resp.headers.get("Retry-After", "0")))
                    return retry_after, f"HTTP {resp.status}"
        except TimeoutError:
            return 0.0, f"no response within {self.timeout:g} s"
        except Exception as exc:  # notification failures never propagate
            return 0.0, _describe(exc, self.url)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` seconds for the queue to drain, then stop (events still queued
        are lost, leaving a gap in ``seq``); persist the sequence; close an own session."""
        worker = self._worker
        if worker is not None:
            _done, pending = await asyncio.wait({worker}, timeout=timeout)
            if pending:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
                if self._queue:
                    log.warning("webhook %s: stopping with %d undelivered event(s) (seq %d–%d)",
                                redact_url(self.url), len(self._queue), self._queue[0].seq, self._queue[-1].seq)
                    self.failed += len(self._queue)
                    self._queue.clear()
        self._report_given_up()
        self.seq.close()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
