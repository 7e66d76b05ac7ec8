"""``workers: 2`` on a real ``lbdns serve`` process: both workers answer on one port (NSID
``-w1``/``-w2``, per-worker counters in ``/status``, one query log each), ``/metrics`` sums
their counters, a
health change reaches both within 100 ms, a reload switches both to the new generation, and a
killed worker is restarted and counted."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.query
import pytest
import yaml

from tests.fixtures.cli import run_cli, start_cli
from tests.integration.harness import addresses
from tests.integration.test_reload import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef0123456789"


class Proc:
    """``lbdns serve`` with ``workers: 2`` on a free port and an admin listener."""

    def __init__(self, fx: Any, tmp_path: Path, **settings: Any) -> None:
        fx.zone["records"]["svc"] = {"type": "A", "ttl": 60, "value": "192.0.2.201"}
        self.fx, self.tmp = fx, tmp_path
        self.zones = fx.write(tmp_path)
        self.port, self.admin = free_port(), free_port()
        token = tmp_path / "admin.token"
        token.write_text(TOKEN + "\n")
        token.chmod(0o600)
        healthy = [{"pool": p, "origin": o, "state": "healthy"}
                   for p, names in (("p-us-east", ("e1", "e2")), ("p-us-west", ("w1", "w2"))) for o in names]
        conf = {"workers": 2, "nsid": "lbdns", "rrl": {"enabled": False}, "zones_dir": str(self.zones),
                "probes_enabled": False, "query_log": str(tmp_path / "queries.jsonl"),
                "listen": [{"address": "127.0.0.1", "port": self.port}], "health_overrides": healthy,
                "admin": {"address": "127.0.0.1", "port": self.admin, "token_file": str(token)}, **settings}
        (tmp_path / "lbdns.yaml").write_text(yaml.safe_dump(conf))
        self.log = (tmp_path / "serve.log").open("w+")
        self.proc = start_cli("serve", "--config", str(tmp_path / "lbdns.yaml"), "--no-watch", cwd=tmp_path,
                              output=tmp_path / "serve.log")
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.status().get("workers") and all(w["running"] for w in self.status()["workers"]):
                    break
            except OSError:
                pass
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def http(self, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}{path}", method="GET" if body is None else "POST",
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            data = resp.read()
        return json.loads(data) if path != "/metrics" else data.decode()

    def status(self) -> dict[str, Any]:
        return dict(self.http("/status"))

    def query(self, name: str) -> tuple[str, set[str]]:
        """(NSID text, A addresses) of one UDP query from a fresh socket (a new source port,
        so the kernel's SO_REUSEPORT hash picks a worker anew)."""
        q = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.GenericOption(dns.edns.NSID, b"")])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=2, sock=sock)
        nsid = next(o.nsid.decode() for o in r.options if o.otype == dns.edns.NSID)
        return nsid, addresses(r)

    def stop(self) -> None:
        stop_process(self.proc, 15)
        self.log.close()


@pytest.fixture
def server(fx: Any, tmp_path: Path) -> Any:
    s = Proc(fx, tmp_path)
    yield s
    s.stop()


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def test_two_workers_answer_on_one_port_and_metrics_add_up(server):
    seen: dict[str, int] = {}
    for _ in range(200):
        nsid, got = server.query("svc.example.com")
        assert got == {"192.0.2.201"}
        seen[nsid] = seen.get(nsid, 0) + 1
    assert set(seen) == {"lbdns-w1", "lbdns-w2"}, seen
    workers = server.status()["workers"]
    assert [w["worker"] for w in workers] == [1, 2]
    by_worker = {f"lbdns-w{w['worker']}": w["queries"] for w in workers}
    assert by_worker == seen  # every query counted once, by the worker that answered it
    pids = {w["pid"] for w in workers}
    assert len(pids) == 2 and server.proc.pid not in pids
    text = server.http("/metrics")
    assert metric(text, "lbdns_queries_total") == 200  # the sum over both workers
    assert metric(text, "lbdns_workers") == 2
    # each worker writes its own query log: queries.jsonl.w1, queries.jsonl.w2
    logs = {n: server.tmp / f"queries.jsonl.w{n}" for n in (1, 2)}
    deadline = time.monotonic() + 5
    while sum(len(p.read_text().splitlines()) for p in logs.values() if p.exists()) < 200:
        assert time.monotonic() < deadline, "the query logs did not get every query"
        time.sleep(0.1)
    assert {n: len(p.read_text().splitlines()) for n, p in logs.items()} == {1: seen["lbdns-w1"], 2: seen["lbdns-w2"]}
    assert not (server.tmp / "queries.jsonl").exists()
    table = run_cli("status", "--admin", f"http://127.0.0.1:{server.admin}")
    rows = [line.split() for line in table.stdout.splitlines()]
    assert ["WORKER", "PID", "RUNNING", "GENERATION", "HEALTH", "VERSION", "QUERIES", "RESTARTS"] in rows
    assert [r[0] for r in rows if r[:1] in (["1"], ["2"]) and r[2] == "yes"] == ["1", "2"]


