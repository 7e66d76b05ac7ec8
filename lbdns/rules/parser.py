"""AST and recursive-descent parser for custom-rule conditions (Cloudflare docs: Load Balancing ›
Expressions; Load Balancing › Supported fields and operators › Operators and grouping symbols).

Grammar (precedence from lowest to highest: ``or``, ``xor``, ``and``, ``not``)::

    expr     := xor_expr   (("or"  | "||") xor_expr)*
    xor_expr := and_expr   (("xor" | "^^") and_expr)*
    and_expr := not_expr   (("and" | "&&") not_expr)*
    not_expr := ("not" | "!") not_expr | primary
    primary  := "(" expr ")" | operand [compare_op value]
    operand  := FIELD ("[" (STRING | INT | "*") "]")* | NAME "(" arg ("," arg)* ")"
    value    := STRING | WORD | "{" (STRING | WORD)+ "}"          -- a set only after "in"

The parser checks structure only; field names, types and literal values are checked by the
type checker (:func:`lbdns.rules.compiler.check`), which knows what each field holds.
Chains of one logical operator become one n-ary node, so a long ``a and b and c …`` does not
nest (no recursion limit at compile or run time); parentheses and ``not`` may nest at most
:data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from types import MappingProxyType

from lbdns.errors import RuleError
from lbdns.rules.fields import FIELDS
from lbdns.rules.lexer import Token, TokenKind, tokenize

__all__ = [
    "FUNCTION_NAMES",
    "KEYWORDS",
    "MAX_DEPTH",
    "And",
    "BoolTest",
    "Call",
    "Compare",
    "Expr",
    "FieldRef",
    "Index",
    "Not",
    "Operand",
    "Or",
    "SetLit",
    "StringLit",
    "Value",
    "WordLit",
    "Xor",
    "describe",
    "parse",
]

FUNCTION_NAMES: tuple[str, ...] = ("lower", "upper", "len", "starts_with", "ends_with")
"""Functions accepted in conditions (lbdns extension, docs/rules.md; typed in the compiler)."""

MAX_DEPTH = 64
"""Maximum nesting of parentheses and ``not`` (keeps parsing and evaluation recursion small)."""


# --- AST -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StringLit:
    """A string literal; ``value`` has the escapes resolved, ``text`` is the source text."""

    value: str
    text: str
    column: int


@dataclass(frozen=True, slots=True)
class WordLit:
    """An unquoted literal (integer, range, IP address, CIDR, ``true``/``false``), read by
    the type checker according to the field it is compared with."""

    text: str
    column: int


@dataclass(frozen=True, slots=True)
class SetLit:
    """``{ item item … }`` — the right-hand side of ``in``."""

    items: tuple[StringLit | WordLit, ...]
    column: int


Value = StringLit | WordLit | SetLit


@dataclass(frozen=True, slots=True)
class Index:
    """``[key]`` after a map or array field: a string key, an integer index, or ``None`` for
    ``[*]``."""

    key: str | int | None
    column: int


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A field name, with optional ``[…]`` indexes."""

    name: str
    column: int
    indexes: tuple[Index, ...] = ()


@dataclass(frozen=True, slots=True)
class Call:
    """A function call ``name(arg, …)`` (lbdns extension functions, see docs/rules.md)."""

    name: str
    args: tuple[FieldRef | Call | StringLit | WordLit, ...]
    column: int


Operand = FieldRef | Call


@dataclass(frozen=True, slots=True)
class Compare:
    """``operand op value``. ``op`` is the canonical English name (``eq``, ``ne``, ``lt``,
    ``le``, ``gt``, ``ge``, ``contains``, ``matches``, ``in``, ``wildcard``,
    ``strict wildcard``); ``op_text`` is the spelling used in the source."""

    operand: Operand
    op: str
    op_text: str
    op_column: int
    value: Value


@dataclass(frozen=True, slots=True)
class BoolTest:
    """An operand standing alone (must be Boolean, checked later)."""

    operand: Operand


@dataclass(frozen=True, slots=True)
class Not:
    """``not expr`` / ``!expr``."""

    operand: Expr
    column: int


@dataclass(frozen=True, slots=True)
class And:
    """``a and b and …`` (two or more operands)."""

    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Xor:
    """``a xor b xor …`` (two or more operands; true when an odd number is true)."""

    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """``a or b or …`` (two or more operands)."""

    operands: tuple[Expr, ...]


Expr = Or | Xor | And | Not | Compare | BoolTest


