"""Reload (issue #2 "Must show"): queries keep being answered while a changed zone loads; a
broken change is rejected with located errors and the old data keeps being served; SIGHUP,
the file watch and SIGTERM on a real ``lbdns serve`` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode

from tests.fixtures.cli import run_cli
from tests.integration.harness import addresses

ROOT = Path(__file__).resolve().parents[2]


def test_queries_answered_during_reload_and_broken_change_rejected(fx, serve, caplog):
    fx.zone["records"]["svc"] = {"type": "A", "ttl": 60, "value": "192.0.2.201"}
    s = serve(fx)
    stop = threading.Event()
    results: list[set[str]] = []
    failures: list[BaseException] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                results.append(addresses(s.query("svc.example.com", timeout=1.0)))
            except Exception as exc:
                failures.append(exc)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        time.sleep(0.2)
        fx.zone["records"]["svc"]["value"] = "192.0.2.202"
        fx.write(s.zones.parent)
        assert s.reload()
        time.sleep(0.2)
        # a broken change: rejected, the last good config keeps serving
        (s.zones / "example.com.yaml").write_text("zone: example.com\nrecords: {svc: {type: A, value: 300.1.1.1}}\n")
        assert not s.reload()
        time.sleep(0.2)
    finally:
        stop.set()
        t.join(10)
    assert not failures
    assert results[0] == {"192.0.2.201"} and results[-1] == {"192.0.2.202"}
    assert all(r in ({"192.0.2.201"}, {"192.0.2.202"}) for r in results)
    assert any("reload rejected" in r.message and "example.com.yaml" in r.message for r in caplog.records)
    assert addresses(s.query("svc.example.com")) == {"192.0.2.202"}


def free_port() -> int:
    """A loopback port free for UDP and for a TCP listener. The TCP socket binds the way the
    server's does (SO_REUSEADDR: connections in TIME_WAIT on that port do not count), and an
    unlucky pick — the UDP port taken for TCP, e.g. by a parallel test — is retried."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(port)
    raise AssertionError("no port free for both UDP and TCP")


def stop_process(proc: subprocess.Popen[Any], grace: float, kill_wait: float = 5.0) -> int | None:
    """SIGTERM a server process the test started, then SIGKILL it when it has not exited within
    ``grace`` seconds; returns its exit status (negative: the signal that ended it)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(kill_wait)
    return proc.returncode


def ask(port: int, name: str, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, "A")
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=2)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=2)


def wait_answer(port: int, name: str, want: set[str], limit: float = 10.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            if addresses(ask(port, name)) == want:
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{name} did not become {want}")


def serve_process(fx: Any, tmp_path: Path, *flags: str, **popen: Any) -> tuple[subprocess.Popen[str], Path, int]:
    """``lbdns serve`` as a real process on a free loopback port, serving ``fx`` with svc A 192.0.2.201
    (no admin, no probes); returns (process, zones directory, port). Output goes to ``stdout``."""
    fx.zone["records"]["svc"] = {"type": "A", "ttl": 60, "value": "192.0.2.201"}
    zones = fx.write(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lbdns.cli", "serve", "--zones", str(zones), "--listen", f"127.0.0.1:{port}",
         "--admin", "off", "--no-probes", *flags],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, **popen)
    return proc, zones, port


def test_serve_process_sighup_file_watch_and_sigterm(tmp_path, fx):
    proc, _zones, port = serve_process(fx, tmp_path)
    try:
        wait_answer(port, "svc.example.com", {"192.0.2.201"})
        r = ask(port, "svc.example.com", tcp=True)
        assert r.rcode() == dns.rcode.NOERROR and addresses(r) == {"192.0.2.201"}
        assert ask(port, "nonexistent.example.com").rcode() == dns.rcode.NXDOMAIN
        # SIGHUP reload
        fx.zone["records"]["svc"]["value"] = "192.0.2.202"
        fx.write(tmp_path)
        proc.send_signal(signal.SIGHUP)
        wait_answer(port, "svc.example.com", {"192.0.2.202"})
        # file watch (polls every 2 s)
        zone_file = tmp_path / "zones" / "example.com.yaml"
        seen = zone_file.stat().st_mtime_ns  # what the SIGHUP reload's scan saw
        fx.zone["records"]["svc"]["value"] = "192.0.2.203"  # same size: only the mtime tells
        fx.write(tmp_path)
        while zone_file.stat().st_mtime_ns == seen:  # a file system with coarse timestamps
            time.sleep(0.05)
            fx.write(tmp_path)
        wait_answer(port, "svc.example.com", {"192.0.2.203"})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    out = proc.stdout.read() if proc.stdout else ""
    assert "reloaded configuration" in out and "stopping" in out


def test_serve_refuses_to_start_with_errors(tmp_path, fx):
    fx.lb["default_pools"] = ["p-nope"]
    zones = fx.write(tmp_path)
    r = run_cli("serve", "--zones", str(zones), "--listen", "127.0.0.1:0", "--admin", "off", cwd=tmp_path)
    assert r.returncode == 1
    assert "E-REF: unknown pool 'p-nope'" in r.stderr


def test_query_log_lines_written_by_the_server(fx, serve, tmp_path):
    import json

    log = tmp_path / "queries.jsonl"
    s = serve(fx, query_log=str(log))
    s.query("lb.example.com", ecs="203.0.113.0/24")
    s.query("nope.example.com")
    s.stop()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["qname"], x["rcode"]) for x in lines] == [
        ("lb.example.com.", "NOERROR"), ("nope.example.com.", "NXDOMAIN")]
    assert lines[0]["lb"] == "lb.example.com." and lines[0]["pool"] == "p-us-east" and lines[0]["answers"] == 2
    assert lines[0]["ecs"] == "203.0.113.0/24"
