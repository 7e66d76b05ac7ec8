"""Operator control of health, black box (issue 15 items 1–3): durable operator states set
through the admin API and the ``lbdns`` CLI, pushed (external) health with expiry and RTT, and
one "can this pool serve" rule behind steering and ``/status``.

Real servers (in a thread, or ``python -m lbdns.cli serve`` as a process), real HTTP origins on
loopback, DNS over UDP, the admin API over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.cli import CliProcess, run_cli, start_cli
from tests.integration.harness import SOA, Server, addresses
from tests.integration.test_health_e2e import Origin, running_origins, wait_for
from tests.integration.test_reload import ROOT, free_port

MONITOR = {"id": "m", "type": "http", "path": "/health", "expected_codes": "2xx", "expected_body": "alive",
           "interval": 1, "timeout": 1, "retries": 0, "consecutive_down": 1, "consecutive_up": 1}
EXTERNAL = {"id": "ext", "type": "external", "interval": 10}


@pytest.fixture
def origins():
    yield from running_origins("127.0.5")


def write_zones(tmp_path: Path, account: dict[str, Any], lb: dict[str, Any]) -> Path:
    zones = tmp_path / "zones"
    zones.mkdir(exist_ok=True)
    zone = {"zone": "example.com", "soa": SOA, "ns": ["ns1.example.com."], "load_balancers": {"lb": lb}}
    (zones / "_account.yaml").write_text(yaml.safe_dump(account))
    (zones / "example.com.yaml").write_text(yaml.safe_dump(zone))
    return zones


def probed_account(origins: dict[str, Origin]) -> dict[str, Any]:
    def o(name: str) -> dict[str, Any]:
        return {"name": name, "address": origins[name].address, "port": origins[name].port}

    return {"monitors": [MONITOR], "pools": [
        {"name": "primary", "monitor": "m", "origins": [o("e1"), o("e2")]},
        {"name": "secondary", "monitor": "m", "origins": [o("w1")]},
        {"name": "fallback", "origins": [o("fb")]},
    ]}


LB = {"default_pools": ["primary", "secondary"], "fallback_pool": "fallback", "steering_policy": "off", "ttl": 2}
ADMIN = {"enabled": True, "address": "127.0.0.1", "port": 0}


def lb_answer(s: Server) -> set[str]:
    return addresses(s.query("lb.example.com"))


def status(s: Server) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{s.app.admin.port}/status", timeout=5) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def pool_doc(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in doc["pools"] if p["name"] == name)


def origin_doc(doc: dict[str, Any], pool: str, origin: str) -> dict[str, Any]:
    return next(o for o in pool_doc(doc, pool)["origins"] if o["name"] == origin)


# -- operator states ----------------------------------------------------------------------------


def test_force_up_keeps_a_failing_origin_in_answers(tmp_path, origins):
    zones = write_zones(tmp_path, probed_account(origins), LB)
    s = Server(zones, tmp_path, geoip=False, health="none", probes_enabled=True, monitor_interval_min=1,
               probe_isolation="inline", admin=ADMIN)
    try:
        assert lb_answer(s) == {"127.0.5.11", "127.0.5.12"}
        origins["e1"].status = 503
        wait_for(lambda: lb_answer(s) == {"127.0.5.12"}, 5)
        code, body = s.admin_post("/control", {"pool": "primary", "origin": "e1", "state": "force_up",
                                               "who": "ops", "why": "false alarm"})
        assert code == 200 and body["previous"] == "auto" and body["state"] == "force_up"
        assert lb_answer(s) == {"127.0.5.11", "127.0.5.12"}  # at once
        time.sleep(2.5)  # probe rounds keep failing it
        assert lb_answer(s) == {"127.0.5.11", "127.0.5.12"}
        e1 = origin_doc(status(s), "primary", "e1")
        assert e1["health"] == "unhealthy" and e1["healthy_for_steering"] is True
        assert e1["control"]["state"] == "force_up" and e1["control"]["who"] == "ops"
        # unknown names: 404 with the valid ones
        code, body = s.admin_post("/control", {"pool": "primary", "origin": "nope", "state": "drain"})
        assert code == 404 and body["valid_origins"] == ["e1", "e2"]
        code, body = s.admin_post("/control", {"pool": "nope", "state": "drain"})
        assert code == 404 and body["valid_pools"] == ["fallback", "primary", "secondary"]
        code, _ = s.admin_post("/control", {"pool": "primary", "state": "sideways"})
        assert code == 400
    finally:
        s.stop()


def test_forced_state_on_unmonitored_pool_and_drain_completion(serve, fx):
    """A drain on an origin of an unmonitored pool takes it out of answers at once; ``/status``
    reports the drain complete once the answer TTL has passed."""
    for p in fx.account["pools"]:
        p.pop("monitor", None)
    fx.lb["ttl"] = 2
    s = serve(fx, admin=ADMIN)
    assert lb_answer(s) == {"192.0.2.10", "192.0.2.11"}
    code, _ = s.admin_post("/control", {"pool": "p-us-east", "origin": "e1", "state": "drain", "why": "patch"})
    assert code == 200
    assert lb_answer(s) == {"192.0.2.11"}
    e1 = origin_doc(status(s), "p-us-east", "e1")
    drain = e1["control"]["drain"]
    assert drain["ttl"] == 2 and drain["complete"] is False
    assert drain["complete_at"] == pytest.approx(drain["left_answers_at"] + 2)
    assert pool_doc(status(s), "p-us-east")["status"] == "degraded"
    time.sleep(2.1)
    assert origin_doc(status(s), "p-us-east", "e1")["control"]["drain"]["complete"] is True
    # the whole pool forced down: the next pool answers
    assert s.admin_post("/control", {"pool": "p-us-east", "state": "force_down"})[0] == 200
    assert lb_answer(s) == {"192.0.2.20", "192.0.2.21"}
    doc = status(s)
    assert pool_doc(doc, "p-us-east")["status"] == "critical"
    assert [e["state"] for e in doc["operator_log"]] == ["drain", "force_down"]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m lbdns.cli *args`` as a separate process (:func:`tests.fixtures.cli.run_cli`)."""
    return run_cli(*args, env=env, timeout=30)


