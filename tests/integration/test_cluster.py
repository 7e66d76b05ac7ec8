"""Shared health across instances (issue 17 "Must show"): a real ``redis-server`` on a loopback
port, three real ``lbdns serve`` processes in PoPs of three regions (IAD ENAM, FRA WEU, NRT
NEAS), each probing from its own loopback source address (127.0.0.11/12/13,
``probe_source_address``), and one HTTP origin that answers 503 to the sources of the regions
the test declares "cut off" — so each region sees its own reachability.

Health is read from DNS answers: the load balancer answers the origin (127.0.0.50) while its
pool is healthy, else the unmonitored fallback pool (192.0.2.99).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.cli import start_cli
from tests.integration.harness import SOA, addresses
from tests.integration.test_health_e2e import wait_for
from tests.integration.test_reload import ask, free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
REDIS = shutil.which("redis-server") or shutil.which("valkey-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server (or valkey-server) is not installed "
                                "(scripts/install-system-deps installs Debian's redis-server)")

INTERVAL, TIMEOUT = 1, 1
ORIGIN, FALLBACK, US, EU = "127.0.0.50", "192.0.2.99", "127.0.0.60", "127.0.0.61"
VANTAGES = (("IAD", "ENAM", "127.0.0.11"), ("FRA", "WEU", "127.0.0.12"), ("NRT", "NEAS", "127.0.0.13"))


class RegionalOrigin:
    """An HTTP origin on ``address`` that answers 503 to peers in ``cut`` and 200 to others,
    after ``slow`` seconds to peers other than ``near`` (a region close to it)."""

    def __init__(self, address: str = ORIGIN, near: str | None = None, slow: float = 0.0) -> None:
        self.cut: set[str] = set()
        origin = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if near is not None and self.client_address[0] != near:
                    time.sleep(slow)
                status = 503 if self.client_address[0] in origin.cut else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer((address, 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Redis:
    """A private redis-server on a loopback port (no persistence)."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS is not None
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class Instance:
    """One ``lbdns serve`` process: PoP ``pop``, probing from ``source``."""

    def __init__(self, workdir: Path, zones: Path, pop: str, source: str, redis_port: int, *,
                 probe: bool = True) -> None:
        self.pop, self.source = pop, source
        self.port, self.admin_port = free_port(), free_port()
        workdir.mkdir()
        settings = {
            "zones_dir": str(zones), "pop": pop, "listen": [{"address": "127.0.0.1", "port": self.port}],
            "admin": {"address": "127.0.0.1", "port": self.admin_port, "token_file": str(workdir / "token")},
            "monitor_interval_min": 1, "probe_source_address": source, "rrl": {"enabled": False},
            "rtt_scope": "region",
            "cluster": {"store_url": f"redis://127.0.0.1:{redis_port}/0", "instance_id": f"{pop.lower()}-1",
                        "key_prefix": "test17", "sync_interval": 0.25, "probe": probe},
        }
        (workdir / "lbdns.yaml").write_text(yaml.safe_dump(settings))
        self.log = (workdir / "stderr.log").open("w")
        self.proc = start_cli("serve", "--config", str(workdir / "lbdns.yaml"), "--no-watch", cwd=workdir,
                              output=workdir / "stderr.log")
        self.workdir = workdir

    def answer(self, name: str = "lb.example.com") -> set[str]:
        try:
            return addresses(ask(self.port, name))
        except Exception:
            return set()

    def _get(self, path: str) -> bytes:
        """GET ``path`` from the admin listener (which opens just after the DNS listeners)."""
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as resp:
                    return bytes(resp.read())
            except urllib.error.URLError:
                time.sleep(0.1)
        raise AssertionError(f"{self.pop}: admin {path} unreachable")

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self._get("/status"))
        return doc

    def metric(self, name: str) -> float:
        for line in self._get("/metrics").decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")

    def stop(self) -> None:
        stop_process(self.proc, 10, kill_wait=10)
        self.log.close()


