"""Hostname origins that cannot hurt (issue 15 item 4) and hostnames resolved ahead of queries
(issue 13 item 3), black-box: a real lbdns on loopback whose ``upstream_resolvers`` is a real
DNS server the test runs (:class:`~tests.integration.upstream_dns.UpstreamDns`, counting every
packet it receives).
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.rcode
import pytest

from tests.integration.harness import Fixture, Server, addresses
from tests.integration.upstream_dns import UpstreamDns

FALLBACK = {"192.0.2.99"}


@pytest.fixture
def upstream() -> Iterator[UpstreamDns]:
    up = UpstreamDns()
    yield up
    up.stop()


def hostname_lb(fx: Fixture, lb: str, address: str, **origin: Any) -> None:
    """An unmonitored pool ``p-<lb>`` with one origin at ``address`` and LB ``<lb>`` using it
    (fallback p-fallback)."""
    fx.account["pools"].append({"name": f"p-{lb}", "origins": [{"name": "h", "address": address, **origin}]})
    fx.zone["load_balancers"][lb] = {"default_pools": [f"p-{lb}"], "fallback_pool": "p-fallback"}


def blast(port: int, name: str, count: int, timeout: float = 5.0) -> int:
    """Send ``count`` A queries for ``name`` at once over UDP (one socket, distinct IDs), then
    collect the answers; returns how many arrived."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1", 0))
        wire = dns.message.make_query(name, "A").to_wire()
        packets = [i.to_bytes(2, "big") + wire[2:] for i in range(count)]
        for p in packets:
            s.sendto(p, ("127.0.0.1", port))
        s.settimeout(timeout)
        got = 0
        try:
            while got < count:
                s.recv(4096)
                got += 1
        except TimeoutError:
            pass
        return got


def test_lookup_that_leads_back_into_lbdns_is_cut_off(fx, serve, upstream, caplog):
    """An origin hostname outside lbdns's zones whose resolution leads back into lbdns (the
    upstream resolver follows ``alias.other.test CNAME lb-loop.example.com`` and asks lbdns for
    it): a query for the LB is answered at once from the fallback, the lookup does not recurse
    (a handful of self-queries, not a storm), and other names are answered without delay."""
    hostname_lb(fx, "lb-loop", "alias.other.test")
    s = serve(fx, upstream_resolvers=[f"127.0.0.1:{upstream.port}"], hostname_cache_max_ttl=1)
    upstream.forward["alias.other.test."] = ("127.0.0.1", s.ports["IAD"], "lb-loop.example.com.")
    time.sleep(1.5)  # past a refresh: the loop is in play before the query
    before = upstream.forwarded
    stop = threading.Event()
    latencies: list[float] = []

    def other_queries() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            with contextlib.suppress(dns.exception.Timeout):
                s.query("ns1.example.com", timeout=3.0)
            latencies.append(time.monotonic() - t0)
            time.sleep(0.01)

    t = threading.Thread(target=other_queries)
    t.start()
    t0 = time.monotonic()
    try:
        r = s.query("lb-loop.example.com", timeout=3.0)
        first = time.monotonic() - t0
    finally:
        time.sleep(2.0)
        stop.set()
        t.join(10)
    self_queries = upstream.forwarded - before
    print(f"\nloop: answer in {first * 1000:.1f} ms, self-queries in 2 s: {self_queries}, other queries: "
          f"n={len(latencies)} median {statistics.median(latencies) * 1000:.1f} ms max {max(latencies) * 1000:.1f} ms")
    assert r.rcode() == dns.rcode.NOERROR and addresses(r) == FALLBACK
    assert first < 0.5
    assert self_queries <= 12  # ~2 per refresh (A, AAAA) at a 1 s cache, never a cascade
    assert max(latencies) < 0.25
    assert any("alias.other.test" in r.getMessage() and "leads back to itself" in r.getMessage()
               for r in caplog.records if r.name == "lbdns.hostnames")


