"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
import sys

# Cache compiled bytecode even when the environment asks Python not to (PYTHONDONTWRITEBYTECODE):
# the suite starts ~200 Python processes (`lbdns serve`, the snapshot builder, probe workers, the
# CLI) and four xdist workers, and without the cache each one compiles lbdns again and each
# worker rewrites every test module's asserts again (~25 s of CPU a run on 2 cores). The caches
# go to the usual, git-ignored __pycache__ directories. Set before anything below imports lbdns.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

import pytest  # noqa: E402

from tests.integration.harness import Fixture  # noqa: E402


@pytest.fixture
def fx() -> Fixture:
    """A fresh SPEC-EXAMPLES base fixture (B) to modify."""
    return Fixture()


# The tests that take longest on a loaded 2-CPU machine (they wait on real timers, or build and
# rebuild big configurations), longest first. Under pytest-xdist each starts at the head of one
# worker's share of the run, instead of wherever it falls in collection order: one of them
# started near the end would end the run alone, seconds after the other workers.
LONG_FIRST = (
    "tests/integration/test_reload_control.py::test_reload_of_a_big_configuration_does_not_stall_answering",
    "tests/integration/test_cluster.py::test_three_regions_vote_on_health_through_redis",
    "tests/integration/test_operator_control.py::test_drain_survives_probe_round_reload_and_restart",
    "tests/integration/test_rrl.py::test_amplification_with_and_without_rrl",
    "tests/integration/test_reload_control.py::test_file_watch_notices_a_change_made_during_a_reload",
    "tests/integration/test_probe_watchdog.py::test_idle_worker_keeps_reporting",
    "tests/integration/test_probe_watchdog.py::test_stopped_probe_worker_is_killed_restarted_logged_and_counted",
    "tests/integration/test_reload_control.py::test_rejected_reload_logged_once_warnings_as_warnings_and_counted",
    "tests/unit/config/test_fuzz.py::test_mutated_zone_files_give_located_errors_never_a_crash",
    "tests/integration/test_examples.py::test_example_serves_its_first_dig_line[load-shedding]",
)


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put each test of :data:`LONG_FIRST` at the head of one worker's first share of the tests.

    pytest-xdist's worksteal scheduler first hands worker *i* of *n* the *i*-th of *n*
    contiguous slices of the collection (later, idle workers steal from the tails of the
    others' queues), so the long tests are dealt round-robin to the heads of those slices.
    Every worker computes the same order, as xdist requires. Without xdist: they come first.
    """
    rank = {nodeid: i for i, nodeid in enumerate(LONG_FIRST)}
    long = sorted((it for it in items if it.nodeid in rank), key=lambda it: rank[it.nodeid])
    rest = [it for it in items if it.nodeid not in rank]
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    ordered: list[pytest.Item] = []
    remaining = len(items)
    for i in range(workers):  # the slice sizes of xdist's first distribution
        size = remaining // (workers - i)
        remaining -= size
        head = long[i::workers]
        ordered += head
        take = max(0, size - len(head))
        ordered += rest[:take]
        del rest[:take]
    items[:] = ordered + rest
