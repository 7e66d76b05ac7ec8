"""Regular-expression safety screen and wildcard patterns of custom rules (SPEC.md R-RUL-15;
docs/rules.md)."""

from __future__ import annotations

import re
import time

import pytest

from lbdns.errors import RuleError
from lbdns.rules.patterns import (
    MAX_REGEX_SUBJECT,
    REGEX_COST_BUDGET,
    regex_cost,
    regex_hazard,
    regex_predicate,
    wildcard_parts,
)

NESTED = (
    "the group at position {} is repeated and contains a quantifier or '|', which can take "
    "exponential time; write it without nested repetition (e.g. [a-z0-9.-]* or a 'wildcard' "
    "comparison)"
)


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "^lb\\.example\\.com\\.$",
        "^[a-z0-9.-]*\\.example\\.com\\.$",
        "^(www|api)\\.",
        "(www\\.)?example",
        "(ab)*c",
        "(?:\\.com)+$",
        "^a{1,3}b{2}",
        "(a{1})*",
        "(a{0,1}){1}",
        "[(a+)+]",
        "\\(a+\\)+",
        "[]a+]*",
        "[^]a]+",
        "(?i)LB",
        "(?P<x>ab)+",
        "(?#comment)a+",
        "(?=ab)*",
        "a{,}",
        "x{",
        "{1}",
        "\\0",
        "(?<=a)b",
    ],
)
def test_accepted_patterns(pattern: str) -> None:
    assert regex_hazard(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a+)+", NESTED.format(0)),
        ("^(a*)*$", NESTED.format(1)),
        ("x(a|aa)+y", NESTED.format(1)),
        ("(a|b)*", NESTED.format(0)),
        ("([a-z0-9-]+\\.)*example\\.com\\.$", NESTED.format(0)),
        ("(?:\\w+\\s?)*$", NESTED.format(0)),
        ("((ab)*c)+", NESTED.format(0)),
        ("((a+)b)*", NESTED.format(0)),
        ("(a?){25}a{25}", NESTED.format(0)),
        ("(a+){2,}", NESTED.format(0)),
        ("(a+){1,5}", NESTED.format(0)),
        ("(?P<n>a+)+", NESTED.format(0)),
        ("(a)\\1", "backreference at position 3 (backreferences are not supported)"),
        ("(?P<x>a)(?P=x)", "backreference at position 8 (backreferences are not supported)"),
        ("(a)?(?(1)b|c)", "conditional group at position 4 (not supported)"),
        ("(" * 33 + ")" * 33, "groups nest more than 32 deep"),
        ("(?x) a b", "verbose mode (?x) is not supported"),
    ],
)
def test_rejected_patterns(pattern: str, reason: str) -> None:
    assert regex_hazard(pattern) == reason


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("^[a-z0-9.-]*\\.example\\.com\\.$", "www.example.com.", "www.example.org."),
        ("(www\\.)?example", "api.example.com.", "api.exampl.com."),  # unanchored: a search, not a match
        ("(ab)*c", "xababc", "abab"),
    ],
)
def test_accepted_patterns_compile_to_searching_predicates(pattern: str, matching: str, not_matching: str) -> None:
    pred = regex_predicate(pattern, 0)
    assert pred(matching) is True
    assert pred(not_matching) is False
    assert pred("x" * MAX_REGEX_SUBJECT + matching) is False  # longer subjects are never searched


COMMON = [
    "^www\\.",
    "\\.example\\.com\\.$",
    "^[a-z0-9-]+\\.example\\.com\\.$",
    "^api[0-9]*\\.",
    "api[0-9]*\\.",
    "(www\\.)?[a-z0-9-]+\\.example",
    ".*foo",
    ".*foo.*",
    "^.*a.*b$",
    "[a-z]+-[0-9]+",
    "^[a-z]+\\.[a-z]+\\.[a-z]+\\.$",
    "^(www|api|cdn)[0-9]*\\.eu\\.",
    "[a-z]{2}-[a-z]+-[0-9]+\\.",
    "(?:[a-z0-9-]+\\.)?example\\.com\\.$",
    "\\.(eu|us)-[a-z]+\\.",
    "(?i)^LB\\.",
]


