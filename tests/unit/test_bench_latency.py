"""The latency figures of ``scripts/bench.py``: answers of dnsperf's start are left out, and the
server's wait for its core is read from the kernel."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """scripts/bench.py, imported as ``scripts/bench`` runs it (scripts/ on sys.path)."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import bench as module
    finally:
        sys.path.remove(str(SCRIPTS))
    return module


def dnsperf_verbose(latencies: list[float]) -> str:
    """``dnsperf -v`` output with one answer line per latency (seconds), in that order."""
    lines = [f"> NOERROR static.example.com A {x:.6f}" for x in latencies]
    return "[Status] Command line: dnsperf -v\n" + "\n".join(lines) + "\nStatistics:\n\n  Queries sent: 1\n"


def test_percentiles_leave_out_the_first_answers(bench: ModuleType) -> None:
    # a burst at the start (1 s each), then 200 answers of 1 ms: only the burst is left out
    text = dnsperf_verbose([1.0] * 10 + [0.001] * 200)
    p50, p99, n = bench.percentiles(text, skip=10)
    assert (p50, p99, n) == (1.0, 1.0, 200)
    _, p99_all, n_all = bench.percentiles(text)
    assert n_all == 210 and p99_all == 1000.0


def test_percentiles_of_nothing_left_are_nan(bench: ModuleType) -> None:
    p50, p99, n = bench.percentiles(dnsperf_verbose([0.001] * 5), skip=5)
    assert math.isnan(p50) and math.isnan(p99) and n == 0


def test_run_queue_wait_of_this_process(bench: ModuleType) -> None:
    waited = bench.run_queue_wait_seconds(os.getpid())
    if not Path(f"/proc/{os.getpid()}/task").is_dir():
        pytest.skip("no /proc: not Linux")
    assert waited >= 0.0
    assert math.isnan(bench.run_queue_wait_seconds(2**22 + 12345))  # above pid_max: no such process


def test_steal_of_one_cpu(bench: ModuleType) -> None:
    if not Path("/proc/stat").is_file():
        pytest.skip("no /proc/stat: not Linux")
    assert bench.cpu_steal_seconds("0") >= 0.0
    assert math.isnan(bench.cpu_steal_seconds("0-1"))  # not one CPU
    assert math.isnan(bench.cpu_steal_seconds(""))  # no pinning


def test_quartiles_of_the_repeats(bench: ModuleType) -> None:
    # the middle half of ten p99s: one stalled run (9.0 ms) does not move it
    assert bench.quartiles([0.3, 0.2, 0.4, 9.0, 0.25, 0.35, 0.3, 0.28, 0.32, 0.22]) == pytest.approx((0.2575, 0.3425))
    assert bench.quartiles([0.5]) == (0.5, 0.5)
    lo, hi = bench.quartiles([])
    assert math.isnan(lo) and math.isnan(hi)


def test_row_shows_unmeasured_figures_as_a_dash(bench: ModuleType) -> None:
    """A latency run that was not made (``--light-qps 0``) prints "-", not "nan", and keeps the
    columns aligned with the header."""
    nan = float("nan")
    r = {"qps": 114734.0, "avg_ms": 0.353, "lost_pct": 0.0, "handled": 114607.0, "cpu_us": 7.25,
         "p50_light": nan, "p99_light": nan, "p50_fixed": 0.1, "p99_fixed": 2.643}
    line = bench.row("static", "lbdns", r)
    assert "nan" not in line
    assert line.split()[7:11] == ["-", "-", "0.100", "2.643"]
    assert len(line) == len(bench.HEADER)  # the last column is the p99 and its "*" mark
