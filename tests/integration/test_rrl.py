"""Response rate limiting, black-box over real UDP/TCP sockets (BIND ``rate-limit``, NSD and
Knot RRL): a flood of identical queries from one network is limited (answered / slipped /
dropped), a resolver at 50 qps of ordinary queries never is, exempt networks and TCP never
are, a valid DNS cookie (RFC 7873) proves the source, random names under a wildcard or that do
not exist share one bucket per zone, and RRL is on by default in a real ``lbdns serve``.

Each test floods from its own loopback /24 (the whole 127.0.0.0/8 is bindable on Linux).
"""

from __future__ import annotations

import random
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
import yaml

from tests.fixtures.cli import start_cli
from tests.integration.harness import Server
from tests.integration.static_zone import recv_frame, write_static_zones
from tests.integration.test_reload import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``start(**settings)``: a server on the static zones with RRL at its defaults (plus the
    given ``rrl`` keys); stopped at teardown."""
    started: list[Server] = []

    def go(zones: Path | None = None, rrl: dict[str, Any] | None = None, **settings: Any) -> Server:
        srv = Server(zones or write_static_zones(tmp_path), tmp_path, geoip=False,
                     rrl={"enabled": True, **(rrl or {})}, **settings)
        started.append(srv)
        return srv

    yield go
    for srv in started:
        srv.stop()


def wire(name: str, rdtype: str = "A", qid: int = 0, payload: int | None = None,
         options: list[dns.edns.Option] | None = None) -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=0 if (payload or options) else False,
                               payload=payload or 1232, options=options or [])
    q.flags &= ~dns.flags.RD
    q.id = qid
    return q.to_wire()


@dataclass
class Flood:
    """What came back for ``sent`` queries: full answers, slips (TC=1, no records), nothing;
    UDP payload octets in and out."""

    sent: int
    answered: int
    slipped: int
    octets_in: int
    octets_out: int
    seconds: float
    longest_slip_excess: int  # max(len(slip) - len(its query)); must be ≤ 0

    @property
    def dropped(self) -> int:
        return self.sent - self.answered - self.slipped

    @property
    def amplification(self) -> float:
        return self.octets_out / self.octets_in

    def fractions(self) -> str:
        return (f"answered {self.answered / self.sent:.1%}, slipped {self.slipped / self.sent:.1%}, "
                f"dropped {self.dropped / self.sent:.1%} of {self.sent} in {self.seconds:.2f} s")


def flood(port: int, source: str, queries: list[bytes], *, pace: float = 0.0, settle: float = 0.5) -> Flood:
    """Send ``queries`` (IDs are set to their index) from ``source`` as fast as possible (or
    one every ``pace`` seconds) and collect replies until ``settle`` s of silence."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        s.bind((source, 0))
        s.setblocking(False)
        sent_len: dict[int, int] = {}
        replies: dict[int, bytes] = {}

        def drain() -> None:
            while True:
                try:
                    data = s.recv(65535)
                except BlockingIOError:
                    return
                replies[int.from_bytes(data[:2], "big")] = data

        t0 = time.monotonic()
        for i, q in enumerate(queries):
            data = i.to_bytes(2, "big") + q[2:]
            sent_len[i] = len(data)
            s.sendto(data, ("127.0.0.1", port))
            if pace:
                time.sleep(max(0.0, t0 + (i + 1) * pace - time.monotonic()))
            if i % 8 == 0:
                drain()
        seconds = time.monotonic() - t0
        last = time.monotonic()
        while time.monotonic() - last < settle:
            n = len(replies)
            time.sleep(0.02)
            drain()
            if len(replies) != n:
                last = time.monotonic()
    answered = slipped = 0
    excess = -1 << 30
    for qid, data in replies.items():
        msg = dns.message.from_wire(data)
        if msg.flags & dns.flags.TC and not (msg.answer or msg.authority or msg.additional):
            slipped += 1
            excess = max(excess, len(data) - sent_len[qid])
        else:
            answered += 1
    return Flood(len(queries), answered, slipped, sum(sent_len.values()), sum(len(d) for d in replies.values()),
                 seconds, excess)


