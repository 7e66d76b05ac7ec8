"""Health end to end (issue #4 "Must show"): real HTTP origins on loopback, the real probe
scheduler inside a real server, DNS answers over UDP, ``/status`` and ``/metrics`` parsed.

Origins are ``http.server`` listeners on 127.0.0.1x addresses the test starts and stops;
monitors use 1 s intervals (``monitor_interval_min: 1``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import SOA, Server, addresses

INTERVAL, TIMEOUT, DOWN, UP = 1, 1, 2, 2


class Origin:
    """A controllable HTTP origin: ``status`` and ``body`` of /health; ``stop``/``start``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.status = 200
        self.body = b"Status: ALIVE"
        self.port = 0
        self.httpd: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        origin = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(origin.status)
                self.send_header("Content-Length", str(len(origin.body)))
                self.end_headers()
                self.wfile.write(origin.body)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer((self.address, self.port), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        # shutdown() waits for serve_forever's next poll: 0.05 s, not the default 0.5 s per origin
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def running_origins(prefix: str) -> Iterator[dict[str, Origin]]:
    """Origins e1, e2, w1, fb on ``prefix``.11, .12, .21, .99, stopped after the test."""
    made = {name: Origin(f"{prefix}.{last}") for name, last in (("e1", 11), ("e2", 12), ("w1", 21), ("fb", 99))}
    yield made
    for o in made.values():
        o.stop()


@pytest.fixture
def origins():
    yield from running_origins("127.0.0")


def write_zones(tmp_path: Path, origins: dict[str, Origin]) -> Path:
    zones = tmp_path / "zones"
    zones.mkdir()
    monitor = {"id": "m", "type": "http", "path": "/health", "expected_codes": "2xx", "expected_body": "alive",
               "interval": INTERVAL, "timeout": TIMEOUT, "retries": 0, "consecutive_down": DOWN,
               "consecutive_up": UP}

    def o(name: str) -> dict[str, Any]:
        return {"name": name, "address": origins[name].address, "port": origins[name].port}

    account = {"monitors": [monitor], "pools": [
        {"name": "primary", "monitor": "m", "origins": [o("e1"), o("e2")]},
        {"name": "secondary", "monitor": "m", "origins": [o("w1")]},
        {"name": "fallback", "monitor": "m", "origins": [o("fb")]},
    ]}
    zone = {"zone": "example.com", "soa": SOA, "ns": ["ns1.example.com."],
            "load_balancers": {"lb": {"default_pools": ["primary", "secondary"], "fallback_pool": "fallback",
                                      "steering_policy": "off"}}}
    (zones / "_account.yaml").write_text(yaml.safe_dump(account))
    (zones / "example.com.yaml").write_text(yaml.safe_dump(zone))
    return zones


def start(tmp_path: Path, origins: dict[str, Origin], **settings: Any) -> Server:
    zones = write_zones(tmp_path, origins)
    base: dict[str, Any] = {"probes_enabled": True, "monitor_interval_min": 1,
                            "admin": {"enabled": True, "address": "127.0.0.1", "port": 0}}
    base.update(settings)
    return Server(zones, tmp_path, geoip=False, health="none", **base)


def wait_for(pred, limit: float) -> float:
    """Poll ``pred`` every 50 ms; return the seconds it took (fails after ``limit``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {limit} s")


def lb(server: Server) -> set[str]:
    return addresses(server.query("lb.example.com"))


def http_get(server: Server, path: str) -> str:
    port = server.app.admin.port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return str(resp.read().decode())


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_warm_start_then_failover_within_bound_and_back(tmp_path, origins, isolation):
    s = start(tmp_path, origins, probe_isolation=isolation)
    try:
        # warm start: the first answer already comes from the healthy primary pool
        assert lb(s) == {"127.0.0.11", "127.0.0.12"}
        origins["e1"].stop()
        bound = INTERVAL * DOWN + TIMEOUT + 1
        took = wait_for(lambda: "127.0.0.11" not in lb(s), bound + 1)
        assert took <= bound, f"left the answers after {took:.2f} s (bound {bound} s)"
        assert lb(s) == {"127.0.0.12"}
        origins["e1"].start()
        back = wait_for(lambda: "127.0.0.11" in lb(s), INTERVAL * UP + TIMEOUT + 2)
        assert back <= INTERVAL * UP + TIMEOUT + 1
    finally:
        s.stop()


def test_wrong_status_and_body_mark_down_fallback_when_all_down(tmp_path, origins):
    s = start(tmp_path, origins)
    try:
        assert lb(s) == {"127.0.0.11", "127.0.0.12"}
        before = {p["name"]: p for p in json.loads(http_get(s, "/status"))["pools"]}
        assert before["fallback"]["status"] == "healthy" and before["fallback"]["serving_as_fallback_for"] == []
        origins["e1"].status = 503
        origins["e2"].body = b"ok"
        wait_for(lambda: lb(s) == {"127.0.0.21"}, 6)
        origins["w1"].stop()
        origins["fb"].stop()  # the fallback pool's health is ignored
        wait_for(lambda: lb(s) == {"127.0.0.99"}, 6)
        status = json.loads(http_get(s, "/status"))
        pools = {p["name"]: p for p in status["pools"]}
        assert pools["primary"]["status"] == "critical"
        reasons = {o["name"]: o["failure_reason"] for o in pools["primary"]["origins"]}
        assert reasons == {"e1": "Response code mismatch error", "e2": "Response body mismatch error"}
        lbs = {x["name"]: x for x in status["load_balancers"]}
        assert lbs["lb.example.com."]["status"] == "critical"
        # R-HLT-11 / A-48: the fallback pool shows "No health" while it serves, whatever its probes say
        assert pools["fallback"]["status"] == "no_health"
        assert pools["fallback"]["serving_as_fallback_for"] == ["lb.example.com."]
        metrics = http_get(s, "/metrics")
        assert 'lbdns_pool_status{pool="fallback",status="no_health"} 1.0' in metrics
    finally:
        s.stop()


def test_without_warm_start_first_answer_is_fallback(tmp_path, origins):
    s = start(tmp_path, origins, warm_start=False)
    try:
        assert lb(s) == {"127.0.0.99"}  # health still UNKNOWN: monitored pools count as down
        wait_for(lambda: lb(s) == {"127.0.0.11", "127.0.0.12"}, 8)
    finally:
        s.stop()


def test_metrics_and_status_parse(tmp_path, origins):
    s = start(tmp_path, origins)
    try:
        for _ in range(5):
            lb(s)
        s.query("nope.example.com")
        families = {f.name: f for f in text_string_to_metric_families(http_get(s, "/metrics"))}
        q = {(x.labels["qtype"], x.labels["rcode"]): x.value for x in families["lbdns_queries"].samples
             if x.name == "lbdns_queries_total"}
        assert q[("A", "NOERROR")] >= 5 and q[("A", "NXDOMAIN")] >= 1
        dec = [x for x in families["lbdns_lb_decisions"].samples if x.name == "lbdns_lb_decisions_total"]
        assert any(x.labels["pool"] == "primary" and x.value >= 5 for x in dec)
        healthy = {(x.labels["pool"], x.labels["origin"]): x.value for x in families["lbdns_origin_healthy"].samples}
        assert healthy[("primary", "e1")] == 1
        assert any(x.value > 0 for x in families["lbdns_probes"].samples)
        assert "lbdns_probe_schedule_lag_seconds" in families
        # the checks run in the probe worker process, whose CPU time is exported beside ours
        assert families["lbdns_probe_worker_process_cpu_seconds"].samples[0].value > 0
        assert families["process_cpu_seconds"].samples[0].value > 0
        assert families["lbdns_probe_worker_restarts"].samples[0].value == 0
        status = json.loads(http_get(s, "/status"))
        origin = status["pools"][0]["origins"][0]
        assert origin["health"] == "healthy" and origin["rtt_ms"] is not None and origin["last_probe_at"] > 0
    finally:
        s.stop()


def test_probe_worker_killed_is_restarted_and_health_keeps_flowing(tmp_path, origins):
    s = start(tmp_path, origins)
    try:
        runtime = s.app.health_runtime
        pid = runtime.worker_pid
        assert pid is not None and pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: runtime.worker_pid not in (None, pid), 10)
        assert runtime.metrics()["worker_restarts"] == 1
        assert lb(s) == {"127.0.0.11", "127.0.0.12"}  # health was kept meanwhile (stale, not reset)
        origins["e2"].stop()  # the new worker probes: a failure is still noticed
        wait_for(lambda: lb(s) == {"127.0.0.11"}, INTERVAL * DOWN + TIMEOUT + 6)
    finally:
        s.stop()
    assert runtime.worker_pid is None  # stopped with the server


def test_admin_health_override_and_reload_carry_over(tmp_path, origins):
    s = start(tmp_path, origins)
    try:
        status, body = s.admin_post("/health", {"pool": "primary", "origin": "e1", "state": "unhealthy"})
        assert status == 200 and body["ok"]
        assert lb(s) == {"127.0.0.12"}
        # a reload keeps health by identity: the primary pool stays usable without a new probe round
        assert s.reload()
        assert "127.0.0.12" in lb(s)
    finally:
        s.stop()


@pytest.mark.parametrize("isolation", ["process", "inline"])
def test_hostname_origin_probed_through_upstream_resolvers(tmp_path, origins, isolation):
    """Probes resolve a hostname origin through ``upstream_resolvers`` — the resolvers answers
    use — not the system resolver (which knows nothing of probe.test): the origin becomes
    healthy, and when the upstream stops knowing the name the probe fails with DNS Unknown Host."""
    up_dir = tmp_path / "up"
    (up_dir / "zones").mkdir(parents=True)
    soa = dict(SOA, mname="ns1.probe.test.", rname="hostmaster.probe.test.")

    def upstream_zone(records: dict[str, Any]) -> None:
        (up_dir / "zones" / "probe.test.yaml").write_text(yaml.safe_dump(
            {"zone": "probe.test", "soa": soa, "ns": ["ns1.probe.test."], "records": records}))

    upstream_zone({"web": {"type": "A", "ttl": 1, "value": origins["e1"].address}})
    up = Server(up_dir / "zones", up_dir, geoip=False)
    try:
        work = tmp_path / "main"
        work.mkdir()
        zones = write_zones(work, origins)
        account = yaml.safe_load((zones / "_account.yaml").read_text())
        account["pools"][0]["origins"] = [{"name": "e1", "address": "web.probe.test", "port": origins["e1"].port}]
        (zones / "_account.yaml").write_text(yaml.safe_dump(account))
        s = Server(zones, work, geoip=False, health="none", probes_enabled=True, monitor_interval_min=1,
                   admin={"enabled": True, "address": "127.0.0.1", "port": 0}, probe_isolation=isolation,
                   upstream_resolvers=[f"127.0.0.1:{up.ports['IAD']}"], hostname_cache_max_ttl=0)
        try:
            def e1() -> dict[str, Any]:
                pools = {p["name"]: p for p in json.loads(http_get(s, "/status"))["pools"]}
                return pools["primary"]["origins"][0]

            wait_for(lambda: e1()["health"] == "healthy", 6)
            assert lb(s) == {origins["e1"].address}
            upstream_zone({})
            assert up.reload()
            wait_for(lambda: e1()["failure_reason"] == "DNS Unknown Host", INTERVAL * DOWN + TIMEOUT + 4)
        finally:
            s.stop()
    finally:
        up.stop()
