"""lbdns behind a real unbound (docs/resolvers.md): ECS from the client, and ECS that unbound
derives from the client address, reach lbdns through a ``stub-zone``, and the answers through
unbound equal the answers lbdns gives directly: two places → two pools.

The unbound configuration is the one docs/resolvers.md shows, read out of the page (the yaml
blocks after the ``unbound-recipe`` and ``unbound-forward-zone`` markers) with only the ports
and the directory replaced, as the page says; ``unbound-checkconf`` must accept it.

unbound comes from the system (Debian package ``unbound``, built with ``--enable-subnet``;
``.ci/run`` installs it with ``scripts/install-system-deps``). The test never installs anything:
without unbound it is skipped with the reason. Everything listens on 127.0.0.1; unbound runs in
the foreground (``-d``) and is stopped by its PID when the module ends. Each test runs once with
lbdns as a ``stub-zone`` and once as a ``forward-zone`` target.
"""

from __future__ import annotations

import os
import re
import shutil
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
from tests.integration.test_reload import free_port

ROOT = Path(__file__).resolve().parents[2]
EAST = {"192.0.2.10", "192.0.2.11"}
WEST = {"192.0.2.20", "192.0.2.21"}
EU = {"192.0.2.30", "192.0.2.31"}
ASIA = {"192.0.2.40"}

DOC = ROOT / "docs" / "resolvers.md"
DOC_UNBOUND_PORT, DOC_LBDNS_PORT, DOC_DIR = "5335", "5300", "/var/lib/unbound-lbdns"


def _doc_block(marker: str) -> str:
    """The first fenced block after the HTML comment ``<!-- marker…`` in docs/resolvers.md."""
    text = DOC.read_text(encoding="utf-8")
    at = text.index(f"<!-- {marker}")
    m = re.compile(r"^```[a-z]*\n(.*?)^```$", re.S | re.M).search(text, at)
    assert m is not None, f"no fenced block after the {marker} marker in {DOC}"
    return m.group(1)


def documented_config(zone_kind: str) -> str:
    """The documented unbound.conf, with the ``forward-zone`` block in place of the
    ``stub-zone`` block when ``zone_kind`` is ``forward-zone``; ports and paths as documented."""
    conf = _doc_block("unbound-recipe")
    if zone_kind == "forward-zone":
        stub = conf[conf.index("stub-zone:"):]
        conf = conf.replace(stub, _doc_block("unbound-forward-zone"))
    return conf


def localize(conf: str, *, port: int, lbdns_port: int, directory: Path) -> str:
    """Replace exactly what docs/resolvers.md says may be replaced: unbound's port, lbdns' port
    (``@5300``) and the directory."""
    assert conf.count(f"port: {DOC_UNBOUND_PORT}\n") == 1 and f"@{DOC_LBDNS_PORT}\n" in conf
    return (conf.replace(f"port: {DOC_UNBOUND_PORT}\n", f"port: {port}\n")
            .replace(f"@{DOC_LBDNS_PORT}\n", f"@{lbdns_port}\n")
            .replace(DOC_DIR, str(directory)))


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)


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


@pytest.fixture(scope="module", params=["stub-zone", "forward-zone"])
def unbound(request: pytest.FixtureRequest, lbdns: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = _tool("unbound")
    if binary is None:
        pytest.skip("unbound is not installed (Debian package 'unbound'; .ci/run installs it with "
                    "scripts/install-system-deps)")
    version = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10).stdout
    if "--enable-subnet" not in version:
        pytest.skip("this unbound is built without --enable-subnet (no subnetcache module)")
    tmp = tmp_path_factory.mktemp("unbound")
    port = free_port()
    conf = tmp / "unbound.conf"
    conf.write_text(localize(documented_config(request.param), port=port, lbdns_port=lbdns.ports["IAD"],
                             directory=tmp))
    checkconf = _tool("unbound-checkconf")
    if checkconf is not None:
        done = subprocess.run([checkconf, str(conf)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"unbound-checkconf rejects the documented config:\n{done.stdout}{done.stderr}"
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


def test_documented_config_passes_unbound_checkconf_only_when_its_directory_exists(tmp_path: Path) -> None:
    """The page's recipe as written: ``unbound-checkconf`` fails until the directory exists
    (the page says to create it), and accepts it once it does."""
    checkconf = _tool("unbound-checkconf")
    if checkconf is None:
        pytest.skip("unbound-checkconf is not installed (Debian package 'unbound'; .ci/run installs it)")
    for kind in ("stub-zone", "forward-zone"):
        missing = tmp_path / kind / "missing"
        conf = tmp_path / f"{kind}.conf"
        conf.write_text(localize(documented_config(kind), port=free_port(), lbdns_port=free_port(),
                                 directory=missing))
        bad = subprocess.run([checkconf, str(conf)], capture_output=True, text=True, timeout=30)
        assert bad.returncode != 0 and "chdir" in bad.stdout + bad.stderr
        missing.mkdir(parents=True)
        ok = subprocess.run([checkconf, str(conf)], capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stdout + ok.stderr


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
