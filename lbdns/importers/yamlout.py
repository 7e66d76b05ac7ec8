"""YAML output for the importers: PyYAML's safe dumper (so every scalar is quoted exactly when
YAML 1.1 would read it as something else, e.g. ``'off'``), block style for objects, flow style
for small leaf mappings (records, origins) and ``#`` comments above list items and map entries
(PyYAML cannot emit comments, so sections are assembled here from individually dumped items).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class Flow(dict[str, Any]):
    """A mapping written in flow style: ``{type: A, ttl: 300, value: 192.0.2.1}``."""


class _Dumper(yaml.SafeDumper):
    """SafeDumper that knows :class:`Flow` and never sorts keys."""


def _represent_flow(dumper: yaml.SafeDumper, data: Flow) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", dict(data), flow_style=True)


_Dumper.add_representer(Flow, _represent_flow)


def block_entry(key: str, value: Any) -> str:
    """``key: value`` indented by two spaces, a list value's items by four (the layout of the
    example zones)."""
    return indent(dump({key: value}).replace("\n- ", "\n  - "))


def dump(obj: Any) -> str:
    """``obj`` as YAML text (block style, insertion order, Unicode kept, no line folding)."""
    text: str = yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                          allow_unicode=True, width=4096, indent=2)
    return text


def indent(text: str, prefix: str = "  ") -> str:
    """``text`` with ``prefix`` before every non-blank line."""
    return "".join(prefix + line if line.strip() else line for line in text.splitlines(keepends=True))


def _comment(lines: str | None, prefix: str = "  ") -> str:
    if not lines:
        return ""
    return "".join(f"{prefix}# {line}\n" if line else f"{prefix}#\n" for line in lines.splitlines())


def list_section(key: str, items: Iterable[tuple[str | None, Any]]) -> str:
    """``key:`` followed by one list item per ``(comment, value)``, each comment (may be
    several lines, or None) written above its item. An empty list gives ``key: []``."""
    parts = [f"{key}:\n"]
    for comment, value in items:
        parts.append(_comment(comment))
        parts.append(indent(dump([value])))
    return "".join(parts) if len(parts) > 1 else f"{key}: []\n"


def map_section(key: str, items: Iterable[tuple[str | None, str, Any]]) -> str:
    """``key:`` followed by one entry per ``(comment, entry key, value)`` with the comment
    above it. An empty mapping gives ``key: {}``."""
    parts = [f"{key}:\n"]
    for comment, k, value in items:
        parts.append(_comment(comment))
        parts.append(indent(dump({k: value})))
    return "".join(parts) if len(parts) > 1 else f"{key}: {{}}\n"


def header(lines: Iterable[str]) -> str:
    """A file header: each line as a ``#`` comment, then a blank line."""
    return "".join(f"# {line}\n" if line else "#\n" for line in lines) + "\n"
