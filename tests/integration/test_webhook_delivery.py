"""Webhook delivery you can rely on (docs/operations.md › Notification webhook): sequence numbers,
in-order delivery with bounded retries across a receiver outage, HMAC-SHA256 signatures, and
pool-enablement events raised by a reload (Cloudflare docs: Load Balancing › Manage pools › Set
up alerts › Pool Enablement). The receiver is a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from lbdns.health.view import OriginState
from lbdns.probes.notify import SIGNATURE_HEADER, WebhookNotifier
from tests.integration.harness import SOA, Fixture, Server
from tests.integration.test_health_e2e import Origin
from tests.integration.test_probes_http import run
from tests.integration.test_probes_notify import _event

SECRET = b"correct horse battery staple"


class Receiver:
    """An aiohttp webhook receiver on 127.0.0.1 that verifies signatures the way
    docs/operations.md tells receivers to, and can be stopped and restarted on the same port."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret
        self.got: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, request.headers.get(SIGNATURE_HEADER, "")):
                self.bad_signatures += 1
                return web.Response(status=401)
        self.got.append(json.loads(body))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
        self._runner = None

    def url(self, secret_query: bool = False) -> str:
        return f"http://127.0.0.1:{self.port}/hook" + ("?token=s3cr3t-value" if secret_query else "")


async def _drain_then_stop(rx: Receiver, n: WebhookNotifier, limit: float) -> None:
    """Wait up to ``limit`` seconds for ``n``'s queue to empty, then close it and ``rx``."""
    t0 = time.monotonic()
    while n.pending and time.monotonic() - t0 < limit:
        await asyncio.sleep(0.01)
    await n.aclose()
    await rx.stop()


def _connection_refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_100_events_in_sequence_across_a_receiver_outage(tmp_path: Path) -> None:
    """100 events, the receiver stopped after ~30 of them and restarted on the same port ~1 s
    later while events keep coming: every seq 1–100 arrives, in order, each body intact and
    signed; a retry of an attempt whose response was lost would repeat a seq (counted)."""
    async def main() -> tuple[Receiver, WebhookNotifier]:
        rx = Receiver(SECRET)
        await rx.start()
        n = WebhookNotifier(rx.url(), secret=SECRET, sequence_file=tmp_path / "webhook.seq", timeout=1,
                            retry_for=20, backoff_initial=0.05, backoff_max=0.25)
        states = (OriginState.UNHEALTHY, OriginState.HEALTHY)
        for i in range(40):
            n(_event(states[i % 2]))
        while len(rx.got) < 30:
            await asyncio.sleep(0.005)
        await rx.stop()  # outage: refused connections, and the pooled keep-alive connection dies
        assert _connection_refused(rx.port)
        for i in range(40, 100):  # events keep coming during the outage
            n(_event(states[i % 2]))
            await asyncio.sleep(0.01)
        assert n.attempts_failed > 0 and n.pending > 0
        await rx.start()  # same port
        await _drain_then_stop(rx, n, 15)
        return rx, n

    rx, n = run(main())
    seqs = [b["seq"] for b in rx.got]
    first_seen: list[int] = []
    for s in seqs:
        if s not in first_seen:
            first_seen.append(s)
    assert first_seen == list(range(1, 101))  # none lost, none reordered
    duplicates = len(seqs) - len(first_seen)
    assert seqs == sorted(seqs)  # a duplicate can only be a resend of the event just before
    by_seq: dict[int, dict[str, Any]] = {}
    for b in rx.got:
        assert by_seq.setdefault(b["seq"], b) == b  # a duplicate is byte-for-byte the same event
    assert rx.bad_signatures == 0
    assert len({b["stream"] for b in rx.got}) == 1
    assert {b["alert_type"] for b in rx.got} == {"load_balancing_health_alert"}
    assert [b["origins"][0]["healthy"] for b in rx.got[:2]] == [False, True]
    assert n.sent == 100 and n.failed == 0 and n.dropped == 0 and n.pending == 0
    assert n.attempts_failed >= 1
    print(f"delivered 100/100 in order; {duplicates} duplicate(s); {n.attempts_failed} failed attempt(s)")