def test_concurrent_queries_cost_no_upstream_packets(fx, serve, upstream):
    """2,000 concurrent queries for an LB with a hostname origin: the name was resolved before
    the server answered, so the burst sends nothing upstream (old code: one A and one AAAA
    lookup per query, 4,000 packets)."""
    upstream.records["origin-c.other.test."] = ["192.0.2.91"]
    upstream.delay = 1.5  # a slow upstream: every query of the burst arrives before it answers
    hostname_lb(fx, "lb-c", "origin-c.other.test")
    s = serve(fx, upstream_resolvers=[f"127.0.0.1:{upstream.port}"], hostname_cache_max_ttl=60)
    before = upstream.total
    got = blast(s.ports["IAD"], "lb-c.example.com", 2000)
    during = upstream.total - before
    print(f"\ncoalescing: 2000 queries, {got} answers, upstream packets before the burst {before}, "
          f"during it {during}")
    assert got >= 1900
    assert during <= 2
    assert addresses(s.query("lb-c.example.com")) == {"192.0.2.91"}


def test_new_address_is_served_after_the_background_refresh(fx, serve, upstream):
    """The upstream changes a hostname's address while no query comes in: the background
    refresh picks it up, so the very first query afterwards gets the new address, at once
    (old code: the first query after expiry got the stale address and started the refresh)."""
    upstream.records["origin-r.other.test."] = ["192.0.2.61"]
    upstream.ttl = 1
    hostname_lb(fx, "lb-r", "origin-r.other.test")
    s = serve(fx, upstream_resolvers=[f"127.0.0.1:{upstream.port}"], hostname_cache_max_ttl=5)
    assert addresses(s.query("lb-r.example.com")) == {"192.0.2.61"}
    upstream.records["origin-r.other.test."] = ["192.0.2.62"]
    before = upstream.total
    time.sleep(1.5)  # no queries: only the refresh can learn the new address
    assert upstream.total > before
    t0 = time.monotonic()
    r = s.query("lb-r.example.com")
    took = time.monotonic() - t0
    assert addresses(r) == {"192.0.2.62"}
    assert took < 0.1


