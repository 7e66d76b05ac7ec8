"""A billion-laughs zone file dropped into a live server (``lbdns serve`` as a real process):
SIGHUP rejects it with a located ``E-YAML`` line at once, memory stays small and the old
configuration keeps being answered."""

from __future__ import annotations

import queue
import resource
import signal
import threading
import time
from pathlib import Path

from tests.integration.harness import addresses
from tests.integration.test_reload import ask, serve_process, stop_process, wait_answer
from tests.unit.config.test_source_limits import billion_laughs


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _cap_memory() -> None:  # the old reader would take the whole machine; 2 GB is plenty here
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_sighup_with_an_alias_bomb_is_rejected_fast_and_small(tmp_path, fx):
    proc, zones, port = serve_process(fx, tmp_path, "--no-watch", preexec_fn=_cap_memory)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        wait_answer(port, "svc.example.com", {"192.0.2.201"})
        rss_before = _rss_kb(proc.pid)
        (zones / "bomb.yaml").write_text(billion_laughs(9))
        start = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        seen: list[str] = []
        # the build runs in the niced builder process: on a loaded machine (CI runs the suite on
        # every CPU) it can wait seconds for CPU; the old reader never printed this line at all
        while time.monotonic() - start < 30.0:
            try:
                seen.append(lines.get(timeout=0.2))
            except queue.Empty:
                continue
            if "bomb.yaml:6:10: a5[0]: E-YAML: alias *a4: aliases expand" in seen[-1]:
                break
        else:
            raise AssertionError(f"no located E-YAML line within 30 s: {seen[-5:]}")
        took = time.monotonic() - start
        assert addresses(ask(port, "svc.example.com")) == {"192.0.2.201"}
        assert proc.poll() is None
        grown = _rss_kb(proc.pid) - rss_before
        assert took < 20.0, took
        assert grown < 30_000, f"RSS grew by {grown} kB"
    finally:
        stop_process(proc, 10)
