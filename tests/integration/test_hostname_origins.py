"""SPEC-EXAMPLES EX-20 (flattened hostname origins, failed lookups steer away), EX-21
(``flatten_cname: false``) and EX-22 (MX and SRV load balancing), over UDP.

The "upstream resolver" is a second real lbdns instance serving example.net; the LB server
uses it through ``upstream_resolvers`` (SPEC.md §2.1). A lookup failure is produced by
removing a name from the upstream zone (NXDOMAIN) and reloading it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import dns.rcode
import pytest
import yaml

from lbdns.health.view import OriginState
from tests.integration.harness import SOA, Server, addresses, answer_set

EAST = {"192.0.2.10", "192.0.2.11"}


def upstream_zone(records: dict[str, Any]) -> dict[str, Any]:
    soa = dict(SOA, mname="ns1.example.net.", rname="hostmaster.example.net.")
    return {"zone": "example.net", "soa": soa, "ns": ["ns1.example.net."], "records": records}


BASE_RECORDS: dict[str, Any] = {
    "origin-a": [{"type": "A", "ttl": 60, "value": "192.0.2.71"}, {"type": "AAAA", "ttl": 60, "value": "2001:db8::71"}],
    "origin-b": {"type": "A", "ttl": 60, "value": "192.0.2.72"},
    "app.saas": {"type": "A", "ttl": 60, "value": "192.0.2.80"},
}


@pytest.fixture
def upstream(tmp_path: Path):
    work = tmp_path / "up"
    work.mkdir()
    zones = work / "zones"
    zones.mkdir()
    (zones / "example.net.yaml").write_text(yaml.safe_dump(upstream_zone(BASE_RECORDS)))
    srv = Server(zones, work, geoip=False)
    yield srv
    srv.stop()


def set_upstream(up: Server, records: dict[str, Any]) -> None:
    (up.zones / "example.net.yaml").write_text(yaml.safe_dump(upstream_zone(records)))
    assert up.reload()


def start_lb(serve, fx, up: Server, **settings: Any) -> Server:
    return serve(fx, upstream_resolvers=[f"127.0.0.1:{up.ports['IAD']}"], hostname_cache_max_ttl=0, **settings)


def eventually(fn, expected, limit: float = 5.0):
    t0 = time.monotonic()
    got = fn()
    while got != expected and time.monotonic() - t0 < limit:
        time.sleep(0.1)
        got = fn()
    assert got == expected
    return got


def _ex20(fx):
    fx.account["pools"].append({"name": "p-host", "origins": [
        {"name": "h1", "address": "origin-a.example.net"}, {"name": "h2", "address": "origin-b.example.net"}]})
    fx.zone["load_balancers"]["lb-host"] = {"default_pools": ["p-host", "p-us-east"], "fallback_pool": "p-fallback"}


def test_ex20_flattened_hostname_origins(fx, serve, upstream):
    _ex20(fx)
    s = start_lb(serve, fx, upstream)
    assert answer_set(s.query("lb-host.example.com")) == {("lb-host.example.com.", 30, "A", "192.0.2.71"),
                                                          ("lb-host.example.com.", 30, "A", "192.0.2.72")}
    assert answer_set(s.query("lb-host.example.com", "AAAA")) == {("lb-host.example.com.", 30, "AAAA",
                                                                   "2001:db8::71")}
    # origin-b fails to resolve -> steered away
    set_upstream(upstream, {k: v for k, v in BASE_RECORDS.items() if k != "origin-b"})
    eventually(lambda: addresses(s.query("lb-host.example.com")), {"192.0.2.71"})
    # both fail -> p-host not usable -> next pool
    set_upstream(upstream, {"app.saas": BASE_RECORDS["app.saas"]})
    eventually(lambda: addresses(s.query("lb-host.example.com")), EAST)
    # lookups recover -> back to p-host, though no origin health changed meanwhile (an answer
    # that depends on the hostname cache is never memoised)
    set_upstream(upstream, BASE_RECORDS)
    eventually(lambda: addresses(s.query("lb-host.example.com")), {"192.0.2.71", "192.0.2.72"})


def _ex21(fx, flatten: bool):
    origin: dict[str, Any] = {"name": "c1", "address": "app.saas.example.net"}
    if not flatten:
        origin["flatten_cname"] = False
    fx.account["pools"].append({"name": "p-cname", "origins": [origin]})
    fx.zone["load_balancers"]["lb-cname"] = {"default_pools": ["p-cname"], "fallback_pool": "p-fallback"}


def test_ex21_non_flattened_hostname_returns_cname(fx, serve, upstream):
    _ex21(fx, flatten=False)
    s = start_lb(serve, fx, upstream)
    cname = {("lb-cname.example.com.", 30, "CNAME", "app.saas.example.net.")}
    assert answer_set(s.query("lb-cname.example.com", "A")) == cname
    assert answer_set(s.query("lb-cname.example.com", "CNAME")) == cname


def test_non_flattened_in_zone_target_is_chased(fx, serve):
    """R-ANS-32: the CNAME is followed by the target's RRset when the target is served here —
    a static name, a name missing from the zone (NXDOMAIN, RFC 6604) and another LB."""
    fx.zone["records"]["app"] = {"type": "A", "ttl": 120, "values": ["192.0.2.150", "192.0.2.151"]}
    fx.account["pools"] += [
        {"name": "p-static", "origins": [{"name": "c", "address": "app.example.com", "flatten_cname": False}]},
        {"name": "p-gone", "origins": [{"name": "c", "address": "gone.example.com", "flatten_cname": False}]},
        {"name": "p-to-lb", "origins": [{"name": "c", "address": "lb.example.com", "flatten_cname": False}]}]
    for name in ("static", "gone", "to-lb"):
        fx.zone["load_balancers"][f"lb-{name}"] = {"default_pools": [f"p-{name}"], "fallback_pool": "p-fallback"}
    s = serve(fx)
    for _ in range(3):  # the memo must not drop the chased part
        r = s.query("lb-static.example.com", "A")
        assert r.rcode() == dns.rcode.NOERROR
        assert answer_set(r) == {("lb-static.example.com.", 30, "CNAME", "app.example.com."),
                                 ("app.example.com.", 120, "A", "192.0.2.150"),
                                 ("app.example.com.", 120, "A", "192.0.2.151")}
    assert answer_set(s.query("lb-static.example.com", "CNAME")) == {
        ("lb-static.example.com.", 30, "CNAME", "app.example.com.")}  # a CNAME query is not chased
    r = s.query("lb-gone.example.com", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert answer_set(r) == {("lb-gone.example.com.", 30, "CNAME", "gone.example.com.")}
    assert answer_set(s.query("lb-to-lb.example.com", "A")) == {
        ("lb-to-lb.example.com.", 30, "CNAME", "lb.example.com."),
        ("lb.example.com.", 30, "A", "192.0.2.10"), ("lb.example.com.", 30, "A", "192.0.2.11")}
    s.set_health({("p-us-east", "e1"): OriginState.UNHEALTHY, ("p-us-east", "e2"): OriginState.UNHEALTHY})
    assert {rd for _, _, t, rd in answer_set(s.query("lb-to-lb.example.com", "A")) if t == "A"} == {
        "192.0.2.20", "192.0.2.21"}  # the chased LB follows health


def test_ex21_3_flattened_variant(fx, serve, upstream):
    _ex21(fx, flatten=True)
    s = start_lb(serve, fx, upstream)
    assert answer_set(s.query("lb-cname.example.com", "A")) == {("lb-cname.example.com.", 30, "A", "192.0.2.80")}
    r = s.query("lb-cname.example.com", "CNAME")
    assert r.answer == [] and r.authority[0].rdtype == 6


def _ex22(fx):
    fx.account["pools"] += [
        {"name": "p-mail", "monitor": "m-smtp", "origins": [
            {"name": "mx1", "address": "mail1.example.net"}, {"name": "mx2", "address": "mail2.example.net"}]},
        {"name": "p-sip", "origins": [
            {"name": "s1", "address": "sip1.example.net", "port": 5060, "srv_priority": 10, "srv_weight": 60},
            {"name": "s2", "address": "sip2.example.net", "port": 5060}]},
    ]
    lbs = fx.zone["load_balancers"]
    lbs["mail-lb"] = {"default_pools": ["p-mail"], "fallback_pool": "p-fallback"}
    lbs["_sip._udp"] = {"default_pools": ["p-sip"], "fallback_pool": "p-fallback"}


def test_ex22_mx_and_srv(fx, serve, upstream):
    from lbdns.health.view import OriginState

    _ex22(fx)
    s = start_lb(serve, fx, upstream)
    assert answer_set(s.query("mail-lb.example.com", "MX")) == {
        ("mail-lb.example.com.", 30, "MX", "10 mail1.example.net."),
        ("mail-lb.example.com.", 30, "MX", "10 mail2.example.net.")}
    s.set_health({("p-mail", "mx2"): OriginState.UNHEALTHY})
    assert answer_set(s.query("mail-lb.example.com", "MX")) == {
        ("mail-lb.example.com.", 30, "MX", "10 mail1.example.net.")}
    assert answer_set(s.query("_sip._udp.example.com", "SRV")) == {
        ("_sip._udp.example.com.", 30, "SRV", "10 60 5060 sip1.example.net."),
        ("_sip._udp.example.com.", 30, "SRV", "10 10 5060 sip2.example.net.")}


def test_ex22_4_non_enterprise(fx, serve, upstream, tmp_path):
    from lbdns.config.settings import ServerSettings
    from lbdns.config.validate import load_config
    from lbdns.errors import ConfigError

    _ex22(fx)
    zones = fx.write(tmp_path / "ne")
    with pytest.raises(ConfigError) as exc:
        load_config(zones, ServerSettings(plan="non_enterprise"))
    assert any(i.code == "E-PLAN" and "smtp" in i.message for i in exc.value.issues)
    fx.account["monitors"] = [m for m in fx.account["monitors"] if m["id"] != "m-smtp"]
    del fx.pool("p-mail")["monitor"]
    s = start_lb(serve, fx, upstream, plan="non_enterprise")
    r = s.query("mail-lb.example.com", "MX")
    assert r.answer == [] and r.authority[0].rdtype == 6


def test_failed_hostname_lookup_logged_once_per_state_change(fx, serve, upstream, caplog):
    """A hostname origin that stops resolving is one WARNING (not one per retry, not DEBUG),
    and one INFO line when it resolves again."""
    import logging

    caplog.set_level(logging.DEBUG, logger="lbdns.hostnames")
    _ex20(fx)
    s = start_lb(serve, fx, upstream)  # hostname_cache_max_ttl 0: every query refreshes
    assert addresses(s.query("lb-host.example.com")) == {"192.0.2.71", "192.0.2.72"}
    set_upstream(upstream, {k: v for k, v in BASE_RECORDS.items() if k != "origin-b"})
    eventually(lambda: addresses(s.query("lb-host.example.com")), {"192.0.2.71"})
    for _ in range(5):  # more failed refreshes of origin-b
        s.query("lb-host.example.com")
        time.sleep(0.05)
    set_upstream(upstream, BASE_RECORDS)
    eventually(lambda: addresses(s.query("lb-host.example.com")), {"192.0.2.71", "192.0.2.72"})
    lines = [(r.levelname, r.getMessage()) for r in caplog.records
             if r.name == "lbdns.hostnames" and r.levelno >= logging.INFO]
    assert lines == [
        ("WARNING", f"hostname origin origin-b.example.net cannot be resolved through 127.0.0.1:{upstream.ports['IAD']}"
                    ": NXDOMAIN; its origins are left out of A/AAAA answers until it resolves"),
        ("INFO", "hostname origin origin-b.example.net resolves again"),
    ]


def test_explain_resolves_hostname_origins_of_every_pool_it_tries(fx, upstream, tmp_path):
    """explain resolves hostname origins as the server does, also when a second pool (tried
    after the first one's hostnames failed) needs further lookups."""
    from lbdns.config.settings import ServerSettings
    from lbdns.explain import explain

    fx.account["pools"].append({"name": "p-gone", "origins": [{"name": "g1", "address": "gone.example.net"}]})
    fx.account["pools"].append({"name": "p-host", "origins": [{"name": "h1", "address": "origin-a.example.net"}]})
    fx.zone["load_balancers"]["lb-host"] = {"default_pools": ["p-gone", "p-host"], "fallback_pool": "p-fallback"}
    for p in ("p-gone", "p-host"):
        fx.pool(p).pop("monitor", None)
    up = f"127.0.0.1:{upstream.ports['IAD']}"
    settings = ServerSettings(zones_dir=str(fx.write(tmp_path)), upstream_resolvers=[up])
    text = explain(settings, "lb-host.example.com", "A", use_geoip=False, admin_url="http://127.0.0.1:9")
    assert (f"hostname origins resolved through {up}: gone.example.net, origin-a.example.net "
            "(failed: gone.example.net)") in text
    assert "decision: pool p-host, multi-answer" in text
    assert text.splitlines()[-1] == "  lb-host.example.com. 30 IN A 192.0.2.71"