def test_health_change_reaches_both_workers_within_100ms(server):
    for _ in range(50):
        assert server.query("lb.example.com")[1] == {"192.0.2.10", "192.0.2.11"}
    server.http("/health", {"pool": "p-us-east", "origin": "e1", "state": "unhealthy"})
    t0 = time.perf_counter()
    first: dict[str, float] = {}
    while len(first) < 2 and time.perf_counter() - t0 < 2.0:
        nsid, got = server.query("lb.example.com")
        if got == {"192.0.2.11"}:
            first.setdefault(nsid, time.perf_counter() - t0)
    print(f"health change visible: {', '.join(f'{k} {v * 1000:.1f} ms' for k, v in sorted(first.items()))}")
    assert set(first) == {"lbdns-w1", "lbdns-w2"}
    assert max(first.values()) < 0.1
    for _ in range(50):  # and it stays
        assert server.query("lb.example.com")[1] == {"192.0.2.11"}
    # later changes travel as differences from the last view: both workers follow them too
    server.http("/health", {"pool": "p-us-east", "origin": "e1", "state": "healthy"})
    server.http("/health", {"pool": "p-us-east", "origin": "e2", "state": "unhealthy"})
    t0 = time.perf_counter()
    first.clear()
    while len(first) < 2 and time.perf_counter() - t0 < 2.0:
        nsid, got = server.query("lb.example.com")
        if got == {"192.0.2.10"}:
            first.setdefault(nsid, time.perf_counter() - t0)
    assert set(first) == {"lbdns-w1", "lbdns-w2"} and max(first.values()) < 0.1
    for _ in range(50):
        assert server.query("lb.example.com")[1] == {"192.0.2.10"}


def test_reload_switches_both_workers(server):
    gen = server.status()["generation"]
    # a rejected change: both workers keep serving the last good generation
    (server.zones / "example.com.yaml").write_text("zone: example.com\nrecords: {svc: {type: A, value: 300.1.1.1}}\n")
    with pytest.raises(urllib.error.HTTPError) as rejected:
        server.http("/reload", {})
    assert rejected.value.code == 409
    assert {server.query("svc.example.com")[1] == {"192.0.2.201"} for _ in range(50)} == {True}
    server.fx.zone["records"]["svc"]["value"] = "192.0.2.202"
    server.fx.write(server.tmp)
    answer = server.http("/reload", {})
    assert answer["ok"] and answer["generation"] == gen + 1
    seen = set()
    for _ in range(100):  # the reload answered once every worker serves the new generation
        nsid, got = server.query("svc.example.com")
        assert got == {"192.0.2.202"}
        seen.add(nsid)
    assert seen == {"lbdns-w1", "lbdns-w2"}
    assert [w["generation"] for w in server.status()["workers"]] == [gen + 1, gen + 1]


def test_killed_worker_is_restarted_and_counted(server):
    before = server.status()["workers"]
    victim = before[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        w1 = server.status()["workers"][0]
        if w1["running"] and w1["pid"] != victim:
            break
        assert time.monotonic() < deadline, "worker 1 was not restarted"
        time.sleep(0.1)
    assert w1["restarts"] == 1
    assert server.status()["workers"][1]["pid"] == before[1]["pid"]
    assert metric(server.http("/metrics"), "lbdns_worker_restarts_total") == 1
    seen = {server.query("svc.example.com")[0] for _ in range(200)}
    assert seen == {"lbdns-w1", "lbdns-w2"}
    assert f"worker 1 (pid {victim}) exited with signal 9; restarting it" in server.output()


def test_sigterm_to_every_process_stops_without_restarts(server):
    """As systemd stops a unit: SIGTERM to the control process and every worker at once."""
    pids = [w["pid"] for w in server.status()["workers"]]
    for pid in (*pids, server.proc.pid):
        os.kill(pid, signal.SIGTERM)
    assert server.proc.wait(20) == 0
    out = server.output()
    assert "restarting" not in out and "stopping" in out
    for pid in pids:  # the workers are gone too
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_port_held_by_another_reuseport_group_is_refused(fx, tmp_path):
    """A port another server already holds with SO_REUSEPORT sockets (another lbdns with
    workers) is "in use": joining its group would split that server's traffic."""
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", port))
        zones = fx.write(tmp_path)
        (tmp_path / "lbdns.yaml").write_text(yaml.safe_dump({"workers": 2, "zones_dir": str(zones)}))
        r = run_cli("serve", "--config", str(tmp_path / "lbdns.yaml"), "--listen", f"127.0.0.1:{port}",
                    "--admin", "off", "--no-probes", cwd=tmp_path)
    assert r.returncode == 1
    assert f"cannot listen on udp 127.0.0.1:{port}: [Errno 98] Address already in use" in r.stderr


def test_hostname_origins_resolved_in_every_worker(fx, tmp_path):
    """An origin given as a hostname (here a name in the served zone, answered from lbdns's own
    configuration) is resolved in each worker: both answer with its address."""
    fx.origin("p-us-east", "e1")["address"] = "ns1.example.com"
    s = Proc(fx, tmp_path)
    try:
        seen = set()
        for _ in range(100):
            nsid, got = s.query("lb.example.com")
            assert got == {"192.0.2.1", "192.0.2.11"}
            seen.add(nsid)
        assert seen == {"lbdns-w1", "lbdns-w2"}
    finally:
        s.stop()