def test_drain_survives_probe_round_reload_and_restart(tmp_path, origins):
    zones = write_zones(tmp_path, probed_account(origins), LB)
    port, admin_port = free_port(), free_port()
    token = tmp_path / "admin.token"
    token.write_text("t" * 40)
    settings = tmp_path / "lbdns.yaml"
    settings.write_text(yaml.safe_dump({
        "monitor_interval_min": 1, "probe_isolation": "inline", "operator_state_file": str(tmp_path / "state.json"),
        "admin": {"enabled": True, "address": "127.0.0.1", "port": admin_port, "token_file": str(token)}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    admin = ["--admin", f"http://127.0.0.1:{admin_port}", "--token-file", str(token)]

    logs: list[Path] = []

    def spawn() -> CliProcess:
        logs.append(tmp_path / f"serve-{len(logs)}.log")
        return start_cli("serve", "--config", str(settings), "--zones", str(zones), "--listen", f"127.0.0.1:{port}",
                         cwd=tmp_path, output=logs[-1])

    def stop(proc: CliProcess) -> str:
        """SIGTERM; the server's output once it has exited."""
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        return logs[-1].read_text()

    def answer() -> set[str]:
        import dns.message
        import dns.query

        return addresses(dns.query.udp(dns.message.make_query("lb.example.com", "A"), "127.0.0.1", port=port,
                                       timeout=2))

    def wait_up() -> None:
        def ok() -> bool:
            try:
                answer()
                urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/healthz", timeout=1).close()
                return True
            except Exception:
                return False
        wait_for(ok, 20)

    proc = spawn()
    try:
        wait_up()
        assert answer() == {"127.0.5.11", "127.0.5.12"}
        r = _cli("control", "drain", "primary", "e1", "--who", "alice", "--why", "kernel upgrade", *admin, env=env)
        assert r.returncode == 0, r.stderr
        assert "auto -> drain" in r.stdout
        assert answer() == {"127.0.5.12"}  # immediately
        time.sleep(2.5)  # probe rounds find e1 healthy
        assert answer() == {"127.0.5.12"}
        req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/reload", data=b"{}", method="POST",
                                     headers={"Authorization": f"Bearer {token.read_text()}",
                                              "Content-Type": "application/json"})
        assert json.loads(urllib.request.urlopen(req, timeout=30).read())["ok"] is True
        assert answer() == {"127.0.5.12"}
        r = _cli("control", "drain", "primary", "nope", *admin, env=env)
        assert r.returncode == 1 and "valid: e1, e2" in r.stderr
        first_log = stop(proc)
        assert "operator: pool primary origin e1: auto -> drain by alice: kernel upgrade" in first_log
        proc = spawn()
        wait_up()
        assert answer() == {"127.0.5.12"}  # restored from the state file before answering
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status", timeout=5) as resp:
            doc = json.loads(resp.read())
        ctl = origin_doc(doc, "primary", "e1")["control"]
        assert (ctl["state"], ctl["who"], ctl["why"]) == ("drain", "alice", "kernel upgrade")
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as resp:
            assert 'lbdns_operator_overrides{state="drain"} 1.0' in resp.read().decode()
        assert _cli("control", "auto", "primary", "e1", *admin, env=env).returncode == 0
        assert answer() == {"127.0.5.11", "127.0.5.12"}
    finally:
        out = stop(proc)
    assert "operator state restored: pool primary origin e1: drain (by alice" in out


# -- pushed health ------------------------------------------------------------------------------


def pushed_server(tmp_path: Path, pools: list[dict[str, Any]], lb: dict[str, Any],
                  monitors: list[dict[str, Any]] | None = None, **settings: Any) -> Server:
    account = {"monitors": monitors or [EXTERNAL], "pools": [
        *pools, {"name": "fallback", "origins": [{"name": "fb", "address": "192.0.2.99"}]}]}
    zones = write_zones(tmp_path, account, {"fallback_pool": "fallback", **lb})
    base: dict[str, Any] = {"probes_enabled": False, "admin": ADMIN}
    base.update(settings)
    return Server(zones, tmp_path, geoip=False, health="none", **base)


def test_pushed_report_counts_then_expires_into_no_data(tmp_path):
    pools = [{"name": "ext-pool", "monitor": "ext", "origins": [{"name": "x1", "address": "192.0.2.1"}]},
             {"name": "plain", "origins": [{"name": "p1", "address": "192.0.2.2"}]}]
    s = pushed_server(tmp_path, pools, {"default_pools": ["ext-pool"], "steering_policy": "off"})
    try:
        assert lb_answer(s) == {"192.0.2.99"}  # no data yet: down, the fallback answers
        code, body = s.admin_post("/report", {"pool": "ext-pool", "origin": "x1", "healthy": True, "rtt_ms": 12.5,
                                              "expires_in": 1.5})
        assert code == 200 and body["expires_in"] == 1.5
        wait_for(lambda: lb_answer(s) == {"192.0.2.1"}, 1)
        x1 = origin_doc(status(s), "ext-pool", "x1")
        assert x1["health"] == "healthy" and x1["rtt_ms"] == 12.5
        wait_for(lambda: lb_answer(s) == {"192.0.2.99"}, 3)
        x1 = origin_doc(status(s), "ext-pool", "x1")
        assert x1["health"] == "unknown" and x1["failure_reason"] == "No data"
        # a pool without an external monitor does not take reports; unknown names get 404
        assert s.admin_post("/report", {"pool": "plain", "origin": "p1", "healthy": True})[0] == 409
        code, body = s.admin_post("/report", {"pool": "ext-pool", "origin": "x9", "healthy": True})
        assert code == 404 and body["valid_origins"] == ["x1"]
        assert s.admin_post("/report", {"pool": "ext-pool", "origin": "x1", "healthy": "yes"})[0] == 400
        # the CLI sends the same report
        r = _cli("report", "ext-pool", "x1", "--healthy", "--rtt-ms", "7", "--expires-in", "30",
                 "--admin", f"http://127.0.0.1:{s.app.admin.port}", "--token-file", str(s.settings.admin.token_file),
                 env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 0, r.stderr
        assert "healthy for 30.0 s" in r.stdout
        wait_for(lambda: lb_answer(s) == {"192.0.2.1"}, 1)
    finally:
        s.stop()


@pytest.mark.parametrize("local_probes", [False, True])
def test_pushed_rtt_orders_dynamic_latency(tmp_path, origins, local_probes):
    """Pushed ``rtt_ms`` for three pools orders ``dynamic_latency`` (lowest first) and the next
    lowest answers when the fastest is reported down; with local HTTP probes mixed in (a
    monitor group of the http monitor and the external one) the order is the same."""
    names = {"pa": "e1", "pb": "e2", "pc": "w1"}
    rtts = {"pa": 80.0, "pb": 20.0, "pc": 50.0}
    pools = []
    for pool, origin in names.items():
        o = {"name": origin, "address": origins[origin].address, "port": origins[origin].port}
        pools.append({"name": pool, "origins": [o], **({"monitor_group": "g"} if local_probes else
                                                       {"monitor": "ext"})})
    account: dict[str, Any] = {
        "monitors": [EXTERNAL, MONITOR],
        "pools": [*pools, {"name": "fallback", "origins": [{"name": "fb", "address": "192.0.2.99"}]}]}
    settings: dict[str, Any] = {"probes_enabled": False, "monitor_interval_min": 1}
    if local_probes:
        account["monitor_groups"] = [{"id": "g", "members": [{"monitor_id": "m"},
                                                            {"monitor_id": "ext", "must_be_healthy": True}]}]
        settings = {"probes_enabled": True, "monitor_interval_min": 1, "probe_isolation": "inline"}
    zones = write_zones(tmp_path, account, {"fallback_pool": "fallback", "default_pools": list(names),
                                            "steering_policy": "dynamic_latency"})
    s = Server(zones, tmp_path, geoip=False, health="none", admin=ADMIN, **settings)
    try:
        for pool, origin in names.items():
            code, _ = s.admin_post("/report", {"pool": pool, "origin": origin, "healthy": True, "rtt_ms": rtts[pool],
                                               "expires_in": 60})
            assert code == 200
        wait_for(lambda: lb_answer(s) == {"127.0.5.12"}, 3)  # pb, 20 ms
        if local_probes:
            doc = status(s)
            assert all(pool_doc(doc, p)["rtt_ewma_ms"] < rtts[p] for p in names)  # local samples mixed in
        assert s.admin_post("/report", {"pool": "pb", "origin": "e2", "healthy": False, "reason": "deploy",
                                        "expires_in": 60})[0] == 200
        wait_for(lambda: lb_answer(s) == {"127.0.5.21"}, 3)  # pc, 50 ms: the next lowest
        assert origin_doc(status(s), "pb", "e2")["failure_reason"] == "deploy"
    finally:
        s.stop()


# -- one usable rule ----------------------------------------------------------------------------


def test_weight_zero_only_pool_reported_and_steered_consistently(serve, fx):
    """A pool whose only healthy origin has weight 0 cannot serve: steering skips it and
    ``/status`` reports it critical, not usable, and the load balancer degraded."""
    fx.origin("p-us-east", "e1")["weight"] = 0
    s = serve(fx, admin=ADMIN)
    from lbdns.health.view import OriginState

    s.set_health({("p-us-east", "e2"): OriginState.UNHEALTHY})
    assert lb_answer(s) == {"192.0.2.20", "192.0.2.21"}  # p-us-west
    doc = status(s)
    east = pool_doc(doc, "p-us-east")
    assert east["status"] == "critical" and east["usable_for_steering"] is False
    assert origin_doc(doc, "p-us-east", "e1")["healthy_for_steering"] is True
    assert next(x for x in doc["load_balancers"] if x["name"] == "lb.example.com.")["status"] == "degraded"
    with urllib.request.urlopen(f"http://127.0.0.1:{s.app.admin.port}/metrics", timeout=5) as resp:
        assert 'lbdns_pool_status{pool="p-us-east",status="critical"} 1.0' in resp.read().decode()


def test_legacy_post_health_goes_through_the_health_book(serve, fx):
    """``POST /health`` is an operator state now: it survives the next published view."""
    s = serve(fx, admin=ADMIN)
    assert s.admin_post("/health", {"pool": "p-us-east", "origin": "e1", "state": "unhealthy"})[0] == 200
    assert lb_answer(s) == {"192.0.2.11"}
    s.set_health()  # a new health view (as a probe round publishes)
    assert lb_answer(s) == {"192.0.2.11"}
    try:
        code, _ = s.admin_post("/health", {"pool": "nope", "origin": "e1", "state": "unhealthy"})
    except urllib.error.HTTPError as exc:  # pragma: no cover - admin_post returns errors
        code = exc.code
    assert code == 404
