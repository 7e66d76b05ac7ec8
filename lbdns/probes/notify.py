"""Health events and the optional webhook notifier (Cloudflare docs: Load Balancing › Analytics ›
Logs; How endpoints and pools become unhealthy; Health monitor notifications).

:func:`build_event` produces the health-event JSON shape for one aggregated origin state change
(plus the pool change it may cause); the scheduler logs it as one line and hands it to a
notification hook. :class:`WebhookNotifier` is such a hook: it POSTs the JSON body
fire-and-forget (a task with a timeout), honouring the pool's ``notification_filter`` and
optional alert filters, and never blocks probing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from lbdns.config.model import NotificationFilter, Origin, Pool
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


class WebhookNotifier:
    """POSTs health events as JSON to ``url``, fire-and-forget (alert filters as in
    Cloudflare docs: Load Balancing › Health monitor notifications; docs/operations.md ›
    Notification webhook).

    Filters (None = all): ``pool_ids``; ``new_health`` ⊆ {"Healthy", "Unhealthy"};
    ``event_source`` ⊆ {"pool", "origin"}; plus each pool's ``notification_filter``.
    Each POST runs in its own task bounded by ``timeout`` seconds; at most ``max_pending``
    are in flight (more are dropped and counted). ``session`` may be shared; otherwise one is
    created on first use. Call :meth:`aclose` on shutdown.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
        pool_ids: Collection[str] | None = None,
        new_health: Collection[str] | None = None,
        event_source: Collection[str] | None = None,
        max_pending: int = 100,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.pool_ids = None if pool_ids is None else frozenset(pool_ids)
        self.new_health = None if new_health is None else frozenset(h.lower() for h in new_health)
        self.event_source = None if event_source is None else frozenset(event_source)
        self.max_pending = max_pending
        self._session = session
        self._own_session = session is None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def wants(self, event: HealthEvent) -> bool:
        """True when some change in ``event`` passes every filter."""
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
        """Schedule the POST of ``event`` if wanted; returns at once. Needs a running loop."""
        if not self.wants(event):
            return
        if len(self._tasks) >= self.max_pending:
            self.dropped += 1
            log.warning("webhook %s: %d notifications pending, dropping one", redact_url(self.url), len(self._tasks))
            return
        task = asyncio.get_running_loop().create_task(self._post(event.body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, body: dict[str, Any]) -> None:
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession(trust_env=False)
            async with asyncio.timeout(self.timeout):
                async with self._session.post(self.url, json=body) as resp:
                    if resp.status >= 300:
                        raise aiohttp.ClientResponseError(
                            resp.request_info, resp.history, status=resp.status
                        )
            self.sent += 1
        except Exception as exc:  # notification failures never propagate
            self.failed += 1
            log.warning("webhook %s failed: %s", redact_url(self.url), _describe(exc, self.url))

    async def aclose(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` seconds for pending POSTs, cancel the rest, close an own session."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
