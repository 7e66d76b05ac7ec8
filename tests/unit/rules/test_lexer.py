"""Lexer of custom-rule conditions (SPEC.md §8.2 R-RUL-15)."""

from __future__ import annotations

import pytest

from lbdns.errors import RuleError
from lbdns.rules.lexer import TokenKind, tokenize


def kinds(text: str) -> list[tuple[str, str, int]]:
    return [(t.kind.name, t.value, t.column) for t in tokenize(text)]


def test_words_operators_and_columns() -> None:
    assert kinds('ip.src in {10.0.0.0/8 2001:db8::/32} && !dns.rr.opt.client') == [
        ("WORD", "ip.src", 1),
        ("WORD", "in", 8),
        ("LBRACE", "{", 11),
        ("WORD", "10.0.0.0/8", 12),
        ("WORD", "2001:db8::/32", 23),
        ("RBRACE", "}", 36),
        ("OP", "&&", 38),
        ("OP", "!", 41),
        ("WORD", "dns.rr.opt.client", 42),
        ("EOF", "", 59),
    ]


@pytest.mark.parametrize(
    "op", ["==", "!=", "<", "<=", ">", ">=", "~", "!", "&&", "||", "^^"]
)
def test_c_like_operators(op: str) -> None:
    toks = tokenize(f"a{op}b")
    assert [(t.kind, t.text) for t in toks] == [
        (TokenKind.WORD, "a"), (TokenKind.OP, op), (TokenKind.WORD, "b"), (TokenKind.EOF, ""),
    ]


def test_int_range_and_ipv6_are_single_words() -> None:
    assert [t.text for t in tokenize("{64500..64510 ::ffff:1.2.3.4 fe80::1}")] == [
        "{", "64500..64510", "::ffff:1.2.3.4", "fe80::1", "}", "",
    ]


def test_index_punctuation() -> None:
    assert [t.kind.name for t in tokenize('h["x"][0][*], f(a)')] == [
        "WORD", "LBRACKET", "STRING", "RBRACKET", "LBRACKET", "WORD", "RBRACKET", "LBRACKET",
        "STAR", "RBRACKET", "COMMA", "WORD", "LPAREN", "WORD", "RPAREN", "EOF",
    ]


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ('"abc"', "abc"),
        ('""', ""),
        ('"a\\"b"', 'a"b'),
        ('"a\\\\b"', "a\\b"),
        ('"\\\\\\""', '\\"'),
        ('"multi\nline"', "multi\nline"),
        ('"$office"', "$office"),
        ('r"a\\.b"', "a\\.b"),
        ('r#"say "hi""#', 'say "hi"'),
        ('r##"a"#b"##', 'a"#b'),
    ],
)
def test_strings(source: str, value: str) -> None:
    tok = tokenize(source)[0]
    assert (tok.kind, tok.value, tok.text, tok.column) == (TokenKind.STRING, value, source, 1)


def test_whitespace_variants() -> None:
    assert [t.text for t in tokenize(" \ta\r\n\tb ")] == ["a", "b", ""]
    assert tokenize("   ")[0].kind is TokenKind.EOF
    assert tokenize("   ")[0].column == 4


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ('dns.qry.name eq "abc', "unterminated string", 17),
        ('dns.qry.name eq "abc\\', "unterminated string", 17),
        ('dns.qry.name eq r"abc', "unterminated string", 17),
        ('dns.qry.name eq r#"abc"', "unterminated string", 17),
        ("dns.qry.name eq r#x", "expected '\"' to open the raw string after 'r#'", 19),
        (
            'dns.qry.name eq "a\\nb"',
            "invalid escape '\\n' in string (allowed: \\\" and \\\\; write a backslash as \\\\ "
            "or use a raw string r\"…\")",
            19,
        ),
        ("ip.src in $office", "IP lists are not supported by load-balancing rules ('$office')", 11),
        ("ip.src in {$x}", "IP lists are not supported by load-balancing rules ('$x')", 12),
        ("dns.qry.type = 1", "unexpected character '=' (did you mean '=='?)", 14),
        ("a & b", "unexpected character '&' (did you mean '&&'?)", 3),
        ("a | b", "unexpected character '|' (did you mean '||'?)", 3),
        ("a ^ b", "unexpected character '^' (did you mean '^^'?)", 3),
        ("a @ b", "unexpected character '@'", 3),
        ("a é", "unexpected character 'é'", 3),
        ("a ' b", "unexpected character \"'\"", 3),
    ],
)
def test_lexical_errors(text: str, message: str, column: int) -> None:
    with pytest.raises(RuleError) as err:
        tokenize(text)
    assert (err.value.message, err.value.column) == (message, column)
