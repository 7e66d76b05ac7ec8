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