def describe(node: FieldRef | Call | StringLit | WordLit) -> str:
    """Source-like text of an operand or argument, for error messages."""
    if isinstance(node, FieldRef):
        parts = [node.name]
        for ix in node.indexes:
            if ix.key is None:
                parts.append("[*]")
            elif isinstance(ix.key, int):
                parts.append(f"[{ix.key}]")
            else:
                parts.append(f"[{_quote(ix.key)}]")
        return "".join(parts)
    if isinstance(node, Call):
        return f"{node.name}({', '.join(describe(a) for a in node.args)})"
    if isinstance(node, StringLit):
        return node.text
    return node.text


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- parser ----------------------------------------------------------------------------------

_COMPARE_OPS = MappingProxyType({
    "eq": "eq", "==": "eq",
    "ne": "ne", "!=": "ne",
    "lt": "lt", "<": "lt",
    "le": "le", "<=": "le",
    "gt": "gt", ">": "gt",
    "ge": "ge", ">=": "ge",
    "contains": "contains",
    "matches": "matches", "~": "matches",
    "in": "in",
    "wildcard": "wildcard",
})
_LOGICAL = MappingProxyType({"and": "and", "&&": "and", "or": "or", "||": "or", "xor": "xor", "^^": "xor"})
_NOT = frozenset({"not", "!"})
KEYWORDS = frozenset(_COMPARE_OPS) | frozenset(_LOGICAL) | _NOT | {"strict"}
_OPERATOR_WORDS = tuple(sorted({k for k in _COMPARE_OPS if k.isalpha()} | {"strict", "and", "or", "xor", "not"}))

_FIELD_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*\Z")
_INT_RE = re.compile(r"[0-9]+\Z")


def parse(text: str) -> Expr | None:
    """Parse a condition into its AST; ``None`` for an empty / whitespace-only condition
    (always true, Cloudflare API docs: Load Balancer Details › ``rules``).

    Raises:
        RuleError: lexical or syntax error, located (1-based column).
    """
    tokens = tokenize(text)
    if tokens[0].kind is TokenKind.EOF:
        return None
    return _Parser(tokens).parse()


