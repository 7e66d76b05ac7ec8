"""lbdns behind a real unbound (docs/resolvers.md): ECS from the client, and ECS that unbound
derives from the client address, reach lbdns through a ``stub-zone``, and the answers through
unbound equal the answers lbdns gives directly: two places → two pools.

unbound comes from the system (Debian package ``unbound``, built with ``--enable-subnet``);
when it is missing and we are root with apt-get, ``scripts/install-system-deps`` installs it,
else the module is skipped with the reason. Everything listens on 127.0.0.1; unbound runs in
the foreground (``-d``) and is stopped by its PID when the module ends. Each test runs once with
lbdns as a ``stub-zone`` and once as a ``forward-zone`` target.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.integration.harness import Fixture, Server, addresses, ecs_option

ROOT = Path(__file__).resolve().parents[2]
EAST = {"192.0.2.10", "192.0.2.11"}
WEST = {"192.0.2.20", "192.0.2.21"}
EU = {"192.0.2.30", "192.0.2.31"}
ASIA = {"192.0.2.40"}

# The exact configuration docs/resolvers.md shows (only the paths and ports are filled in).
UNBOUND_CONF = """\
server:
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  chroot: ""
  username: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "subnetcache iterator"
  do-not-query-localhost: no
  qname-minimisation: no
  send-client-subnet: 127.0.0.1
  client-subnet-zone: example.com
  client-subnet-always-forward: yes
  max-client-subnet-ipv4: 24
  max-client-subnet-ipv6: 56

remote-control:
  control-enable: no

"""

# lbdns as the authoritative server of the zone (the recommended way) or as a forwarder target
ZONE_BLOCKS = {
    "stub-zone": 'stub-zone:\n  name: "example.com"\n  stub-addr: 127.0.0.1@{lbdns_port}\n',
    "forward-zone": 'forward-zone:\n  name: "example.com"\n  forward-addr: 127.0.0.1@{lbdns_port}\n',
}


def _unbound_binary() -> str | None:
    found = shutil.which("unbound") or next(
        (p for p in ("/usr/sbin/unbound", "/sbin/unbound") if os.access(p, os.X_OK)), None)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["bash", str(ROOT / "scripts" / "install-system-deps")], check=False, timeout=900,
                       stdout=subprocess.DEVNULL)
        found = shutil.which("unbound") or next(
            (p for p in ("/usr/sbin/unbound", "/sbin/unbound") if os.access(p, os.X_OK)), None)
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _query(name: str, port: int, *, ecs: str | None = None, source: str = "127.0.0.1",
           timeout: float = 2.0) -> dns.message.Message:
    options = []
    if ecs is not None:
        addr, _, plen = ecs.partition("/")
        options.append(dns.edns.ECSOption(addr, int(plen)))
    q = dns.message.make_query(name, "A", use_edns=0, options=options)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout, source=source)


@pytest.fixture(scope="module")
def lbdns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("lbdns")
    fx = Fixture()
    fx.zone["load_balancers"] = {
        "geo": {"default_pools": ["p-us-east", "p-us-west", "p-eu", "p-asia"], "fallback_pool": "p-fallback",
                "steering_policy": "proximity",
                "location_strategy": {"prefer_ecs": "always", "mode": "resolver_ip"}},
    }
    srv = Server(fx.write(tmp), tmp)
    yield srv
    srv.stop()


@pytest.fixture(scope="module", params=sorted(ZONE_BLOCKS, reverse=True))
def unbound(request: pytest.FixtureRequest, lbdns: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = _unbound_binary()
    if binary is None:
        pytest.skip("unbound is not installed and cannot be (scripts/install-system-deps needs root and apt-get)")
    version = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10).stdout
    if "--enable-subnet" not in version:
        pytest.skip("this unbound is built without --enable-subnet (no subnetcache module)")
    tmp = tmp_path_factory.mktemp("unbound")
    port = _free_port()
    conf = tmp / "unbound.conf"
    text = UNBOUND_CONF + ZONE_BLOCKS[request.param]
    conf.write_text(text.format(port=port, dir=tmp, lbdns_port=lbdns.ports["IAD"]))
    log = (tmp / "unbound.log").open("w")
    proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"unbound exited with {proc.returncode}:\n{(tmp / 'unbound.log').read_text()}")
            try:
                if _query("ns1.example.com", port, timeout=0.2).rcode() == dns.rcode.NOERROR:
                    break
            except (dns.exception.Timeout, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"unbound did not answer within 10 s:\n{(tmp / 'unbound.log').read_text()}")
            time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 15)  # SIGTERM by PID
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, 9)
                proc.wait(5)
        log.close()


@pytest.mark.parametrize(("ecs", "expected"), [
    ("198.51.100.0/24", EAST),        # "New York"
    ("203.0.113.0/24", EU),           # "London"
    ("2001:db8:1::/48", ASIA),        # "Tokyo" (IPv6 ECS)
])
def test_client_ecs_is_forwarded(lbdns: Server, unbound: int, ecs: str, expected: set[str]) -> None:
    direct = lbdns.query("geo.example.com", ecs=ecs)
    via = _query("geo.example.com", unbound, ecs=ecs)
    assert via.rcode() == dns.rcode.NOERROR
    assert addresses(via) == addresses(direct) == expected
    opt = ecs_option(via)
    assert opt is not None and f"{opt.address}/{opt.srclen}" == ecs  # unbound echoes the client's ECS
    # a second query is answered from unbound's ECS cache, still per subnet
    assert addresses(_query("geo.example.com", unbound, ecs=ecs)) == expected


def test_two_places_two_pools_through_unbound(lbdns: Server, unbound: int) -> None:
    ny = addresses(_query("geo.example.com", unbound, ecs="198.51.100.0/24"))
    london = addresses(_query("geo.example.com", unbound, ecs="203.0.113.0/24"))
    assert ny == EAST and london == EU and ny != london


@pytest.mark.parametrize(("client", "expected"), [
    ("127.51.100.5", EAST),   # loopback mirror of "New York"
    ("127.0.113.5", EU),      # loopback mirror of "London"
])
def test_unbound_sends_the_client_address_as_ecs(lbdns: Server, unbound: int, client: str,
                                                 expected: set[str]) -> None:
    """Without ECS from the client, unbound sends the client's /24 (send-client-subnet);
    lbdns locates it just as it locates that client querying directly."""
    via = _query("geo.example.com", unbound, source=client)
    direct = lbdns.query("geo.example.com", source=client)
    assert addresses(via) == addresses(direct) == expected
    assert ecs_option(via) is None  # the client sent none, so none comes back
