"""``/metrics`` stays bounded and cheap, black-box over HTTP: QTYPEs without a mnemonic are
one ``other`` series however many distinct ones clients send, and a scrape with 1,000 pools
costs the query loop only a few milliseconds (the pool families are rendered off the loop,
once per published state)."""

from __future__ import annotations

import asyncio
import gc
import random
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import dns.message
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from lbdns.admin import render_text
from lbdns.rules import RuleFields
from lbdns.server.counters import QTYPE_NAMES
from tests.fixtures.many_pools import write_many_pools
from tests.integration.harness import Fixture, Server
from tests.integration.static_zone import write_static_zones


def scrape(srv: Server) -> tuple[str, float]:
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.app.admin.port}/metrics", timeout=30) as r:
        body = r.read().decode()
    return body, time.monotonic() - t0


def series(body: str, name: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")]


@pytest.fixture
def static_srv(tmp_path: Path):
    srv = Server(write_static_zones(tmp_path), tmp_path, geoip=False, admin={"enabled": True, "port": 0})
    yield srv
    srv.stop()


def test_distinct_qtypes_do_not_grow_the_series(static_srv):
    srv = static_srv
    rng = random.Random(5)
    qtypes = list(range(3000)) + rng.sample(range(3000, 65536), 1000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for i, t in enumerate(qtypes):
            q = dns.message.make_query("www.example.com", t)
            s.sendto(q.to_wire(), ("127.0.0.1", srv.ports["IAD"]))
            if i % 50 == 49:  # keep the server's socket buffer from overflowing
                time.sleep(0.002)
    deadline = time.monotonic() + 10
    body, _ = scrape(srv)
    while sum(float(x.rpartition(" ")[2]) for x in series(body, "lbdns_queries_total")) < len(qtypes):
        assert time.monotonic() < deadline, "the server did not count every query"
        time.sleep(0.2)
        body, _ = scrape(srv)
    lines = series(body, "lbdns_queries_total")
    # bounded by (transports × (mnemonics + other) × rcodes), and far below it here
    assert len(lines) <= 2 * (len(QTYPE_NAMES) + 1) * 8
    assert len(lines) < 400
    other = [x for x in lines if 'qtype="other"' in x]
    assert other and sum(float(x.rpartition(" ")[2]) for x in other) >= 3000
    assert not any('qtype="TYPE' in x for x in lines)
    times = [scrape(srv)[1] for _ in range(5)]
    assert sorted(times)[2] < 0.1, times


def test_render_text_matches_prometheus_client(static_srv):
    srv = static_srv
    for name, t in (("www.example.com", "A"), ("nope.example.com", "A"), ("www.example.com", 4000)):
        srv.query(name, t)
    admin = srv.app.admin
    for collector in (admin.collector, _Pools(admin.collector), *admin.process_collectors):
        reg = CollectorRegistry()
        reg.register(collector)
        assert render_text(reg.collect()) == generate_latest(reg).decode()
    assert 'qtype="other"' in render_text(admin.registry.collect())
    body, _ = scrape(srv)
    for family in ("lbdns_queries_total counter", "lbdns_pool_status gauge", "lbdns_reloads_total counter",
                   "process_cpu_seconds_total counter"):  # every collector is in the scrape
        assert f"# TYPE {family}\n" in body, family


class _Pools:
    def __init__(self, collector: Any) -> None:
        self.collector = collector

    def collect(self) -> Any:
        return self.collector.collect_pools()


def test_a_scrape_with_1000_pools_costs_the_loop_a_few_ms(tmp_path):
    """The largest piece of work the query loop does in one go while /metrics is scraped:
    measured as the loop thread's CPU time between two 1-ms ticks (other processes on the
    machine and the garbage collector, paused here, do not count)."""
    srv = Server(write_many_pools(tmp_path, 1000), tmp_path, geoip=False, health="none",
                 admin={"enabled": True, "port": 0})
    try:
        chunks: list[float] = []
        done = threading.Event()

        async def watch() -> None:
            last = time.thread_time()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.thread_time()
                chunks.append(now - last)
                last = now

        gc.collect()
        gc.disable()
        try:
            fut = asyncio.run_coroutine_threadsafe(watch(), srv.loop)
            time.sleep(0.2)
            first, first_time = scrape(srv)
            times = [scrape(srv)[1] for _ in range(10)]
            srv.set_health()  # a new health view: rendered again, still off the loop
            again, _ = scrape(srv)
            done.set()
            fut.result(5)
        finally:
            gc.enable()
        assert len(series(first, "lbdns_origin_healthy")) == 3000
        assert len(series(first, "lbdns_pool_status")) == 1000
        assert again.count("lbdns_pool_status{") == 1000
        chunks.sort()
        print(f"\n1,000 pools: first scrape {first_time * 1000:.0f} ms, then median {sorted(times)[5] * 1000:.1f} ms; "
              f"loop CPU between ticks: p99 {chunks[int(0.99 * (len(chunks) - 1))] * 1000:.2f} ms, "
              f"max {chunks[-1] * 1000:.2f} ms over {len(chunks)} ticks")
        assert chunks[-1] < 0.02
    finally:
        srv.stop()


def test_rule_runtime_errors_are_each_servers_own(tmp_path):
    # No query makes a condition fail (a failure is an internal error), so the condition the server
    # compiled is evaluated here on junk fields; /metrics then reports the failures of that
    # server only: the counter is the App's, not one shared by every server in the process.
    fx = Fixture()
    fx.lb["rules"] = [{"name": "long", "condition": "dns.qry.name.len > 3", "overrides": {"ttl": 5}}]
    servers = [Server(fx.write(tmp_path / name), tmp_path / name, geoip=False, admin={"enabled": True, "port": 0})
               for name in ("a", "b")]
    try:
        a, b = servers
        junk = RuleFields(None, None, None, None, None, None, None, None)  # type: ignore[arg-type]
        (first,) = a.app.ref.current.snapshot.plans.values()
        assert first.rules[0].condition.evaluate(junk) is False
        assert a.reload()  # conditions assembled from the snapshot builder count into the same counter
        (plan,) = a.app.ref.current.snapshot.plans.values()
        assert plan.rules[0].condition is not first.rules[0].condition
        assert plan.rules[0].condition.evaluate(junk) is False
        assert series(scrape(a)[0], "lbdns_rule_runtime_errors_total") == ["lbdns_rule_runtime_errors_total 2.0"]
        assert series(scrape(b)[0], "lbdns_rule_runtime_errors_total") == ["lbdns_rule_runtime_errors_total 0.0"]
    finally:
        for srv in servers:
            srv.stop()
