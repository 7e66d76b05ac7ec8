"""Integration harness: a real lbdns :class:`~lbdns.app.App` on 127.0.0.1 ephemeral ports,
running its own event loop in a background thread, queried over real UDP/TCP sockets with
dnspython. Health is set directly in the published state (SPEC-EXAMPLES "tests set health
directly in the health cache"); GeoIP comes from small MMDB files built by the fixtures.

Resolver addresses: the server sees the real packet source, so tests send from loopback
addresses (the whole 127.0.0.0/8 is bindable on Linux). The GeoIP fixture mirrors the
SPEC-EXAMPLES table into loopback space: ``198.51.100.X`` → ``127.51.100.X`` and
``203.0.113.X`` → ``127.0.113.X`` (see :func:`resolver`).
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import socket
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from types import MappingProxyType
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import dns.rrset
import yaml

from lbdns.app import App
from lbdns.config.settings import Listener, ServerSettings
from lbdns.health.view import HealthView, OriginHealth, OriginState, PoolRtt
from tests.fixtures.geo import BASE_GEO_TABLE, BASE_POPS, build_asn_mmdb, build_city_mmdb

POPS = ("IAD", "SJC", "LHR", "FRA", "NRT")

# SPEC-EXAMPLES geo table plus loopback mirrors of it, so a resolver can "be" in a city
GEO_TABLE: dict[str, Mapping[str, Any]] = dict(BASE_GEO_TABLE)
for _net, _rec in BASE_GEO_TABLE.items():
    if _net.startswith("198.51.100."):
        GEO_TABLE[_net.replace("198.51.100.", "127.51.100.")] = _rec
    elif _net.startswith("203.0.113."):
        GEO_TABLE[_net.replace("203.0.113.", "127.0.113.")] = _rec
# an IPv6 network for IPv6 ECS tests: "Tokyo"
GEO_TABLE["2001:db8:1::/48"] = BASE_GEO_TABLE["198.51.100.128/26"]


def resolver(spec_ip: str) -> str:
    """The loopback address standing in for a SPEC-EXAMPLES resolver address."""
    if spec_ip.startswith("198.51.100."):
        return spec_ip.replace("198.51.100.", "127.51.100.", 1)
    if spec_ip.startswith("203.0.113."):
        return spec_ip.replace("203.0.113.", "127.0.113.", 1)
    ip = ipaddress.ip_address(spec_ip)
    if ip.version == 4 and not ip.is_loopback:
        b = ip.packed
        return f"127.{b[1]}.{b[2]}.{b[3]}"
    return spec_ip


SOA = {"mname": "ns1.example.com.", "rname": "hostmaster.example.com.", "serial": 2024010101,
       "refresh": 7200, "retry": 3600, "expire": 1209600, "minimum": 300, "ttl": 3600}


def base_account() -> dict[str, Any]:
    """SPEC-EXAMPLES §0.1 monitors and pools, in lbdns layout."""
    def pool(name: str, origins: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"name": name, "monitor": "m-http", "origins": origins, **extra}

    return {
        "monitors": [
            {"id": "m-http", "type": "http", "path": "/health", "expected_codes": "2xx"},
            {"id": "m-smtp", "type": "smtp", "port": 25},
        ],
        "pools": [
            pool("p-us-east", [{"name": "e1", "address": "192.0.2.10"}, {"name": "e2", "address": "192.0.2.11"}],
                 latitude=39.04, longitude=-77.49),
            pool("p-us-west", [{"name": "w1", "address": "192.0.2.20"}, {"name": "w2", "address": "192.0.2.21"}],
                 latitude=37.37, longitude=-121.92),
            pool("p-eu", [{"name": "eu1", "address": "192.0.2.30"}, {"name": "eu2", "address": "192.0.2.31"}],
                 latitude=50.11, longitude=8.68),
            pool("p-asia", [{"name": "as1", "address": "192.0.2.40"}], latitude=35.68, longitude=139.77),
            pool("p-fallback", [{"name": "fb1", "address": "192.0.2.99"}]),
            pool("p-mixed", [{"name": "m4", "address": "192.0.2.50"}, {"name": "m6a", "address": "2001:db8::50"},
                             {"name": "m6b", "address": "2001:db8::51"}]),
            pool("p-weighted", [{"name": "wa", "address": "192.0.2.60", "weight": 0.7},
                                {"name": "wb", "address": "192.0.2.61", "weight": 0.3}]),
        ],
    }


def base_zone() -> dict[str, Any]:
    """SPEC-EXAMPLES §0.1 zone example.com with lb.example.com (failover)."""
    return {
        "zone": "example.com",
        "soa": dict(SOA),
        "ns": {"ttl": 3600, "values": ["ns1.example.com."]},
        "records": {"ns1": {"type": "A", "ttl": 3600, "value": "192.0.2.1"}},
        "load_balancers": {
            "lb": {"default_pools": ["p-us-east", "p-us-west", "p-eu"], "fallback_pool": "p-fallback",
                   "steering_policy": "off"},
        },
    }


class Fixture:
    """A mutable SPEC-EXAMPLES base fixture: ``account`` (monitors, pools) and ``zone``."""

    def __init__(self) -> None:
        self.account = base_account()
        self.zone = base_zone()

    def pool(self, name: str) -> dict[str, Any]:
        """The pool dict named ``name`` (to modify in place)."""
        return next(p for p in self.account["pools"] if p["name"] == name)

    def origin(self, pool: str, origin: str) -> dict[str, Any]:
        """The origin dict ``origin`` of pool ``pool``."""
        return next(o for o in self.pool(pool)["origins"] if o["name"] == origin)

    @property
    def lb(self) -> dict[str, Any]:
        """The (single) load balancer dict ``lb`` of the base zone."""
        lbs: dict[str, Any] = self.zone["load_balancers"]
        return next(iter(lbs.values()))

    def write(self, directory: Path) -> Path:
        """Write the fixture as zone files under ``directory/zones``; returns that path."""
        zones = directory / "zones"
        zones.mkdir(parents=True, exist_ok=True)
        for old in zones.glob("*.yaml"):
            old.unlink()
        (zones / "_account.yaml").write_text(yaml.safe_dump(self.account, sort_keys=False))
        (zones / "example.com.yaml").write_text(yaml.safe_dump(self.zone, sort_keys=False))
        return zones


def all_healthy(app: App, *, except_: Mapping[tuple[str, str], OriginState] | None = None,
                rtt: Mapping[str, PoolRtt] | None = None, version: int = 1) -> HealthView:
    """A view with every (pool, origin) HEALTHY except the given overrides."""
    assert app.ref is not None
    states: dict[tuple[str, str], OriginHealth] = {}
    for pid, pool in app.ref.current.snapshot.config.pools.items():
        for o in pool.origins:
            states[(pid, o.name)] = OriginHealth(OriginState.HEALTHY, "No failures")
    for key, st in (except_ or {}).items():
        states[key] = OriginHealth(st, "test")
    return HealthView(version, MappingProxyType(states), MappingProxyType(dict(rtt or {})))


class Server:
    """A running lbdns on 127.0.0.1, one UDP+TCP listener per PoP of :data:`POPS`.

    ``zones`` is the zones directory; ``settings`` extra ServerSettings fields; GeoIP
    from fixture databases in ``workdir`` unless ``geoip`` is False.
    """

    def __init__(self, zones: Path, workdir: Path, *, geoip: bool = True, health: str = "healthy",
                 **settings: Any) -> None:
        self.zones = zones
        listen = [Listener(address="127.0.0.1", port=0, transport="both", pop=p) for p in POPS]
        # rate limiting off: these tests send many identical queries from loopback on purpose
        # (tests/integration/test_rrl.py turns it on)
        base: dict[str, Any] = {"zones_dir": str(zones), "listen": listen, "pop": "IAD",
                                "probes_enabled": False, "admin": {"enabled": False}, "rrl": {"enabled": False}}
        if geoip:
            city = workdir / "city.mmdb"
            asn = workdir / "asn.mmdb"
            if not city.exists():
                build_city_mmdb(city, GEO_TABLE)
                build_asn_mmdb(asn, GEO_TABLE)
            base["geoip_city_db"] = str(city)
            base["geoip_asn_db"] = str(asn)
        base["operator_state_file"] = str(workdir / "operator-state.json")  # not in the checkout
        base.update(settings)
        admin = base.get("admin")
        if isinstance(admin, dict) and admin.get("enabled", True) and "token_file" not in admin:
            base["admin"] = {**admin, "token_file": str(workdir / "admin.token")}  # not in the checkout
        self.settings = ServerSettings.model_validate(_plain(base))
        self.app = App(self.settings, zones, pops=dict(BASE_POPS.items()), use_geoip=geoip)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.app.start())
        self.ports: dict[str, int] = {}
        self.tcp_ports: dict[str, int] = {}
        for b in self.app.listeners:
            (self.ports if b.transport == "udp" else self.tcp_ports)[b.pop] = b.port
        if health == "healthy":
            self.set_health()

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server loop and wait for its result."""
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def set_health(self, states: Mapping[tuple[str, str], OriginState] | None = None, *,
                   rtt: Mapping[str, PoolRtt] | None = None, view: HealthView | None = None) -> None:
        """Publish a health view: everything HEALTHY except ``states`` (or ``view`` as given)."""
        v = view if view is not None else all_healthy(self.app, except_=states, rtt=rtt,
                                                      version=self._next_version())

        async def publish() -> None:
            if self.app.health is not None:  # through the health owner, as every health input
                self.app.health.adopt(v)
            else:
                self.app.publish_health(v)

        self.call(publish())

    _version = 0

    def _next_version(self) -> int:
        Server._version += 1
        return Server._version

    def reload(self) -> bool:
        """Reload the zones from disk (as SIGHUP does)."""
        return bool(self.call(self.app.reload()))

    def admin_post(self, path: str, body: Any = None) -> tuple[int, Any]:
        """``POST path`` on the admin listener with the operator's token and a JSON ``body``;
        returns (status, decoded JSON answer)."""
        import json
        import urllib.error
        import urllib.request

        token = Path(str(self.settings.admin.token_file)).read_text().strip()
        req = urllib.request.Request(f"http://127.0.0.1:{self.app.admin.port}{path}", method="POST",
                                     data=b"" if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def stop(self) -> None:
        """Stop listeners and the loop thread (idempotent)."""
        if self.loop.is_closed():
            return
        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.call(self.app.stop())
            self.call(cancel_rest())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()

    def query(self, name: str, rdtype: str | int = "A", *, pop: str = "IAD", source: str = "127.0.0.1",
              ecs: str | None = None, tcp: bool = False, edns: bool = True, payload: int = 1232,
              timeout: float = 3.0) -> dns.message.Message:
        """Send one query and return the response (dnspython)."""
        options = []
        if ecs is not None:
            addr, _, plen = ecs.partition("/")
            options.append(dns.edns.ECSOption(addr, int(plen)))
        q = dns.message.make_query(name, rdtype, use_edns=0 if (edns or options) else False,
                                   payload=payload, options=options)
        q.flags &= ~dns.flags.RD
        if tcp:
            return dns.query.tcp(q, "127.0.0.1", port=self.tcp_ports[pop], timeout=timeout, source=source)
        return dns.query.udp(q, "127.0.0.1", port=self.ports[pop], timeout=timeout, source=source,
                             ignore_unexpected=True)

    def raw(self, data: bytes, *, pop: str = "IAD", timeout: float = 1.0) -> bytes | None:
        """Send raw bytes over UDP; the reply bytes or None on timeout."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(data, ("127.0.0.1", self.ports[pop]))
            try:
                return s.recv(65535)
            except TimeoutError:
                return None


def _plain(obj: Any) -> Any:
    if isinstance(obj, Listener):
        return obj.model_dump()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def addresses(msg: dns.message.Message, rdtype: str = "A") -> set[str]:
    """Addresses in the answer section of ``rdtype``."""
    t = dns.rdatatype.from_text(rdtype)
    return {rd.to_text() for rrset in msg.answer if rrset.rdtype == t for rd in rrset}


def answer_set(msg: dns.message.Message) -> set[tuple[str, int, str, str]]:
    """The answer section as a set of (owner, ttl, type, rdata)."""
    return {(rrset.name.to_text(), rrset.ttl, dns.rdatatype.to_text(rrset.rdtype), rd.to_text())
            for rrset in msg.answer for rd in rrset}


def ecs_option(msg: dns.message.Message) -> dns.edns.ECSOption | None:
    """The ECS option of a response, if any."""
    for opt in msg.options:
        if isinstance(opt, dns.edns.ECSOption):
            return opt
    return None


def deep(obj: Any) -> Any:
    """A deep copy (scenario helpers mutate fixture dicts)."""
    return copy.deepcopy(obj)


def iter_sources(count: int, base: str = "127.18.0.0") -> Iterable[str]:
    """``count`` distinct loopback resolver addresses starting at ``base``."""
    start = int(ipaddress.IPv4Address(base))
    for i in range(count):
        yield str(ipaddress.IPv4Address(start + 1 + i))