def write_zones(tmp_path: Path, origin_port: int, us: RegionalOrigin, eu: RegionalOrigin) -> Path:
    zones = tmp_path / "zones"
    zones.mkdir()
    monitor = {"id": "m", "type": "http", "path": "/", "expected_codes": "200", "interval": INTERVAL,
               "timeout": TIMEOUT, "retries": 0, "consecutive_down": 1, "consecutive_up": 1}
    account = {"monitors": [monitor], "pools": [
        {"name": "main", "monitor": "m", "check_regions": ["ENAM", "WEU", "NEAS"],
         "origins": [{"name": "o1", "address": ORIGIN, "port": origin_port}]},
        {"name": "fallback", "origins": [{"name": "fb", "address": FALLBACK}]},
        {"name": "us", "monitor": "m", "origins": [{"name": "u1", "address": US, "port": us.port}]},
        {"name": "eu", "monitor": "m", "origins": [{"name": "e1", "address": EU, "port": eu.port}]},
    ]}
    zone = {"zone": "example.com", "soa": SOA, "ns": ["ns1.example.com."],
            "load_balancers": {"lb": {"default_pools": ["main"], "fallback_pool": "fallback",
                                      "steering_policy": "off", "ttl": 30},
                               "dyn": {"default_pools": ["us", "eu"], "fallback_pool": "fallback",
                                       "steering_policy": "dynamic_latency", "ttl": 30}}}
    (zones / "_account.yaml").write_text(yaml.safe_dump(account))
    (zones / "example.com.yaml").write_text(yaml.safe_dump(zone))
    return zones


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RegionalOrigin, Redis, list[Instance]]]:
    origin = RegionalOrigin()
    # dynamic_latency: the us origin is near IAD's source, the eu origin near FRA's
    us, eu = RegionalOrigin(US, "127.0.0.11", 0.2), RegionalOrigin(EU, "127.0.0.12", 0.2)
    redis = Redis(free_port(), tmp_path)
    redis.start()
    zones = write_zones(tmp_path, origin.port, us, eu)
    insts: list[Instance] = []
    try:
        for pop, _region, source in VANTAGES:
            insts.append(Instance(tmp_path / pop, zones, pop, source, redis.port))
        insts.append(Instance(tmp_path / "LHR", zones, "LHR", "127.0.0.14", redis.port, probe=False))
        yield origin, redis, insts
    finally:
        for i in insts:
            i.stop()
        redis.kill()
        for o in (origin, us, eu):
            o.close()
        for i in insts:
            sys.stderr.write(f"--- {i.pop} log (tail)\n" + "".join((i.workdir / "stderr.log").read_text()
                                                                   .splitlines(True)[-15:]))


def all_answer(insts: list[Instance], want: str) -> Callable[[], bool]:
    return lambda: all(i.answer() == {want} for i in insts)


def converge_times(insts: list[Instance], want: str, limit: float) -> list[float]:
    """Seconds until each instance answers ``want`` (polled in turn every 20 ms)."""
    t0 = time.monotonic()
    done: dict[str, float] = {}
    while len(done) < len(insts) and time.monotonic() - t0 < limit:
        for i in insts:
            if i.pop not in done and i.answer() == {want}:
                done[i.pop] = time.monotonic() - t0
        time.sleep(0.02)
    missing = [i.pop for i in insts if i.pop not in done]
    assert not missing, f"{missing} did not answer {want} within {limit} s ({done})"
    return [done[i.pop] for i in insts]


