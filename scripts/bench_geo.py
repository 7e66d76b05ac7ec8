#!/usr/bin/env python3
"""Micro-benchmark of GeoIP lookups (not a test).

Reports µs per lookup for
  (a) memo hits — addresses whose network is already memoised (the steady state for repeated
      ECS subnets / resolvers), as text and as ``ipaddress`` objects, IPv4 and IPv6;
  (b) uncached lookups — ``GeoDatabase(cache_size=0)``: address parsing + ``maxminddb`` C reader +
      record conversion, i.e. the cost of every first sight of a network;
plus, for reference, the bare ``maxminddb`` reader call and ``resolve_location`` on a memo hit.

Default database: the GeoLite2-City embedded in ``maxminddb-geolite2`` (``GeoDatabase.default``).
Addresses are random public-looking IPv4 (and 2000::/4 IPv6) addresses; timing is the best of
``--rounds`` passes over ``--n`` addresses.

Usage: .venv/bin/python scripts/bench_geo.py [--n 20000] [--rounds 5] [--city PATH] [--asn PATH]
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lbdns.geo.data import default_regions
from lbdns.geo.location import resolve_location
from lbdns.geo.mmdb import GeoDatabase
from lbdns.geo.pops import Pop


def _random_v4(rng: random.Random, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        a = ipaddress.IPv4Address(rng.getrandbits(32))
        if a.is_global:
            out.append(str(a))
    return out


def _random_v6(rng: random.Random, n: int) -> list[str]:
    return [str(ipaddress.IPv6Address((0x2 << 124) | rng.getrandbits(124))) for _ in range(n)]


def _best_us(fn: Callable[[Any], object], items: Sequence[Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for x in items:
            fn(x)
        dt = time.perf_counter_ns() - t0
        best = min(best, dt / len(items) / 1000.0)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="addresses per pass (default 20000)")
    ap.add_argument("--rounds", type=int, default=5, help="passes; the best is reported (default 5)")
    ap.add_argument("--city", type=Path, help="City/Country MMDB (default: embedded GeoLite2-City 2018)")
    ap.add_argument("--asn", type=Path, help="optional ASN MMDB")
    args = ap.parse_args(argv)

    def open_db(cache_size: int) -> GeoDatabase:
        if args.city is None:
            return GeoDatabase.default(cache_size=cache_size)
        return GeoDatabase.open(args.city, args.asn, cache_size=cache_size)

    rng = random.Random(12345)
    v4 = _random_v4(rng, args.n)
    v6 = _random_v6(rng, args.n)
    v4_obj = [ipaddress.IPv4Address(a) for a in v4]
    v4_packed = [a.packed for a in v4_obj]

    cached = open_db(cache_size=4 * args.n)
    plain = open_db(cache_size=0)
    print(f"database: {cached.database_type} (build epoch {cached.build_epoch}), asn={cached.has_asn}")
    print(f"python {sys.version.split()[0]}, {args.n} addresses x {args.rounds} rounds, best pass\n")

    rows: list[tuple[str, float]] = []
    # (b) uncached
    rows.append(("uncached GeoDatabase.lookup, IPv4 text", _best_us(plain.lookup, v4, args.rounds)))
    rows.append(("uncached GeoDatabase.lookup, IPv6 text", _best_us(plain.lookup, v6, args.rounds)))
    raw = plain._city
    rows.append(
        (
            "  reference: bare maxminddb get_with_prefix_len, IPv4",
            _best_us(raw.get_with_prefix_len, v4, args.rounds),
        )
    )
    # (a) memo hits: warm first
    for a in v4:
        cached.lookup(a)
    for a in v6:
        cached.lookup(a)
    cached.hits = cached.misses = 0
    rows.append(("memo hit GeoDatabase.lookup, IPv4 text", _best_us(cached.lookup, v4, args.rounds)))
    rows.append(("memo hit GeoDatabase.lookup, IPv4Address", _best_us(cached.lookup, v4_obj, args.rounds)))
    rows.append(
        ("memo hit GeoDatabase.lookup, IPv4 packed bytes", _best_us(cached.lookup, v4_packed, args.rounds))
    )
    rows.append(("memo hit GeoDatabase.lookup, IPv6 text", _best_us(cached.lookup, v6, args.rounds)))
    hit_ratio = cached.hits / max(1, cached.hits + cached.misses)
    # neighbours: other addresses inside already memoised networks (same /24), never looked up before
    nb = [str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(a)) ^ 0x55)) for a in v4]
    cached.hits = cached.misses = 0
    rows.append(("memo, unseen neighbour in same /24, IPv4 (1st pass)", _best_us(cached.lookup, nb, 1)))
    nb_ratio = cached.hits / max(1, cached.hits + cached.misses)

    pop = Pop("IAD", "ENAM", "US", 38.94, -77.46)
    regions = default_regions()

    def loc(ip: str) -> object:
        return resolve_location(
            prefer_ecs="always",
            mode="resolver_ip",
            policy="proximity",
            need="coordinates",
            ecs_ip=ip,
            resolver_ip=None,
            pop=pop,
            lookup=cached.lookup,
            regions=regions,
        )

    rows.append(("resolve_location (ECS, memo hit), IPv4", _best_us(loc, v4, args.rounds)))

    width = max(len(r[0]) for r in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:8.3f} µs")
    print(f"\nmemo hit ratio in the hit passes: {hit_ratio:.3f}; neighbour pass: {nb_ratio:.3f}")
    print(f"memo size: {cached.cache_len} buckets")
    cached.close()
    plain.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
