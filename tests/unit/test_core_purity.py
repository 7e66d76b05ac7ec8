"""The pure core loads no I/O, clock, randomness, logging, YAML or pydantic at run time.

Each part of the core is imported in a fresh interpreter; afterwards none of the banned
modules may be in ``sys.modules``. The bare interpreter already holds ``time`` (site imports
it), so banned modules present at start-up are dropped from ``sys.modules`` first: an import
anywhere in the chain brings them back. ``lint-imports`` (pyproject ``[tool.importlinter]``)
checks the direction of every import, this test what is loaded."""

from __future__ import annotations

import ast
import collections
import importlib
import json
import os
import subprocess
import sys
import tomllib
import weakref
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BANNED = ("asyncio", "socket", "yaml", "pydantic", "pydantic_core", "logging", "time", "random")

CORE: dict[str, tuple[str, ...]] = {
    "answer": ("lbdns.answer",),
    "serving plan": ("lbdns.serving",),
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


def _pure_core_files() -> dict[str, Path]:
    """Module name → file of every module of the pure core: the ``source_modules`` of the
    ``pure-core-no-edges`` import-linter contract (pyproject.toml), packages walked."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (pure,) = [c for c in contracts if c["id"] == "pure-core-no-edges"]
    files: dict[str, Path] = {}
    for name in pure["source_modules"]:
        base = ROOT.joinpath(*name.split("."))
        for f in sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]:
            parts = f.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return files


_MUTABLE = (dict, list, set, bytearray, collections.deque, weakref.WeakKeyDictionary, weakref.WeakValueDictionary,
            weakref.WeakSet)


def _module_state(name: str, path: Path) -> list[str]:
    """The module-level names of ``name`` bound to a mutable container or a memoising cache,
    and its ``global`` statements."""
    tree = ast.parse(path.read_text())
    assigned = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                for t in ast.walk(target) if isinstance(t, ast.Name)}
    module = importlib.import_module(name)
    found = [f"{name}.{k}: {type(v).__name__}" for k, v in vars(module).items()
             if k != "__all__" and k in assigned and isinstance(v, _MUTABLE)]
    found += [f"{name}.{k}: cached function" for k, v in vars(module).items()
              if hasattr(v, "cache_info") and getattr(v, "__module__", None) == name]
    found += [f"{name}:{n.lineno}: global {', '.join(n.names)}" for n in ast.walk(tree) if isinstance(n, ast.Global)]
    return found


def test_the_pure_core_keeps_no_mutable_module_state() -> None:
    """No cache, counter or table that can change at run time lives in a module of the pure
    core (caches live on the published state, counters are injected by the edge); constant
    tables are read-only (``MappingProxyType``, ``tuple``, ``frozenset``)."""
    files = _pure_core_files()
    assert {"lbdns.answer", "lbdns.rules", "lbdns.geo.regions", "lbdns.steering.decide"} <= files.keys()
    assert [s for name, path in sorted(files.items()) for s in _module_state(name, path)] == []


def test_the_module_state_probe_sees_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe above can fail: it reports a module-level dict, a cached function and a global."""
    (tmp_path / "stateful_core.py").write_text(
        "import functools\n_MEMO: dict[int, int] = {}\nSEEN = []\nTABLE = (1, 2)\nX = 0\n\n"
        "@functools.cache\ndef f(n: int) -> int:\n    return n\n\n"
        "def g() -> None:\n    global X\n    X += 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _module_state("stateful_core", tmp_path / "stateful_core.py") == [
        "stateful_core._MEMO: dict", "stateful_core.SEEN: list", "stateful_core.f: cached function",
        "stateful_core:12: global X",
    ]
