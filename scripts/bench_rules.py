"""Micro-benchmark of compiled custom-rule conditions (not a test).

Prints µs per evaluation for single rules of several kinds and for a set of 20 rules of mixed
kinds evaluated one after the other (what the answer path does for an LB with 20 rules and no
``terminates``). Run with ``.venv/bin/python scripts/bench_rules.py``.
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from lbdns.rules import RuleFields, compile_condition

NUMBER = 200_000
REPEAT = 5

SINGLE = {
    "ip.src in {0.0.0.0/1} (EX-34)": "ip.src in {0.0.0.0/1}",
    "dns.qry.type == 1": "dns.qry.type == 1",
    "region eq string": 'cf.load_balancer.region == "ENAM"',
    "ECS and addr (EX-36)": 'dns.rr.opt.client and dns.rr.opt.client.addr eq "203.0.113.0"',
    "IP set, 8 CIDRs v4+v6": (
        "ip.src in {10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 198.51.100.0/24 "
        "2001:db8::/32 fc00::/7 fe80::/10}"
    ),
    "wildcard": 'dns.qry.name wildcard "*.example.com."',
    "matches": 'dns.qry.name matches "^lb\\\\.[a-z]+\\\\.com\\\\.$"',
}

TWENTY = [
    "ip.src in {0.0.0.0/1}",
    "dns.qry.type == 28",
    'cf.load_balancer.region == "WEU"',
    'dns.rr.opt.client and dns.rr.opt.client.addr eq "203.0.113.0"',
    'dns.qry.name eq "lb.example.com." and dns.qry.name.len eq 15',
    "ip.src.asnum in {64500..64510 13335 15169}",
    'lbdns.client.country in {"DE" "FR" "GB"}',
    'dns.qry.name wildcard "*.eu.example.com."',
    'dns.qry.name matches "^api[0-9]*\\\\."',
    "ip.src in {10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 2001:db8::/32}",
    'not cf.load_balancer.region in {"ENAM" "WNAM"}',
    "dns.qry.type in {1 28} and ip.src.asnum ne 64496",
    'dns.qry.name contains ".internal."',
    'starts_with(dns.qry.name, "www.")',
    'lower(cf.load_balancer.name) eq "lb.example.com"',
    'http.host eq "lb.example.com"',
    "dns.qry.qu and not dns.rr.opt.client",
    'cf.load_balancer.region eq "ENAM" xor dns.qry.type eq 1',
    "ip.src eq 198.51.100.0/24 or ip.src eq 203.0.113.7",
    'dns.qry.name strict wildcard "LB.*"',
]


def _best_us(fn: Callable[[], object], number: int) -> float:
    """Best of REPEAT runs, in µs per call."""
    return min(timeit.repeat(fn, number=number, repeat=REPEAT)) / number * 1e6


def main() -> None:
    """Compile the rules, run the benchmark, print one line per case."""
    f = RuleFields(
        lb_name="lb.example.com",
        region="ENAM",
        ip_src=IPv4Address("198.51.100.5"),
        asnum=64502,
        qname="lb.example.com.",
        qtype=1,
        ecs_present=True,
        ecs_addr="198.51.100.0",
        country="US",
    )
    print(f"{'case':34} {'µs/eval':>8}   (best of {REPEAT} × {NUMBER:,})")
    for label, text in SINGLE.items():
        ev = compile_condition(text).evaluate
        print(f"{label:34} {_best_us(lambda ev=ev: ev(f), NUMBER):8.3f}")
    evaluators = tuple(compile_condition(text).evaluate for text in TWENTY)

    def all_twenty() -> int:
        return sum(1 for ev in evaluators if ev(f))

    n20 = NUMBER // 10
    total = _best_us(all_twenty, n20)
    print(f"{'20 mixed rules (all evaluated)':34} {total:8.3f}   ({total / 20:.3f} per rule)")
    mean_one = sum(_best_us(lambda ev=ev: ev(f), n20) for ev in evaluators) / len(evaluators)
    print(f"{'mean single rule of the 20':34} {mean_one:8.3f}")


if __name__ == "__main__":
    main()
