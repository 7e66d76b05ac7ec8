"""What response rate limiting adds per UDP datagram, without sockets or dnsperf.

Builds an lbdns server on the example zones and feeds the UDP protocol object
(``UdpServer.datagram_received``) the ``scripts/bench`` workloads' queries, with a transport that
only counts what would be sent. Per workload it times, interleaved in blocks so that machine
noise hits every mode alike, the median ns per datagram with RRL

* ``off`` — no limiter;
* ``exempt`` — the source is in ``rrl.exempt`` (what ``scripts/bench`` measures);
* ``quiet`` — 16,384 sources, each far under the rate (the common case: the per-network bucket
  only);
* ``hot`` — one source over the rate (every response classified; most dropped or slipped).

    PYTHONPATH=. .venv/bin/python scripts/bench_rrl.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import dns.edns
import dns.message

from lbdns.app import App
from lbdns.config.settings import ServerSettings
from lbdns.server.rrl import RateLimiter, RrlParams
from lbdns.server.transports import UdpServer

ROOT = Path(__file__).resolve().parent.parent


class CountingTransport:
    """Stands in for the datagram transport: counts sends."""

    def __init__(self) -> None:
        self.sent = 0

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent += 1

    def is_closing(self) -> bool:
        return False


def workloads() -> dict[str, list[bytes]]:
    def q(name: str, **kw: Any) -> bytes:
        m = dns.message.make_query(name, "A", **kw)
        m.flags &= ~0x0100
        return m.to_wire()

    ecs = [q("geo.example.net", use_edns=0, options=[dns.edns.ECSOption(f"{1 + i % 200}.{i % 251}.{i % 7}.0", 24)])
           for i in range(4096)]
    return {"static": [q("static.example.com")], "lb": [q("www.example.com"), q("api.example.com")], "ecs": ecs}


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--block", type=int, default=20_000, help="datagrams per timed block")
    ap.add_argument("--rounds", type=int, default=7, help="blocks per mode and workload (median reported)")
    args = ap.parse_args()
    settings = ServerSettings.model_validate({"zones_dir": str(ROOT / "zones"), "listen": [],
                                              "admin": {"enabled": False}, "probes_enabled": False,
                                              "rrl": {"enabled": False}})
    app = App(settings, ROOT / "zones", use_geoip=True)
    await app.start()
    handler = app.handler
    assert handler is not None
    server = UdpServer(handler, app.pop_of(settings.pop))
    transport = CountingTransport()
    server.transport = transport  # type: ignore[assignment]
    limiters: dict[str, RateLimiter | None] = {
        "off": None,
        "exempt": RateLimiter(RrlParams(exempt=("127.0.0.0/8",)), time.monotonic),
        "quiet": RateLimiter(RrlParams(), time.monotonic),
        "hot": RateLimiter(RrlParams(), time.monotonic),
    }
    quiet_sources = [(f"10.{i >> 8}.{i & 255}.1", 5300) for i in range(16384)]
    quiet = limiters["quiet"]
    print(f"ns per datagram (median of {args.rounds} blocks of {args.block}); handler + transport + RRL")
    print(f"{'workload':8} " + " ".join(f"{m:>8}" for m in limiters) + "   exempt/off  quiet/off  hot/off")
    for name, queries in workloads().items():
        times: dict[str, list[float]] = {m: [] for m in limiters}
        for _ in range(args.rounds):
            for mode, limiter in limiters.items():
                handler.rrl = limiter
                sources = quiet_sources if mode == "quiet" else [("127.0.0.1", 5300)]
                n, k = len(queries), len(sources)
                t0 = time.perf_counter()
                for i in range(args.block):
                    server.datagram_received(queries[i % n], sources[i % k])
                times[mode].append((time.perf_counter() - t0) / args.block * 1e9)
        med = {m: statistics.median(v) for m, v in times.items()}
        ratios = [med[m] / med["off"] for m in ("exempt", "quiet", "hot")]
        assert quiet is not None and quiet.dropped == quiet.slipped == 0 and not quiet.buckets, "quiet went hot"
        print(f"{name:8} " + " ".join(f"{med[m]:8.0f}" for m in limiters)
              + f"   {ratios[0]:10.3f} {ratios[1]:10.3f} {ratios[2]:8.3f}")
    await app.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