def test_retries_are_bounded_then_the_next_event_goes(tmp_path: Path, caplog) -> None:
    """With the receiver down, an event is retried for ``retry_for`` seconds and given up
    (logged without the URL's secrets); events queued later are still delivered once the
    receiver is back, with their own seq (the gap shows the loss)."""
    async def main() -> tuple[Receiver, WebhookNotifier, float]:
        rx = Receiver()
        await rx.start()
        await rx.stop()
        url = f"http://user:hunter2@127.0.0.1:{rx.port}/hook?token=s3cr3t-value"
        n = WebhookNotifier(url, sequence_file=None, timeout=1, retry_for=0.6, backoff_initial=0.05,
                            backoff_max=0.1)
        t0 = time.monotonic()
        n(_event(OriginState.UNHEALTHY))  # seq 1: never delivered
        while n.failed == 0 and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.01)
        gave_up = time.monotonic() - t0
        await rx.start()
        n(_event(OriginState.HEALTHY))  # seq 2
        while n.pending and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.01)
        await n.aclose()
        await rx.stop()
        return rx, n, gave_up

    with caplog.at_level(logging.INFO, logger="lbdns"):
        rx, n, gave_up = run(main())
    assert 0.5 <= gave_up < 2.0
    assert n.failed == 1 and n.sent == 1 and n.attempts_failed >= 3
    assert [b["seq"] for b in rx.got] == [2]
    # lbdns's own records only: the test receiver's access log (aiohttp.access) shows the URL it
    # was called with, and reaches caplog when an earlier test in this process lowered the
    # root logger's level
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("lbdns"))
    assert "giving up on seq 1" in text and "127.0.0.1" in text
    assert "s3cr3t" not in text and "hunter2" not in text


def test_a_full_queue_drops_the_oldest_waiting_event_leaving_a_gap(caplog) -> None:
    """``max_queue`` bounds memory while the receiver is down: the oldest waiting event (not the
    one being sent) is dropped, counted and logged; the receiver sees the gap in ``seq``."""
    async def main() -> tuple[Receiver, WebhookNotifier]:
        rx = Receiver()
        await rx.start()
        await rx.stop()
        n = WebhookNotifier(rx.url(), timeout=1, retry_for=10, backoff_initial=0.05, backoff_max=0.1, max_queue=3)
        for _ in range(6):
            n(_event(OriginState.UNHEALTHY))
        await asyncio.sleep(0.2)
        await rx.start()
        await _drain_then_stop(rx, n, 5)
        return rx, n

    with caplog.at_level(logging.WARNING, logger="lbdns"):
        rx, n = run(main())
    assert [b["seq"] for b in rx.got] == [1, 5, 6]
    assert n.dropped == 3 and n.sent == 3 and n.failed == 0
    assert "dropping the oldest (seq 2)" in caplog.text


def test_sequence_survives_a_restart(tmp_path: Path) -> None:
    """A second notifier on the same sequence file (a restarted server) continues the stream."""
    async def main() -> Receiver:
        rx = Receiver()
        await rx.start()
        for _run in range(2):
            n = WebhookNotifier(rx.url(), sequence_file=tmp_path / "webhook.seq", retry_for=5)
            for _ in range(3):
                n(_event(OriginState.UNHEALTHY))
            await n.aclose()
        await rx.stop()
        return rx

    rx = run(main())
    assert [b["seq"] for b in rx.got] == [1, 2, 3, 4, 5, 6]
    assert len({b["stream"] for b in rx.got}) == 1


