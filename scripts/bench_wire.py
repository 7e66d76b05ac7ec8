"""Micro-benchmark of the hot-path wire codec (not a test).

Prints µs per call of :func:`lbdns.wire.parse_query` and :func:`lbdns.wire.build_response` for
typical queries (plain, EDNS with OPT, EDNS + ECS + COOKIE), and parse_query when every query
has a different ECS address (the Edns memo never hits). Run with
``.venv/bin/python scripts/bench_wire.py``; dnspython is used only to build the input packets.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

import dns.edns
import dns.message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from lbdns.wire import QNAME_POINTER, build_response, encode_rr, parse_query

NUMBER = 200_000
REPEAT = 5


def _best_us(stmt: object) -> float:
    """Best of REPEAT runs, in µs per call."""
    times = timeit.repeat(stmt, number=NUMBER, repeat=REPEAT)  # type: ignore[arg-type]
    return min(times) / NUMBER * 1e6


def main() -> None:
    """Run the benchmark and print one line per case."""
    answer = encode_rr(QNAME_POINTER, 1, 60, bytes([192, 0, 2, 1]))
    cases = {
        "plain (no EDNS)": dns.message.make_query("www.example.com", "A", use_edns=False),
        "EDNS (OPT, DO=0)": dns.message.make_query("www.example.com", "A", use_edns=0, payload=1232),
        "EDNS + ECS /24": dns.message.make_query(
            "www.example.com", "A", use_edns=0, options=[dns.edns.ECSOption("198.51.100.0", 24)]
        ),
        "EDNS + ECS + COOKIE": dns.message.make_query(
            "www.example.com",
            "A",
            use_edns=0,
            options=[dns.edns.ECSOption("198.51.100.0", 24), dns.edns.CookieOption(b"\x01" * 8, b"")],
        ),
    }
    print(f"{'case':24} {'parse_query':>12} {'build_response':>15}   (µs per call, best of {REPEAT})")
    for label, message in cases.items():
        wire = message.to_wire()
        query = parse_query(wire)
        parse_us = _best_us(lambda wire=wire: parse_query(wire))
        build_us = _best_us(
            lambda query=query: build_response(
                query,
                rcode=0,
                aa=True,
                answer=answer,
                ancount=1,
                max_size=1232,
                ecs_scope=24,
                server_cookie=b"\x02" * 8,
            )
        )
        print(f"{label:24} {parse_us:12.2f} {build_us:15.2f}")

    # Worst case for the Edns memo: every query carries a different ECS /24 (always a miss).
    packets = [
        dns.message.make_query(
            "www.example.com", "A", use_edns=0, options=[dns.edns.ECSOption(f"10.{i >> 8}.{i & 255}.0", 24)]
        ).to_wire()
        for i in range(8192)
    ]
    per_round = timeit.repeat(lambda: [parse_query(p) for p in packets], number=5, repeat=REPEAT)
    print(f"{'EDNS + ECS, memo miss':24} {min(per_round) / (5 * len(packets)) * 1e6:12.2f}")


if __name__ == "__main__":
    main()
