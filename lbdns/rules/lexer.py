"""Lexer for custom-rule conditions (Cloudflare docs: Load Balancing › Expressions; docs/rules.md).

The lexer is deliberately type-agnostic: everything that is not punctuation, an operator or a
string is one ``WORD`` — field names (``ip.src``), keywords (``and``, ``eq``), integers
(``28``), integer ranges (``64500..64510``), IP addresses and CIDRs (``2001:db8::/32``),
``true``/``false``. The parser decides what a word means from where it stands, and the type
checker decides how a value word is read from the field it is compared with (this is how
Cloudflare's wirefilter reads ``fe80::1`` and ``1..5`` without ambiguity).

Columns are 1-based character offsets into the condition text (a newline counts as one
character).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from lbdns.errors import RuleError

__all__ = ["Token", "TokenKind", "tokenize"]


class TokenKind(Enum):
    """The kinds of token a condition is made of."""

    WORD = "word"
    STRING = "string"
    OP = "operator"
    LPAREN = "'('"
    RPAREN = "')'"
    LBRACE = "'{'"
    RBRACE = "'}'"
    LBRACKET = "'['"
    RBRACKET = "']'"
    COMMA = "','"
    STAR = "'*'"
    EOF = "end of expression"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``text`` is the source text, ``value`` the decoded string for ``STRING``
    tokens (escapes resolved) and the text otherwise; ``column`` is 1-based."""

    kind: TokenKind
    text: str
    value: str
    column: int


_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:/-")
"""ASCII only: field names, keywords, numbers, ranges, IPv4/IPv6 addresses and CIDRs."""

_PUNCT = MappingProxyType({
    "(": TokenKind.LPAREN,
    ")": TokenKind.RPAREN,
    "{": TokenKind.LBRACE,
    "}": TokenKind.RBRACE,
    "[": TokenKind.LBRACKET,
    "]": TokenKind.RBRACKET,
    ",": TokenKind.COMMA,
    "*": TokenKind.STAR,
})

_TWO_CHAR_OPS = frozenset({"==", "!=", "<=", ">=", "&&", "||", "^^"})
_ONE_CHAR_OPS = frozenset({"<", ">", "~", "!"})
_LONE_HINTS = MappingProxyType({"=": "==", "&": "&&", "|": "||", "^": "^^"})


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with one ``EOF`` token.

    Strings are double-quoted with the escapes ``\\"`` and ``\\\\`` only; Cloudflare raw
    strings ``r"…"`` / ``r#"…"#`` (no escapes) are accepted too.

    Raises:
        RuleError: unterminated string, invalid escape, a ``$list`` reference (IP lists are
            not supported by load-balancing rules, Cloudflare docs: Load Balancing › Expressions ›
            Rules lists) or a character that belongs to no token — located at the offending
            character.
    """
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        col = i + 1
        if c == '"':
            i = _string(text, i, tokens)
            continue
        if c == "r" and i + 1 < n and text[i + 1] in '"#':
            i = _raw_string(text, i, tokens)
            continue
        if c in _WORD_CHARS:
            j = i + 1
            while j < n and text[j] in _WORD_CHARS:
                j += 1
            word = text[i:j]
            tokens.append(Token(TokenKind.WORD, word, word, col))
            i = j
            continue
        kind = _PUNCT.get(c)
        if kind is not None:
            tokens.append(Token(kind, c, c, col))
            i += 1
            continue
        pair = text[i : i + 2]
        if pair in _TWO_CHAR_OPS:
            tokens.append(Token(TokenKind.OP, pair, pair, col))
            i += 2
            continue
        if c in _ONE_CHAR_OPS:
            tokens.append(Token(TokenKind.OP, c, c, col))
            i += 1
            continue
        if c == "$":
            j = i + 1
            while j < n and text[j] in _WORD_CHARS:
                j += 1
            raise RuleError(
                f"IP lists are not supported by load-balancing rules ('{text[i:j]}')", col
            )
        hint = _LONE_HINTS.get(c)
        if hint is not None:
            raise RuleError(f"unexpected character '{c}' (did you mean '{hint}'?)", col)
        raise RuleError(f"unexpected character {c!r}", col)
    tokens.append(Token(TokenKind.EOF, "", "", n + 1))
    return tokens


def _string(text: str, start: int, out: list[Token]) -> int:
    """Read a ``"…"`` string starting at ``start``; append it; return the index after it."""
    parts: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            out.append(Token(TokenKind.STRING, text[start : i + 1], "".join(parts), start + 1))
            return i + 1
        if c == "\\":
            nxt = text[i + 1] if i + 1 < n else ""
            if nxt in ('"', "\\"):
                parts.append(nxt)
                i += 2
                continue
            if not nxt:
                break
            raise RuleError(
                f"invalid escape '\\{nxt}' in string (allowed: \\\" and \\\\; "
                f"write a backslash as \\\\ or use a raw string r\"…\")",
                i + 1,
            )
        parts.append(c)
        i += 1
    raise RuleError("unterminated string", start + 1)


def _raw_string(text: str, start: int, out: list[Token]) -> int:
    """Read ``r"…"`` or ``r#…#"…"#…#`` (Cloudflare raw string) starting at ``start``."""
    i = start + 1
    n = len(text)
    hashes = 0
    while i < n and text[i] == "#":
        hashes += 1
        i += 1
    if i >= n or text[i] != '"':
        raise RuleError("expected '\"' to open the raw string after 'r" + "#" * hashes + "'", i + 1)
    closing = '"' + "#" * hashes
    end = text.find(closing, i + 1)
    if end < 0:
        raise RuleError("unterminated string", start + 1)
    stop = end + len(closing)
    out.append(Token(TokenKind.STRING, text[start:stop], text[i + 1 : end], start + 1))
    return stop