def same(q: bytes, n: int) -> list[bytes]:
    return [q] * n


def test_flood_of_identical_queries_from_one_source_is_limited(start):
    srv = start()
    f = flood(srv.ports["IAD"], "127.0.21.1", same(wire("www.example.com"), 2000))
    print(f"\nflood of 2,000 identical queries: {f.fractions()}")
    # two bursts of 20 (the network's, then the response bucket's) + 20/s
    assert f.answered <= 40 + 20 * (f.seconds + f.answered / 2000) + 5
    limited = f.sent - f.answered
    assert abs(f.slipped - limited / 2) <= 2  # slip 2: every other limited response slips
    assert f.dropped > 0
    assert f.longest_slip_excess <= 0  # a slip is never longer than its query
    rrl = srv.app.handler.rrl  # type: ignore[union-attr]
    assert rrl is not None and rrl.dropped == f.dropped and rrl.slipped == f.slipped


def test_other_sources_and_names_are_not_affected_by_a_flood(start):
    srv = start()
    port = srv.ports["IAD"]
    assert flood(port, "127.0.22.1", same(wire("www.example.com"), 1000)).dropped > 0
    other_net = flood(port, "127.0.23.1", same(wire("www.example.com"), 10))
    assert other_net.answered == 10
    other_name = flood(port, "127.0.22.1", same(wire("mail.example.com"), 10))
    assert other_name.answered == 10


def _resolver_mix(rng: random.Random, i: int) -> bytes:
    if i % 10 == 0:  # 10 %: a name that does not exist (NXDOMAIN, 5/s at 50 qps)
        return wire(f"typo{rng.randrange(10**6)}.example.com", payload=1232)
    name, rdtype = rng.choice([
        ("www.example.com", "A"), ("www.example.com", "AAAA"), ("mail.example.com", "A"),
        ("ns1.example.com", "A"), ("example.com", "MX"), ("example.com", "TXT"), ("example.com", "NS"),
        ("example.com", "SOA"), ("chain-a.example.com", "A"), ("a.b.c.example.com", "A"),
        ("real.w.example.com", "A"), ("xz.example.com", "A"), ("target.example.net", "A"),
        ("hop.example.net", "A"), ("www.example.com", "MX"), ("x.sub.example.com", "A"),
        ("example.net", "SOA"), ("big.example.com", "A"),
    ])
    return wire(name, rdtype, payload=4096)


def test_resolver_at_50_qps_of_ordinary_queries_is_never_limited(start):
    srv = start()
    rng = random.Random(11)
    queries = [_resolver_mix(rng, i) for i in range(200)]
    f = flood(srv.ports["IAD"], "127.0.24.1", queries, pace=1 / 50)
    assert f.seconds >= 3.5
    assert (f.answered, f.slipped) == (200, 0), f.fractions()
    rrl = srv.app.handler.rrl  # type: ignore[union-attr]
    assert rrl is not None and rrl.dropped == rrl.slipped == 0
    # and RRL is really on for that network
    assert flood(srv.ports["IAD"], "127.0.24.1", same(wire("www.example.com"), 500)).dropped > 0


def test_exempt_networks_are_never_limited(start):
    srv = start(rrl={"exempt": ["127.0.25.0/24", "::1/128"]})
    f = flood(srv.ports["IAD"], "127.0.25.9", same(wire("www.example.com"), 2000))
    assert (f.answered, f.slipped) == (2000, 0), f.fractions()
    assert flood(srv.ports["IAD"], "127.0.26.9", same(wire("www.example.com"), 2000)).dropped > 0


def test_tcp_is_never_limited(start):
    srv = start()
    source = "127.0.27.1"
    assert flood(srv.ports["IAD"], source, same(wire("www.example.com"), 1000)).dropped > 0
    n = 500
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", srv.tcp_ports["IAD"]))
        q = wire("www.example.com")
        s.sendall(b"".join(len(q).to_bytes(2, "big") + i.to_bytes(2, "big") + q[2:] for i in range(n)))
        answers = [dns.message.from_wire(recv_frame(s)) for _ in range(n)]
    assert sorted(m.id for m in answers) == list(range(n))
    assert all(m.rcode() == dns.rcode.NOERROR and m.answer and not m.flags & dns.flags.TC for m in answers)


