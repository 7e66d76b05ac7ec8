"""The pure core loads no I/O, clock, randomness, logging, YAML or pydantic at run time.

Each part of the core is imported in a fresh interpreter; afterwards none of the banned
modules may be in ``sys.modules``. The bare interpreter already holds ``time`` (site imports
it), so banned modules present at start-up are dropped from ``sys.modules`` first: an import
anywhere in the chain brings them back. ``lint-imports`` (pyproject ``[tool.importlinter]``)
checks the direction of every import, this test what is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BANNED = ("asyncio", "socket", "yaml", "pydantic", "pydantic_core", "logging", "time", "random")

CORE: dict[str, tuple[str, ...]] = {
    "answer": ("lbdns.answer",),
    "snapshot types": ("lbdns.snapshot_types", "lbdns.config.loaded"),
    "steering": ("lbdns.steering.plan", "lbdns.steering.origins", "lbdns.steering.decide"),
    "rules": ("lbdns.rules", "lbdns.rules.lexer", "lbdns.rules.parser", "lbdns.rules.compiler",
              "lbdns.rules.fields", "lbdns.rules.patterns"),
    "health": ("lbdns.health.view", "lbdns.health.tracker", "lbdns.health.book", "lbdns.health.pool_health",
               "lbdns.health.expected_codes"),
    "wire": ("lbdns.wire", "lbdns.wire.codec", "lbdns.wire.render", "lbdns.wire.framing", "lbdns.wire.names"),
    "geo tables": ("lbdns.geo.regions", "lbdns.geo.pops", "lbdns.geo.location", "lbdns.geo.distance"),
}

_PROBE = """\
import importlib, json, sys
banned = set(sys.argv[1].split(","))
for name in [m for m in sys.modules if m.split(".")[0] in banned]:
    del sys.modules[name]
for target in sys.argv[2:]:
    importlib.import_module(target)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in banned)))
"""


def loaded_after(*targets: str) -> list[str]:
    """The banned modules in ``sys.modules`` of a fresh interpreter after importing ``targets``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _PROBE, ",".join(BANNED), *targets], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    result: list[str] = json.loads(done.stdout)
    return result


def test_the_bare_interpreter_baseline_is_clean() -> None:
    """The probe itself loads nothing banned, and does see a banned import (it can fail)."""
    assert loaded_after() == []
    assert "time" in loaded_after("logging")


@pytest.mark.parametrize("part", sorted(CORE))
def test_importing_the_pure_core_loads_no_io_clock_random_or_loaders(part: str) -> None:
    assert loaded_after(*CORE[part]) == []
