"""The only module that reads configuration files: YAML text → plain Python data plus the
``file:line:col`` of every node (modelled on octoDNS's ``ContextLoader``).

A :class:`SourceFile` holds the data and a map from key paths (tuples of keys and list
indices) to 1-based (line, column) positions, so a validator that only knows a path can
still point at the exact place in the file.

A file is refused (``E-YAML``) when it is larger than :data:`MAX_FILE_BYTES`, nests deeper
than :data:`MAX_DEPTH`, has a recursive alias, or whose aliases expand past
:data:`ALIAS_BUDGET`: the "billion laughs" defence that other YAML libraries bound the same way
(serde-yaml caps alias expansion in proportion to the input; SnakeYAML limits aliases).
"""

from __future__ import annotations

import json
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
        elif part == "" or any(c in part for c in ". []\"'") or not part.isprintable():
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
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


MAX_FILE_BYTES = 32 * 1024 * 1024
"""Largest configuration file read, in bytes (a 30,000-record zone is about 1.5 MB)."""

MAX_DEPTH = 64
"""Deepest nesting of collections, counted after alias expansion (real files stay below 12)."""

ALIAS_BUDGET = 100_000
"""Nodes that alias expansion may add beyond those written in the file: at most this many, or
as many as the file itself holds when that is more (so aliases can at most double a big file).
Billion-laughs documents expand a few hundred bytes into 10⁸ nodes; they are refused before
anything is built."""


_UNPRINTABLE_INT = 10 ** 4300
"""Integers this large cannot be turned into text (Python's int-to-str digit limit)."""


class _Constructor(yaml.SafeLoader):
    """A SafeLoader used only to construct scalar values from composed nodes."""