def test_a_valid_server_cookie_proves_the_source(start):
    srv = start()
    port = srv.ports["IAD"]
    source = "127.0.28.1"
    client = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.bind((source, 0))
        s.sendto(wire("www.example.com", options=[dns.edns.CookieOption(client, b"")]), ("127.0.0.1", port))
        first = dns.message.from_wire(s.recv(4096))
    server = next(o for o in first.options if isinstance(o, dns.edns.CookieOption)).server
    assert len(server) >= 8
    good = wire("www.example.com", options=[dns.edns.CookieOption(client, server)])
    f = flood(port, source, same(good, 1500))
    assert (f.answered, f.slipped) == (1500, 0), f.fractions()
    forged = wire("www.example.com", options=[dns.edns.CookieOption(client, bytes(8))])
    assert flood(port, source, same(forged, 1500)).dropped > 0


def test_random_names_share_one_bucket_per_zone(start):
    """Random-subdomain floods (NXDOMAIN) and random names under a wildcard are keyed by the
    zone, not by the query name, so varying the name does not escape the limit."""
    srv = start()
    port = srv.ports["IAD"]
    nx = flood(port, "127.0.29.1", [wire(f"r{i}.example.com") for i in range(2000)])
    assert nx.answered <= 40 + 20 * (nx.seconds + 1) + 5, nx.fractions()
    wild = flood(port, "127.0.30.1", [wire(f"r{i}.w.example.com") for i in range(2000)])
    assert wild.answered <= 40 + 20 * (wild.seconds + 1) + 5, wild.fractions()


# --- on by default, in a real process ------------------------------------------------------------------

