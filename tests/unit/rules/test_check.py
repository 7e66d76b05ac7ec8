"""Type checking of custom-rule conditions: fields, operators, literals, functions, warnings
(SPEC.md §8.2 R-RUL-10, R-RUL-14, R-RUL-15; §12 E-RULE-EXPR, W-PROXIED-FIELD)."""

from __future__ import annotations

import pytest

from lbdns.errors import RuleError
from lbdns.rules import FIELDS, FieldType, compile_condition
from lbdns.rules.compiler import _FUNCTIONS, ALLOWED_OPS
from lbdns.rules.parser import FUNCTION_NAMES


def error(text: str) -> tuple[str, int]:
    with pytest.raises(RuleError) as err:
        compile_condition(text)
    return err.value.message, err.value.column


def test_field_table_matches_spec() -> None:
    dns_only = {
        "cf.load_balancer.name": FieldType.STRING,
        "cf.load_balancer.region": FieldType.STRING,
        "ip.src": FieldType.IP,
        "ip.src.asnum": FieldType.INT,
        "dns.qry.name": FieldType.STRING,
        "dns.qry.name.len": FieldType.INT,
        "dns.qry.qu": FieldType.BOOL,
        "dns.qry.type": FieldType.INT,
        "dns.rr.opt.client": FieldType.BOOL,
        "dns.rr.opt.client.addr": FieldType.STRING,
        "lbdns.client.country": FieldType.STRING,
    }
    proxied = {
        "http.cookie", "http.host", "http.referer", "http.request.headers",
        "http.request.method", "http.request.timestamp.sec", "http.request.uri",
        "http.request.uri.args", "http.request.uri.args.names", "http.request.uri.args.values",
        "http.request.uri.path", "http.request.uri.query", "http.request.version",
    }
    assert {n: s.type for n, s in FIELDS.items() if not s.proxied_only} == dns_only
    assert {n for n, s in FIELDS.items() if s.proxied_only} == proxied
    assert [n for n, s in FIELDS.items() if s.extension] == ["lbdns.client.country"]


def test_function_tables_agree() -> None:
    assert tuple(_FUNCTIONS) == FUNCTION_NAMES