def test_three_regions_vote_on_health_through_redis(cluster):
    """IAD, FRA and NRT probe and vote; LHR (``probe: false``) only reads their results."""
    origin, redis, everyone = cluster
    insts, reader = everyone[:3], everyone[3]
    # every instance answers the healthy origin
    wait_for(all_answer(everyone, ORIGIN), 30)
    # every instance sees the other vantages (a reader is none)
    wait_for(lambda: [len(i.status()["cluster"]["vantages"]) for i in everyone] == [2, 2, 2, 3], 10)
    assert {i.status()["cluster"]["region"] for i in insts} == {"ENAM", "WEU", "NEAS"}

    # rtt_scope: region — each PoP gets the pool with the lowest RTT measured from its region;
    # the reader at LHR (WEU) probes nothing and uses the RTT FRA measured in WEU
    # (NRT measures both as slow: either answer is right there)
    # dynamic_latency by the querying PoP's region
    wait_for(lambda: [everyone[k].answer("dyn.example.com") for k in (0, 1, 3)] == [{US}, {EU}, {EU}], 10)
    for _ in range(15):
        assert [everyone[k].answer("dyn.example.com") for k in (0, 1, 3)] == [{US}, {EU}, {EU}]
        time.sleep(0.1)

    # down from 1 of 3 regions (NEAS): still healthy in every instance, also at NRT itself
    reader_probes = reader.metric("lbdns_probes_total")
    origin.cut = {"127.0.0.13"}
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3 * INTERVAL + 1:
        assert [i.answer() for i in everyone] == [{ORIGIN}] * 4, "1 of 3 regions down flipped health"
        time.sleep(0.05)

    assert reader.metric("lbdns_probes_total") == reader_probes, "a reader probes nothing while vantages are live"

    # down from 2 of 3 regions: unhealthy in every instance within interval + timeout + 1 s
    origin.cut = {"127.0.0.12", "127.0.0.13"}
    bound = INTERVAL + TIMEOUT + 1
    took = converge_times(everyone, FALLBACK, bound + 3)
    sys.stderr.write(f"convergence to unhealthy (IAD, FRA, NRT, reader LHR): {[round(t, 2) for t in took]} s\n")
    assert max(took) <= bound, f"unhealthy after {took} s (bound {bound} s)"
    # IAD still passes its own probes: only the vote makes it unhealthy there
    main = next(p for p in insts[0].status()["pools"] if p["name"] == "main")
    assert main["origins"][0]["failure_reason"] not in (None, "No failures")

    origin.cut = set()
    took = converge_times(everyone, ORIGIN, bound + 3)
    sys.stderr.write(f"convergence back to healthy: {[round(t, 2) for t in took]} s\n")

    reader_probes = reader.metric("lbdns_probes_total")
    # the store dies: every instance keeps answering, from its own vantage's results (the
    # reader now probes for itself, from 127.0.0.14, which the origin serves)
    redis.kill()
    # store seen down
    wait_for(lambda: all(i.status()["cluster"]["store"] == "unreachable" for i in everyone), 5)
    assert all(i.metric("lbdns_cluster_store_up") == 0 for i in everyone)
    origin.cut = {"127.0.0.13"}
    # NRT decides alone
    wait_for(lambda: insts[2].answer() == {FALLBACK}, bound + 2)
    for _ in range(20):
        assert [i.answer() for i in everyone] == [{ORIGIN}, {ORIGIN}, {FALLBACK}, {ORIGIN}]
        time.sleep(0.05)
    # the reader probes alone
    wait_for(lambda: reader.metric("lbdns_probes_total") > reader_probes, 2 * INTERVAL + 1)

    # the store is back: they rejoin and converge on the vote again (2 of 3 regions pass)
    redis.start()
    t0, nrt_back = time.monotonic(), None
    while time.monotonic() - t0 < 4 * INTERVAL:
        # rejoining never flaps the vantages that pass (a vote over part of the vantages could)
        assert [i.answer() for i in (insts[0], insts[1], reader)] == [{ORIGIN}] * 3, "rejoining flapped health"
        if nrt_back is None and insts[2].answer() == {ORIGIN}:
            nrt_back = time.monotonic() - t0
        time.sleep(0.02)
    assert nrt_back is not None, "NRT did not rejoin the vote"
    sys.stderr.write(f"NRT back on the vote after the store came back: {nrt_back:.2f} s\n")
    assert all(i.status()["cluster"]["store"] == "up" for i in everyone)
    assert all(i.metric("lbdns_cluster_store_up") == 1 for i in everyone)
    logs = [(i.workdir / "stderr.log").read_text() for i in everyone]
    assert all(log.count("cluster store unreachable") == 1 for log in logs), "logged once per outage"

    # an instance that stops publishing ages out of the vote (3 × interval): with FRA gone,
    # IAD passes and NRT fails — one healthy region of two is no majority
    insts[1].proc.kill()
    insts[1].proc.wait(10)
    took = converge_times([insts[0], insts[2], reader], FALLBACK, 3 * INTERVAL + 3)
    sys.stderr.write(f"FRA aged out of the vote after: {[round(t, 2) for t in took]} s\n")
    # FRA's identity expired
    wait_for(lambda: [len(i.status()["cluster"]["vantages"]) for i in (insts[0], insts[2], reader)] == [1, 1, 2], 2)