def _metrics(admin: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_rrl_is_on_by_default_in_lbdns_serve(tmp_path):
    zones = write_static_zones(tmp_path)
    port, admin = free_port(), free_port()
    proc = start_cli("serve", "--zones", str(zones), "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                     "--no-probes", "--no-watch", "--log-level", "warning", cwd=tmp_path, output=tmp_path / "serve.log")
    try:
        deadline = time.monotonic() + 30
        while flood(port, "127.0.31.1", [wire("www.example.com")], settle=0.2).answered == 0:
            assert time.monotonic() < deadline and proc.poll() is None
        # another /24 than the start-up probe's: its buckets are full, no need to wait for a refill
        f = flood(port, "127.0.32.1", same(wire("www.example.com"), 2000))
        print(f"\nlbdns serve defaults, 2,000 identical queries: {f.fractions()}")
        assert f.answered < 200 and f.slipped > 500 and f.dropped > 500
        m = _metrics(admin)
        assert m["lbdns_rrl_dropped_total"] == f.dropped
        assert m["lbdns_rrl_slipped_total"] == f.slipped
        assert m['lbdns_rrl_table_entries{table="networks"}'] >= 2
        assert m['lbdns_rrl_table_entries{table="responses"}'] >= 1
    finally:
        proc.terminate()
        proc.wait(10)


# --- amplification ---------------------------------------------------------------------------------------

AMP_TXT = [f"t{i:02d}-" + "x" * 246 for i in range(14)]  # 14 × 250 octets: ≈ 3.6 KB, fits 4096


def write_amp_zones(directory: Path) -> Path:
    """``amp.test``: an apex like most (A, MX, TXT, NS, SOA) for ANY, ``txt`` with ≈ 3.6 KB of
    TXT, and ``lb60`` a load balancer whose one pool has 60 origins (steering off: all 60)."""
    zones = directory / "amp-zones"
    zones.mkdir(parents=True, exist_ok=True)
    pools = {"pools": [{"name": "sixty", "origins": [{"name": f"o{i}", "address": f"192.0.2.{i + 1}"}
                                                     for i in range(60)]}]}
    zone = {
        "zone": "amp.test",
        "soa": {"mname": "ns1.amp.test.", "rname": "hostmaster.amp.test.", "serial": 1, "refresh": 7200,
                "retry": 3600, "expire": 1209600, "minimum": 300, "ttl": 3600},
        "ns": {"ttl": 3600, "values": ["ns1.amp.test.", "ns2.amp.test."]},
        "records": {
            "": [{"type": "A", "ttl": 300, "values": ["192.0.2.200", "192.0.2.201"]},
                 {"type": "MX", "ttl": 300, "values": [{"preference": 10, "exchange": "mx1.amp.test."},
                                                       {"preference": 20, "exchange": "mx2.amp.test."}]},
                 {"type": "TXT", "ttl": 300, "values": ["v=spf1 mx -all", "google-site-verification=" + "x" * 43]}],
            "ns1": {"type": "A", "ttl": 3600, "value": "192.0.2.251"},
            "ns2": {"type": "A", "ttl": 3600, "value": "192.0.2.252"},
            "txt": {"type": "TXT", "ttl": 300, "values": AMP_TXT},
        },
        "load_balancers": {"lb60": {"ttl": 30, "steering_policy": "off", "default_pools": ["sixty"],
                                    "fallback_pool": "sixty"}},
    }
    (zones / "_pools.yaml").write_text(yaml.safe_dump(pools, sort_keys=False))
    (zones / "amp.test.yaml").write_text(yaml.safe_dump(zone, sort_keys=False))
    return zones


AMP_CASES = [("ANY amp.test (apex; RFC 8482: one RRset)", "amp.test", "ANY"),
             ("ANY txt.amp.test (its one RRset: 3.6 KB TXT)", "txt.amp.test", "ANY"),
             ("TXT txt.amp.test (3.6 KB)", "txt.amp.test", "TXT"),
             ("A lb60.amp.test (LB, 60 addresses)", "lb60.amp.test", "A")]


# Floods without RRL are 200 queries: every one is answered in full, so their out/in ratio is
# one answer's over one query's whatever the count, and 200 show that it is sustained. Floods
# with RRL stay at 2,000: their ratio falls with the count (the first second's 20 answers are
# full-size), and the bound below is a claim about a flood of 2,000.
AMP_OFF, AMP_ON = 200, 2000


def test_amplification_with_and_without_rrl(start, tmp_path):
    """Bytes out / bytes in (UDP payloads) for floods of identical queries with EDNS payload
    4096 (the server's ``edns_udp_payload`` at its maximum, 4096), RRL off and on (2,000)."""
    zones = write_amp_zones(tmp_path)
    off = start(zones, rrl={"enabled": False}, edns_udp_payload=4096)
    on = start(zones, edns_udp_payload=4096)
    rows = []
    for k, (label, name, rdtype) in enumerate(AMP_CASES):
        q = wire(name, rdtype, payload=4096)
        one = flood(off.ports["IAD"], f"127.0.{40 + k}.1", [q], settle=0.2)
        assert one.answered == 1 and one.octets_out > len(q)
        f_off = flood(off.ports["IAD"], f"127.0.{40 + k}.1", same(q, AMP_OFF))
        f_on = flood(on.ports["IAD"], f"127.0.{50 + k}.1", same(q, AMP_ON))
        rows.append((label, len(q), one.octets_out, f_off, f_on))
        assert f_off.answered >= 0.9 * AMP_OFF  # a few replies may overflow our socket on a busy machine
    print("\n| query | query octets | answer octets | RRL off: out/in | RRL on: out/in "
          "| RRL on: answered/slipped/dropped |")
    print("|---|---|---|---|---|---|")
    for label, qlen, alen, f_off, f_on in rows:
        print(f"| {label} | {qlen} | {alen} | {f_off.amplification:.1f} | {f_on.amplification:.2f} | "
              f"{f_on.answered}/{f_on.slipped}/{f_on.dropped} |")
    for _, _, _, f_off, f_on in rows:
        assert f_on.amplification < 3 and f_on.amplification < f_off.amplification / 4
        assert f_on.longest_slip_excess <= 0
