"""In-process benchmark of the query path (not a test): µs of CPU per ``Handler.handle`` call.

Builds the shipped example zones (``zones/``) into a snapshot, a healthy health view and a
:class:`~lbdns.server.handler.Handler` with the GeoLite2-City database of the
``maxminddb-geolite2`` package (or ``--mmdb FILE``), then answers pre-built query packets in a
loop, the way the UDP transport calls the handler (no sockets, no event loop). Workloads:

* ``static`` — ``static.example.com A``, one fixed-case packet, no EDNS;
* ``static_0x20`` — the same name with random letter case per query (RFC draft "0x20");
* ``lb`` — ``www.example.com A`` (failover, multi-answer) and ``api.example.com A`` (weighted
  single answer), fixed case, alternating;
* ``ecs_random24`` — ``geo.example.net A`` (proximity) with EDNS and a random public /24 ECS
  per query, drawn from 65,536 networks each seen once before the timed passes (as dnsperf
  cycling scripts/bench's file of 65,536 queries);
* ``cookie`` — ``www.example.com A`` with a DNS cookie (client cookie; half also carry the
  server cookie back), 0x20 case;
* ``ecs_new24`` — as ``ecs_random24``, but every query's /24 is one never seen before (its GeoIP
  network may be new; its location often is not);
* ``nxdomain`` — random names under ``example.com`` (NXDOMAIN + SOA), EDNS;
* ``nx_deep`` — random names two labels below ``example.com`` (NXDOMAIN + SOA), EDNS;
* ``wildcard`` — random names under ``*.preview.example.com`` (answer synthesized, RFC 4592);
* ``nodata_qtype`` — ``static.example.com`` with a random unassigned QTYPE (NODATA + SOA);
* ``mix`` — 0x20 on all, a cookie on half, a random /24 ECS on half, 10 % random NXDOMAIN names,
  over static, LB and geo names (the resolver-shaped mix of scripts/bench).

Each workload is run ``--rounds`` times (after one warm-up pass); the median µs per query is
printed. The fixed-case workloads repeat one packet list (as dnsperf repeats its file); the
resolver-shaped ones (0x20, ECS, cookie, NXDOMAIN, mix) get a fresh list every pass, so no
query's exact bytes are ever seen twice. ``--evict-every K`` writes 64 MB between chunks of K
queries (not timed), so each chunk starts with cold caches, as the queries after a stall do;
the difference from the plain run is what answering pays to come back. Run it pinned when the
machine is shared, e.g. ``taskset -c 1 .venv/bin/python scripts/bench_plan.py``.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

from lbdns.config.settings import ServerSettings  # noqa: E402
from lbdns.config.validate import load_config  # noqa: E402
from lbdns.geo.data import default_regions  # noqa: E402
from lbdns.geo.mmdb import GeoDatabase  # noqa: E402
from lbdns.geo.pops import Pop  # noqa: E402
from lbdns.health.view import HealthView, OriginHealth, OriginState  # noqa: E402
from lbdns.server.handler import Handler  # noqa: E402
from lbdns.server.state import Current, StateRef  # noqa: E402
from lbdns.snapshot import build_snapshot  # noqa: E402

POP = Pop("IAD", "ENAM", "US", 38.94, -77.46)
PEER = "127.0.0.1"
COUNT = 8192


def _case(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in name)


def _networks(count: int, seed: int = 99) -> list[str]:
    """``count`` random public IPv4 /24 networks (as text)."""
    rng = random.Random(seed)
    nets: list[str] = []
    while len(nets) < count:
        a = rng.randrange(1, 224)
        if a not in (10, 127, 100, 169, 172, 192, 198, 203):
            nets.append(f"{a}.{rng.randrange(256)}.{rng.randrange(256)}.0")
    return nets


NETWORKS = _networks(65_536)
"""The ECS networks clients send from (as scripts/bench: 65,536 random public /24s)."""


def _public24(rng: random.Random) -> str:
    return rng.choice(NETWORKS)


def _query(name: str, *, edns: bool = False, ecs: str | None = None, cookie: bytes | None = None,
           qid: int = 1, rdtype: int | str = "A") -> bytes:
    options: list[Any] = []
    if ecs is not None:
        options.append(dns.edns.ECSOption(ecs, 24))
    if cookie is not None:
        options.append(dns.edns.GenericOption(10, cookie))
    q = dns.message.make_query(name, rdtype, use_edns=0 if (edns or options) else False, payload=1232,
                               options=options)
    q.id = qid
    return q.to_wire()


def _server_cookie(h: Handler, client: bytes) -> bytes:
    """The server cookie ``h`` gives ``client`` at PEER (asked once, as a resolver would)."""
    out = h.handle(_query("www.example.com", cookie=client), PEER, False, POP)
    assert out is not None
    m = dns.message.from_wire(out)
    (opt,) = [o for o in m.options if o.otype == 10]
    return bytes(opt.server)  # type: ignore[attr-defined]


def workloads(h: Handler, seed: int = 7) -> dict[str, list[bytes]]:
    """Packet lists per workload (COUNT packets each, deterministic for ``seed``)."""
    rng = random.Random(seed)
    cookies = [rng.randbytes(8) for _ in range(64)]
    servers = {c: _server_cookie(h, c) for c in cookies}

    def label() -> str:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))

    def nx() -> str:
        return label() + ".example.com"

    fresh = _networks(COUNT, seed=1000 + seed)  # not in NETWORKS (with overwhelming odds)

    def mixed(i: int) -> bytes:
        if rng.random() < 0.1:
            name = nx()
        else:
            name = ("static.example.com", "www.example.com", "api.example.com", "geo.example.net")[i % 4]
        c = rng.choice(cookies) if rng.random() < 0.5 else None
        if c is not None and rng.random() < 0.5:
            c = c + servers[c]
        ecs = _public24(rng) if rng.random() < 0.5 else None
        return _query(_case(rng, name), edns=True, ecs=ecs, cookie=c, qid=rng.randrange(65536))

    out = {
        "static": [_query("static.example.com", qid=i) for i in range(COUNT)],
        "static_0x20": [_query(_case(rng, "static.example.com"), qid=i) for i in range(COUNT)],
        "lb": [_query(("www.example.com", "api.example.com")[i % 2], qid=i) for i in range(COUNT)],
        "ecs_random24": [_query("geo.example.net", edns=True, ecs=_public24(rng), qid=i) for i in range(COUNT)],
        "cookie": [],
        "ecs_new24": [_query("geo.example.net", edns=True, ecs=fresh[i], qid=i) for i in range(COUNT)],
        "nxdomain": [_query(nx(), edns=True, qid=i) for i in range(COUNT)],
        "nx_deep": [_query(f"{label()}.{nx()}", edns=True, qid=i) for i in range(COUNT)],
        "wildcard": [_query(f"{label()}.preview.example.com", edns=True, qid=i) for i in range(COUNT)],
        "nodata_qtype": [_query("static.example.com", edns=True, rdtype=rng.randrange(1000, 30000), qid=i)
                         for i in range(COUNT)],
        "mix": [mixed(i) for i in range(COUNT)],
    }
    for i in range(COUNT):
        c = cookies[i % len(cookies)]
        out["cookie"].append(_query(_case(rng, "www.example.com"), cookie=c + servers[c] if i % 2 else c, qid=i))
    return out


def build_handler(mmdb: str | None) -> Handler:
    s = ServerSettings.model_validate({"zones_dir": str(ROOT / "zones")})
    loaded = load_config(ROOT / "zones", s)
    snap = build_snapshot(loaded, s)
    origins = {(pid, o.name): OriginHealth(OriginState.HEALTHY, "No failures")
               for pid, pool in snap.config.pools.items() for o in pool.origins}
    view = HealthView(1, origins, {})
    geo = GeoDatabase.open(mmdb) if mmdb else GeoDatabase.default()
    return Handler(StateRef(Current(snap, view)), geo=geo.lookup, rng=random.Random(1), regions=default_regions())


FIXED = ("static", "lb")
"""Workloads whose packets repeat (one fixed-case list)."""


EVICT_BYTES = 64 << 20
"""What ``--evict-every`` writes between chunks: more than the last-level cache of the machines
we measure on, so the next queries find none of their memory in a cache."""


def run(h: Handler, lists: list[list[bytes]], evict_every: int = 0) -> float:
    """Median µs of CPU per query over the passes after the first (the warm-up). With
    ``evict_every`` K > 0, :data:`EVICT_BYTES` are written between chunks of K queries (not
    timed): the cost of answering after another process or the hypervisor has had the core's
    caches, which is what a server pays after a stall."""
    handle = h.handle
    for p in lists[0]:  # warm-up, and a check that everything is answered
        assert handle(p, PEER, False, POP) is not None
    junk = bytearray(EVICT_BYTES) if evict_every > 0 else bytearray()
    ones = b"\x01" * (len(junk) // 64)
    times = []
    for packets in lists[1:]:
        chunks = ([packets[i:i + evict_every] for i in range(0, len(packets), evict_every)]
                  if evict_every > 0 else [packets])  # sliced before the clock runs
        spent = 0.0
        for chunk in chunks:
            if evict_every > 0:
                junk[::64] = ones  # one write per 64-octet cache line
            t0 = time.process_time()
            for p in chunk:
                handle(p, PEER, False, POP)
            spent += time.process_time() - t0
        times.append(spent / len(packets) * 1e6)
    return statistics.median(times)


def plan_memory(h: Handler, count: int) -> None:
    """Print the bytes the serving plan holds per LB selection and per static entry, measured with
    tracemalloc while ``count`` distinct client networks (one selection per GeoIP record) and
    the zone's static names are learnt, and what the caps of lbdns.serving bound a plan to."""
    import tracemalloc

    from lbdns import serving

    rng = random.Random(3)
    nets = _networks(count, seed=11)
    packets = [_query("geo.example.net", ecs=n) for n in nets]
    statics = [_query(f"n{i}.example.com") for i in range(2000)]
    geo = h.geo
    assert geo is not None
    for n in nets:  # GeoIP records cached first: only the plan is measured
        geo(bytes(int(x) for x in n.split(".")))
    h.ref.publish_snapshot(h.ref.current.snapshot)  # an empty plan
    plan = h.ref.current.plan
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for p in packets:
        h.handle(p, PEER, False, POP)
    sel_bytes = tracemalloc.get_traced_memory()[0] - before
    sels = plan.selections
    mid = tracemalloc.get_traced_memory()[0]
    for p in statics:
        h.handle(p, PEER, False, POP)
    nx_bytes = tracemalloc.get_traced_memory()[0] - mid
    tracemalloc.stop()
    per_sel = sel_bytes / max(1, sels)
    print(f"# plan memory: {sels} selections learnt from {count} networks: {sel_bytes / 1e6:.1f} MB, "
          f"{per_sel:.0f} B per selection; 2,000 random NXDOMAIN names: {nx_bytes} B in all "
          f"(names kept: {len(plan.names)}, parents kept: {len(plan.below)})")
    cap = serving.MAX_SELECTIONS
    print(f"# cap: MAX_SELECTIONS={cap:,} → ≤ {cap * per_sel / 1e6:.0f} MB of selections per plan; "
          f"MAX_NAMES={serving.MAX_NAMES:,} (name, type) entries")
    _ = rng


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mmdb", help="City MMDB file (default: the maxminddb-geolite2 package's)")
    ap.add_argument("--workloads", default="static,static_0x20,lb,ecs_random24,ecs_new24,cookie,nxdomain,nx_deep,"
                                           "wildcard,nodata_qtype,mix")
    ap.add_argument("--memory", type=int, metavar="N", help="measure the plan's memory with N client networks")
    ap.add_argument("--evict-every", type=int, default=0, metavar="K",
                    help="write 64 MB between chunks of K queries (untimed): the cost with cold caches")
    args = ap.parse_args()
    h = build_handler(args.mmdb)
    if args.memory:
        plan_memory(h, args.memory)
        return 0
    names = args.workloads.split(",")
    passes = [workloads(h, seed) for seed in range(args.rounds + 1)]
    for net in NETWORKS:  # every client network seen once before (dnsperf cycles its file)
        h.handle(_query("geo.example.net", ecs=net), PEER, False, POP)
    gc.collect()
    gc.freeze()
    print(f"# load average {os.getloadavg()[0]:.2f}; µs CPU per query, median of {args.rounds} rounds "
          f"of {COUNT} queries" + (f", caches evicted every {args.evict_every} queries" if args.evict_every else ""))
    for name in names:
        lists = [passes[0][name]] * (args.rounds + 1) if name in FIXED else [p[name] for p in passes]
        print(f"{name:14} {run(h, lists, args.evict_every):7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