class _Refused(Exception):
    """A document refused by a resource limit; ``alias`` is the 1-based number of the alias
    (in document order) that crossed it, 0 when it was not an alias."""

    def __init__(self, path: PathKey, mark: yaml.Mark | None, message: str, alias: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.mark = mark
        self.message = message
        self.alias = alias


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _measure(root: yaml.Node, budget: int | None) -> tuple[int, int]:  # noqa: C901 -- one iterative walk of the YAML node graph on purpose: no recursion on hostile input
    """Walk the composed node graph once, in document order, without expanding aliases.

    A collection met a second time is an alias (or a merge key) of an anchored collection: its
    expanded size is added to the expansion count instead of walking it again (an alias of a
    scalar adds one node and costs its own bytes of text, so it is not counted). Returns
    ``(nodes in the file, nodes added by aliases)``. Raises :class:`_Refused` for an alias of
    a collection that contains it (a recursive alias), nesting deeper than :data:`MAX_DEPTH`,
    or, when ``budget`` is given, an expansion count above it.
    """
    done: dict[int, tuple[int, int]] = {}   # id(collection) → (expanded size, expanded height)
    open_: set[int] = set()
    written = added = aliases = 0
    # one frame per open collection: [node, items, next child, children, size, height];
    # a mapping's children are key, value, key, value… (2 per item)
    stack: list[list[Any]] = []

    def path_of(top: int) -> PathKey:
        out: list[str | int] = []
        for node, items, i, _, _, _ in stack[:top]:
            if isinstance(node, yaml.MappingNode):
                key = items[(i - 1) >> 1][0]
                out.append(key.value if isinstance(key, yaml.ScalarNode) else "?")
            else:
                out.append(i - 1)
        return tuple(out)

    def refuse(message: str, mark: yaml.Mark | None = None, alias: int = 0) -> _Refused:
        return _Refused(path_of(len(stack)), mark, message, alias)

    def open_frame(node: yaml.Node) -> None:
        nonlocal written
        written += 1
        if len(stack) >= MAX_DEPTH:
            raise refuse(f"nesting is deeper than {MAX_DEPTH} levels", node.start_mark)
        n = len(node.value) * (2 if isinstance(node, yaml.MappingNode) else 1)
        open_.add(id(node))
        stack.append([node, node.value, 0, n, 1, 1])

    if isinstance(root, yaml.ScalarNode):
        return 1, 0
    open_frame(root)
    while stack:
        frame = stack[-1]
        node, items, i, n = frame[0], frame[1], frame[2], frame[3]
        if i == n:
            stack.pop()
            open_.discard(id(node))
            done[id(node)] = (frame[4], frame[5])
            if stack:
                parent = stack[-1]
                parent[4] += frame[4]
                parent[5] = max(parent[5], frame[5] + 1)
            continue
        frame[2] = i + 1
        child = items[i >> 1][i & 1] if isinstance(node, yaml.MappingNode) else items[i]
        if isinstance(child, yaml.ScalarNode):
            written += 1
            frame[4] += 1
            frame[5] = max(frame[5], 2)
            continue
        key = id(child)
        if key in open_:
            raise refuse("recursive alias: it refers to a collection that contains it", alias=aliases + 1)
        if key in done:
            aliases += 1
            size, height = done[key]
            added += size
            if len(stack) + height > MAX_DEPTH:
                raise refuse(f"alias expands to nesting deeper than {MAX_DEPTH} levels", alias=aliases)
            if budget is not None and added > budget:
                raise refuse(f"aliases expand the document by more than {budget:,} nodes "
                             "(a recursive-expansion or 'billion laughs' document?)", alias=aliases)
            frame[4] += size
            frame[5] = max(frame[5], height + 1)
            continue
        open_frame(child)
    return written, added


def _check_limits(root: yaml.Node) -> None:
    """Refuse (``_Refused``) a document that is recursive, too deep or expands too much."""
    written, added = _measure(root, None)
    budget = max(ALIAS_BUDGET, written)
    if added > budget:
        _measure(root, budget)  # raises at the alias that crosses the budget


def _alias_mark(text: str, number: int, loader_cls: type[Any]) -> tuple[Any, str]:
    """The position and anchor name of the ``number``-th alias of a collection in ``text``
    (document order; the order in which :func:`_measure` counts them)."""
    collection: dict[str, bool] = {}   # anchor → anchors a collection (the latest definition)
    seen = 0
    for event in yaml.parse(text, Loader=loader_cls):
        if isinstance(event, yaml.NodeEvent) and not isinstance(event, yaml.AliasEvent) and event.anchor:
            collection[event.anchor] = isinstance(event, yaml.CollectionStartEvent)
        elif isinstance(event, yaml.AliasEvent) and collection.get(str(event.anchor), False):
            seen += 1
            if seen == number:
                return event.start_mark, str(event.anchor)
    return None, ""


def _read(path: Path, name: str) -> tuple[str | None, Issue | None]:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, Issue(Location(name, 1, 1), "", "E-YAML", f"cannot read file: {exc.strerror or exc}")
    if len(raw) > MAX_FILE_BYTES:
        return None, Issue(Location(name, 1, 1), "", "E-YAML",
                           f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, Issue(Location(name, line, col), "", "E-YAML", f"not UTF-8 text: {exc.reason}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_yaml(path: Path, display_name: str | None = None) -> tuple[SourceFile | None, list[Issue]]:  # noqa: C901, PLR0915 -- its build/flatten/scalar closures share one file's marks, issues and merge memo
    """Read and parse one YAML file.

    Returns ``(SourceFile, issues)``; the SourceFile is None when the file cannot be read, is
    not valid YAML or exceeds a resource limit (then ``issues`` holds one ``E-YAML`` error with
    its position): more than :data:`MAX_FILE_BYTES`, nesting deeper than :data:`MAX_DEPTH`, a
    recursive alias, aliases adding more than :data:`ALIAS_BUDGET` nodes (or more nodes than
    the file holds), or a scalar that cannot be constructed (an integer of more than 4,300
    digits, an impossible date, an unknown tag). Duplicate mapping keys are reported as
    ``E-YAML`` errors (the later value is kept). An empty file yields ``data = {}``.
    """
    name = display_name or str(path)
    text, problem = _read(path, name)
    if text is None:
        assert problem is not None
        return None, [problem]
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader_cls)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        why = exc.problem or str(exc)
        return None, [Issue(_location(name, mark), "", "E-YAML", f"invalid YAML: {_one_line(why)}")]
    except (yaml.YAMLError, RecursionError) as exc:  # RecursionError: the pure-Python composer, deep nesting
        return None, [Issue(Location(name, 1, 1), "", "E-YAML", f"invalid YAML: {_one_line(str(exc))}")]

    src = SourceFile(name, {})
    issues: list[Issue] = []
    if root is None:
        return src, issues
    try:
        _check_limits(root)
    except _Refused as refused:
        mark, anchor = refused.mark, ""
        if refused.alias:
            mark, anchor = _alias_mark(text, refused.alias, loader_cls)
        where = f"alias *{anchor}: " if anchor else ""
        loc = _location(name, mark) if mark else src.location(refused.path)
        return None, [Issue(loc, format_path(refused.path), "E-YAML", where + refused.message)]
    constructor = _Constructor("")

    merged: dict[int, int] = {}  # id(mapping) → how many of its pairs came from merge keys

    def flatten(node: yaml.MappingNode, p: PathKey) -> tuple[int, bool]:
        """Apply merge keys once per node; returns (merged pairs in front, first visit)."""
        if id(node) in merged:
            return merged[id(node)], False
        own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        try:
            constructor.flatten_mapping(node)  # merged pairs first, so the mapping's own keys win
        except yaml.YAMLError as exc:
            raise _Refused(p, getattr(exc, "problem_mark", None) or node.start_mark,
                           f"invalid merge: {_one_line(getattr(exc, 'problem', None) or str(exc))}") from None
        merged[id(node)] = len(node.value) - own
        return merged[id(node)], True

    def build(node: yaml.Node, p: PathKey) -> Any:
        src.marks[p] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            n_merged, first = flatten(node, p)
            out: dict[Any, Any] = {}
            own_keys: set[str] = set()
            for index, (key_node, value_node) in enumerate(node.value):
                key = scalar(key_node, p) if isinstance(key_node, yaml.ScalarNode) else ...
                if not isinstance(key, str | int | float | bool) and key is not None:
                    if first:
                        issues.append(Issue(Location(name, *_mark(key_node)), format_path(p), "E-YAML",
                                            "mapping keys must be strings or numbers"))
                    continue
                skey = "" if key is None else (key if isinstance(key, str) else str(key))
                if index >= n_merged:
                    if skey in own_keys and first:
                        issues.append(Issue(Location(name, *_mark(key_node)), format_path((*p, skey)),
                                            "E-YAML", f"duplicate key {skey!r}"))
                    own_keys.add(skey)
                out[skey] = build(value_node, (*p, skey))
                # a scalar points at its value, a collection at its key line
                if isinstance(value_node, yaml.MappingNode | yaml.SequenceNode):
                    src.marks[(*p, skey)] = _mark(key_node)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*p, i)) for i, item in enumerate(node.value)]
        return scalar(node, p)

    def scalar(node: yaml.Node, p: PathKey) -> Any:
        try:
            value = constructor.construct_object(node, deep=True)
            if isinstance(value, int) and abs(value) >= _UNPRINTABLE_INT:  # 0x…: int(x, 16) has no limit
                raise ValueError(value)
            return value
        except yaml.YAMLError as exc:  # an unknown tag, bad !!binary…
            problem = _one_line(getattr(exc, "problem", None) or str(exc))
            raise _Refused(p, getattr(exc, "problem_mark", None) or node.start_mark,
                           f"invalid value: {problem}") from None
        except ValueError as exc:  # int() beyond Python's 4,300-digit limit; date(): day out of range…
            why = ("integer is too large (more than 4,300 digits)" if node.tag == "tag:yaml.org,2002:int"
                   else _one_line(str(exc)))
            raise _Refused(p, node.start_mark, f"invalid value {_clip(node.value)}: {why}") from None

    try:
        src.data = build(root, ())
    except _Refused as refused:
        return None, [Issue(_location(name, refused.mark), format_path(refused.path), "E-YAML", refused.message)]
    if src.data is None:
        src.data = {}
    return src, issues


def _location(name: str, mark: yaml.Mark | None) -> Location:
    return Location(name, mark.line + 1, mark.column + 1) if mark else Location(name, 1, 1)


def _clip(value: object, limit: int = 40) -> str:
    text = str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


def zone_files(directory: Path) -> list[Path]:
    """The YAML files of a zones directory (``*.yaml`` and ``*.yml``, recursively), sorted."""
    files = [p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(files)
