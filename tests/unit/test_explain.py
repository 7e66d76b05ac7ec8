"""``lbdns explain`` output for a failover case and a weighted case (issue #3 "Must show")."""

from __future__ import annotations

from types import MappingProxyType

from lbdns.config.settings import ServerSettings
from lbdns.explain import explain, health_from_status
from lbdns.health.view import HealthView, OriginHealth, OriginState


def view(states: dict[tuple[str, str], OriginState]) -> HealthView:
    return HealthView(1, MappingProxyType({k: OriginHealth(v) for k, v in states.items()}))


def settings(tmp_path, fx) -> ServerSettings:
    zones = fx.write(tmp_path)
    return ServerSettings(zones_dir=str(zones), pop="IAD")


ALL = {(p, o): OriginState.HEALTHY for p, o in [("p-us-east", "e1"), ("p-us-east", "e2"), ("p-us-west", "w1"),
                                                 ("p-us-west", "w2"), ("p-eu", "eu1"), ("p-eu", "eu2"),
                                                 ("p-fallback", "fb1"), ("p-weighted", "wa"), ("p-weighted", "wb")]}


def test_explain_failover(tmp_path, fx):
    health = view({**ALL, ("p-us-east", "e1"): OriginState.UNHEALTHY, ("p-us-east", "e2"): OriginState.UNHEALTHY})
    text = explain(settings(tmp_path, fx), "lb.example.com", "A", health=health, use_geoip=False)
    assert text.splitlines() == [
        "query: lb.example.com. A from 127.0.0.1 at PoP IAD (ENAM)",
        "health: given",
        "load balancer: lb.example.com. (zone example.com.), configured steering_policy 'off'",
        "  steering_policy: off",
        "  pool p-us-east: not usable — critical (0 healthy < minimum_origins 1)",
        "  pool p-us-west: usable — 2/2 origins healthy, minimum_origins 1",
        "  multi-answer: all 2 eligible origins share weight 1",
        "decision: pool p-us-west, multi-answer",
        "answer: NOERROR, 2 record(s)",
        *sorted(["  lb.example.com. 30 IN A 192.0.2.20", "  lb.example.com. 30 IN A 192.0.2.21"],
                key=lambda ln: text.index(ln)),
    ]


def test_explain_weighted(tmp_path, fx):
    fx.lb["default_pools"] = ["p-weighted"]
    text = explain(settings(tmp_path, fx), "lb.example.com", "A", health=view(ALL), use_geoip=False, seed=1)
    lines = text.splitlines()
    assert lines[3:5] == ["  steering_policy: off",
                          "  pool p-weighted: usable — 2/2 origins healthy, minimum_origins 1"]
    assert lines[5] in ("  single-answer (random): origin wa of wa=0.7, wb=0.3",
                        "  single-answer (random): origin wb of wa=0.7, wb=0.3")
    chosen = "192.0.2.60" if "origin wa" in lines[5] else "192.0.2.61"
    assert lines[6:] == ["decision: pool p-weighted, single-answer", "answer: NOERROR, 1 record(s)",
                         f"  lb.example.com. 30 IN A {chosen}"]


def test_health_from_status_document():
    doc = {"health_version": 7, "pools": [{"id": "p", "rtt_ewma_ms": 12.5, "origins": [
        {"name": "a", "health": "healthy", "rtt_ms": 3.0}, {"name": "b", "health": "unhealthy"},
        {"name": "c", "health": "not monitored"}]}]}
    v = health_from_status(doc)
    assert v.version == 7
    assert v.state("p", "a") is OriginState.HEALTHY and v.state("p", "b") is OriginState.UNHEALTHY
    assert v.state("p", "c") is OriginState.UNKNOWN and v.pool_rtt["p"].ewma_ms == 12.5


def test_rules_after_a_terminating_match_are_not_evaluated(tmp_path, fx):
    fx.lb["rules"] = [
        {"name": "never", "condition": 'dns.qry.name eq "other.example.com"', "overrides": {"ttl": 5}},
        {"name": "stop-here", "condition": "", "terminates": True, "overrides": {"default_pools": ["p-us-west"]}},
        {"name": "after", "condition": "", "overrides": {"default_pools": ["p-eu"]}},
    ]
    text = explain(settings(tmp_path, fx), "lb.example.com", "A", health=view(ALL), use_geoip=False)
    assert ("rules: never no match, stop-here MATCHED (overrides default_pools) [terminates], after not evaluated"
            in text.splitlines())
    assert "decision: pool p-us-west, multi-answer" in text.splitlines()


def test_bad_arguments_are_one_line_value_errors(tmp_path, fx):
    import pytest

    s = settings(tmp_path, fx)
    for kwargs, message in [
        ({"qtype": "BOGUS"}, "unknown query type 'BOGUS'"),
        ({"ecs": "1.2.3"}, "--ecs '1.2.3': '1.2.3' is not an IPv4 or IPv6 address"),
        ({"ecs": "1.2.3.0/33"}, "--ecs '1.2.3.0/33': prefix length /33 is longer than an IPv4 address (at most /32)"),
        ({"ecs": "1.2.3.4/24"}, "--ecs '1.2.3.4/24': address bits are set beyond /24 (use 1.2.3.0/24)"),
        ({"client": "foo"}, "--client 'foo' is not an IPv4 or IPv6 address"),
        ({"pop": "XYZ"}, "unknown PoP 'XYZ' (--pop)"),
        ({"name": "nothere.invalid"}, "nothere.invalid. is in no zone served from"),
    ]:
        args = {"name": "lb.example.com", "qtype": "A", **kwargs}
        with pytest.raises(ValueError) as exc:
            explain(s, args.pop("name"), args.pop("qtype"), health=view(ALL), use_geoip=False, **args)
        assert str(exc.value).startswith(message) and "\n" not in str(exc.value), str(exc.value)


def test_health_from_status_carries_operator_states():
    from lbdns.health.control import Control

    doc = {"pools": [{"id": "p", "control": {"state": "force_down", "who": "a", "why": "b", "at": 1.0},
                      "origins": [{"name": "a", "health": "unhealthy",
                                   "control": {"state": "force_up", "who": "", "why": "", "at": 2.0}}]}]}
    v = health_from_status(doc)
    assert v.control("p", None) is Control.FORCE_DOWN and v.control("p", "a") is Control.FORCE_UP
