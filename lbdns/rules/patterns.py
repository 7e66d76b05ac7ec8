"""Pattern literals of custom rules: ``matches`` regular expressions and ``wildcard`` patterns
(Cloudflare docs: Load Balancing › Supported fields and operators; bounds and extensions in
docs/rules.md).

Regular expressions run on Python's backtracking ``re`` engine, and the usual subject — the
query name — is chosen by whoever sends the query. :func:`regex_hazard` therefore refuses, at
load time, patterns whose backtracking could blow up on a name of up to 255 characters: a
structural screen (a repeated group that contains a variable quantifier or an alternation,
backreferences, conditional groups, deep nesting) followed by a cost estimate (see
:func:`regex_hazard`). Wildcards never use a regular expression: they are matched by a linear
scan.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lbdns.errors import RuleError

__all__ = [
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_SUBJECT",
    "REGEX_COST_BUDGET",
    "regex_cost",
    "regex_hazard",
    "regex_predicate",
    "wildcard_parts",
    "wildcard_predicate",
]

MAX_REGEX_LENGTH = 1024
"""Longest accepted ``matches`` pattern, in characters."""
MAX_REGEX_SUBJECT = 256
"""A ``matches`` subject longer than this is not searched (the comparison is false). Real
subjects are DNS names (at most 254 characters with the trailing dot, unless labels hold
bytes written as ``\\DDD`` escapes) and short codes; the cost estimate below assumes this
bound."""
REGEX_COST_BUDGET = 1 << 17
"""Largest accepted :func:`regex_cost` (about a millisecond of ``re`` work in the worst case
measured; ``.*a.*b``, estimated at 2^24, takes about 10 ms on a 254-character name)."""

_SUBJECT = MAX_REGEX_SUBJECT
"""Subject length the cost estimate assumes."""
_MAX_GROUP_DEPTH = 32
_QUANT_RE = re.compile(r"\{(\d*)(,?)(\d*)\}")
_NESTED = (
    "the group at position {} is repeated and contains a quantifier or '|', which can take "
    "exponential time; write it without nested repetition (e.g. [a-z0-9.-]* or a 'wildcard' "
    "comparison)"
)


# --- regular expressions ---------------------------------------------------------------------


def regex_predicate(pattern: str, column: int) -> Callable[[Any], bool]:
    """Compile a ``matches`` pattern (Python ``re``; unanchored search; case-sensitive) into
    a predicate on the subject string.

    Raises:
        RuleError: pattern longer than :data:`MAX_REGEX_LENGTH`, refused by
            :func:`regex_hazard`, or invalid for ``re`` — located at ``column`` (the string
            literal).
    """
    if len(pattern) > MAX_REGEX_LENGTH:
        raise RuleError(
            f"regular expression is too long ({len(pattern)} characters; the maximum is "
            f"{MAX_REGEX_LENGTH})",
            column,
        )
    hazard = regex_hazard(pattern)
    if hazard is not None:
        raise RuleError(f"regular expression rejected: {hazard}", column)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rx = re.compile(pattern)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise RuleError(f"invalid regular expression: {exc.msg}{where}", column) from None
    except (RecursionError, OverflowError, ValueError) as exc:
        raise RuleError(f"invalid regular expression: {exc}", column) from None
    if caught:  # e.g. "Possible nested set": Python and Cloudflare (Rust) read these differently
        raise RuleError(
            f"regular expression rejected: {caught[0].message} (ambiguous syntax; escape "
            f"'[', '-', '&', '~' and '|' inside a character class)",
            column,
        )
    search = rx.search

    def pred(v: Any) -> bool:
        return len(v) <= MAX_REGEX_SUBJECT and search(v) is not None

    return pred


def regex_hazard(pattern: str) -> str | None:
    """Return why ``pattern`` is refused, or ``None`` when it is accepted.

    Refused (deliberately conservative):

    * a group repeated by ``*``, ``+``, ``{m,}`` or ``{m,n}`` (n > 1) whose body contains a
      variable quantifier (``*``, ``+``, ``?``, ``{m,n}``) or ``|`` — ``(a+)+``, ``(\\w+\\.)*``,
      ``(a|ab)*``, ``(a?){25}`` (exponential);
    * backreferences and conditional groups (not in Cloudflare's regex dialect either),
      verbose mode ``(?x)``, groups nested deeper than 32;
    * a pattern whose :func:`regex_cost` exceeds :data:`REGEX_COST_BUDGET` (polynomial
      blow-up such as ``.*a.*b`` or ``\\d*\\d*x``).

    A pattern that does not parse is not refused here; ``re.compile`` reports it.
    """
    try:
        cost = regex_cost(pattern)
    except _Refused as exc:
        return exc.reason
    except _Unparsable:
        return None
    if cost > REGEX_COST_BUDGET:
        return (
            f"it may backtrack for too long on a long name (estimated cost {cost:,}, limit "
            f"{REGEX_COST_BUDGET:,}); anchor it with '^' and avoid consecutive repetitions "
            f"that can match the same characters (like '.*a.*b'; '[a-z0-9-]+\\.' is fine)"
        )
    return None


def regex_cost(pattern: str) -> int:
    """Estimate the worst-case backtracking work of ``re.search(pattern, s)`` for a subject
    of :data:`_SUBJECT` characters (an upper-bound-style estimate, not a measurement).

    Per sequence of atoms: a repetition of width ``w`` (``*``/``+`` count as 256, ``?`` as 1,
    ``{m,n}`` as ``n - m``) multiplies the cost by ``w + 1`` — unless the next atom is a
    single character it can never match (``[a-z]+\\.``), or it is possessive, in which case
    it only adds ``w`` of scanning; the last repetition of the pattern costs nothing (nothing
    after it can fail). Alternatives add up; a group multiplies by its body's cost; an
    unanchored pattern (not starting with ``^`` or ``\\A``) multiplies by 256 start
    positions.

    Raises:
        _Refused: a structural hazard (see :func:`regex_hazard`).
        _Unparsable: the pattern is not valid (``re.compile`` will say why).
    """
    scanner = _Scanner(pattern)
    branches = scanner.parse()
    anchored = all(b and b[0].kind == "start" for b in branches)
    memo: dict[tuple[str, str], bool] = {}  # per pattern: no module-level cache in the pure core
    total = sum(_seq_cost(b, True, scanner.ignorecase, memo) for b in branches)
    return total if anchored else total * _SUBJECT


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Unparsable(Exception):
    pass


@dataclass(slots=True)
class _Item:
    """One atom of a regular expression with its quantifier.

    ``kind``: ``char`` (matches exactly one character; ``src`` is its regex text), ``group``,
    ``look`` (lookaround), ``start`` (``^``/``\\A``), ``end`` (``$``/``\\Z``), ``zero`` (other
    zero-width assertions).
    """

    kind: str
    src: str
    offset: int
    qmin: int = 1
    qmax: int | None = 1
    possessive: bool = False
    branches: list[list[_Item]] = field(default_factory=list)


class _Scanner:
    """Just enough of a regex parser to find atoms, groups and quantifiers."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.depth = 0
        self.ignorecase = False

    def parse(self) -> list[list[_Item]]:
        branches = self.alternatives()
        if self.i < len(self.p):  # a stray ')'
            raise _Unparsable
        return branches

    def alternatives(self) -> list[list[_Item]]:
        p = self.p
        branches: list[list[_Item]] = [[]]
        while self.i < len(p):
            c = p[self.i]
            if c == ")":
                break
            if c == "|":
                branches.append([])
                self.i += 1
                continue
            item = self.atom()
            if item is None:
                continue
            self.quantifier(item)
            branches[-1].append(item)
        return branches

    def atom(self) -> _Item | None:
        p, i = self.p, self.i
        c = p[i]
        if c == "\\":
            return self.escape()
        if c == "[":
            j = i + 1
            if j < len(p) and p[j] == "^":
                j += 1
            if j < len(p) and p[j] == "]":
                j += 1
            while j < len(p) and p[j] != "]":
                j += 2 if p[j] == "\\" else 1
            if j >= len(p):
                raise _Unparsable
            self.i = j + 1
            return _Item("char", p[i : j + 1], i)
        if c == "(":
            return self.group()
        self.i += 1
        if c == "^":
            return _Item("start", c, i)
        if c == "$":
            return _Item("end", c, i)
        if c in "*+?":
            raise _Unparsable  # nothing to repeat
        return _Item("char", c if c == "." else re.escape(c), i)

    def escape(self) -> _Item:
        p, i = self.p, self.i
        if i + 1 >= len(p):
            raise _Unparsable
        c = p[i + 1]
        if c in "123456789":
            raise _Refused(f"backreference at position {i} (backreferences are not supported)")
        if c in "AbBZ":
            self.i = i + 2
            return _Item({"A": "start", "Z": "end"}.get(c, "zero"), p[i : i + 2], i)
        length = {"x": 4, "u": 6, "U": 10}.get(c, 2)
        if c == "N":
            end = p.find("}", i)
            length = (end - i + 1) if end > 0 else 2
        elif c == "0":
            length = 2
            while length < 4 and i + length < len(p) and p[i + length] in "01234567":
                length += 1
        self.i = i + length
        return _Item("char", p[i : i + length], i)

    def group(self) -> _Item | None:  # noqa: C901, PLR0912 -- one branch per regex group syntax, a flat scanner
        p, i = self.p, self.i
        kind = "group"
        j = i + 1
        if p.startswith("?", j):
            if p.startswith("?#", j):
                end = p.find(")", j)
                if end < 0:
                    raise _Unparsable
                self.i = end + 1
                return None
            if p.startswith("?P=", j):
                raise _Refused(
                    f"backreference at position {i} (backreferences are not supported)"
                )
            if p.startswith("?(", j):
                raise _Refused(f"conditional group at position {i} (not supported)")
            if p.startswith("?P<", j):
                end = p.find(">", j)
                if end < 0:
                    raise _Unparsable
                j = end + 1
            elif p.startswith(("?<=", "?<!"), j):
                kind, j = "look", j + 3
            elif p.startswith(("?=", "?!"), j):
                kind, j = "look", j + 2
            elif p.startswith(("?:", "?>"), j):
                j += 2
            else:  # inline flags: (?aiLmsux) or (?flags-flags:...)
                k = j + 1
                while k < len(p) and (p[k].isalpha() or p[k] == "-"):
                    k += 1
                flags = p[j + 1 : k]
                if "x" in flags.split("-")[0]:
                    raise _Refused("verbose mode (?x) is not supported")
                if "i" in flags.split("-")[0]:
                    self.ignorecase = True
                if k < len(p) and p[k] == ")":
                    self.i = k + 1
                    return None
                if k >= len(p) or p[k] != ":":
                    raise _Unparsable
                j = k + 1
        self.depth += 1
        if self.depth > _MAX_GROUP_DEPTH:
            raise _Refused(f"groups nest more than {_MAX_GROUP_DEPTH} deep")
        self.i = j
        branches = self.alternatives()
        if self.i >= len(p):
            raise _Unparsable  # missing ')'
        self.i += 1
        self.depth -= 1
        return _Item(kind, p[i : self.i], i, branches=branches)

    def quantifier(self, item: _Item) -> None:
        p, i = self.p, self.i
        if i >= len(p):
            return
        c = p[i]
        if c in "*+?":
            qmin, qmax = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            i += 1
        elif c == "{":
            m = _QUANT_RE.match(p, i)
            if m is None or (not m.group(1) and not m.group(2)):
                return  # a literal '{'
            lo, comma, hi = m.groups()
            qmin = int(lo) if lo else 0
            qmax = (int(hi) if hi else None) if comma else qmin
            i = m.end()
        else:
            return
        if i < len(p) and p[i] in "?+":
            item.possessive = p[i] == "+"
            i += 1
        self.i = i
        item.qmin, item.qmax = qmin, qmax
        many = qmax is None or qmax > 1
        if item.kind == "group" and many and _is_variable(item.branches):
            raise _Refused(_NESTED.format(item.offset))


def _is_variable(branches: list[list[_Item]]) -> bool:
    """True when a group body can match in more than one way by itself (a variable
    quantifier or an alternation anywhere inside)."""
    if len(branches) > 1:
        return True
    for item in branches[0]:
        if item.qmin != item.qmax:
            return True
        if item.branches and _is_variable(item.branches):
            return True
    return False


def _width(item: _Item) -> int:
    hi = _SUBJECT if item.qmax is None else min(item.qmax, _SUBJECT)
    return max(hi - item.qmin, 0)


def _seq_cost(items: list[_Item], top: bool, ignorecase: bool, memo: dict[tuple[str, str], bool]) -> int:
    mult = 1
    scan = 0
    for k, item in enumerate(items):
        if item.branches:
            mult *= sum(_seq_cost(b, False, ignorecase, memo) for b in item.branches)
        w = _width(item)
        if w == 0:
            continue
        nxt = items[k + 1] if k + 1 < len(items) else None
        if nxt is None and top:
            continue  # the last repetition never has to give characters back
        if item.possessive or _delimited(item, nxt, ignorecase, memo):
            scan += w
        else:
            mult *= w + 1
    return mult * (1 + scan)


def _delimited(item: _Item, nxt: _Item | None, ignorecase: bool, memo: dict[tuple[str, str], bool]) -> bool:
    """A single-character repetition followed by ``$`` or by a mandatory single-character
    atom that it can never match gives characters back without re-trying what follows.
    ``memo`` holds the atom pairs already decided for this pattern."""
    if item.kind != "char" or nxt is None:
        return False
    if nxt.kind == "end":
        return True
    if nxt.kind != "char" or nxt.qmin < 1:
        return False
    key = (item.src, nxt.src)
    known = memo.get(key)
    if known is None:
        known = memo[key] = _disjoint(item.src, nxt.src, ignorecase)
    return known


_SAMPLE = (
    *(chr(c) for c in range(128)),
    "\u00a0", "\u00df", "\u00e9", "\u0130", "\u017f", "\u212a", "\uffff",
)
"""Characters tried when deciding whether two one-character atoms can match the same
character (query names are ASCII; a few non-ASCII case-folding oddities are included)."""


def _disjoint(a: str, b: str, ignorecase: bool) -> bool:
    flags = re.IGNORECASE if ignorecase else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ra = re.compile(a, flags)
            rb = re.compile(b, flags)
    except (re.error, RecursionError, OverflowError, ValueError):
        return False
    return not any(ra.fullmatch(c) and rb.fullmatch(c) for c in _SAMPLE)


# --- wildcards -------------------------------------------------------------------------------


def wildcard_parts(pattern: str, column: int) -> list[str]:
    """Split a wildcard pattern at its unescaped ``*`` into literal segments (Cloudflare
    syntax: ``\\*`` is a literal star, ``\\\\`` a literal backslash, ``**`` is invalid).

    Raises:
        RuleError: invalid escape, trailing lone backslash, or ``**``.
    """
    parts: list[str] = []
    cur: list[str] = []
    prev_star = False
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise RuleError(
                    "wildcard pattern ends with a lone '\\' (a literal backslash is \\\\)", column
                )
            nxt = pattern[i + 1]
            if nxt not in "*\\":
                raise RuleError(
                    f"invalid escape '\\{nxt}' in wildcard pattern (allowed: \\* and \\\\)",
                    column,
                )
            cur.append(nxt)
            prev_star = False
            i += 2
            continue
        if c == "*":
            if prev_star:
                raise RuleError("'**' is not allowed in a wildcard pattern", column)
            parts.append("".join(cur))
            cur = []
            prev_star = True
        else:
            cur.append(c)
            prev_star = False
        i += 1
    parts.append("".join(cur))
    return parts


def wildcard_predicate(pattern: str, fold: bool, column: int) -> Callable[[Any], bool]:
    """``wildcard`` (``fold=True``, case-insensitive) / ``strict wildcard`` predicate: the
    whole value must match; ``*`` matches any run of characters, including none. Matching is
    a linear scan (prefix, suffix, then the leftmost ``str.find`` of each middle segment,
    which is optimal for ``*``-only globs) — no regex, no backtracking.

    Raises:
        RuleError: see :func:`wildcard_parts`.
    """
    parts = wildcard_parts(pattern, column)
    if fold:
        parts = [p.lower() for p in parts]
    if len(parts) == 1:
        exact = parts[0]
        if fold:
            return lambda v: v.lower() == exact
        return lambda v: v == exact
    first, last = parts[0], parts[-1]
    if len(parts) == 2 and not (first and last):
        if not first and not last:
            return lambda v: isinstance(v, str)  # "*" matches every value
        if not first:
            return (lambda v: v.lower().endswith(last)) if fold else (lambda v: v.endswith(last))
        return (lambda v: v.lower().startswith(first)) if fold else (lambda v: v.startswith(first))
    middle = tuple(p for p in parts[1:-1] if p)
    need = len(first) + len(last) + sum(len(p) for p in middle)

    def match(s: str) -> bool:
        if len(s) < need or not s.startswith(first) or not s.endswith(last):
            return False
        pos = len(first)
        end = len(s) - len(last)
        for seg in middle:
            j = s.find(seg, pos, end)
            if j < 0:
                return False
            pos = j + len(seg)
        return True

    if fold:
        return lambda v: match(v.lower())
    return match
