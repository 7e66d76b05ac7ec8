"""The snapshot builder process (issue #11 item 3; docs/architecture.md "Reloads: built
elsewhere, installed in slices"): a snapshot built in the builder answers exactly like one built
in the server, snapshots hold no reference cycles (what lets the server freeze them), and a
build that dies (the OOM killer, a crash) is a failed reload, counted, with the server serving
on and the next reload working."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from lbdns.builder import Builder
from lbdns.config.settings import ServerSettings
from lbdns.config.validate import load_config
from lbdns.snapshot import build_snapshot
from tests.integration.harness import Fixture, addresses
from tests.integration.test_reload_control import write_zone

ROOT = Path(__file__).resolve().parents[2]


def _rules_fixture(tmp_path: Path) -> Path:
    fx = Fixture()
    fx.lb["rules"] = [
        {"name": "asia", "condition": 'lbdns.client.country in {"JP" "KR"}',
         "overrides": {"default_pools": ["p-asia"]}},
        {"name": "ttl", "condition": "dns.qry.type == 28", "overrides": {"ttl": 5, "steering_policy": "random"}},
    ]
    fx.zone["records"]["www"] = {"type": "CNAME", "value": "lb.example.com."}
    fx.zone["records"]["sub"] = {"type": "NS", "values": ["ns1.sub.example.com."]}
    fx.zone["records"]["old"] = {"type": "DNAME", "value": "new.example.com."}  # ZoneIndex.dnames
    return fx.write(tmp_path)


@pytest.mark.parametrize("zones", ["example", "fixture"])
def test_snapshot_from_the_builder_equals_the_one_built_here(tmp_path, zones):
    directory = ROOT / "zones" if zones == "example" else _rules_fixture(tmp_path)
    settings = ServerSettings()
    here = build_snapshot(load_config(directory, settings), settings, 3)

    async def main() -> object:
        b = Builder()
        try:
            return await b.build(directory, settings, 3)
        finally:
            await b.stop()

    there = asyncio.run(main())
    assert there.generation == 3 and there.settings is settings
    assert there.zones.keys() == here.zones.keys()
    for origin, zone in here.zones.items():
        other = there.zones[origin]
        assert (zone.origin_text, zone.cuts, zone.negative_soa, zone.soa_ttl, zone.dnames) == \
               (other.origin_text, other.cuts, other.negative_soa, other.soa_ttl, other.dnames)
        assert zones == "example" or zone.dnames
        assert zone.nodes.keys() == other.nodes.keys()
        for name, node in zone.nodes.items():
            twin = other.nodes[name]
            assert (node.rrsets, node.is_cut) == (twin.rrsets, twin.is_cut)
            assert (node.lb is None) == (twin.lb is None)
            if node.lb is not None:
                assert twin.lb is there.plans[node.lb.name]  # one plan object, shared
    assert here.plans.keys() == there.plans.keys() and here.plans
    for name, plan in here.plans.items():
        twin = there.plans[name]
        assert (plan.base, plan.rule_fields, plan.model) == (twin.base, twin.rule_fields, twin.model)
        assert [(r.name, r.condition.source, r.condition.fields, r.apply, r.stops) for r in plan.rules] == \
               [(r.name, r.condition.source, r.condition.fields, r.apply, r.stops) for r in twin.rules]
    assert sum(len(p.rules) for p in here.plans.values()) >= (2 if zones == "fixture" else 1)
    assert there.pools.keys() == here.pools.keys()
    assert there.config.pools == here.config.pools and there.config.monitors == here.config.monitors
    assert all(not z.rrsets for z in there.config.zones)  # encoded in the nodes instead


def test_snapshots_hold_no_reference_cycles(tmp_path):
    """The server freezes installed snapshots (gc.freeze) and relies on reference counting to
    free them after a reload: a cycle inside a snapshot would leak a whole snapshot each time."""
    settings = ServerSettings()
    for directory in (ROOT / "zones", _rules_fixture(tmp_path)):
        loaded = load_config(directory, settings)
        snap = build_snapshot(loaded, settings, 1)
        del loaded
        gc.collect()
        gc.disable()
        try:
            del snap
            assert gc.collect() == 0
        finally:
            gc.enable()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(x) for x in text]
    return out


def test_a_killed_build_is_a_counted_failure_and_the_next_reload_works(fx, serve, tmp_path, caplog):
    fx.zone["records"]["svc"] = {"type": "A", "ttl": 60, "value": "192.0.2.201"}
    s = serve(fx)
    write_zone(tmp_path / "zones", 20000, "v1")  # big.test: a build that takes seconds
    fut = asyncio.run_coroutine_threadsafe(s.app.reload(), s.loop)
    builder = s.app._builder
    t0 = time.monotonic()
    while builder is None or builder.pid is None or not _children(builder.pid):
        assert time.monotonic() - t0 < 30, "no build child appeared"
        time.sleep(0.02)
        builder = s.app._builder
    child = _children(builder.pid)[0]
    os.kill(child, signal.SIGKILL)  # as the OOM killer would
    assert fut.result(60) is False
    assert s.app.reload_stats.failures["exception"] == 1
    assert any("reload failed" in r.getMessage() and "signal 9" in r.getMessage() for r in caplog.records)
    assert addresses(s.query("svc.example.com")) == {"192.0.2.201"}  # still serving the last good one
    write_zone(tmp_path / "zones", 10, "v2")  # the next reload need not be slow: a small big.test
    assert s.reload() is True
    assert s.app.reload_stats.ok == 1
    assert b"v2" in s.query("canary.big.test", "TXT").answer[0][0].strings  # and it is served


def test_builder_that_cannot_start_is_a_failed_reload(fx, serve, tmp_path):
    s = serve(fx)
    s.app.builder_command = ("/nonexistent/python", "-m", "lbdns.builder")
    s.app._builder = None
    assert s.reload() is False
    assert s.app.reload_stats.failures["exception"] == 1
    assert "cannot start the snapshot builder" in s.app.last_errors[0]


def test_builder_answering_garbage_is_a_failed_reload_then_restarted(fx, serve, tmp_path):
    fake = tmp_path / "fake_builder.py"
    fake.write_text("import sys, time\nsys.stdin.buffer.read(4)\nsys.stdout.buffer.write(b'\\x00\\x00\\x00\\x03abc')\n"
                    "sys.stdout.flush()\ntime.sleep(30)\n")
    s = serve(fx)
    s.app.builder_command = (sys.executable, str(fake))
    s.app._builder = None
    assert s.reload() is False
    assert "unreadable" in s.app.last_errors[0]
    assert s.app._builder is not None and s.app._builder.pid is None  # the liar was killed
    s.app.builder_command = None
    s.app._builder = None
    assert s.reload() is True
