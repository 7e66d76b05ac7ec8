"""What a ``/metrics`` scrape costs the query loop.

Starts ``lbdns serve`` (the tree on PYTHONPATH) on a generated configuration of ``--pools``
pools of 3 origins and as many load balancers, optionally sends ``--qtypes`` queries with
distinct QTYPEs first (each used to become a ``lbdns_queries_total`` series), then measures
DNS latency with a paced UDP client (``--qps`` for ``--seconds``, names rotating over the
LBs) twice: without scrapes and while another thread scrapes ``/metrics`` back to back.
Prints the scrape size and duration and DNS p50/p99/max in both phases.

    PYTHONPATH=. .venv/bin/python scripts/bench_scrape.py --pools 1000 --qtypes 65536
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import dns.message
from bench import free_port, wait_answering  # scripts/ is on sys.path when this file runs as a script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for tests.fixtures
from tests.fixtures.many_pools import write_many_pools


def latencies(port: int, qps: int, seconds: float, names: list[str]) -> list[float]:
    """Paced queries, one outstanding at a time; a lost query counts as 1 s."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        t0 = time.monotonic()
        n = int(qps * seconds)
        for i in range(n):
            q = dns.message.make_query(names[i % len(names)], "A")
            q.id = i % 65536
            wire = q.to_wire()
            start = time.monotonic()
            s.sendto(wire, ("127.0.0.1", port))
            try:
                while int.from_bytes(s.recv(4096)[:2], "big") != q.id:
                    pass
                out.append(time.monotonic() - start)
            except TimeoutError:
                out.append(1.0)
            time.sleep(max(0.0, t0 + (i + 1) / qps - time.monotonic()))
    return out


def summary(lat: list[float]) -> str:
    ms = sorted(x * 1000 for x in lat)
    return (f"p50 {statistics.median(ms):.2f} ms, p99 {ms[int(0.99 * (len(ms) - 1))]:.2f} ms, "
            f"max {ms[-1]:.1f} ms, n {len(ms)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pools", type=int, default=1000)
    ap.add_argument("--qtypes", type=int, default=0, help="distinct QTYPEs to send first (0 = none)")
    ap.add_argument("--qps", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--server-cpu", default="1", help="taskset core for the server ('' = none)")
    args = ap.parse_args()

    d = Path(tempfile.mkdtemp(prefix="lbdns-scrape-"))
    zones = write_many_pools(d, args.pools)
    port, admin = free_port(), free_port()
    cmd = [sys.executable, "-m", "lbdns.cli", "serve", "--zones", str(zones), "--listen", f"127.0.0.1:{port}",
           "--admin", f"127.0.0.1:{admin}", "--no-probes", "--no-watch", "--log-level", "warning"]
    if args.server_cpu:
        cmd = ["taskset", "-c", args.server_cpu, *cmd]
    log = (d / "server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=d, env=dict(os.environ), text=True)
    try:
        wait_answering(port, proc, 120)
        time.sleep(0.5)
        if args.qtypes:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for t in range(args.qtypes):
                    q = dns.message.make_query("lb0.example.com", t)
                    s.sendto(q.to_wire(), ("127.0.0.1", port))
                    if t % 100 == 99:
                        time.sleep(0.005)
            time.sleep(1.0)
        names = [f"lb{i}.example.com" for i in range(args.pools)]
        url = f"http://127.0.0.1:{admin}/metrics"
        t0 = time.monotonic()
        body = urllib.request.urlopen(url, timeout=60).read()
        first = time.monotonic() - t0
        series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
        queries = sum(1 for line in body.decode().splitlines() if line.startswith("lbdns_queries_total{"))
        print(f"pools {args.pools}, distinct qtypes sent {args.qtypes}: /metrics {len(body) / 1e3:.0f} kB, "
              f"{series} series ({queries} lbdns_queries_total), first scrape {first * 1000:.0f} ms")
        quiet = latencies(port, args.qps, args.seconds, names)
        print(f"DNS without scrapes: {summary(quiet)}")
        stop = threading.Event()
        scrapes: list[float] = []

        def scrape() -> None:
            while not stop.is_set():
                t = time.monotonic()
                urllib.request.urlopen(url, timeout=60).read()
                scrapes.append(time.monotonic() - t)

        th = threading.Thread(target=scrape)
        th.start()
        try:
            busy = latencies(port, args.qps, args.seconds, names)
        finally:
            stop.set()
            th.join(60)
        print(f"DNS during back-to-back scrapes: {summary(busy)}")
        print(f"scrapes: {len(scrapes)}, median {statistics.median(scrapes) * 1000:.1f} ms, "
              f"max {max(scrapes) * 1000:.1f} ms")
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
