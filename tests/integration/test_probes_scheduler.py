"""The probe scheduler end to end (SPEC.md R-MON-01, R-MON-18, R-LOG-01, R-MNT-03;
DESIGN.md "One probe result"): real HTTP listeners for detection times, a scripted checker for
publishing, logging and reload behaviour."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from lbdns.config.model import Monitor, Pool
from lbdns.health.view import HealthView, OriginState
from lbdns.health_owner import HealthRecorder
from lbdns.probes.notify import HealthEvent
from lbdns.probes.result import ProbeResult, failed, passed
from lbdns.probes.scheduler import ProbeContext, ProbeScheduler
from lbdns.probes.targets import ProbeTarget, build_targets
from tests.integration.test_probes_http import Recorder, make_app, run

U, H, X = OriginState.UNKNOWN, OriginState.HEALTHY, OriginState.UNHEALTHY


def _pool(name: str, ports: list[int], **kw: Any) -> Pool:
    return Pool.model_validate({
        "name": name, "monitor": "m",
        "origins": [{"name": f"o{i}", "address": "127.0.0.1", "port": p} for i, p in enumerate(ports)],
        **kw,
    })


def _monitor(**kw: Any) -> Monitor:
    base: dict[str, Any] = {"id": "m", "type": "http", "path": "/health", "interval": 1, "timeout": 1,
                            "retries": 0, "consecutive_up": 2, "consecutive_down": 2}
    base.update(kw)
    return Monitor.model_validate(base)


async def _start_site(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def _wait(pred: Callable[[], bool], limit: float) -> float:
    """Poll ``pred`` every 10 ms for at most ``limit`` seconds; returns the time it took."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"condition not met within {limit} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