class _Http:
    """An HTTP origin on 127.0.0.1 answering 200 to everything."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_in_zone_hostname_origin_healthy_at_warm_start_without_upstream(fx, tmp_path, upstream):
    """An origin named inside a zone lbdns serves (``web.example.com A 127.0.0.1``): probed
    healthy in the warm-start round and answered flattened, while the upstream resolver (which
    knows nothing) receives no packet (old code: "DNS Unknown Host" and the fallback)."""
    from lbdns.health.view import OriginState

    http = _Http()
    try:
        fx.zone["records"]["web"] = {"type": "A", "ttl": 300, "value": "127.0.0.1"}
        # the base pools' origins (192.0.2.x, unreachable) are probed too and the warm-start
        # round waits for them: 1 s and no retry instead of 5 s × 3 attempts; their outcome
        # is not what this test looks at
        fx.account["monitors"][0].update(timeout=1, retries=0)
        fx.account["monitors"].append({"id": "m-web", "type": "http", "path": "/", "port": http.port,
                                       "interval": 60, "timeout": 2, "retries": 0})
        hostname_lb(fx, "lb-web", "web.example.com")
        fx.pool("p-lb-web")["monitor"] = "m-web"
        zones = fx.write(tmp_path)
        s = Server(zones, tmp_path, health="probes", probes_enabled=True, warm_start=True,
                   upstream_resolvers=[f"127.0.0.1:{upstream.port}"])
        try:
            state = s.app.ref.current.health.origins[("p-lb-web", "h")]
            assert state.state == OriginState.HEALTHY, state
            assert addresses(s.query("lb-web.example.com")) == {"127.0.0.1"}
            assert upstream.total == 0
        finally:
            s.stop()
    finally:
        http.stop()


def test_check_rejects_origin_hostnames_leading_back_to_their_load_balancer(fx, tmp_path):
    """``lbdns check`` (a real process) rejects, with located errors, an origin that names its own
    load balancer and one that gets back to it through a CNAME and a second load balancer; an
    origin naming another load balancer that does not lead back stays valid."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    hostname_lb(fx, "lb-self", "LB-Self.example.com")  # directly (any case)
    hostname_lb(fx, "lb-a", "alias.example.com")  # alias CNAME lb-b; lb-b's origin is lb-a
    fx.zone["records"]["alias"] = {"type": "CNAME", "ttl": 60, "value": "lb-b.example.com."}
    hostname_lb(fx, "lb-b", "lb-a.example.com")
    hostname_lb(fx, "lb-ok", "lb.example.com")  # another LB, no way back
    zones = fx.write(tmp_path)
    r = subprocess.run([sys.executable, "-m", "lbdns.cli", "check", str(zones)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if "E-HOST-LOOP" in line]
    pattern = (re.escape(str(zones / "_account.yaml"))
               + r":\d+:\d+: pools\[(\d+)\]\.origins\[0\]\.address: E-HOST-LOOP: (.*)")
    found = {}
    for line in errors:
        m = re.fullmatch(pattern, line)
        assert m, line
        found[fx.account["pools"][int(m.group(1))]["name"]] = m.group(2)
    assert set(found) == {"p-lb-self", "p-lb-a", "p-lb-b"}, r.stderr
    assert found["p-lb-self"].startswith("origin address 'LB-Self.example.com' leads back to load balancer "
                                         "lb-self.example.com, which uses pool 'p-lb-self' (lb-self.example.com)")
    assert ("(alias.example.com → lb-b.example.com → lb-a.example.com)" in found["p-lb-a"]), found["p-lb-a"]


def test_concurrent_lookups_of_one_name_share_one_upstream_query(upstream):
    """100 resolutions of one name started together (reloads, refreshes) reach the upstream as one
    A and one AAAA query."""
    import asyncio

    from lbdns.server.hostnames import HostnameResolver

    upstream.records["shared.other.test."] = ["192.0.2.93", "2001:db8::93"]
    upstream.delay = 0.3
    resolver = HostnameResolver([f"127.0.0.1:{upstream.port}"])

    async def run() -> None:
        await asyncio.gather(*(resolver.resolve(["shared.other.test."]) for _ in range(100)))

    asyncio.run(run())
    assert upstream.packets == {("shared.other.test.", "A"): 1, ("shared.other.test.", "AAAA"): 1}
    got = resolver.addresses("shared.other.test.")
    assert got.ok and len(got.v4) == 1 and len(got.v6) == 1


def test_reload_resolves_new_hostnames_before_publishing(fx, serve, upstream):
    """A reload adding a load balancer with a hostname origin: the name is resolved before the
    new configuration serves, so its first queries send nothing upstream and get the address."""
    upstream.records["origin-n.other.test."] = ["192.0.2.94"]
    s = serve(fx, upstream_resolvers=[f"127.0.0.1:{upstream.port}"], hostname_cache_max_ttl=60)
    hostname_lb(fx, "lb-n", "origin-n.other.test")
    fx.write(s.zones.parent)
    assert s.reload()
    before = upstream.total
    assert before == 2  # resolved during the reload: one A, one AAAA
    for _ in range(20):
        assert addresses(s.query("lb-n.example.com")) == {"192.0.2.94"}
    assert upstream.total == before


def test_origin_naming_another_load_balancer_takes_its_answer_without_upstream(fx, serve, upstream):
    """An origin whose hostname is another load balancer served here (lb.example.com, failover
    over IP pools) resolves to that load balancer's answer, health included, with no packet to
    the upstream resolver (old code: the upstream's NXDOMAIN, so the fallback answered)."""
    hostname_lb(fx, "lb-via", "lb.example.com")
    s = serve(fx, upstream_resolvers=[f"127.0.0.1:{upstream.port}"], hostname_cache_max_ttl=1)
    assert addresses(s.query("lb-via.example.com")) == {"192.0.2.10", "192.0.2.11"}
    from lbdns.health.view import OriginState

    s.set_health({("p-us-east", "e1"): OriginState.UNHEALTHY, ("p-us-east", "e2"): OriginState.UNHEALTHY})
    deadline = time.monotonic() + 3
    while addresses(s.query("lb-via.example.com")) != {"192.0.2.20", "192.0.2.21"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert addresses(s.query("lb-via.example.com")) == {"192.0.2.20", "192.0.2.21"}  # after a refresh
    assert upstream.total == 0
