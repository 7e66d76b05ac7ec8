"""Parser of custom-rule conditions: AST shape, precedence and syntax errors
(SPEC.md §8.2 R-RUL-15)."""

from __future__ import annotations

import pytest

from lbdns.errors import RuleError
from lbdns.rules.parser import (
    MAX_DEPTH,
    And,
    BoolTest,
    Call,
    Compare,
    FieldRef,
    Index,
    Not,
    Or,
    SetLit,
    StringLit,
    WordLit,
    Xor,
    parse,
)

A = BoolTest(FieldRef("a", 1))


def b(name: str, col: int) -> BoolTest:
    return BoolTest(FieldRef(name, col))


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_condition_is_none(text: str) -> None:
    assert parse(text) is None


def test_comparison_node() -> None:
    assert parse('dns.qry.name eq "x"') == Compare(
        FieldRef("dns.qry.name", 1), "eq", "eq", 14, StringLit("x", '"x"', 17)
    )


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("eq", "eq"), ("==", "eq"), ("ne", "ne"), ("!=", "ne"), ("lt", "lt"), ("<", "lt"),
        ("le", "le"), ("<=", "le"), ("gt", "gt"), (">", "gt"), ("ge", "ge"), (">=", "ge"),
        ("contains", "contains"), ("matches", "matches"), ("~", "matches"),
        ("wildcard", "wildcard"), ("strict wildcard", "strict wildcard"),
    ],
)
def test_operator_spellings(spelling: str, canonical: str) -> None:
    node = parse(f"f {spelling} 1")
    assert isinstance(node, Compare)
    assert (node.op, node.op_text, node.op_column) == (canonical, spelling, 3)
    assert node.value == WordLit("1", 4 + len(spelling))


def test_set_value() -> None:
    node = parse('x in {1 "a" 2..3}')
    assert isinstance(node, Compare)
    assert node.value == SetLit(
        (WordLit("1", 7), StringLit("a", '"a"', 9), WordLit("2..3", 13)), 6
    )


def test_precedence_shapes() -> None:
    # not > and > xor > or
    assert parse("a or b and c") == Or((A, And((b("b", 6), b("c", 12)))))
    assert parse("not a and b") == And((Not(b("a", 5), 1), b("b", 11)))
    assert parse("a xor b or c") == Or((Xor((A, b("b", 7))), b("c", 12)))
    assert parse("a or b xor c") == Or((A, Xor((b("b", 6), b("c", 12)))))
    assert parse("a xor b and c") == Xor((A, And((b("b", 7), b("c", 13)))))
    assert parse("(a or b) and c") == And((Or((b("a", 2), b("b", 7))), b("c", 14)))
    assert parse("!(a || b) && c ^^ d") == Xor(
        (And((Not(Or((b("a", 3), b("b", 8))), 1), b("c", 14))), b("d", 19))
    )


def test_chains_are_n_ary_not_nested() -> None:
    node = parse(" and ".join(["a"] * 600))
    assert isinstance(node, And)
    assert len(node.operands) == 600


def test_function_call_and_indexes() -> None:
    assert parse('starts_with(lower(dns.qry.name), "w")') == BoolTest(
        Call(
            "starts_with",
            (Call("lower", (FieldRef("dns.qry.name", 19),), 13), StringLit("w", '"w"', 34)),
            1,
        )
    )
    node = parse('http.request.headers["x-a"][0] eq "v"')
    assert isinstance(node, Compare)
    assert node.operand == FieldRef(
        "http.request.headers", 1, (Index("x-a", 21), Index(0, 28))
    )