def _inline(targets: list[ProbeTarget], publish: Callable[[HealthView], None], *, on_event: Any = None,
            coalesce_ms: float = 200.0, initial_version: int = 0,
            **kw: Any) -> tuple[HealthRecorder, ProbeScheduler]:
    """A recorder and a scheduler in this event loop, as ``probe_isolation: inline`` runs them."""
    rec = HealthRecorder(publish, on_event=on_event, coalesce_ms=coalesce_ms, initial_version=initial_version)
    rec.set_targets(targets, publish=False)
    return rec, ProbeScheduler(targets, rec, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------- real listener, timing


def test_listener_stop_detected_and_recovery(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lbdns.health")
    mon = _monitor()  # interval 1, timeout 1, consecutive_up 2, consecutive_down 2

    async def main() -> tuple[float, float, list[HealthView], list[HealthEvent]]:
        runner, port = await _start_site(make_app(Recorder()))
        pool = _pool("p", [port])
        views: list[HealthView] = []
        events: list[HealthEvent] = []
        _rec, sched = _inline(build_targets({"p": pool}, {"m": mon}), views.append,
                              jitter=0, on_event=events.append)
        await sched.start()
        try:
            await _wait(lambda: bool(views) and views[-1].state("p", "o0") is H, 5.0)
            await runner.cleanup()  # the listener stops
            down = await _wait(lambda: views[-1].state("p", "o0") is X, 10.0)
            runner, _ = await _start_site(make_app(Recorder()), port)  # back on the same port
            up = await _wait(lambda: views[-1].state("p", "o0") is H, 10.0)
        finally:
            await sched.stop()
            await runner.cleanup()
        assert not sched.running
        return down, up, views, events

    down, up, views, events = run(main())
    bound_down = mon.interval * mon.consecutive_down + mon.timeout + 1
    bound_up = mon.interval * mon.consecutive_up + mon.timeout + 1
    assert down <= bound_down, f"UNHEALTHY after {down:.2f} s (bound {bound_down} s)"
    assert up <= bound_up, f"HEALTHY again after {up:.2f} s (bound {bound_up} s)"
    versions = [v.version for v in views]
    assert versions == sorted(set(versions)) and versions[0] >= 1
    assert [(e.old_state, e.new_state) for e in events] == [(U, H), (H, X), (X, H)]
    assert events[1].body["origins"][0]["failure_reason"] == "TCP connection failed"
    assert events[1].body["pool"] == {"id": "p", "name": "p", "healthy": False, "changed": True,
                                      "minimum_origins": 1}
    lines = [r for r in caplog.records if r.name == "lbdns.health"]
    assert len(lines) == 3  # one line per transition
    assert lines[1].getMessage() == "p/o0 127.0.0.1 healthy -> unhealthy: TCP connection failed; pool p now unhealthy"
    assert lines[1].levelname == "WARNING" and lines[2].levelname == "INFO"
    assert lines[1].event["origins"][0]["healthy"] is False  # the webhook body, for log_format: json


def test_run_one_round_warm_start() -> None:
    async def main() -> tuple[HealthView, list[HealthView], float]:
        runner, port = await _start_site(make_app(Recorder()))
        pool = _pool("p", [port, _free_port()])
        mon = _monitor(consecutive_up=0, consecutive_down=0, timeout=1, retries=1)
        views: list[HealthView] = []
        rec, sched = _inline(build_targets({"p": pool}, {"m": mon}), views.append, initial_version=41)
        try:
            t0 = time.monotonic()
            await sched.run_one_round()
            view = rec.publish_now()
            took = time.monotonic() - t0
        finally:
            await sched.stop()
            await runner.cleanup()
        return view, views, took

    view, views, took = run(main())
    assert view.state("p", "o0") is H and view.state("p", "o1") is X
    assert view.origin("p", "o1").failure_reason == "TCP connection failed"
    assert view.origin("p", "o0").rtt_ms is not None
    assert view.pool_rtt["p"].ewma_ms > 0  # one round sample from the passing origin
    assert views[-1] is view and view.version > 41
    assert took < 3.0  # bounded by timeout × (retries + 1) + 1


# ----------------------------------------------------------------- scripted checker, publishing


class Script:
    """A checker whose per-origin outcome the test flips; counts calls."""

    def __init__(self) -> None:
        self.up: dict[str, bool] = {}
        self.calls = 0

    async def __call__(self, target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
        self.calls += 1
        await asyncio.sleep(0)
        if self.up.get(target.origin.name, True):
            return passed(5.0, 200)
        return failed("TCP connection failed")


def test_coalesced_publish_and_immediate_unhealthy() -> None:
    script = Script()
    stamps: list[tuple[float, HealthView]] = []

    async def main() -> tuple[float, float]:
        pool = _pool("p", [1, 2, 3, 4, 5])
        mon = _monitor(consecutive_up=0, consecutive_down=0)
        rec, sched = _inline(build_targets({"p": pool}, {"m": mon}),
                             lambda v: stamps.append((time.monotonic(), v)),
                             jitter=0, coalesce_ms=400, checker=script)
        await sched.start()
        try:
            await _wait(lambda: bool(stamps) and stamps[-1][1].state("p", "o4") is H, 3.0)
            await asyncio.sleep(1.3)
            n_before = len(stamps)
            script.up["o2"] = False
            t_flip = time.monotonic()
            await _wait(lambda: stamps[-1][1].state("p", "o2") is X, 3.0)
            t_seen = stamps[-1][0]
            assert len(stamps) >= n_before
        finally:
            n_running = len(stamps)
            await sched.stop()
            rec.flush()  # a pending publish goes out at once
        del stamps[n_running:]
        return t_flip, t_seen

    t_flip, t_seen = run(main())
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(stamps)]
    # coalesced: apart from the urgent UNHEALTHY publish, publishes are ≥ 400 ms apart
    urgent = {i for i, (_, v) in enumerate(stamps) if v.state("p", "o2") is X}
    first_urgent = min(urgent)
    normal_gaps = [g for i, g in enumerate(gaps) if i + 1 != first_urgent]
    assert all(g >= 0.39 for g in normal_gaps), normal_gaps
    assert t_seen - t_flip <= 1.2  # one interval, not delayed by coalescing
    versions = [v.version for _, v in stamps]
    assert versions == list(range(1, len(versions) + 1))
    assert script.calls >= 10


def test_replace_targets_carries_health_over() -> None:
    script = Script()
    views: list[HealthView] = []

    async def main() -> HealthRecorder:
        pool = _pool("p", [1, 2])
        mon = _monitor(consecutive_up=0, consecutive_down=3)
        rec, sched = _inline(build_targets({"p": pool}, {"m": mon}), views.append,
                             jitter=0, coalesce_ms=0, checker=script)
        await sched.start()
        try:
            await _wait(lambda: bool(views) and views[-1].state("p", "o1") is H, 3.0)
            # reload: o1 removed, o2 added, o0 kept; pool q new
            pool2 = Pool.model_validate({"name": "p", "monitor": "m", "origins": [
                {"name": "o0", "address": "127.0.0.1", "port": 1},
                {"name": "o2", "address": "127.0.0.1", "port": 3}]})
            q = _pool("q", [4])
            v_before = views[-1].version
            new_targets = build_targets({"p": pool2, "q": q}, {"m": mon})
            rec.set_targets(new_targets)
            sched.replace_targets(new_targets)
            v = views[-1]
            assert v.version > v_before
            assert v.state("p", "o0") is H  # carried over
            assert v.state("p", "o1") is U and ("p", "o1") not in v.origins  # gone
            assert v.state("p", "o2") is U and v.state("q", "o0") is U  # new
            await _wait(lambda: views[-1].state("p", "o2") is H and views[-1].state("q", "o0") is H, 3.0)
            # counters carried too: consecutive_down 3 ⇒ still healthy after 1–2 failures
            script.up["o0"] = False
            await _wait(lambda: views[-1].state("p", "o0") is X, 5.0)
        finally:
            await sched.stop()
        return rec

    rec = run(main())
    assert rec.book.member_keys() == {("p", "o0", "m"), ("p", "o2", "m"), ("q", "o0", "m")}


def test_hook_errors_do_not_stop_probing(caplog: pytest.LogCaptureFixture) -> None:
    script = Script()
    views: list[HealthView] = []

    def bad_hook(event: HealthEvent) -> None:
        raise RuntimeError("boom")

    def bad_publish(view: HealthView) -> None:
        views.append(view)
        raise RuntimeError("publish boom")

    async def main() -> int:
        pool = _pool("p", [1])
        rec, sched = _inline(build_targets({"p": pool}, {"m": _monitor(consecutive_up=0)}), bad_publish,
                             jitter=0, coalesce_ms=0, checker=script, on_event=bad_hook)
        await sched.start()
        try:
            await _wait(lambda: script.calls >= 3, 5.0)
        finally:
            await sched.stop()
        return rec.probes_run

    assert run(main()) >= 3
    assert views and views[-1].state("p", "o0") is H
    assert any("notification hook failed" in r.getMessage() for r in caplog.records)


def test_schedule_lag_and_first_round_jitter() -> None:
    script = Script()

    async def main() -> HealthRecorder:
        pools = {f"p{i}": _pool(f"p{i}", [1]) for i in range(20)}
        rec, sched = _inline(build_targets(pools, {"m": _monitor()}), lambda v: None,
                             jitter=0.5, checker=script)
        await sched.start()
        try:
            await asyncio.sleep(0.3)
            early = script.calls
            await _wait(lambda: script.calls >= 20, 2.0)
            assert 0 < early < 20 or early == 20  # jittered start spread over ≤ 0.5 s
        finally:
            await sched.stop()
        return rec

    rec = run(main())
    lags = list(rec.schedule_lag)
    assert len(lags) >= 20
    assert all(-0.001 <= lag < 0.5 for lag in lags), max(lags)


def test_run_one_round_settles_consecutive_up() -> None:
    async def main(settle: bool) -> tuple[HealthView, int]:
        script = Script()
        script.up["o1"] = False
        pool = _pool("p", [1, 2])
        mon = _monitor(consecutive_up=3, consecutive_down=3)
        rec, sched = _inline(build_targets({"p": pool}, {"m": mon}), lambda v: None, checker=script)
        try:
            await sched.run_one_round(settle=settle)
            view = rec.publish_now()
        finally:
            await sched.stop()
        return view, script.calls

    view, calls = run(main(True))
    assert view.state("p", "o0") is H  # three back-to-back passes (R-MON-18 honoured)
    assert view.state("p", "o1") is U  # one failure of three needed; failing pairs not re-probed
    assert calls == 3 + 1
    view, calls = run(main(False))
    assert view.state("p", "o0") is U and calls == 2
