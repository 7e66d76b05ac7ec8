"""What users read cites only what they have: the README, docs/, examples/, the example zones,
contrib/ and the shipped data README name no unshipped team files (``SPEC.md``, ``DESIGN.md``)
or their rule ids (``R-ANS-50``, ``A-48``), and neither does any string lbdns prints (every
string constant in lbdns/ that is not a docstring: CLI output, warnings, error and log messages,
/status text). Docstrings are not user-visible and are not checked here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"SPEC|DESIGN\.md|\bR-[A-Z]{2,6}-\d+|\bA-\d{2}\b")
USER_FILES = ["README.md", "docs", "examples", "zones", "contrib", "lbdns/geo/tables/README.md"]


def _texts() -> list[Path]:
    out: list[Path] = []
    for name in USER_FILES:
        p = ROOT / name
        out += [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    return out


def test_user_documents_cite_no_unshipped_files() -> None:
    hits = [f"{f.relative_to(ROOT)}:{n}: {line.strip()}"
            for f in _texts() for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
            if CITATION.search(line)]
    assert not hits, "\n".join(hits)


def _docstring_ids(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        for stmt in body if isinstance(body, list) else []:  # a Lambda's body is one expression
            value = stmt.value if isinstance(stmt, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                ids.add(id(value))  # module/class/function docstrings and attribute docstrings
    return ids


def test_strings_lbdns_prints_cite_no_unshipped_files() -> None:
    hits = []
    for f in sorted((ROOT / "lbdns").rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        docs = _docstring_ids(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and CITATION.search(node.value)):
                hits.append(f"{f.relative_to(ROOT)}:{node.lineno}: {node.value[:100]!r}")
    assert not hits, "\n".join(hits)
