"""The pure geo modules stay pure (DESIGN.md: no asyncio, socket, yaml, time, random, logging)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lbdns.geo

GEO = Path(lbdns.geo.__file__).parent
PURE = ["__init__.py", "regions.py", "pops.py", "distance.py", "location.py", "data.py"]
BANNED = {"asyncio", "socket", "yaml", "time", "random", "logging", "maxminddb", "geolite2"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
            if node.module == "lbdns.geo":
                found |= {f"lbdns.geo.{alias.name}" for alias in node.names}
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lbdns.geo.mmdb"):
            found.add("lbdns.geo.mmdb")
    return found


@pytest.mark.parametrize("name", PURE)
def test_pure_module_imports(name: str) -> None:
    imported = _imports(GEO / name)
    assert not imported & BANNED, imported & BANNED
    assert "lbdns.geo.mmdb" not in imported


def test_importing_the_package_does_not_load_maxminddb() -> None:
    code = "import sys, lbdns.geo; sys.exit(1 if 'maxminddb' in sys.modules else 0)"
    done = subprocess.run([sys.executable, "-c", code], cwd=GEO.parents[1], check=False)
    assert done.returncode == 0
