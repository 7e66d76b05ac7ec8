"""The probe worker watchdog (issue #11 item 10): a worker that stops reporting (SIGSTOP) is
killed, restarted, logged and counted, and probing resumes — on a real server with a real
worker process and real HTTP origins."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from lbdns.probes.worker import HEARTBEAT_S, STALL_TIMEOUT_S
from tests.integration.harness import Server
from tests.integration.test_health_e2e import (  # noqa: F401 (origins is a fixture)
    http_get,
    lb,
    origins,
    start,
    wait_for,
    write_zones,
)

# The watchdog's bound is a constructor argument of ProbeWorker (10 s in production); these
# tests shorten it to 3 heartbeats on the running worker so that a stall is noticed in ~3 s
# instead of ~10 s. What they prove does not depend on its length: a stopped worker is killed
# once silent for longer than the bound, and an idle one (heartbeats only) never is.
STALL_S = 3 * HEARTBEAT_S
assert STALL_S < STALL_TIMEOUT_S


def test_stopped_probe_worker_is_killed_restarted_logged_and_counted(tmp_path, origins, caplog):  # noqa: F811
    s = start(tmp_path, origins)
    runtime = s.app.health_runtime
    pid = runtime.worker_pid
    assert pid is not None
    runtime.worker.stall_timeout = STALL_S
    try:
        assert lb(s) == {"127.0.0.11", "127.0.0.12"}
        with caplog.at_level(logging.WARNING, logger="lbdns"):
            t0 = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            origins["e2"].stop()  # an origin goes down while the worker is frozen
            wait_for(lambda: runtime.worker_pid not in (None, pid), STALL_S + 8)
            took = time.monotonic() - t0
        assert took <= STALL_S + 3, took
        # the frozen worker is gone (SIGKILL works on a stopped process) and reaped
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5)
        stalls = [r for r in caplog.records if r.levelno >= logging.ERROR and "stopped reporting" in r.getMessage()]
        assert len(stalls) == 1 and str(pid) in stalls[0].getMessage()
        fams = {f.name: f for f in text_string_to_metric_families(http_get(s, "/metrics"))}
        assert fams["lbdns_probe_worker_stalls"].samples[0].value == 1
        assert fams["lbdns_probe_worker_restarts"].samples[0].value == 1
        # the new worker probes: e2's failure is noticed
        wait_for(lambda: lb(s) == {"127.0.0.11"}, 2 + 6)
    finally:
        with contextlib.suppress(ProcessLookupError):
            if os.path.exists(f"/proc/{pid}"):
                os.kill(pid, signal.SIGKILL)
        s.stop()


class _LastResult:
    """A probe sink in front of ``sink`` that notes when the worker last reported a result."""

    def __init__(self, sink: Any) -> None:
        self.sink, self.at = sink, time.monotonic()

    def probe_done(self, *args: Any) -> None:
        self.at = time.monotonic()
        self.sink.probe_done(*args)

    def round_done(self, *args: Any) -> None:
        self.at = time.monotonic()
        self.sink.round_done(*args)


def test_idle_worker_keeps_reporting(tmp_path, origins, caplog):  # noqa: F811
    """A worker with nothing to report for longer than the bound still sends heartbeats: it is
    never killed for being idle (monitors with a 60 s interval here). The first periodic round
    starts up to 5 s after the worker (jitter), so the test waits until the worker has reported
    no result for longer than the bound — only heartbeats can have kept it alive — instead of
    sleeping a fixed time that the first round's results could fill."""
    zones = write_zones(tmp_path, origins)
    account = yaml.safe_load((zones / "_account.yaml").read_text())
    account["monitors"][0]["interval"] = 60
    (zones / "_account.yaml").write_text(yaml.safe_dump(account))
    s = Server(zones, tmp_path, geoip=False, health="none", probes_enabled=True)
    runtime = s.app.health_runtime
    pid = runtime.worker_pid
    worker = runtime.worker
    worker.stall_timeout = STALL_S
    results = worker.sink = _LastResult(worker.sink)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() - results.at <= STALL_S + 1:
            assert time.monotonic() < deadline, "the worker never stopped reporting results"
            assert runtime.worker_pid == pid, "an idle worker was killed"
            time.sleep(0.1)
        assert runtime.worker_pid == pid
        assert runtime.metrics()["worker_restarts"] == 0 and worker.stalls == 0
    finally:
        s.stop()