class ThreadedReceiver:
    """A :class:`Receiver` running in its own event loop thread (for tests driving a
    :class:`Server`, whose loop is another thread)."""

    def __init__(self, secret: bytes | None) -> None:
        self.rx = Receiver(secret)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.rx.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        if self.rx._runner is not None:
            self.call(self.rx.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def receiver() -> Iterator[ThreadedReceiver]:
    r = ThreadedReceiver(SECRET)
    yield r
    r.close()


def _wait(pred: Any, limit: float) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < limit, "condition not met in time"
        time.sleep(0.02)


def test_server_health_events_in_sequence_across_a_receiver_outage(tmp_path: Path, receiver) -> None:
    """End to end: a real server probing 50 real HTTP origins (5 pools, 1 s interval) sends
    their health changes — up at warm start, all down, all up again — while the receiver is
    stopped between the down and the up wave and restarted on the same port 1.5 s later: every
    event arrives once per seq, contiguous from 1, in order, signed."""
    rx = receiver.rx
    origins = [Origin(f"127.0.1.{i + 1}") for i in range(50)]
    try:
        zones = tmp_path / "zones"
        zones.mkdir()
        monitor = {"id": "m", "type": "http", "path": "/health", "expected_codes": "2xx", "interval": 1,
                   "timeout": 1, "retries": 0, "consecutive_down": 1, "consecutive_up": 1}
        pools = [{"name": f"p{k}", "monitor": "m",
                  "origins": [{"name": f"o{i}", "address": o.address, "port": o.port}
                              for i, o in enumerate(origins[k * 10:(k + 1) * 10])]} for k in range(5)]
        (zones / "_account.yaml").write_text(yaml.safe_dump({"monitors": [monitor], "pools": pools}))
        (zones / "example.com.yaml").write_text(yaml.safe_dump({
            "zone": "example.com", "soa": SOA, "ns": ["ns1.example.com."],
            "load_balancers": {"lb": {"default_pools": [p["name"] for p in pools], "fallback_pool": "p4"}}}))
        secret_file = tmp_path / "hook.secret"
        secret_file.write_bytes(SECRET)
        srv = Server(zones, tmp_path, geoip=False, health="none", probes_enabled=True, monitor_interval_min=1,
                     notification_webhook={"url": rx.url(), "secret_file": str(secret_file), "retry_for": 30,
                                           "backoff_initial": 0.1, "backoff_max": 0.5,
                                           "sequence_file": str(tmp_path / "webhook.seq")})
        try:
            _wait(lambda: len(rx.got) >= 50, 15)  # warm start: 50 origins unknown -> healthy
            for o in origins:
                o.status = 503
            _wait(lambda: len(rx.got) >= 100, 15)
            receiver.call(rx.stop())
            for o in origins:
                o.status = 200
            time.sleep(1.5)  # a probe round or more: the up wave queues up behind the outage
            receiver.call(rx.start())
            _wait(lambda: len({b["seq"] for b in rx.got}) >= 150, 20)
            time.sleep(0.3)
            assert srv.app.notifier.attempts_failed > 0  # the outage was felt
            assert srv.app.notifier.failed == srv.app.notifier.dropped == 0
        finally:
            srv.stop()
    finally:
        with ThreadPoolExecutor(len(origins)) as ex:  # each shutdown waits up to 0.5 s for its server
            list(ex.map(Origin.stop, origins))
    seqs = [b["seq"] for b in rx.got]
    unique = sorted(set(seqs))
    assert seqs == sorted(seqs)  # in order (a repeat can only follow its own first delivery)
    assert unique == list(range(1, len(unique) + 1)) and len(unique) >= 150  # none lost
    assert rx.bad_signatures == 0
    waves = [b["origins"][0]["healthy"] for b in sorted({b["seq"]: b for b in rx.got}.values(),
                                                         key=lambda b: b["seq"])]
    assert waves[:50] == [True] * 50 and waves[50:100] == [False] * 50 and waves[100:150] == [True] * 50
    print(f"{len(unique)} events, {len(seqs) - len(unique)} repeat(s)")


def test_reload_sends_pool_enablement_events(tmp_path: Path, receiver) -> None:
    """A reload that disables one pool and re-enables it later sends one
    ``load_balancing_pool_enablement_alert`` each, numbered after each other, to a server
    started with ``notification_webhook`` (object form, signed)."""
    rx = receiver.rx
    secret_file = tmp_path / "hook.secret"
    secret_file.write_bytes(SECRET + b"\n")
    fx = Fixture()
    srv = Server(fx.write(tmp_path), tmp_path, notification_webhook={
        "url": rx.url(), "secret_file": str(secret_file), "sequence_file": str(tmp_path / "webhook.seq"),
        "retry_for": 10, "backoff_initial": 0.05}, admin={"enabled": True, "port": 0})
    try:
        fx.pool("p-us-west")["enabled"] = False
        fx.write(tmp_path)
        assert srv.reload()
        fx.pool("p-us-west")["enabled"] = True
        fx.pool("p-eu")["description"] = "not an enablement change"
        fx.write(tmp_path)
        assert srv.reload()
        t0 = time.monotonic()
        while len(rx.got) < 2 and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.app.admin.port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        srv.stop()
    assert 'lbdns_webhook_events_total{outcome="sent"} 2.0' in metrics
    assert 'lbdns_webhook_events_total{outcome="failed"} 0.0' in metrics
    assert "lbdns_webhook_pending 0.0" in metrics
    assert rx.bad_signatures == 0
    assert [(b["seq"], b["alert_type"], b["pool"]["name"], b["pool"]["enabled"]) for b in rx.got] == [
        (1, "load_balancing_pool_enablement_alert", "p-us-west", False),
        (2, "load_balancing_pool_enablement_alert", "p-us-west", True),
    ]
    assert rx.got[0]["source"] == "reload" and rx.got[1]["generation"] == rx.got[0]["generation"] + 1
    assert json.loads((tmp_path / "webhook.seq").read_text())["next"] == 3  # clean stop: exact
