#!/usr/bin/env python3
"""Scale run of the probe scheduler: many origins, one probe per origin and interval.

Starts N local origins (TCP or HTTP listeners on 127.0.0.1, one port each) in a child process,
then probes all of them with :class:`lbdns.probes.ProbeScheduler` feeding a
:class:`lbdns.probes.HealthRecorder`, in this process, every ``--interval`` seconds
for ``--duration`` seconds and prints the schedule lag (actual probe start − due time) p50/p99,
the probe rate and the health outcome.

    .venv/bin/python scripts/bench_probes.py --kind http --origins 1000 --interval 5 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lbdns.config.model import Monitor, Pool
from lbdns.health.view import HealthView, OriginState
from lbdns.health_owner import HealthRecorder
from lbdns.probes import ProbeScheduler, build_targets


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards the hard limit; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        new = min(hard, max(needed, soft)) if hard != resource.RLIM_INFINITY else needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return soft, hard


# ------------------------------------------------------------------------------- listeners


async def _listeners(kind: str, n: int, conn: Connection) -> None:
    ports: list[int] = []
    if kind == "http":
        from aiohttp import web

        async def health(_req: web.Request) -> web.Response:
            return web.Response(text="alive")

        app = web.Application()
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        for _ in range(n):
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=512)
            await site.start()
        ports = [int(addr[1]) for addr in runner.addresses]
    else:
        async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        for _ in range(n):
            srv = await asyncio.start_server(accept, "127.0.0.1", 0, backlog=512)
            ports.append(srv.sockets[0].getsockname()[1])
    conn.send(ports)
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    loop.add_reader(conn.fileno(), on_stop)
    await stop


def _listener_main(kind: str, n: int, conn: Connection, fd_needed: int, use_uvloop: bool) -> None:
    raise_fd_limit(fd_needed)
    if use_uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(_listeners(kind, n, conn))


# ---------------------------------------------------------------------------------- bench


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0–1) of ``values`` (nearest rank)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


async def bench(args: argparse.Namespace, ports: list[int]) -> dict[str, object]:
    per_pool = max(1, args.origins // args.pools)
    pools: dict[str, Pool] = {}
    for i in range(0, len(ports), per_pool):
        name = f"pool-{i // per_pool:04d}"
        pools[name] = Pool.model_validate({
            "name": name, "monitor": "m",
            "origins": [{"name": f"o{j}", "address": "127.0.0.1", "port": p}
                        for j, p in enumerate(ports[i:i + per_pool])],
        })
    mon = Monitor.model_validate({
        "id": "m", "type": args.kind, "path": "/health", "interval": args.interval,
        "timeout": args.timeout, "retries": 0, "expected_body": "alive" if args.kind == "http" else "",
    })
    targets = build_targets(pools, {"m": mon})
    published: list[HealthView] = []
    recorder = HealthRecorder(published.append)
    recorder.set_targets(targets, publish=False)
    sched = ProbeScheduler(targets, recorder, concurrency=args.concurrency, jitter=args.interval)
    loop = asyncio.get_running_loop()
    # event-loop responsiveness: how late a 10 ms timer fires while probing
    loop_lag: list[float] = []

    async def ticker() -> None:
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            loop_lag.append(loop.time() - t - 0.01)

    tick = loop.create_task(ticker())
    t0 = time.monotonic()
    cpu0 = time.process_time()
    await sched.start()
    await asyncio.sleep(args.duration)
    await sched.stop()
    recorder.flush()
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    tick.cancel()
    lags = list(recorder.schedule_lag)
    view = recorder.view
    states = [view.state(t.pool.id, t.origin.name) for t in targets]
    return {
        "kind": args.kind,
        "origins": len(targets),
        "pools": len(pools),
        "interval_s": args.interval,
        "duration_s": round(wall, 2),
        "concurrency": args.concurrency,
        "loop": type(loop).__module__,
        "probes": recorder.probes_run,
        "probes_failed": recorder.probes_failed,
        "probes_per_s": round(recorder.probes_run / wall, 1),
        "expected_probes_per_s": round(len(targets) / args.interval, 1),
        "schedule_lag_ms_p50": round(pct(lags, 0.50) * 1000, 3),
        "schedule_lag_ms_p99": round(pct(lags, 0.99) * 1000, 3),
        "schedule_lag_ms_max": round(max(lags) * 1000, 3) if lags else None,
        "schedule_lag_ms_mean": round(statistics.fmean(lags) * 1000, 3) if lags else None,
        "loop_timer_lag_ms_p99": round(pct(loop_lag, 0.99) * 1000, 3),
        "publishes": len(published),
        "healthy": sum(1 for s in states if s is OriginState.HEALTHY),
        "unhealthy": sum(1 for s in states if s is OriginState.UNHEALTHY),
        "unknown": sum(1 for s in states if s is OriginState.UNKNOWN),
        "cpu_s": round(cpu, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=("tcp", "http"), default="http")
    ap.add_argument("--origins", type=int, default=1000)
    ap.add_argument("--pools", type=int, default=100, help="origins are spread evenly over this many pools")
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--timeout", type=int, default=2)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--uvloop", action="store_true", help="run both sides on uvloop")
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    args = ap.parse_args()

    fd_needed = args.origins + 4 * args.concurrency + 256
    soft, hard = raise_fd_limit(fd_needed)
    if soft < fd_needed:
        print(f"ulimit -n is {soft} (hard {hard}); need about {fd_needed}", file=sys.stderr)
        return 2
    parent, child = mp.Pipe()
    proc = mp.Process(target=_listener_main, args=(args.kind, args.origins, child, fd_needed, args.uvloop),
                      daemon=True)
    proc.start()
    try:
        if not parent.poll(60):
            print("listeners did not start within 60 s", file=sys.stderr)
            return 1
        ports: list[int] = parent.recv()
        if args.uvloop:
            import uvloop

            uvloop.install()
        result = asyncio.run(bench(args, ports))
    finally:
        parent.send("stop")
        proc.join(5)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
    result["fd_limit"] = soft
    result["cpus"] = os.cpu_count()
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
