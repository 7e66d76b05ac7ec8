"""The only module that reads configuration files: YAML text → plain Python data plus the
``file:line:col`` of every node (DESIGN.md ``config/source.py``; octoDNS ``ContextLoader``).

A :class:`SourceFile` holds the data and a map from key paths (tuples of keys and list
indices) to 1-based (line, column) positions, so a validator that only knows a path can
still point at the exact place in the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lbdns.errors import Issue, Location

PathKey = tuple[str | int, ...]


def format_path(path: Iterable[str | int]) -> str:
    """Render a key path as ``load_balancers.www.default_pools[1]``.

    Keys that contain dots, spaces or are empty are bracket-quoted
    (``records[""]``, ``load_balancers["www.example.com"]``) so the path stays unambiguous.
    """
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part == "" or any(c in part for c in ". []\"'"):
            out.append(f'["{part}"]')
        else:
            out.append(f".{part}" if out else part)
    return "".join(out)


@dataclass(slots=True)
class SourceFile:
    """One parsed YAML file: ``data`` (dict/list/scalars) and ``marks`` (path → (line, col))."""

    name: str
    data: Any
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def location(self, path: PathKey) -> Location:
        """The location of ``path``, or of its deepest ancestor that exists in the file."""
        p = tuple(path)
        while p and p not in self.marks:
            p = p[:-1]
        line, col = self.marks.get(p, (1, 1))
        return Location(self.name, line, col)

    def issue(self, path: PathKey, code: str, message: str, *, warning: bool = False) -> Issue:
        """An :class:`Issue` located at ``path`` inside this file."""
        from lbdns.errors import Severity

        return Issue(self.location(path), format_path(path), code, message,
                     Severity.WARNING if warning else Severity.ERROR)


class _Constructor(yaml.SafeLoader):
    """A SafeLoader used only to construct scalar values from composed nodes."""


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load_yaml(path: Path, display_name: str | None = None) -> tuple[SourceFile | None, list[Issue]]:
    """Read and parse one YAML file.

    Returns ``(SourceFile, issues)``; the SourceFile is None when the file cannot be read or
    is not valid YAML (then ``issues`` holds one ``E-YAML`` error with the parser's
    position). Duplicate mapping keys are reported as ``E-YAML`` errors (the later value
    is kept). An empty file yields ``data = {}``.
    """
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Issue(Location(name), "", "E-YAML", f"cannot read file: {exc}")]
    try:
        loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        root = yaml.compose(text, Loader=loader_cls)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
        problem = exc.problem or str(exc)
        return None, [Issue(loc, "", "E-YAML", f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [Issue(Location(name), "", "E-YAML", f"invalid YAML: {exc}")]

    src = SourceFile(name, {})
    issues: list[Issue] = []
    if root is None:
        return src, issues
    constructor = _Constructor("")

    def build(node: yaml.Node, p: PathKey) -> Any:
        src.marks[p] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            constructor.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    issues.append(Issue(Location(name, *_mark(key_node)), "", "E-YAML",
                                        "mapping keys must be scalars"))
                    continue
                skey = "" if key is None else (key if isinstance(key, str) else str(key))
                if skey in out:
                    issues.append(Issue(Location(name, *_mark(key_node)), format_path((*p, skey)),
                                        "E-YAML", f"duplicate key {skey!r}"))
                out[skey] = build(value_node, (*p, skey))
                # a scalar points at its value, a collection at its key line
                if isinstance(value_node, yaml.MappingNode | yaml.SequenceNode):
                    src.marks[(*p, skey)] = _mark(key_node)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*p, i)) for i, item in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    try:
        src.data = build(root, ())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
        return None, [Issue(loc, "", "E-YAML", f"invalid YAML value: {exc}")]
    if src.data is None:
        src.data = {}
    return src, issues


def zone_files(directory: Path) -> list[Path]:
    """The YAML files of a zones directory (``*.yaml`` and ``*.yml``, recursively), sorted."""
    files = [p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(files)
