#!/usr/bin/env python3
"""Scale run of health monitoring inside a serving lbdns (issue #4): N HTTP origins on local
listeners (127.0.0.1–127.0.0.10, one port each) in 100 pools, probed every ``--interval``
seconds while dnsperf queries an LB for ``--duration`` seconds; then the same dnsperf run with
probing off. Prints the probe schedule lag (p50/p99 from the server's own samples via
``/metrics``), probes run, the qps ratio probing/no-probing, and the CPU of the server and of
the probe worker (µs of server CPU per answered query is the capacity figure: it does not
depend on whether dnsperf, sharing the other CPU, kept up).

The server is pinned to ``--server-cpu``; dnsperf and the origin listeners to ``--client-cpu``.
The probe worker inherits the server's CPU unless ``--probe-cpus`` places it elsewhere.

    .venv/bin/python scripts/bench_health.py --origins 1000 --interval 5 --duration 30 [--probe-cpus 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path

import yaml
from bench import free_port  # scripts/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parents[1]


def _listeners(n: int, conn: Connection, cpu: str, nice: int) -> None:
    if cpu:
        os.sched_setaffinity(0, {int(c) for c in cpu.split(",")})
    if nice:
        os.nice(nice)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n * 4 + 256)), hard))

    async def main() -> None:
        from aiohttp import web

        async def health(_req: web.Request) -> web.Response:
            return web.Response(text="alive")

        app = web.Application()
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        out = []
        for i in range(n):
            addr = f"127.0.0.{i % 10 + 1}"
            site = web.TCPSite(runner, addr, 0, backlog=256)
            await site.start()
            out.append((addr, site._server.sockets[0].getsockname()[1]))  # type: ignore[union-attr]
        conn.send(out)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


def write_config(d: Path, origins: list[tuple[str, int]], interval: int, probe_settings: dict[str, object]) -> Path:
    zones = d / "zones"
    zones.mkdir()
    pools = []
    for k in range(0, len(origins), 10):
        chunk = origins[k:k + 10]
        pools.append({"name": f"p{k // 10}", "monitor": "m", "origins": [
            {"name": f"o{j}", "address": a, "port": p} for j, (a, p) in enumerate(chunk)]})
    account = {"monitors": [{"id": "m", "type": "http", "path": "/health", "interval": interval, "timeout": 2,
                             "retries": 0}], "pools": pools}
    zone = {"zone": "example.com", "soa": {"mname": "ns1.example.com.", "rname": "h.example.com."},
            "ns": ["ns1.example.com."],
            "load_balancers": {f"lb{i}": {"default_pools": [pools[i]["name"], pools[(i + 1) % len(pools)]["name"]],
                                          "fallback_pool": pools[(i + 2) % len(pools)]["name"]}
                               for i in range(len(pools))}}
    (zones / "account.yaml").write_text(yaml.safe_dump(account))
    (zones / "example.com.yaml").write_text(yaml.safe_dump(zone))
    # dnsperf sends everything from 127.0.0.1: exempt it from response rate limiting
    (d / "lbdns.yaml").write_text(yaml.safe_dump({"monitor_interval_min": 1, "probe_concurrency": 256,
                                                  "rrl": {"exempt": ["127.0.0.0/8"]}, **probe_settings}))
    return zones


def run_server(d: Path, port: int, admin: int, probes: bool, cpu: str) -> subprocess.Popen[str]:
    cmd = [str(ROOT / ".venv/bin/lbdns"), "serve", "--config", str(d / "lbdns.yaml"), "--zones", str(d / "zones"),
           "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--no-watch", "--log-level", "warning"]
    if not probes:
        cmd.append("--no-probes")
    if cpu and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    log = d / "server.log"
    with log.open("w") as out:  # a file, not a pipe: a full pipe would block the server's logging
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and proc.poll() is None and "listening on" not in log.read_text():
        time.sleep(0.05)
    return proc


def dnsperf(port: int, duration: float, cpu: str) -> float:
    data = Path(tempfile.mkstemp(suffix=".txt")[1])
    data.write_text("".join(f"lb{i}.example.com A\n" for i in range(100)))
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(data), "-c", "10", "-q", "100", "-l", str(duration)]
    if cpu and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


def _metrics(admin: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        return str(r.read().decode())


def metric(text: str, name: str) -> list[tuple[str, float]]:
    return [(m.group(1), float(m.group(2))) for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? ([\d.e+-]+)$", text, re.M)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--origins", type=int, default=1000)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--client-cpu", default="0")
    ap.add_argument("--isolation", choices=("process", "inline"), default="process",
                    help="probe_isolation: checks in the worker process (default) or in the server's loop")
    ap.add_argument("--probe-cpus", default="",
                    help="probe_cpus for the worker, e.g. 0 (default: the server's CPUs)")
    ap.add_argument("--probe-nice", type=int, default=0, help="probe_nice for the worker")
    ap.add_argument("--origins-nice", type=int, default=0,
                    help="nice value of the origin listeners (so dnsperf wins the client CPU)")
    ap.add_argument("--origins-cpu", default=None,
                    help="CPUs of the origin listeners (default: the client's, so the server core measures only lbdns)")
    args = ap.parse_args()
    parent, child = mp.Pipe()
    origins_cpu = args.client_cpu if args.origins_cpu is None else args.origins_cpu
    lst = mp.Process(target=_listeners, args=(args.origins, child, origins_cpu, args.origins_nice), daemon=True)
    lst.start()
    origins = parent.recv()
    d = Path(tempfile.mkdtemp(prefix="lbdns-health-bench-"))
    probe_settings: dict[str, object] = {"probe_isolation": args.isolation, "probe_nice": args.probe_nice}
    if args.probe_cpus:
        probe_settings["probe_cpus"] = [int(c) for c in args.probe_cpus.split(",")]
    write_config(d, origins, args.interval, probe_settings)
    result: dict[str, object] = {"origins": len(origins), "interval_s": args.interval, "duration_s": args.duration,
                                 **probe_settings}
    try:
        for probes in (True, False):
            port, admin = free_port(), free_port()
            proc = run_server(d, port, admin, probes, args.server_cpu)
            try:
                if proc.poll() is not None:
                    out = (d / "server.log").read_text()
                    raise SystemExit(f"lbdns exited early ({proc.returncode}):\n{out}")
                before = _metrics(admin)
                qps = dnsperf(port, args.duration, args.client_cpu)
                text = _metrics(admin)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
            result["qps_with_probes" if probes else "qps_without_probes"] = round(qps)
            for name, key in (("process_cpu_seconds_total", "server"),
                              ("lbdns_probe_worker_process_cpu_seconds_total", "probe_worker")):
                used = sum(v for _, v in metric(text, name)) - sum(v for _, v in metric(before, name))
                if used > 0:
                    result[f"{key}_cpu_pct_{'with' if probes else 'without'}_probes"] = round(
                        100 * used / args.duration, 1)
                    if key == "server" and qps > 0:  # CPU cost per answered query: capacity, not load
                        result[f"server_us_per_query_{'with' if probes else 'without'}_probes"] = round(
                            1e6 * used / args.duration / qps, 2)
            if probes:
                result["probes_run"] = sum(v for _, v in metric(text, "lbdns_probes_total"))
                result["probes_failed"] = sum(v for _, v in metric(text, "lbdns_probes_failed_total"))
                for lab, v in metric(text, "lbdns_probe_schedule_lag_quantile_seconds"):
                    result["lag_p50_ms" if '"0.5"' in lab else "lag_p99_ms"] = round(v * 1000, 2)
        result["qps_ratio"] = round(float(result["qps_with_probes"]) / max(1.0, float(result["qps_without_probes"])),
                                    3)
    finally:
        lst.terminate()
        shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
