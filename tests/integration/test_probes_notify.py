"""Webhook notifications (SPEC.md R-LOG-01, R-NOT-01, R-NOT-03) against a local receiver."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from aiohttp import web

from lbdns.config.model import Pool
from lbdns.health.view import OriginHealth, OriginState
from lbdns.probes.notify import HealthEvent, WebhookNotifier, build_event
from tests.integration.test_probes_http import run, serve

POOL = Pool.model_validate({"name": "p", "monitor": "m", "origins": [{"name": "a", "address": "192.0.2.1"}]})


def _event(new: OriginState) -> HealthEvent:
    return build_event(POOL, POOL.origins[0], OriginState.HEALTHY,
                       OriginHealth(new, "TCP connection failed", time.time()),
                       pool_healthy=new is OriginState.HEALTHY, pool_changed=True, at=time.time())


def test_webhook_posts_event_json() -> None:
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(status=204)

    async def main() -> WebhookNotifier:
        app = web.Application()
        app.router.add_post("/hook", hook)
        async with serve(app) as port:
            n = WebhookNotifier(f"http://127.0.0.1:{port}/hook", timeout=2)
            ev = _event(OriginState.UNHEALTHY)
            t0, c0 = time.monotonic(), time.thread_time()
            n(ev)  # returns at once: little CPU, and no waiting for the hook
            assert time.thread_time() - c0 < 0.05
            assert time.monotonic() - t0 < 0.5
            await n.aclose()
        return n

    n = run(main())
    assert n.sent == 1 and n.failed == 0
    assert len(got) == 1
    assert got[0]["pool"]["id"] == "p" and got[0]["origins"][0]["healthy"] is False


def test_webhook_failures_and_timeouts_never_raise() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]

    async def main() -> tuple[WebhookNotifier, WebhookNotifier, float]:
        app = web.Application()
        app.router.add_post("/slow", slow)
        async with serve(app) as port:
            refused = WebhookNotifier(f"http://127.0.0.1:{closed}/", timeout=1, retry_for=0, sequence_file=None)
            timeout = WebhookNotifier(f"http://127.0.0.1:{port}/slow", timeout=0.3, retry_for=0, sequence_file=None)
            refused(_event(OriginState.UNHEALTHY))
            timeout(_event(OriginState.UNHEALTHY))
            t0 = time.monotonic()
            await refused.aclose()
            await timeout.aclose()
            return refused, timeout, time.monotonic() - t0

    refused, timeout, took = run(main())
    assert refused.failed == 1 and timeout.failed == 1 and refused.sent == timeout.sent == 0
    assert took < 2.0