def test_nesting_limit() -> None:
    ok = "(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
    assert parse(ok) == A.__class__(FieldRef("a", MAX_DEPTH + 1))
    with pytest.raises(RuleError) as err:
        parse("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    assert err.value.message == (
        f"expression nests too deeply (more than {MAX_DEPTH} levels of parentheses or 'not')"
    )
    assert err.value.column == MAX_DEPTH + 1
    with pytest.raises(RuleError) as err:
        parse("not " * (MAX_DEPTH + 1) + "a")
    assert err.value.column == 4 * MAX_DEPTH + 1


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("dns.qry.name eq", "expected a value after 'eq'", 16),
        ("dns.qry.name == )", "expected a value after '=='", 17),
        ("dns.qry.name eq and x", "expected a value after 'eq'", 17),
        ("dns.qry.name eq (", "expected a value after 'eq', found '('", 17),
        ("ip.src in", "expected a set '{…}' after 'in'", 10),
        ("ip.src in 1.2.3.4", "expected a set '{…}' after 'in', found '1.2.3.4'", 11),
        ("ip.src eq {1.2.3.4}", "a set '{…}' is only allowed after 'in', not after 'eq'", 11),
        ("ip.src in {1.2.3.4", "unterminated set (missing '}' for '{' at column 11)", 19),
        ("ip.src in {}", "empty set (a set needs at least one value)", 11),
        ("ip.src.asnum in {1, 2}", "set values are separated by spaces, not commas", 19),
        ("ip.src in {(}", "unexpected '(' in a set", 12),
        (
            "dns.qry.name eq dns.qry.name",
            "the value after 'eq' must be a literal (comparing with a field or a function is "
            "not supported)",
            17,
        ),
        (
            "dns.qry.name eq lower(dns.qry.name)",
            "the value after 'eq' must be a literal (comparing with a field or a function is "
            "not supported)",
            17,
        ),
        ('dns.qry.name strict "x"', "expected 'wildcard' after 'strict', found the string \"x\"", 21),
        ("()", "expected a field, '(' or 'not', found ')'", 2),
        (")", "expected a field, '(' or 'not', found ')'", 1),
        ("and a", "expected a field, '(' or 'not', found 'and'", 1),
        ("a and", "unexpected end of expression (expected a field, '(' or 'not')", 6),
        ("not", "unexpected end of expression (expected a field, '(' or 'not')", 4),
        ("a)", "unmatched ')'", 2),
        ("(a))", "unmatched ')'", 4),
        ("(a", "missing ')' to close '(' at column 1", 3),
        ("(a b", "expected an operator after 'a', found 'b'", 4),
        ("((a) 1", "expected ')' to close '(' at column 1, found '1'", 6),
        ("(a or b", "missing ')' to close '(' at column 1", 8),
        ("a b", "expected an operator after 'a', found 'b'", 3),
        ("a not b", "expected 'and', 'or', 'xor' or the end of the expression, found 'not'", 3),
        ("a ! b", "expected 'and', 'or', 'xor' or the end of the expression, found '!'", 3),
        ("a and and b", "expected a field, '(' or 'not', found 'and'", 7),
        ("a || || b", "expected a field, '(' or 'not', found '||'", 6),
        ("a eq 1 b eq 2", "expected 'and', 'or', 'xor' or the end of the expression, found 'b'", 8),
        ('"x" eq a', "expected a field name, found the string \"x\" (the field comes first: "
                    "<field> <operator> <value>)", 1),
        ("1 eq a", "expected a field name, found '1'", 1),
        ("IP.SRC eq 1.2.3.4", "unknown field 'IP.SRC' (field names are lower case: 'ip.src')", 1),
        ("NOT a", "unknown operator 'NOT' (operators are lower case: 'not')", 1),
        ("a AND b", "unknown operator 'AND' (operators are lower case: 'and')", 3),
        ('a eq "x" OR b', "unknown operator 'OR' (operators are lower case: 'or')", 10),
        ("(a EQ 1)", "unknown operator 'EQ' (operators are lower case: 'eq')", 4),
        ('dns.qry.name equals "x"', "unknown operator 'equals' (did you mean 'eq'?)", 14),
        ('dns.qry.name containz "x"', "unknown operator 'containz' (did you mean 'contains'?)", 14),
        ('a "x"', "expected an operator after 'a', found the string \"x\"", 3),
        ("a[", "expected a string key, an integer index or '*' after '[', found the end of the "
               "expression", 3),
        ('a["x" eq 1', "expected ']' after the index, found 'eq'", 7),
        (
            "any(http.request.headers[\"x\"][*] eq \"y\")",
            "function 'any' is not supported by load-balancing rules (lbdns supports: lower, "
            "upper, len, starts_with, ends_with)",
            1,
        ),
        ('starts_with(a "x")', "expected ',' or ')' in the arguments of 'starts_with', found the "
                               "string \"x\"", 15),
        ('starts_with(a, "x"', "missing ')' to close 'starts_with(' at column 12", 19),
        ("lower(and)", "expected an argument for 'lower(', found 'and'", 7),
    ],
)
def test_syntax_errors(text: str, message: str, column: int) -> None:
    with pytest.raises(RuleError) as err:
        parse(text)
    assert (err.value.message, err.value.column) == (message, column)
