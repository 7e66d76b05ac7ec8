"""Type checker and compiler for custom-rule conditions (Cloudflare docs: Load Balancing ›
Expressions; Load Balancing › Supported fields and operators; lbdns extensions in docs/rules.md).

``compile_condition(text)`` runs the pipeline lexer → parser → :func:`check` (resolve fields
and functions, check operator and literal types, precompile literals: sets, CIDRs, regular
expressions, wildcard patterns) → :func:`build` (Python closures over :class:`RuleFields`; no
``eval``/``exec``/``compile``). All work that does not depend on the query happens here, once,
at load time: an evaluation is attribute reads, comparisons, set look-ups and bisects.
"""

from __future__ import annotations

import contextlib
import operator
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from types import MappingProxyType
from typing import Any

from lbdns.errors import RuleError
from lbdns.rules.fields import FieldSpec, FieldType, Getter, RuleFields, lookup_field
from lbdns.rules.parser import (
    And,
    BoolTest,
    Call,
    Compare,
    Expr,
    FieldRef,
    Not,
    Or,
    SetLit,
    StringLit,
    Value,
    WordLit,
    describe,
    parse,
)
from lbdns.rules.patterns import regex_predicate, wildcard_predicate

__all__ = [
    "ALLOWED_OPS",
    "MAX_CONDITION_LENGTH",
    "Checked",
    "CompiledCondition",
    "build",
    "check",
    "compile_condition",
]

MAX_CONDITION_LENGTH = 4096
"""Longest accepted condition, in characters (lbdns decision, following Cloudflare's API schema)."""

Cond = Callable[[RuleFields], bool]
"""A compiled (sub)condition."""

ALLOWED_OPS: Mapping[FieldType, tuple[str, ...]] = MappingProxyType({
    FieldType.STRING: ("eq", "ne", "contains", "matches", "in", "wildcard", "strict wildcard"),
    FieldType.INT: ("eq", "ne", "lt", "le", "gt", "ge", "in"),
    FieldType.IP: ("eq", "ne", "in"),
    FieldType.BOOL: ("eq", "ne"),
})
"""Comparison operators per operand type (docs/rules.md › Comparisons)."""

_QTYPES = MappingProxyType({
    "A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
    "SRV": 33, "NAPTR": 35, "DS": 43, "DNSKEY": 48, "SVCB": 64, "HTTPS": 65, "CAA": 257,
    "ANY": 255,
})
_INT_RE = re.compile(r"-?[0-9]+\Z")
_IP_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]+(?:/[0-9]+)?\Z")
_INT64 = (-(2**63), 2**63 - 1)