@pytest.mark.parametrize("pattern", COMMON)
def test_common_patterns_accepted(pattern: str) -> None:
    assert regex_hazard(pattern) is None
    assert regex_cost(pattern) <= REGEX_COST_BUDGET


@pytest.mark.parametrize(
    ("pattern", "cost"),
    [
        ("^www\\.", 1),
        ("\\.example\\.com\\.$", 256),
        ("^api[0-9]*\\.", 257),  # delimited by '.': a scan
        ("api[0-9]*\\.", 256 * 257),  # unanchored: 256 start positions
        ("^.*a.*b$", 257 * 257),  # two repetitions that can match the same characters
        ("^[a-z]+\\.[a-z]+\\.[a-z]+\\.$", 1 + 3 * 255),
        ("foo.*", 256),  # the last repetition costs nothing
        ("^a*+b", 257),  # possessive: a scan
        ("^(ab|cd)x", 2),
        ("^a{3}b{2,4}c", 3),
    ],
)
def test_regex_cost_estimate(pattern: str, cost: int) -> None:
    assert regex_cost(pattern) == cost


BACKTRACK = (
    "it may backtrack for too long on a long name (estimated cost {}, limit 131,072); anchor "
    "it with '^' and avoid consecutive repetitions that can match the same characters (like "
    "'.*a.*b'; '[a-z0-9-]+\\.' is fine)"
)


@pytest.mark.parametrize(
    ("pattern", "cost"),
    [
        (".*a.*b", "16,908,544"),
        ("\\d*\\d*x", "16,908,544"),
        ("^[a-z.]*a[a-z.]*a[a-z.]*$", "16,974,593"),
        ("a{0,100}a{0,100}b", "2,611,456"),
        ("[a-z.]+?.?[0-9]?(ab)+", "262,144"),
        ("(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)(a|b)"
         "(a|b)(a|b)", "67,108,864"),
    ],
)
def test_polynomial_patterns_rejected(pattern: str, cost: str) -> None:
    assert regex_hazard(pattern) == BACKTRACK.format(cost)


@pytest.mark.parametrize("pattern", COMMON)
def test_accepted_patterns_are_fast_on_hostile_names(pattern: str) -> None:
    rx = re.compile(pattern)
    subjects = [c * 254 + tail for c in "a.1-w" for tail in ("", "!", ".")]
    subjects += [(c + "a") * 127 for c in ".1-"]
    start = time.perf_counter()
    for s in subjects:
        rx.search(s)
    assert (time.perf_counter() - start) / len(subjects) < 0.005


@pytest.mark.parametrize(
    ("pattern", "parts"),
    [
        ("", [""]),
        ("*", ["", ""]),
        ("*.example.com.", ["", ".example.com."]),
        ("a*b*c", ["a", "b", "c"]),
        ("a\\*b", ["a*b"]),
        ("a\\\\*", ["a\\", ""]),
        ("\\**", ["*", ""]),
    ],
)
def test_wildcard_parts(pattern: str, parts: list[str]) -> None:
    assert wildcard_parts(pattern, 1) == parts


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a**", "'**' is not allowed in a wildcard pattern"),
        ("a\\.b", "invalid escape '\\.' in wildcard pattern (allowed: \\* and \\\\)"),
        ("ab\\", "wildcard pattern ends with a lone '\\' (a literal backslash is \\\\)"),
    ],
)
def test_wildcard_pattern_errors(pattern: str, message: str) -> None:
    with pytest.raises(RuleError) as err:
        wildcard_parts(pattern, 7)
    assert (err.value.message, err.value.column) == (message, 7)
