"""lbdns.health is a pure core (DESIGN.md principles 1 and 7): no I/O, clock or randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lbdns.health

FORBIDDEN = {"asyncio", "socket", "logging", "time", "random", "aiohttp", "icmplib", "lbdns.probes"}
FILES = sorted(Path(lbdns.health.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_forbidden_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    bad = [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"{path.name} imports {bad}"