def test_allowed_operators_per_type() -> None:
    assert ALLOWED_OPS == {
        FieldType.STRING: ("eq", "ne", "contains", "matches", "in", "wildcard", "strict wildcard"),
        FieldType.INT: ("eq", "ne", "lt", "le", "gt", "ge", "in"),
        FieldType.IP: ("eq", "ne", "in"),
        FieldType.BOOL: ("eq", "ne"),
    }


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        # fields
        ("ip.sorc eq 1.2.3.4", "unknown field 'ip.sorc' (did you mean 'ip.src'?)", 1),
        ('dns.qry.nmae eq "x"', "unknown field 'dns.qry.nmae' (did you mean 'dns.qry.name'?)", 1),
        ('ip.geoip.country eq "US"',
         "unknown field 'ip.geoip.country' (did you mean 'lbdns.client.country'?)", 1),
        ("ip.geoip.asnum eq 1", "unknown field 'ip.geoip.asnum' (did you mean 'ip.src.asnum'?)", 1),
        ('zzz eq "x"', "unknown field 'zzz'", 1),
        ('dns.qry.qu and (foo.bar eq "x")', "unknown field 'foo.bar'", 17),
        # operator not defined for the type
        ('ip.src contains "x"',
         "operator 'contains' is not defined for IP field 'ip.src' (allowed: eq, ne, in)", 8),
        ("ip.src < 1.2.3.4",
         "operator '<' is not defined for IP field 'ip.src' (allowed: eq, ne, in)", 8),
        ('dns.qry.name lt "x"',
         "operator 'lt' is not defined for string field 'dns.qry.name' (allowed: eq, ne, "
         "contains, matches, in, wildcard, strict wildcard)", 14),
        ('dns.qry.type matches "1"',
         "operator 'matches' is not defined for integer field 'dns.qry.type' (allowed: eq, ne, "
         "lt, le, gt, ge, in)", 14),
        ('dns.qry.type strict wildcard "1"',
         "operator 'strict wildcard' is not defined for integer field 'dns.qry.type' (allowed: "
         "eq, ne, lt, le, gt, ge, in)", 14),
        ("dns.rr.opt.client in {true}",
         "operator 'in' is not defined for Boolean field 'dns.rr.opt.client' (allowed: eq, ne)", 19),
        ("dns.rr.opt.client lt true",
         "operator 'lt' is not defined for Boolean field 'dns.rr.opt.client' (allowed: eq, ne)", 19),
        ('len(dns.qry.name) contains "x"',
         "operator 'contains' is not defined for integer value 'len(dns.qry.name)' (allowed: eq, "
         "ne, lt, le, gt, ge, in)", 19),
        ('http.request.timestamp.sec contains "x"',
         "operator 'contains' is not defined for integer field 'http.request.timestamp.sec' "
         "(allowed: eq, ne, lt, le, gt, ge, in)", 28),
        # standalone non-Boolean
        ("dns.qry.name",
         "string field 'dns.qry.name' cannot stand alone; compare it with an operator (allowed: "
         "eq, ne, contains, matches, in, wildcard, strict wildcard)", 1),
        ("dns.qry.qu and ip.src",
         "IP field 'ip.src' cannot stand alone; compare it with an operator (allowed: eq, ne, in)",
         16),
        # literal types
        ('dns.qry.type eq "AAAA"',
         "integer field 'dns.qry.type' cannot be compared with the string \"AAAA\" (expected an "
         "integer; AAAA is 28)", 17),
        ("dns.qry.type == A",
         "integer field 'dns.qry.type' cannot be compared with 'A' (expected an integer; A is 1)",
         17),
        ('dns.qry.type in {1 "mx"}',
         "integer field 'dns.qry.type' cannot be compared with the string \"mx\" (expected an "
         "integer; MX is 15)", 20),
        ("ip.src.asnum eq 1.5",
         "integer field 'ip.src.asnum' cannot be compared with '1.5' (expected an integer)", 17),
        ('len(dns.qry.name) eq "x"',
         "integer value 'len(dns.qry.name)' cannot be compared with the string \"x\" (expected an "
         "integer)", 22),
        ("dns.qry.type in {5..1}", "range start 5 is greater than its end 1", 18),
        ("dns.qry.type eq 1..5", "a range is only allowed inside a set: 'in {1..5}'", 17),
        ("dns.qry.type eq 99999999999999999999",
         "integer 99999999999999999999 is out of range (64-bit signed)", 17),
        ('ip.src eq "1.2.3.4"',
         "IP field 'ip.src' cannot be compared with the string \"1.2.3.4\" (expected an IP "
         "address or CIDR)", 11),
        ("ip.src eq foo",
         "IP field 'ip.src' cannot be compared with 'foo' (expected an IP address or CIDR)", 11),
        ("ip.src eq 1.2.3", "invalid IP address '1.2.3'", 11),
        ("ip.src eq 1.2.3.4/33", "invalid CIDR '1.2.3.4/33'", 11),
        ("ip.src in {10.0.0.0/8 2001:db8::/129}", "invalid CIDR '2001:db8::/129'", 23),
        ("ip.src in {1.2.3.4..1.2.3.1}", "IP range '1.2.3.4..1.2.3.1' starts after it ends", 12),
        ("ip.src in {1.2.3.4..::1}", "IP range '1.2.3.4..::1' mixes IPv4 and IPv6", 12),
        ("ip.src eq 1.2.3.4..1.2.3.5",
         "a range is only allowed inside a set: 'in {1.2.3.4..1.2.3.5}'", 11),
        ("dns.rr.opt.client eq yes",
         "Boolean field 'dns.rr.opt.client' cannot be compared with 'yes' (expected true or "
         "false)", 22),
        ('dns.rr.opt.client eq "true"',
         "Boolean field 'dns.rr.opt.client' cannot be compared with the string \"true\" (expected "
         "true or false)", 22),
        ('cf.load_balancer.region eq ENAM',
         "string field 'cf.load_balancer.region' cannot be compared with 'ENAM' (expected a "
         "string in double quotes, e.g. \"ENAM\")", 28),
        ('dns.qry.name in {"a" b}',
         "string field 'dns.qry.name' cannot be compared with 'b' (expected a string in double "
         "quotes, e.g. \"b\")", 22),
        # map / array fields (proxied only)
        ('http.request.headers eq "x"',
         "map field 'http.request.headers' needs a key and an index, e.g. "
         "http.request.headers[\"name\"][0]", 1),
        ('http.request.headers["x"] eq "x"',
         "array field 'http.request.headers[\"x\"]' needs an index, e.g. "
         "http.request.headers[\"x\"][0]", 1),
        ('http.request.headers[0][0] eq "x"',
         "map field 'http.request.headers' is indexed by a string key, e.g. [\"name\"]", 21),
        ('http.request.headers["x"][*] eq "x"',
         "'[*]' needs any() or all(), which load-balancing rules do not support", 26),
        ('http.request.uri.args.names["x"] eq "x"',
         "array 'http.request.uri.args.names' is indexed by an integer, e.g. [0]", 28),
        ('dns.qry.name[0] eq "x"', "string field 'dns.qry.name' cannot be indexed", 13),
        # functions
        ('lower(ip.src) eq "x"',
         "function 'lower' expects a string argument, got IP field 'ip.src'", 7),
        ('upper(lbdns.nope) eq "x"', "unknown field 'lbdns.nope'", 7),
        ('lower("x") eq "x"',
         "the first argument of 'lower' must be a field or a function call, not a literal", 7),
        ('lower() eq "x"', "function 'lower' takes 1 argument (0 given)", 1),
        ('lower(dns.qry.name, "x") eq "x"', "function 'lower' takes 1 argument (2 given)", 1),
        ("ends_with(dns.qry.name)", "function 'ends_with' takes 2 arguments (1 given)", 1),
        ("starts_with(dns.qry.name, 5)",
         "the second argument of 'starts_with' must be a string literal", 27),
        ("starts_with(dns.qry.name, dns.qry.name)",
         "the second argument of 'starts_with' must be a string literal", 27),
        ('len(len(dns.qry.name)) eq 1',
         "function 'len' expects a string argument, got integer value 'len(dns.qry.name)'", 5),
        ("len(dns.qry.name)",
         "integer value 'len(dns.qry.name)' cannot stand alone; compare it with an operator "
         "(allowed: eq, ne, lt, le, gt, ge, in)", 1),
        # regular expressions and wildcards
        ('dns.qry.name matches "("',
         "invalid regular expression: missing ), unterminated subpattern at position 0", 22),
        ('dns.qry.name ~ "(a+)+"',
         "regular expression rejected: the group at position 0 is repeated and contains a "
         "quantifier or '|', which can take exponential time; write it without nested repetition "
         "(e.g. [a-z0-9.-]* or a 'wildcard' comparison)", 16),
        ('dns.qry.name matches "(a)\\\\1"',
         "regular expression rejected: backreference at position 3 (backreferences are not "
         "supported)", 22),
        ('dns.qry.name matches "[[a]"',
         "regular expression rejected: Possible nested set at position 1 (ambiguous syntax; "
         "escape '[', '-', '&', '~' and '|' inside a character class)", 22),
        ('dns.qry.name wildcard "a**b"', "'**' is not allowed in a wildcard pattern", 23),
        ('dns.qry.name strict wildcard "a\\\\x"',
         "invalid escape '\\x' in wildcard pattern (allowed: \\* and \\\\)", 30),
        ('dns.qry.name wildcard "a\\\\"',
         "wildcard pattern ends with a lone '\\' (a literal backslash is \\\\)", 23),
        # lists
        ("ip.src in $office", "IP lists are not supported by load-balancing rules ('$office')", 11),
    ],
)
def test_type_errors(text: str, message: str, column: int) -> None:
    assert error(text) == (message, column)