class _Parser:
    """Recursive-descent parser over a token list (see the module grammar)."""

    __slots__ = ("depth", "pos", "tokens")

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    # token helpers
    def peek(self) -> Token:
        return self.tokens[self.pos]

    def peek2(self) -> Token:
        return self.tokens[min(self.pos + 1, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind is not TokenKind.EOF:
            self.pos += 1
        return tok

    def logical(self, tok: Token) -> str | None:
        if tok.kind in (TokenKind.WORD, TokenKind.OP):
            return _LOGICAL.get(tok.text)
        return None

    # grammar
    def parse(self) -> Expr:
        expr = self.or_expr()
        tok = self.peek()
        if tok.kind is TokenKind.EOF:
            return expr
        if tok.kind is TokenKind.RPAREN:
            raise RuleError("unmatched ')'", tok.column)
        _raise_if_upper_case_keyword(tok)
        raise RuleError(
            f"expected 'and', 'or', 'xor' or the end of the expression, found {_show(tok)}",
            tok.column,
        )

    def or_expr(self) -> Expr:
        parts = [self.xor_expr()]
        while self.logical(self.peek()) == "or":
            self.advance()
            parts.append(self.xor_expr())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def xor_expr(self) -> Expr:
        parts = [self.and_expr()]
        while self.logical(self.peek()) == "xor":
            self.advance()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else Xor(tuple(parts))

    def and_expr(self) -> Expr:
        parts = [self.not_expr()]
        while self.logical(self.peek()) == "and":
            self.advance()
            parts.append(self.not_expr())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def enter(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise RuleError(
                f"expression nests too deeply (more than {MAX_DEPTH} levels of parentheses "
                f"or 'not')",
                tok.column,
            )

    def not_expr(self) -> Expr:
        tok = self.peek()
        if tok.kind in (TokenKind.WORD, TokenKind.OP) and tok.text in _NOT:
            self.advance()
            self.enter(tok)
            operand = self.not_expr()
            self.depth -= 1
            return Not(operand, tok.column)
        return self.primary()

    def primary(self) -> Expr:
        tok = self.peek()
        if tok.kind is TokenKind.LPAREN:
            self.advance()
            self.enter(tok)
            inner = self.or_expr()
            self.depth -= 1
            close = self.peek()
            if close.kind is not TokenKind.RPAREN:
                if close.kind is TokenKind.EOF:
                    raise RuleError(f"missing ')' to close '(' at column {tok.column}", close.column)
                _raise_if_upper_case_keyword(close)
                raise RuleError(
                    f"expected ')' to close '(' at column {tok.column}, found {_show(close)}",
                    close.column,
                )
            self.advance()
            return inner
        operand = self.operand()
        op_tok = self.peek()
        op = self.compare_op(op_tok)
        if op is None:
            self.check_standalone_follower(operand, op_tok)
            return BoolTest(operand)
        value = self.value(op, op_tok)
        return Compare(operand, op, _op_text(op, op_tok), op_tok.column, value)

    def operand(self) -> Operand:
        tok = self.peek()
        if tok.kind is TokenKind.WORD and tok.text not in KEYWORDS:
            if self.peek2().kind is TokenKind.LPAREN:
                return self.call()
            if _FIELD_RE.match(tok.text):
                self.advance()
                return FieldRef(tok.text, tok.column, self.indexes())
            lower = tok.text.lower()
            if lower in KEYWORDS:
                raise RuleError(
                    f"unknown operator '{tok.text}' (operators are lower case: '{lower}')",
                    tok.column,
                )
            if lower in FIELDS:
                raise RuleError(
                    f"unknown field '{tok.text}' (field names are lower case: '{lower}')",
                    tok.column,
                )
            raise RuleError(f"expected a field name, found '{tok.text}'", tok.column)
        if tok.kind is TokenKind.STRING:
            raise RuleError(
                f"expected a field name, found the string {tok.text} (the field comes first: "
                f"<field> <operator> <value>)",
                tok.column,
            )
        if tok.kind is TokenKind.EOF:
            raise RuleError("unexpected end of expression (expected a field, '(' or 'not')", tok.column)
        raise RuleError(f"expected a field, '(' or 'not', found {_show(tok)}", tok.column)

    def indexes(self) -> tuple[Index, ...]:
        out: list[Index] = []
        while self.peek().kind is TokenKind.LBRACKET:
            open_tok = self.advance()
            key_tok = self.advance()
            key: str | int | None
            if key_tok.kind is TokenKind.STRING:
                key = key_tok.value
            elif key_tok.kind is TokenKind.WORD and _INT_RE.match(key_tok.text):
                key = int(key_tok.text)
            elif key_tok.kind is TokenKind.STAR:
                key = None
            else:
                raise RuleError(
                    f"expected a string key, an integer index or '*' after '[', found "
                    f"{_show(key_tok)}",
                    key_tok.column,
                )
            close = self.advance()
            if close.kind is not TokenKind.RBRACKET:
                raise RuleError(f"expected ']' after the index, found {_show(close)}", close.column)
            out.append(Index(key, open_tok.column))
        return tuple(out)

    def call(self) -> Call:
        name_tok = self.advance()
        if name_tok.text not in FUNCTION_NAMES:
            raise RuleError(
                f"function '{name_tok.text}' is not supported by load-balancing rules "
                f"(lbdns supports: {', '.join(FUNCTION_NAMES)})",
                name_tok.column,
            )
        open_tok = self.advance()  # "("
        self.enter(open_tok)
        args: list[FieldRef | Call | StringLit | WordLit] = []
        if self.peek().kind is TokenKind.RPAREN:
            self.advance()
            self.depth -= 1
            return Call(name_tok.text, (), name_tok.column)
        while True:
            tok = self.peek()
            if tok.kind is TokenKind.STRING:
                self.advance()
                args.append(StringLit(tok.value, tok.text, tok.column))
            elif tok.kind is TokenKind.WORD and tok.text not in KEYWORDS and (
                _FIELD_RE.match(tok.text) or self.peek2().kind is TokenKind.LPAREN
            ):
                args.append(self.operand())
            elif tok.kind is TokenKind.WORD and tok.text not in KEYWORDS:
                self.advance()
                args.append(WordLit(tok.text, tok.column))
            else:
                raise RuleError(
                    f"expected an argument for '{name_tok.text}(', found {_show(tok)}", tok.column
                )
            sep = self.advance()
            if sep.kind is TokenKind.RPAREN:
                break
            if sep.kind is not TokenKind.COMMA:
                if sep.kind is TokenKind.EOF:
                    raise RuleError(
                        f"missing ')' to close '{name_tok.text}(' at column {open_tok.column}",
                        sep.column,
                    )
                raise RuleError(
                    f"expected ',' or ')' in the arguments of '{name_tok.text}', found {_show(sep)}",
                    sep.column,
                )
        self.depth -= 1
        return Call(name_tok.text, tuple(args), name_tok.column)

    def compare_op(self, tok: Token) -> str | None:
        if tok.kind not in (TokenKind.WORD, TokenKind.OP):
            return None
        if tok.text == "strict":
            nxt = self.peek2()
            if nxt.kind is TokenKind.WORD and nxt.text == "wildcard":
                return "strict wildcard"
            raise RuleError(f"expected 'wildcard' after 'strict', found {_show(nxt)}", nxt.column)
        return _COMPARE_OPS.get(tok.text)

    def check_standalone_follower(self, operand: Operand, tok: Token) -> None:
        """After an operand with no comparison operator only a logical operator, ')' or the
        end may follow; anything else is most likely a misspelt operator."""
        if tok.kind in (TokenKind.EOF, TokenKind.RPAREN) or self.logical(tok) is not None:
            return
        what = describe(operand)
        _raise_if_upper_case_keyword(tok)
        if tok.text in _NOT:
            raise RuleError(
                f"expected 'and', 'or', 'xor' or the end of the expression, found '{tok.text}'",
                tok.column,
            )
        if tok.kind is TokenKind.WORD and _FIELD_RE.match(tok.text):
            close = difflib.get_close_matches(tok.text, _OPERATOR_WORDS, n=1, cutoff=0.5)
            if close:
                raise RuleError(
                    f"unknown operator '{tok.text}' (did you mean '{close[0]}'?)", tok.column
                )
        raise RuleError(f"expected an operator after '{what}', found {_show(tok)}", tok.column)

    def value(self, op: str, op_tok: Token) -> Value:
        self.advance()
        if op == "strict wildcard":
            self.advance()
        op_text = _op_text(op, op_tok)
        tok = self.peek()
        if op == "in":
            if tok.kind is not TokenKind.LBRACE:
                if self._ends_value(tok):
                    raise RuleError(f"expected a set '{{…}}' after '{op_text}'", tok.column)
                raise RuleError(
                    f"expected a set '{{…}}' after '{op_text}', found {_show(tok)}", tok.column
                )
            return self.set_lit()
        if tok.kind is TokenKind.STRING:
            self.advance()
            return StringLit(tok.value, tok.text, tok.column)
        if tok.kind is TokenKind.WORD and tok.text not in KEYWORDS:
            if self.peek2().kind is TokenKind.LPAREN or tok.text in FIELDS:
                raise RuleError(
                    f"the value after '{op_text}' must be a literal (comparing with a field or a "
                    f"function is not supported)",
                    tok.column,
                )
            self.advance()
            return WordLit(tok.text, tok.column)
        if tok.kind is TokenKind.LBRACE:
            raise RuleError(f"a set '{{…}}' is only allowed after 'in', not after '{op_text}'", tok.column)
        if self._ends_value(tok):
            raise RuleError(f"expected a value after '{op_text}'", tok.column)
        raise RuleError(f"expected a value after '{op_text}', found {_show(tok)}", tok.column)

    def _ends_value(self, tok: Token) -> bool:
        return (
            tok.kind in (TokenKind.EOF, TokenKind.RPAREN)
            or self.logical(tok) is not None
            or (tok.kind in (TokenKind.WORD, TokenKind.OP) and tok.text in _NOT)
        )

    def set_lit(self) -> SetLit:
        open_tok = self.advance()
        items: list[StringLit | WordLit] = []
        while True:
            tok = self.advance()
            if tok.kind is TokenKind.RBRACE:
                break
            if tok.kind is TokenKind.STRING:
                items.append(StringLit(tok.value, tok.text, tok.column))
            elif tok.kind is TokenKind.WORD:
                items.append(WordLit(tok.text, tok.column))
            elif tok.kind is TokenKind.COMMA:
                raise RuleError("set values are separated by spaces, not commas", tok.column)
            elif tok.kind is TokenKind.EOF:
                raise RuleError(
                    f"unterminated set (missing '}}' for '{{' at column {open_tok.column})",
                    tok.column,
                )
            else:
                raise RuleError(f"unexpected {_show(tok)} in a set", tok.column)
        if not items:
            raise RuleError("empty set (a set needs at least one value)", open_tok.column)
        return SetLit(tuple(items), open_tok.column)


def _raise_if_upper_case_keyword(tok: Token) -> None:
    lower = tok.text.lower()
    if tok.kind is TokenKind.WORD and lower != tok.text and lower in KEYWORDS:
        raise RuleError(
            f"unknown operator '{tok.text}' (operators are lower case: '{lower}')", tok.column
        )


def _op_text(op: str, tok: Token) -> str:
    return "strict wildcard" if op == "strict wildcard" else tok.text


def _show(tok: Token) -> str:
    if tok.kind is TokenKind.EOF:
        return "the end of the expression"
    if tok.kind is TokenKind.STRING:
        return f"the string {tok.text}"
    return f"'{tok.text}'"