# --- public result ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    """A condition ready to evaluate.

    Attributes:
        source: the condition text as given.
        evaluate: ``RuleFields → bool``; never raises (an internal error yields ``False`` and
            is reported to the ``on_error`` callback given to :func:`compile_condition`).
        fields: every field name the condition reads (statically; short-circuiting may skip
            some at run time), including fields read through functions and proxied-only
            fields. See ``fields.ECS_DEPENDENT_FIELDS`` for the ECS scope (RFC 7871 §7.2.1).
        warnings: ``(code, message, column)`` triples, e.g. ``("W-PROXIED-FIELD", …, 1)``.
    """

    source: str
    evaluate: Callable[[RuleFields], bool]
    fields: frozenset[str]
    warnings: tuple[tuple[str, str, int], ...]


def compile_condition(
    text: str, on_error: Callable[[BaseException], None] | None = None
) -> CompiledCondition:
    """Compile a rule ``condition`` (empty / whitespace-only ⇒ always true: "An empty condition
    is always true", Cloudflare API docs: Load Balancer Details › ``rules``).

    Args:
        text: the condition expression.
        on_error: called with the exception if an evaluation ever fails internally (the
            evaluation then returns ``False``); lets the caller count such failures.
            Anything it raises is suppressed.

    Returns:
        A :class:`CompiledCondition`.

    Raises:
        RuleError: the condition is longer than :data:`MAX_CONDITION_LENGTH`, does not parse,
            names an unknown field or function, mismatches types, uses an IP list, or has an
            invalid literal (``E-RULE-EXPR``); ``column`` is 1-based in ``text``.
    """
    if len(text) > MAX_CONDITION_LENGTH:
        raise RuleError(
            f"condition is too long ({len(text)} characters; the maximum is "
            f"{MAX_CONDITION_LENGTH})",
            MAX_CONDITION_LENGTH + 1,
        )
    tree = parse(text)
    if tree is None:
        return CompiledCondition(text, _true, frozenset(), ())
    checked = check(tree)
    inner = build(checked.root)
    return CompiledCondition(
        text, _guard(inner, on_error), frozenset(checked.fields), tuple(checked.warnings)
    )


def _true(_f: RuleFields) -> bool:
    return True


def _false(_f: RuleFields) -> bool:
    return False


def _guard(inner: Cond, on_error: Callable[[BaseException], None] | None) -> Cond:
    """Wrap the top-level closure so that an evaluation never raises."""

    def evaluate(f: RuleFields) -> bool:
        try:
            return inner(f) is True
        except Exception as exc:  # never raise at query time (docs/architecture.md › Failure containment)
            if on_error is not None:
                with contextlib.suppress(Exception):
                    on_error(exc)
            return False

    return evaluate


# --- typed tree ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TOperand:
    """A type-checked operand: its type, a getter (``None`` = always absent, e.g. a
    proxied-only field) and whether the getter may return ``None`` (absent, docs/rules.md ›
    Fields)."""

    type: FieldType
    getter: Getter | None
    nullable: bool
    label: str
    """How error messages name it, e.g. ``IP field 'ip.src'``."""


@dataclass(frozen=True, slots=True)
class TCompare:
    """A checked comparison: ``op`` with a constant (``eq ne lt le gt ge`` on strings,
    integers) or a precompiled predicate on the present value (everything else). ``negate``
    inverts the predicate for a *present* value (IP ``ne``); absent is false either way."""

    operand: TOperand
    op: str
    const: Any = None
    pred: Callable[[Any], bool] | None = None
    negate: bool = False


@dataclass(frozen=True, slots=True)
class TBool:
    """A Boolean operand standing alone (``expect=True``) or compared with ``true``/
    ``false``."""

    operand: TOperand
    expect: bool


@dataclass(frozen=True, slots=True)
class TNot:
    """Negation."""

    operand: TExpr


@dataclass(frozen=True, slots=True)
class TLogic:
    """``and`` / ``or`` / ``xor`` over two or more operands."""

    op: str
    operands: tuple[TExpr, ...]


TExpr = TCompare | TBool | TNot | TLogic


@dataclass(slots=True)
class Checked:
    """Result of :func:`check`: the typed tree plus what it reads and the warnings."""

    root: TExpr
    fields: set[str]
    warnings: list[tuple[str, str, int]]


# --- type checker ----------------------------------------------------------------------------


def check(tree: Expr) -> Checked:
    """Type-check a parsed condition and precompile its literals (docs/rules.md).

    Returns:
        A :class:`Checked` tree.

    Raises:
        RuleError: unknown field or function, operator not defined for the operand type,
            literal of the wrong type or invalid (bad integer, IP, CIDR, range, regular
            expression, wildcard pattern), map/array field used without an index.
    """
    checker = _Checker()
    root = checker.expr(tree)
    return Checked(root, checker.fields, checker.warnings)


class _Checker:
    __slots__ = ("fields", "warnings")

    def __init__(self) -> None:
        self.fields: set[str] = set()
        self.warnings: list[tuple[str, str, int]] = []

    def expr(self, node: Expr) -> TExpr:
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, BoolTest):
            operand = self.operand(node.operand)
            if operand.type is not FieldType.BOOL:
                allowed = ", ".join(ALLOWED_OPS.get(operand.type, ()))
                raise RuleError(
                    f"{operand.label} cannot stand alone; compare it with an operator "
                    f"(allowed: {allowed})",
                    _column(node.operand),
                )
            return TBool(operand, True)
        if isinstance(node, Not):
            return TNot(self.expr(node.operand))
        if isinstance(node, And):
            return TLogic("and", tuple(self.expr(e) for e in node.operands))
        if isinstance(node, Or):
            return TLogic("or", tuple(self.expr(e) for e in node.operands))
        return TLogic("xor", tuple(self.expr(e) for e in node.operands))

    # operands

    def operand(self, node: FieldRef | Call) -> TOperand:
        if isinstance(node, FieldRef):
            return self.field(node)
        return self.call(node)

    def field(self, node: FieldRef) -> TOperand:
        spec = lookup_field(node.name, node.column)
        self.fields.add(spec.name)
        if spec.proxied_only:
            self.proxied_warning(spec, node.column)
        type_ = spec.type
        for ix in node.indexes:
            type_ = _index_type(spec, type_, ix.key, ix.column)
        text = describe(node)
        if type_ is FieldType.MAP:
            raise RuleError(
                f"map field '{text}' needs a key and an index, e.g. {text}[\"name\"][0]",
                node.column,
            )
        if type_ is FieldType.ARRAY:
            raise RuleError(f"array field '{text}' needs an index, e.g. {text}[0]", node.column)
        return TOperand(type_, spec.getter, spec.nullable, f"{type_.value} field '{text}'")

    def proxied_warning(self, spec: FieldSpec, column: int) -> None:
        message = (
            f"field '{spec.name}' is only available to proxied load balancers; for DNS-only "
            f"queries it is absent and every comparison on it is false"
        )
        if spec.alternative:
            message += f" (use '{spec.alternative}' instead)"
        self.warnings.append(("W-PROXIED-FIELD", message, column))

    def call(self, node: Call) -> TOperand:
        sig = _FUNCTIONS.get(node.name)
        if sig is None:
            raise RuleError(
                f"function '{node.name}' is not supported by load-balancing rules "
                f"(lbdns supports: {', '.join(_FUNCTIONS)})",
                node.column,
            )
        arity, result, impl = sig
        if len(node.args) != arity:
            plural = "s" if arity != 1 else ""
            raise RuleError(
                f"function '{node.name}' takes {arity} argument{plural} ({len(node.args)} given)",
                node.column,
            )
        first = node.args[0]
        if isinstance(first, StringLit | WordLit):
            raise RuleError(
                f"the first argument of '{node.name}' must be a field or a function call, "
                f"not a literal",
                first.column,
            )
        arg = self.operand(first)
        if arg.type is not FieldType.STRING:
            raise RuleError(
                f"function '{node.name}' expects a string argument, got {arg.label}",
                _column(first),
            )
        lit: str | None = None
        if arity == 2:
            second = node.args[1]
            if not isinstance(second, StringLit):
                raise RuleError(
                    f"the second argument of '{node.name}' must be a string literal",
                    _column(second),
                )
            lit = second.value
        getter = None if arg.getter is None else _apply(impl, arg.getter, arg.nullable, lit)
        return TOperand(result, getter, arg.nullable, f"{result.value} value '{describe(node)}'")

    # comparisons

    def compare(self, node: Compare) -> TExpr:
        operand = self.operand(node.operand)
        allowed = ALLOWED_OPS[operand.type]
        if node.op not in allowed:
            raise RuleError(
                f"operator '{node.op_text}' is not defined for {operand.label} "
                f"(allowed: {', '.join(allowed)})",
                node.op_column,
            )
        ctx = _Ctx(node, operand, self.qtype_hint(node))
        if operand.type is FieldType.BOOL:
            expect = _bool_value(node.value, ctx)
            return TBool(operand, expect if node.op == "eq" else not expect)
        if operand.type is FieldType.INT:
            return _int_compare(node, operand, ctx)
        if operand.type is FieldType.IP:
            return _ip_compare(node, operand, ctx)
        return _string_compare(node, operand, ctx)

    def qtype_hint(self, node: Compare) -> bool:
        return isinstance(node.operand, FieldRef) and node.operand.name == "dns.qry.type"


def _index_type(spec: FieldSpec, type_: FieldType, key: str | int | None, column: int) -> FieldType:
    if key is None:
        raise RuleError(
            "'[*]' needs any() or all(), which load-balancing rules do not support", column
        )
    if type_ is FieldType.MAP:
        if not isinstance(key, str):
            raise RuleError(
                f"map field '{spec.name}' is indexed by a string key, e.g. [\"name\"]", column
            )
        return FieldType.ARRAY
    if type_ is FieldType.ARRAY:
        if not isinstance(key, int):
            raise RuleError(f"array '{spec.name}' is indexed by an integer, e.g. [0]", column)
        return FieldType.STRING
    raise RuleError(f"{type_.value} field '{spec.name}' cannot be indexed", column)


def _column(node: FieldRef | Call | StringLit | WordLit) -> int:
    return node.column


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What literal checks need for their messages."""

    node: Compare
    operand: TOperand
    qtype: bool

    def mismatch(self, item: StringLit | WordLit, expected: str) -> RuleError:
        found = f"the string {item.text}" if isinstance(item, StringLit) else f"'{item.text}'"
        hint = self.hint(item)
        return RuleError(
            f"{self.operand.label} cannot be compared with {found} (expected {expected}{hint})",
            item.column,
        )

    def hint(self, item: StringLit | WordLit) -> str:
        if not self.qtype:
            return ""
        name = (item.value if isinstance(item, StringLit) else item.text).upper()
        code = _QTYPES.get(name)
        return f"; {name} is {code}" if code is not None else ""


# literal readers


def _bool_value(value: Value, ctx: _Ctx) -> bool:
    if isinstance(value, WordLit) and value.text in ("true", "false"):
        return value.text == "true"
    if isinstance(value, SetLit):  # unreachable: 'in' is not allowed for Booleans
        raise RuleError("expected true or false", value.column)
    raise ctx.mismatch(value, "true or false")


def _int_item(item: StringLit | WordLit, ctx: _Ctx, allow_range: bool) -> tuple[int, int]:
    """Read an integer or (in sets) ``a..b`` range; return it as an inclusive range."""
    if isinstance(item, StringLit):
        raise ctx.mismatch(item, "an integer")
    text = item.text
    if _INT_RE.match(text):
        n = _int64(text, item.column)
        return n, n
    lo_text, sep, hi_text = text.partition("..")
    if sep and _INT_RE.match(lo_text) and _INT_RE.match(hi_text):
        if not allow_range:
            raise RuleError(
                f"a range is only allowed inside a set: 'in {{{text}}}'",
                item.column,
            )
        lo = _int64(lo_text, item.column)
        hi = _int64(hi_text, item.column)
        if lo > hi:
            raise RuleError(f"range start {lo} is greater than its end {hi}", item.column)
        return lo, hi
    raise ctx.mismatch(item, "an integer")


def _int64(text: str, column: int) -> int:
    n = int(text)
    if not _INT64[0] <= n <= _INT64[1]:
        raise RuleError(f"integer {text} is out of range (64-bit signed)", column)
    return n


def _ip_item(item: StringLit | WordLit, ctx: _Ctx, allow_range: bool) -> tuple[int, int, int]:
    """Read an IP address, CIDR or (in sets) ``a..b`` range as ``(version, first, last)``."""
    if isinstance(item, StringLit):
        raise ctx.mismatch(item, "an IP address or CIDR")
    text = item.text
    lo_text, sep, hi_text = text.partition("..")
    if sep:
        if not allow_range:
            raise RuleError(
                f"a range is only allowed inside a set: 'in {{{text}}}'", item.column
            )
        lo = _ip_addr(lo_text, item, ctx)
        hi = _ip_addr(hi_text, item, ctx)
        if lo.version != hi.version:
            raise RuleError(f"IP range '{text}' mixes IPv4 and IPv6", item.column)
        if int(lo) > int(hi):
            raise RuleError(f"IP range '{text}' starts after it ends", item.column)
        return lo.version, int(lo), int(hi)
    if "/" in text:
        if not _IP_CHARS_RE.match(text):
            raise ctx.mismatch(item, "an IP address or CIDR")
        try:
            net = ip_network(text, strict=False)
        except ValueError:
            raise RuleError(f"invalid CIDR '{text}'", item.column) from None
        return net.version, int(net.network_address), int(net.broadcast_address)
    addr = _ip_addr(text, item, ctx)
    return addr.version, int(addr), int(addr)


def _ip_addr(text: str, item: WordLit, ctx: _Ctx) -> IPv4Address | IPv6Address:
    if not _IP_CHARS_RE.match(text) or "/" in text:
        raise ctx.mismatch(item, "an IP address or CIDR")
    try:
        return ip_address(text)
    except ValueError:
        raise RuleError(f"invalid IP address '{text}'", item.column) from None


def _string_item(item: StringLit | WordLit, ctx: _Ctx) -> str:
    if isinstance(item, StringLit):
        return item.value
    raise ctx.mismatch(item, f'a string in double quotes, e.g. "{item.text}"')


def _single(node: Compare) -> StringLit | WordLit:
    value = node.value
    if isinstance(value, SetLit):  # the parser only builds sets after 'in'
        raise RuleError(f"a set is only allowed after 'in', not after '{node.op_text}'", value.column)
    return value


def _set_items(node: Compare) -> tuple[StringLit | WordLit, ...]:
    value = node.value
    if not isinstance(value, SetLit):  # the parser always builds a set after 'in'
        raise RuleError("expected a set '{…}' after 'in'", value.column)
    return value.items


# per-type comparisons

_ORDER_OPS: Mapping[str, Callable[[Any, Any], bool]] = MappingProxyType({
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
    "gt": operator.gt, "ge": operator.ge,
})


def _int_compare(node: Compare, operand: TOperand, ctx: _Ctx) -> TCompare:
    if node.op == "in":
        ranges = [_int_item(item, ctx, True) for item in _set_items(node)]
        return TCompare(operand, "in", pred=_int_set_pred(ranges))
    n, _ = _int_item(_single(node), ctx, False)
    return TCompare(operand, node.op, const=n)


def _int_set_pred(ranges: list[tuple[int, int]]) -> Callable[[Any], bool]:
    singles = frozenset(lo for lo, hi in ranges if lo == hi)
    spans = _merge([(lo, hi) for lo, hi in ranges if lo != hi])
    if not spans:
        return singles.__contains__
    starts = [lo for lo, _ in spans]
    ends = [hi for _, hi in spans]

    def pred(v: Any) -> bool:
        if v in singles:
            return True
        i = bisect_right(starts, v) - 1
        return i >= 0 and v <= ends[i]

    return pred


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge overlapping or adjacent inclusive integer ranges."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _ip_compare(node: Compare, operand: TOperand, ctx: _Ctx) -> TCompare:
    if node.op == "in":
        items = [_ip_item(item, ctx, True) for item in _set_items(node)]
    else:
        items = [_ip_item(_single(node), ctx, False)]
    pred = _ip_set_pred(items)
    return TCompare(operand, node.op, pred=pred, negate=node.op == "ne")


def _ip_set_pred(items: list[tuple[int, int, int]]) -> Callable[[Any], bool]:
    """Membership in a set of IPs/CIDRs/ranges, precompiled into per-family sorted integer
    ranges (one comparison for a single range, else a bisect)."""
    v4 = _merge([(lo, hi) for ver, lo, hi in items if ver == 4])
    v6 = _merge([(lo, hi) for ver, lo, hi in items if ver == 6])
    in4 = _range_pred(v4)
    in6 = _range_pred(v6)

    def pred(addr: Any) -> bool:
        if isinstance(addr, IPv4Address):
            return in4(int(addr))
        if isinstance(addr, IPv6Address):
            return in6(int(addr))
        return False

    return pred


def _range_pred(spans: list[tuple[int, int]]) -> Callable[[int], bool]:
    if not spans:
        return lambda _x: False
    if len(spans) == 1:
        lo, hi = spans[0]
        return lambda x: lo <= x <= hi
    starts = [lo for lo, _ in spans]
    ends = [hi for _, hi in spans]

    def pred(x: int) -> bool:
        i = bisect_right(starts, x) - 1
        return i >= 0 and x <= ends[i]

    return pred


def _string_compare(node: Compare, operand: TOperand, ctx: _Ctx) -> TCompare:
    op = node.op
    if op == "in":
        values = frozenset(_string_item(item, ctx) for item in _set_items(node))
        return TCompare(operand, "in", pred=values.__contains__)
    item = _single(node)
    s = _string_item(item, ctx)
    if op in ("eq", "ne"):
        return TCompare(operand, op, const=s)
    if op == "contains":
        return TCompare(operand, op, pred=_contains(s))
    if op == "matches":
        return TCompare(operand, op, pred=regex_predicate(s, item.column))
    return TCompare(operand, op, pred=wildcard_predicate(s, op == "wildcard", item.column))


def _contains(s: str) -> Callable[[Any], bool]:
    def pred(v: Any) -> bool:
        return s in v

    return pred


# --- functions (lbdns extension) -------------------------------------------------------------


def _lower(v: Any, _lit: str | None) -> Any:
    return v.lower()


def _upper(v: Any, _lit: str | None) -> Any:
    return v.upper()


def _len(v: Any, _lit: str | None) -> Any:
    return len(v)


def _starts_with(v: Any, lit: str | None) -> Any:
    return v.startswith(lit)


def _ends_with(v: Any, lit: str | None) -> Any:
    return v.endswith(lit)


_FUNCTIONS: Mapping[str, tuple[int, FieldType, Callable[[Any, str | None], Any]]] = MappingProxyType({
    "lower": (1, FieldType.STRING, _lower),
    "upper": (1, FieldType.STRING, _upper),
    "len": (1, FieldType.INT, _len),
    "starts_with": (2, FieldType.BOOL, _starts_with),
    "ends_with": (2, FieldType.BOOL, _ends_with),
})
"""name → (arity, result type, implementation); the first argument is a string operand,
the second (if any) a string literal."""


def _apply(
    impl: Callable[[Any, str | None], Any], get: Getter, nullable: bool, lit: str | None
) -> Getter:
    """Getter for ``impl(get(f), lit)``; an absent argument gives an absent result."""
    if nullable:

        def getter(f: RuleFields) -> Any:
            v = get(f)
            return None if v is None else impl(v, lit)

        return getter
    return lambda f: impl(get(f), lit)


# --- closure builder -------------------------------------------------------------------------


def build(node: TExpr) -> Cond:
    """Compile a checked tree into a closure ``RuleFields → bool``.

    Absent values (getter returns ``None``, or no getter: proxied-only fields) make every comparison
    false, ``ne`` included (lbdns decision, docs/rules.md › Fields). ``and``/``or`` short-circuit;
    ``xor`` is true when an odd number of operands is true. The closures may raise on malformed
    ``RuleFields``; :func:`compile_condition` wraps the root.
    """
    if isinstance(node, TCompare):
        return _build_compare(node)
    if isinstance(node, TBool):
        return _build_bool(node)
    if isinstance(node, TNot):
        inner = build(node.operand)
        return lambda f: not inner(f)
    parts = tuple(build(p) for p in node.operands)
    if node.op == "and":
        return _build_and(parts)
    if node.op == "or":
        return _build_or(parts)
    return _build_xor(parts)


def _build_and(parts: tuple[Cond, ...]) -> Cond:
    if len(parts) == 2:
        a, b = parts
        return lambda f: a(f) and b(f)

    def all_of(f: RuleFields) -> bool:
        for p in parts:  # noqa: SIM110 - a plain loop is faster than all(<generator>)
            if not p(f):
                return False
        return True

    return all_of


def _build_or(parts: tuple[Cond, ...]) -> Cond:
    if len(parts) == 2:
        a, b = parts
        return lambda f: a(f) or b(f)

    def any_of(f: RuleFields) -> bool:
        for p in parts:  # noqa: SIM110 - a plain loop is faster than any(<generator>)
            if p(f):
                return True
        return False

    return any_of


def _build_xor(parts: tuple[Cond, ...]) -> Cond:
    if len(parts) == 2:
        a, b = parts
        return lambda f: a(f) is not b(f)

    def odd(f: RuleFields) -> bool:
        result = False
        for p in parts:
            if p(f):
                result = not result
        return result

    return odd


def _build_bool(node: TBool) -> Cond:
    get = node.operand.getter
    if get is None:
        return _false
    expect = node.expect
    if node.operand.nullable:

        def test(f: RuleFields) -> bool:
            v = get(f)
            return v is not None and bool(v) is expect

        return test
    return lambda f: bool(get(f)) is expect


def _build_compare(node: TCompare) -> Cond:
    get = node.operand.getter
    if get is None:
        return _false  # always absent (proxied-only field): every comparison is false
    nullable = node.operand.nullable
    pred = node.pred
    if pred is not None:
        return _with_pred(get, nullable, pred, node.negate)
    k = node.const
    op = node.op
    if not nullable:
        if op == "eq":
            return lambda f: get(f) == k
        if op == "ne":
            return lambda f: get(f) != k
    fn = _ORDER_OPS[op]
    if nullable:

        def cmp_present(f: RuleFields) -> bool:
            v = get(f)
            return v is not None and fn(v, k)

        return cmp_present
    return lambda f: fn(get(f), k)


def _with_pred(get: Getter, nullable: bool, pred: Callable[[Any], bool], negate: bool) -> Cond:
    if nullable:
        if negate:

            def not_pred_present(f: RuleFields) -> bool:
                v = get(f)
                return v is not None and not pred(v)

            return not_pred_present

        def pred_present(f: RuleFields) -> bool:
            v = get(f)
            return v is not None and pred(v)

        return pred_present
    if negate:
        return lambda f: not pred(get(f))
    return lambda f: pred(get(f))
