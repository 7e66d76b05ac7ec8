"""dnsperf benchmark driver for lbdns (run through ``scripts/bench``).

Starts ``lbdns serve`` on the example zones pinned to one core (``taskset -c SERVER_CPU``),
runs ``dnsperf`` pinned to the other core for each workload, and prints queries/second,
average latency under load, and p50/p99 latency at a light fixed load (``-Q``) measured
from dnsperf's per-query output. Workloads:

* ``static`` — ``static.example.com A`` (ordinary records);
* ``lb`` — ``www.example.com A`` (failover LB, multi-answer) and ``api.example.com A``
  (weighted single answer), alternating;
* ``ecs`` — ``geo.example.net A`` (proximity LB) with a different ECS /24 in every query
  (a TCP-stream binary query file, ``dnsperf -B``).

Response rate limiting (``--rrl``, a comma list, one server per mode, same run): dnsperf sends
every query from 127.0.0.1, far above any per-client limit, so

* ``exempt`` (default) — RRL on with 127.0.0.1/32 in ``rrl.exempt``: what the check costs;
* ``off`` — ``rrl.enabled: false``: the baseline for ``exempt``;
* ``on`` — RRL at its defaults: what a flooding client sees. Most responses are dropped, so
  dnsperf runs with 50,000 queries outstanding (``-t 1``) to keep flooding, its qps counts
  the answers and slips that came back, and ``handled`` (queries the server processed per
  second, from its ``lbdns_queries_total``) is the server's capacity under that flood.

Besides dnsperf's figures each row has the server's CPU time per processed query (from its
``process_cpu_seconds_total``), which moves far less than qps when other processes share the
machine.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dns.edns
import dns.message
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now (lbdns listens on both)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t.bind(("127.0.0.1", port))
        return int(port)


def write_text_queries(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ecs_queries(path: Path, name: str, count: int, seed: int = 7) -> Path:
    """``count`` queries for ``name`` A, each with a different public ECS /24, as a
    TCP-stream binary file (2-byte length + message)."""
    rng = random.Random(seed)
    out = bytearray()
    for _ in range(count):
        while True:
            a = rng.randrange(1, 224)
            if a not in (0, 10, 127):
                break
        addr = f"{a}.{rng.randrange(256)}.{rng.randrange(256)}.0"
        q = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption(addr, 24)])
        q.id = rng.randrange(65536)
        wire = q.to_wire()
        out += struct.pack("!H", len(wire)) + wire
    path.write_bytes(bytes(out))
    return path


RRL_MODES = {
    "off": {"enabled": False},
    "exempt": {"exempt": ["127.0.0.1/32"]},
    "on": {},
}
"""``rrl:`` settings of each ``--rrl`` mode."""


def run_dnsperf(port: int, datafile: Path, *, binary: bool, cpu: str, duration: float, clients: int,
                outstanding: int, qps_limit: int | None = None, verbose: bool = False) -> str:
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile), "-c", str(clients),
           "-q", str(outstanding), "-l", str(duration), "-t", "1"]
    if binary:
        cmd.append("-B")
    if qps_limit:
        cmd += ["-Q", str(qps_limit)]
    if verbose:
        cmd.append("-v")
    if cpu and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60).stdout


def parse_summary(text: str) -> dict[str, float]:
    def grab(pattern: str) -> float:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else float("nan")

    return {
        "qps": grab(r"Queries per second:\s+([\d.]+)"),
        "avg_ms": grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        "lost_pct": grab(r"Queries lost:\s+\d+ \(([\d.]+)%\)"),
    }


def percentiles(text: str) -> tuple[float, float, int]:
    lat = [float(m.group(1)) * 1000 for m in re.finditer(r"^> \S+ .* ([\d.]+)$", text, re.M)]
    if not lat:
        return float("nan"), float("nan"), 0
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    return p50, p99, len(lat)


def server_counts(admin: int) -> tuple[float, float]:
    """(queries counted in ``lbdns_queries_total``, ``process_cpu_seconds_total``) from the
    admin listener ((0, 0) when there is none)."""
    if not admin:
        return 0.0, 0.0
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    queries = sum(float(m.group(1)) for m in re.finditer(r"^lbdns_queries_total\{[^}]*\} ([\d.e+]+)$", text, re.M))
    cpu = re.search(r"^process_cpu_seconds_total ([\d.e+]+)$", text, re.M)
    return queries, float(cpu.group(1)) if cpu else 0.0


def start_server(tmp: Path, mode: str, cpu: str) -> tuple[subprocess.Popen[str], int, int]:
    """``lbdns serve`` on the example zones with the ``rrl`` settings of ``mode``; returns the
    process, its DNS port and its admin port."""
    port, admin = free_port(), free_port()
    config = tmp / f"lbdns-{mode}.yaml"
    config.write_text(yaml.safe_dump({"rrl": RRL_MODES[mode]}))
    cmd = [sys.executable, "-m", "lbdns.cli", "serve", "--config", str(config), "--zones", str(ROOT / "zones"),
           "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--no-probes", "--no-watch",
           "--log-level", "warning"]
    if cpu and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    # the working directory is the scratch directory: files the server creates there (the admin
    # token) stay out of the checkout
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, cwd=tmp,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    wait_answering(port, proc, 30)
    return proc, port, admin


def wait_answering(port: int, proc: subprocess.Popen[str], limit: float) -> None:
    """Wait until the server on 127.0.0.1:``port`` answers a UDP query (any answer). Raises
    SystemExit when ``proc`` exits or ``limit`` seconds pass."""
    query = dns.message.make_query("lbdns-bench-ready.invalid", "A").to_wire()
    deadline = time.monotonic() + limit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"lbdns serve exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit(f"lbdns serve did not answer on port {port} within {limit:g} s")
            s.sendto(query, ("127.0.0.1", port))
            try:
                s.recv(4096)
                return
            except OSError:
                time.sleep(0.1)


def stop_server(proc: subprocess.Popen[str] | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="static,lb,ecs", help="comma list of static, lb, ecs")
    ap.add_argument("--rrl", default="exempt", help="comma list of off, exempt, on (one server each)")
    ap.add_argument("--port", type=int, default=0, help="benchmark a server already on this port (no start)")
    ap.add_argument("--server-cpu", default="1", help="core for the server (taskset); '' = no pinning")
    ap.add_argument("--client-cpu", default="0", help="core for dnsperf (taskset); '' = no pinning")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per throughput run")
    ap.add_argument("--clients", type=int, default=10, help="dnsperf -c")
    ap.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    ap.add_argument("--light-qps", type=int, default=2000, help="fixed load for the p50/p99 run (0 = skip)")
    ap.add_argument("--rounds", type=int, default=1, help="throughput runs per workload (median reported)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="lbdns-bench-"))
    modes = [m.strip() for m in args.rrl.split(",") if m.strip()]
    for m in modes:
        if m not in RRL_MODES:
            ap.error(f"--rrl: unknown mode {m!r} (off, exempt, on)")
    if args.port:
        modes = ["(running)"]
    files = {
        "static": (write_text_queries(tmp / "static.txt", ["static.example.com A"]), False),
        "lb": (write_text_queries(tmp / "lb.txt", ["www.example.com A", "api.example.com A"]), False),
        "ecs": (write_ecs_queries(tmp / "ecs.bin", "geo.example.net", 65536), True),
    }
    print(f"lbdns benchmark: dnsperf -c {args.clients} -q {args.outstanding} -l {args.duration:g} -t 1, "
          f"server cpu {args.server_cpu or 'any'}, dnsperf cpu {args.client_cpu or 'any'}")
    print(f"{'rrl':9} {'workload':8} {'qps':>10} {'avg ms':>8} {'lost %':>7} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'handled':>9} {'cpu µs/q':>8}")
    print(f"(p50/p99 at {args.light_qps} qps; handled: queries/s the server processed; cpu µs/q: server CPU "
          "time per processed query, steadier than qps on a shared machine)")
    try:
        for mode in modes:
            proc = None
            port, admin = args.port, 0
            if not args.port:
                proc, port, admin = start_server(tmp, mode, args.server_cpu)
            try:
                for w in [x.strip() for x in args.workloads.split(",") if x.strip()]:
                    datafile, binary = files[w]
                    runs = []
                    handled = []
                    cpu_us = []
                    # limited queries are never answered: keep enough outstanding to go on flooding
                    outstanding = max(args.outstanding, 50_000) if mode == "on" else args.outstanding
                    for _ in range(args.rounds):
                        (q0, c0), t0 = server_counts(admin), time.monotonic()
                        runs.append(parse_summary(run_dnsperf(port, datafile, binary=binary, cpu=args.client_cpu,
                                                              duration=args.duration, clients=args.clients,
                                                              outstanding=outstanding)))
                        q1, c1 = server_counts(admin)
                        handled.append((q1 - q0) / (time.monotonic() - t0))
                        cpu_us.append((c1 - c0) / (q1 - q0) * 1e6 if q1 > q0 else float("nan"))
                    qps = statistics.median(r["qps"] for r in runs)
                    avg = statistics.median(r["avg_ms"] for r in runs)
                    lost = max(r["lost_pct"] for r in runs)
                    p50 = p99 = float("nan")
                    if args.light_qps:
                        text = run_dnsperf(port, datafile, binary=binary, cpu=args.client_cpu, duration=5,
                                           clients=1, outstanding=20, qps_limit=args.light_qps, verbose=True)
                        p50, p99, _ = percentiles(text)
                    print(f"{mode:9} {w:8} {qps:10.0f} {avg:8.3f} {lost:7.2f} {p50:8.3f} {p99:8.3f} "
                          f"{statistics.median(handled):9.0f} {statistics.median(cpu_us):7.2f}", flush=True)
            finally:
                stop_server(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
