#!/usr/bin/env python3
"""Store load of shared health (issue 17, docs/scaling.md): ``--vantages`` cluster nodes
(lbdns.cluster.node.ClusterNode with a real HealthRecorder each, one event loop) publish and
read ``--origins`` origins (in pools of ``--pool-size``, one HTTP monitor, every
``--interval`` seconds) through a private ``redis-server`` on a loopback port.

Probe results are synthesized at the rate the probe scheduler produces them (each pool's
round every interval, its origins ``1/round_rate`` apart); everything from the recorder to the
store is the server's own code. Measured over ``--duration`` seconds after one interval of
warm-up, from the server's own counters (``CONFIG RESETSTAT``, then ``INFO commandstats`` and
``INFO stats``): commands per second by command, network bytes in/out per second, and
``used_memory`` and the key count at the end.

    .venv/bin/python scripts/bench_cluster.py --origins 1000 --vantages 3 --interval 10 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REGIONS = ["ENAM", "WEU", "NEAS", "SEAS", "OC", "SAF", "NAF", "ME", "EEU", "WNAM", "SSAM", "NSAM", "SAS"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def targets(origins: int, pool_size: int, interval: int, regions: list[str]) -> list[Any]:
    from lbdns.config.model import Monitor, Pool
    from lbdns.probes.targets import build_targets

    mon = Monitor.model_validate({"id": "m", "type": "http", "path": "/", "interval": interval, "timeout": 2,
                                  "retries": 0, "consecutive_up": 1, "consecutive_down": 1})
    pools = {}
    for i in range(0, origins, pool_size):
        n = min(pool_size, origins - i)
        members = [{"name": f"o{j}", "address": f"198.18.{(i + j) // 250}.{(i + j) % 250 + 1}", "port": 80}
                   for j in range(n)]
        p = Pool.model_validate({"name": f"p{i // pool_size}", "monitor": "m", "check_regions": regions,
                                 "origins": members})
        pools[p.id] = p
    return build_targets(pools, {"m": mon})


async def feed(node: Any, jobs: dict[tuple[str, str], list[Any]], interval: float, round_rate: float,
               rng: random.Random, fail_share: float) -> None:
    from lbdns.probes import result as r

    async def one(job: tuple[str, str], ts: list[Any]) -> None:
        await asyncio.sleep(rng.uniform(0, interval))
        step = min(1.0 / round_rate, interval / 2.0 / max(len(ts), 1))
        while True:
            t0 = time.monotonic()
            rtts = []
            for t in ts:
                if rng.random() < fail_share:
                    node.probe_done(t.key, r.failed(r.HTTP_TIMEOUT), 0.0)
                else:
                    res = r.passed(rng.uniform(5, 80), 200)
                    rtts.append(res.rtt_ms)
                    node.probe_done(t.key, res, 0.0)
                await asyncio.sleep(step)
            node.round_done(job, rtts)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - t0)))

    await asyncio.gather(*(one(job, ts) for job, ts in jobs.items()))


async def run(args: argparse.Namespace, port: int) -> dict[str, Any]:
    from redis.asyncio import Redis

    from lbdns.cluster.node import ClusterNode
    from lbdns.health_owner import HealthRecorder

    regions = REGIONS[: args.vantages] if args.vantages <= len(REGIONS) else REGIONS
    ts = targets(args.origins, args.pool_size, args.interval, regions)
    jobs: dict[tuple[str, str], list[Any]] = {}
    for t in ts:
        jobs.setdefault(t.job_key, []).append(t)
    nodes = []
    for i in range(args.vantages):
        rec = HealthRecorder(lambda _v: None)
        rec.set_targets(ts, publish=False)
        client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=5)
        node = ClusterNode(client, "bench", f"v{i}", regions[i % len(regions)], f"P{i}", rec,
                           sync_interval=args.sync_interval, timeout=5.0)
        node.set_targets(ts)
        await node.start()
        nodes.append(node)
    rng = random.Random(1)
    feeders = [asyncio.ensure_future(feed(n, jobs, args.interval, 500.0, rng, args.fail_share)) for n in nodes]
    admin = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    await asyncio.sleep(args.interval + 2 * args.sync_interval)
    await admin.config_resetstat()
    t0 = time.monotonic()
    await asyncio.sleep(args.duration)
    stats = await admin.info("commandstats")
    net = await admin.info("stats")
    elapsed = time.monotonic() - t0
    mem = await admin.info("memory")
    keys = await admin.dbsize()
    for f in feeders:
        f.cancel()
    await asyncio.gather(*feeders, return_exceptions=True)
    for n in nodes:
        await n.stop()
    await admin.aclose()
    calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    calls.pop("info", None)
    calls.pop("config|resetstat", None)
    usec = sum(v["usec"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat"))
    total = sum(calls.values())
    return {
        "origins": args.origins, "vantages": args.vantages, "pool_size": args.pool_size, "interval_s": args.interval,
        "sync_interval_s": args.sync_interval, "duration_s": round(elapsed, 1),
        "results_written_per_s": round(args.vantages * args.origins / args.interval, 1),
        "commands_per_s": round(total / elapsed, 1),
        "commands_per_s_by_command": {k: round(v / elapsed, 1) for k, v in sorted(calls.items())},
        "redis_cpu_us_per_s": round(usec / elapsed, 1),
        "net_in_bytes_per_s": round(int(net["total_net_input_bytes"]) / elapsed),
        "net_out_bytes_per_s": round(int(net["total_net_output_bytes"]) / elapsed),
        "used_memory_bytes": int(mem["used_memory"]), "used_memory_dataset_bytes": int(mem["used_memory_dataset"]),
        "keys": int(keys),
        "health_views_agree": len({tuple(sorted((k, h.state) for k, h in n.recorder.book.freeze(0).origins.items()))
                                   for n in nodes}) == 1,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--origins", type=int, default=1000)
    ap.add_argument("--vantages", type=int, default=3)
    ap.add_argument("--pool-size", type=int, default=10)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--sync-interval", type=float, default=0.5)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--fail-share", type=float, default=0.0, help="share of synthesized probes that fail")
    args = ap.parse_args()
    server = shutil.which("redis-server") or shutil.which("valkey-server")
    if server is None:
        print("bench_cluster: redis-server is not installed (scripts/install-system-deps)", file=sys.stderr)
        return 2
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                 "no", "--dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            out = asyncio.run(run(args, port))
        finally:
            proc.kill()
            proc.wait(10)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