def test_regex_too_long() -> None:
    pattern = "a" * 1025
    assert error(f'dns.qry.name matches "{pattern}"') == (
        "regular expression is too long (1025 characters; the maximum is 1024)", 22
    )
    compile_condition(f'dns.qry.name matches "{"a" * 1024}"')


def test_condition_length_limit() -> None:
    base = 'dns.qry.name eq "'
    ok = base + "x" * (4096 - len(base) - 1) + '"'
    assert len(ok) == 4096
    compile_condition(ok)
    too_long = base + "x" * (4097 - len(base) - 1) + '"'
    assert error(too_long) == ("condition is too long (4097 characters; the maximum is 4096)", 4097)


@pytest.mark.parametrize(
    ("text", "warnings"),
    [
        (
            'http.request.uri.path contains "/x"',
            [("W-PROXIED-FIELD",
              "field 'http.request.uri.path' is only available to proxied load balancers; for "
              "DNS-only queries it is absent and every comparison on it is false", 1)],
        ),
        (
            'dns.qry.type eq 1 and http.host eq "a.example."',
            [("W-PROXIED-FIELD",
              "field 'http.host' is only available to proxied load balancers; for DNS-only "
              "queries it is absent and every comparison on it is false (use 'dns.qry.name' "
              "instead)", 23)],
        ),
        (
            'http.request.headers["x-a"][0] eq "1" or lower(http.cookie) contains "a"',
            [("W-PROXIED-FIELD",
              "field 'http.request.headers' is only available to proxied load balancers; for "
              "DNS-only queries it is absent and every comparison on it is false", 1),
             ("W-PROXIED-FIELD",
              "field 'http.cookie' is only available to proxied load balancers; for DNS-only "
              "queries it is absent and every comparison on it is false", 48)],
        ),
        ("dns.qry.type eq 1", []),
    ],
)
def test_proxied_field_warnings(text: str, warnings: list[tuple[str, str, int]]) -> None:
    assert list(compile_condition(text).warnings) == warnings


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("", set()),
        ("ip.src in {0.0.0.0/1}", {"ip.src"}),
        (
            'dns.rr.opt.client and dns.rr.opt.client.addr eq "203.0.113.0" or dns.qry.type == 1',
            {"dns.rr.opt.client", "dns.rr.opt.client.addr", "dns.qry.type"},
        ),
        ('starts_with(lower(dns.qry.name), "www")', {"dns.qry.name"}),
        ('http.host eq "x" or dns.qry.name.len > 3', {"http.host", "dns.qry.name.len"}),
        ('not lbdns.client.country in {"US" "CA"}', {"lbdns.client.country"}),
    ],
)
def test_fields_read(text: str, fields: set[str]) -> None:
    assert compile_condition(text).fields == frozenset(fields)


def test_compiled_condition_shape() -> None:
    cond = compile_condition("dns.qry.type == 1")
    assert cond.source == "dns.qry.type == 1"
    assert cond.warnings == ()
    empty = compile_condition("  ")
    assert (empty.source, empty.fields, empty.warnings) == ("  ", frozenset(), ())


def test_column_counts_newlines_as_one_character() -> None:
    assert error('dns.qry.qu and\n  foo.bar eq "x"') == ("unknown field 'foo.bar'", 18)
