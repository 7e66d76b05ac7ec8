"""The probe worker process (issue #4 point 3, docs/architecture.md): its frame protocol, a real
worker probing real listeners into a recorder, CPU placement and nice value, reloads, a clean
stop, and a misbehaving worker being replaced."""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
import time
from typing import Any

import pytest

from lbdns.config.model import Monitor, Pool
from lbdns.health.view import HealthView, OriginState
from lbdns.health_owner import HealthRecorder
from lbdns.probes.targets import build_targets
from lbdns.probes.worker import FRAME, MAX_FRAME, ProbeWorker, WorkerOptions, encode, read_message
from tests.integration.test_probes_http import Recorder, make_app, run
from tests.integration.test_probes_scheduler import _free_port, _start_site, _wait

H, X = OriginState.HEALTHY, OriginState.UNHEALTHY


def _reader(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    if eof:
        r.feed_eof()
    return r


def test_frames_roundtrip_eof_and_limits() -> None:
    async def main() -> None:
        msg = ("events", [("probe", ("p", "o", "m"), None, 0.25)])
        two = _reader(encode(msg) + encode(("run",)))
        assert await read_message(two) == msg
        assert await read_message(two) == ("run",)
        assert await read_message(two) is None  # clean EOF
        assert await read_message(_reader(encode(msg)[:-3])) is None  # EOF inside a frame
        with pytest.raises(ValueError, match="exceeds"):
            await read_message(_reader(FRAME.pack(MAX_FRAME + 1)))
        body = pickle.dumps(["not", "a", "tuple"])
        with pytest.raises(ValueError, match="not a tuple"):
            await read_message(_reader(FRAME.pack(len(body)) + body))

    run(main())


def _monitor(**kw: Any) -> Monitor:
    base: dict[str, Any] = {"id": "m", "type": "http", "path": "/health", "interval": 1, "timeout": 1,
                            "retries": 0, "consecutive_up": 2, "consecutive_down": 1}
    base.update(kw)
    return Monitor.model_validate(base)


def _pool(name: str, ports: list[int]) -> Pool:
    return Pool.model_validate({"name": name, "monitor": "m", "origins": [
        {"name": f"o{i}", "address": "127.0.0.1", "port": p} for i, p in enumerate(ports)]})


def test_worker_probes_real_listeners_with_placement_reload_and_stop() -> None:
    cpu = min(os.sched_getaffinity(0))

    async def main() -> None:
        runner, port = await _start_site(make_app(Recorder()))
        views: list[HealthView] = []
        rec = HealthRecorder(views.append, coalesce_ms=0)
        mon = _monitor()
        targets = build_targets({"p": _pool("p", [port, _free_port()])}, {"m": mon})
        rec.set_targets(targets, publish=False)
        worker = ProbeWorker(rec, WorkerOptions(cpus=(cpu,), nice=3))
        try:
            t0 = time.monotonic()
            # warm start settles consecutive_up 2: o0 passes twice, o1 fails once
            assert await worker.start(targets, warm_start=True) == 3
            assert time.monotonic() - t0 < 1 + 1 + 15
            view = rec.publish_now()
            assert view.state("p", "o0") is H and view.state("p", "o1") is X
            assert view.origin("p", "o1").failure_reason == "TCP connection failed"
            assert view.pool_rtt["p"].ewma_ms > 0
            pid = worker.pid
            assert pid is not None and pid != os.getpid()
            assert os.sched_getaffinity(pid) == {cpu}
            assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 3
            # periodic probing runs in the worker; schedule lag comes back with the results
            await _wait(lambda: len(rec.schedule_lag) >= 2, 5.0)
            # a reload adds pool q; its origin gets probed and recorded
            runner2, port2 = await _start_site(make_app(Recorder()))
            new = build_targets({"p": _pool("p", [port, _free_port()]), "q": _pool("q", [port2])}, {"m": mon})
            rec.set_targets(new)
            worker.replace_targets(new)
            await _wait(lambda: views[-1].state("q", "o0") is H, 5.0)
            assert views[-1].state("p", "o0") is H  # carried over
        finally:
            await worker.stop()
            await runner.cleanup()
        assert worker.pid is None and worker.restarts == 0
        await runner2.cleanup()

    run(main())


def test_worker_that_sends_garbage_is_replaced(tmp_path: Any) -> None:
    """A worker writing something that is not a frame is killed and restarted."""
    fake = tmp_path / "fake_worker.py"
    fake.write_text("import sys, time\nsys.stdout.buffer.write(b'\\x00\\x00\\x00\\x03abc')\n"
                    "sys.stdout.flush()\ntime.sleep(30)\n")

    async def main() -> None:
        rec = HealthRecorder(lambda v: None)
        worker = ProbeWorker(rec, WorkerOptions(), restart_delay=(0.1, 0.1), command=(sys.executable, str(fake)))
        try:
            await worker.start([], warm_start=False)
            first = worker.pid
            await _wait(lambda: worker.restarts >= 1 and worker.pid not in (None, first), 10.0)
        finally:
            await worker.stop()

    run(main())


def test_worker_that_ignores_stop_is_killed(tmp_path: Any) -> None:
    """stop() closes the worker's stdin; one that does not exit within stop_timeout is killed."""
    deaf = tmp_path / "deaf_worker.py"
    deaf.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n")

    async def main() -> float:
        worker = ProbeWorker(HealthRecorder(lambda v: None), WorkerOptions(), command=(sys.executable, str(deaf)),
                             stop_timeout=0.5)
        await worker.start([], warm_start=False)
        pid = worker.pid
        assert pid is not None
        t0 = time.monotonic()
        await worker.stop()
        took = time.monotonic() - t0
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone and reaped
        assert worker.restarts == 0
        return took

    assert 0.4 <= run(main()) < 3.0


def test_warm_start_does_not_wait_for_a_dead_worker() -> None:
    """A worker that exits at once (here: a program that is not the worker) ends the warm start
    immediately instead of holding the listeners for the whole warm-start bound."""

    async def main() -> tuple[int | None, float]:
        mon = _monitor(type="tcp", port=9)
        targets = build_targets({"p": _pool("p", [9])}, {"m": mon})
        rec = HealthRecorder(lambda v: None)
        rec.set_targets(targets, publish=False)
        worker = ProbeWorker(rec, WorkerOptions(), command=(sys.executable, "-c", "raise SystemExit(1)"),
                             restart_delay=(30.0, 30.0))
        t0 = time.monotonic()
        try:
            done = await worker.start(targets, warm_start=True)
            return done, time.monotonic() - t0
        finally:
            await worker.stop()

    done, took = run(main())
    assert done is None and took < 5.0, took
