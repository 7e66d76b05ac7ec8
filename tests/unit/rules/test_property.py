"""Property tests for custom-rule conditions: arbitrary text only ever raises ``RuleError``;
generated well-typed conditions compile, agree with an independent oracle, compose like
Boolean logic, and never raise at evaluation time, whatever the ``RuleFields`` hold."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbdns.errors import RuleError
from lbdns.rules import RuleFields, compile_condition
from lbdns.rules.patterns import regex_hazard, regex_predicate

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Oracle = Callable[[RuleFields], bool]


@dataclass(frozen=True)
class Gen:
    """A generated condition and what it must evaluate to."""

    text: str
    oracle: Oracle


def lit(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


SMALL = st.text(alphabet="abAB.-", max_size=6)

# --- values a query can have -----------------------------------------------------------------

ipv4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
# addresses near a few interesting networks, so that set membership is often true
near = st.sampled_from(["10.0.0.0", "10.255.255.255", "128.0.0.0", "127.255.255.255",
                        "2001:db8::", "2001:db8::1", "::1", "::"]).map(
    lambda a: IPv6Address(a) if ":" in a else IPv4Address(a)
)
any_ip = st.one_of(ipv4, ipv6, near)

rule_fields = st.builds(
    RuleFields,
    lb_name=SMALL,
    region=st.sampled_from(["ENAM", "WEU", "enam", ""]),
    ip_src=st.one_of(st.none(), any_ip),
    asnum=st.one_of(st.none(), st.integers(0, 70000)),
    qname=SMALL,
    qtype=st.integers(0, 300),
    ecs_present=st.booleans(),
    ecs_addr=st.one_of(st.none(), SMALL),
    country=st.one_of(st.none(), st.sampled_from(["US", "CA", "us"])),
)

junk = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.binary(max_size=5),
    st.floats(allow_nan=True), any_ip, st.lists(st.integers(), max_size=2),
)
junk_fields = st.builds(
    RuleFields, lb_name=junk, region=junk, ip_src=junk, asnum=junk, qname=junk, qtype=junk,
    ecs_present=junk, ecs_addr=junk, country=junk,
)

# --- operands --------------------------------------------------------------------------------

Getter = Callable[[RuleFields], Any]

STRING_FIELDS: list[tuple[str, Getter]] = [
    ("cf.load_balancer.name", lambda f: f.lb_name),
    ("cf.load_balancer.region", lambda f: f.region),
    ("dns.qry.name", lambda f: f.qname),
    ("dns.rr.opt.client.addr", lambda f: f.ecs_addr),
    ("lbdns.client.country", lambda f: f.country),
    ("http.host", lambda f: None),
    ('http.request.headers["a"][0]', lambda f: None),
]


@st.composite
def string_operand(draw: st.DrawFn) -> tuple[str, Getter]:
    name, get = draw(st.sampled_from(STRING_FIELDS))
    wrap = draw(st.sampled_from(["", "lower", "upper", "lower-upper"]))
    if wrap == "lower":
        return f"lower({name})", lambda f: None if get(f) is None else get(f).lower()
    if wrap == "upper":
        return f"upper({name})", lambda f: None if get(f) is None else get(f).upper()
    if wrap == "lower-upper":
        return (f"lower(upper({name}))",
                lambda f: None if get(f) is None else get(f).upper().lower())
    return name, get


@st.composite
def int_operand(draw: st.DrawFn) -> tuple[str, Getter]:
    choice = draw(st.sampled_from(["asnum", "len", "type", "ts", "fn"]))
    if choice == "asnum":
        return "ip.src.asnum", lambda f: f.asnum
    if choice == "len":
        return "dns.qry.name.len", lambda f: len(f.qname)
    if choice == "type":
        return "dns.qry.type", lambda f: f.qtype
    if choice == "ts":
        return "http.request.timestamp.sec", lambda f: None
    text, get = draw(string_operand())
    return f"len({text})", lambda f: None if get(f) is None else len(get(f))


def present(get: Getter, pred: Callable[[Any], bool]) -> Oracle:
    def oracle(f: RuleFields) -> bool:
        v = get(f)
        return v is not None and pred(v)

    return oracle


# --- atoms -----------------------------------------------------------------------------------


def glob_oracle(pattern_parts: list[str], fold: bool) -> Callable[[str], bool]:
    parts = [p.lower() for p in pattern_parts] if fold else pattern_parts
    rx = re.compile(".*".join(re.escape(p) for p in parts), re.DOTALL)
    return lambda v: rx.fullmatch(v.lower() if fold else v) is not None


@st.composite
def string_atom(draw: st.DrawFn) -> Gen:
    text, get = draw(string_operand())
    op = draw(st.sampled_from(["eq", "==", "ne", "!=", "contains", "in", "wildcard",
                               "strict wildcard", "matches", "~"]))
    if op in ("eq", "=="):
        s = draw(SMALL)
        return Gen(f"{text} {op} {lit(s)}", present(get, lambda v: v == s))
    if op in ("ne", "!="):
        s = draw(SMALL)
        return Gen(f"{text} {op} {lit(s)}", present(get, lambda v: v != s))
    if op == "contains":
        s = draw(SMALL)
        return Gen(f"{text} contains {lit(s)}", present(get, lambda v: s in v))
    if op == "in":
        items = draw(st.lists(SMALL, min_size=1, max_size=4))
        return Gen(f"{text} in {{{' '.join(lit(i) for i in items)}}}",
                   present(get, lambda v: v in items))
    if op in ("wildcard", "strict wildcard"):
        parts = draw(st.lists(st.text(alphabet="aA.*\\", max_size=3), min_size=1, max_size=4))
        # '**' is invalid: segments between two stars must not be empty
        parts = [p if p or i in (0, len(parts) - 1) else "a" for i, p in enumerate(parts)]
        # build a valid pattern: escape the literal characters, join segments with '*'
        escaped = "*".join(p.replace("\\", "\\\\").replace("*", "\\*") for p in parts)
        pred = glob_oracle(parts, op == "wildcard")
        return Gen(f"{text} {op} {lit(escaped)}", present(get, pred))
    s = draw(SMALL)
    anchor = draw(st.sampled_from(["", "^", "$"]))
    pattern = ("^" + re.escape(s)) if anchor == "^" else re.escape(s) + anchor
    rx = re.compile(pattern)
    return Gen(f"{text} {op} {lit(pattern)}", present(get, lambda v: rx.search(v) is not None))


INT_OPS: dict[str, Callable[[int, int], bool]] = {
    "eq": lambda a, b: a == b, "==": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "!=": lambda a, b: a != b, "lt": lambda a, b: a < b, "<": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "<=": lambda a, b: a <= b, "gt": lambda a, b: a > b,
    ">": lambda a, b: a > b, "ge": lambda a, b: a >= b, ">=": lambda a, b: a >= b,
}


@st.composite
def int_atom(draw: st.DrawFn) -> Gen:
    text, get = draw(int_operand())
    op = draw(st.sampled_from([*INT_OPS, "in"]))
    if op == "in":
        items = draw(st.lists(
            st.one_of(st.integers(-3, 300).map(lambda n: (n, n)),
                      st.tuples(st.integers(-3, 300), st.integers(0, 40)).map(
                          lambda t: (t[0], t[0] + t[1]))),
            min_size=1, max_size=5))
        src = " ".join(str(lo) if lo == hi else f"{lo}..{hi}" for lo, hi in items)
        return Gen(f"{text} in {{{src}}}",
                   present(get, lambda v: any(lo <= v <= hi for lo, hi in items)))
    k = draw(st.integers(-3, 300))
    fn = INT_OPS[op]
    return Gen(f"{text} {op} {k}", present(get, lambda v: fn(v, k)))


networks = st.one_of(
    st.tuples(ipv4, st.integers(0, 32)).map(lambda t: ip_network(f"{t[0]}/{t[1]}", strict=False)),
    st.tuples(ipv6, st.integers(0, 128)).map(lambda t: ip_network(f"{t[0]}/{t[1]}", strict=False)),
    st.sampled_from(["0.0.0.0/1", "10.0.0.0/8", "2001:db8::/32", "::1/128"]).map(ip_network),
)


def in_net(v: Any, net: IPv4Network | IPv6Network) -> bool:
    return isinstance(v, type(net.network_address)) and v in net


@st.composite
def ip_atom(draw: st.DrawFn) -> Gen:
    op = draw(st.sampled_from(["eq", "==", "ne", "!=", "in"]))
    get: Getter = lambda f: f.ip_src  # noqa: E731
    if op == "in":
        nets = draw(st.lists(networks, min_size=1, max_size=4))
        return Gen(f"ip.src in {{{' '.join(str(n) for n in nets)}}}",
                   present(get, lambda v: any(in_net(v, n) for n in nets)))
    if draw(st.booleans()):
        addr = draw(any_ip)
        net = ip_network(addr)
        src = str(addr)
    else:
        net = draw(networks)
        src = str(net)
    if op in ("eq", "=="):
        return Gen(f"ip.src {op} {src}", present(get, lambda v: in_net(v, net)))
    return Gen(f"ip.src {op} {src}", present(get, lambda v: not in_net(v, net)))


@st.composite
def bool_atom(draw: st.DrawFn) -> Gen:
    kind = draw(st.sampled_from(["qu", "ecs", "starts", "ends"]))
    get: Getter
    if kind == "qu":
        text, get = "dns.qry.qu", lambda f: True
    elif kind == "ecs":
        text, get = "dns.rr.opt.client", lambda f: f.ecs_present
    else:
        s_text, s_get = draw(string_operand())
        s = draw(SMALL)
        fn = "starts_with" if kind == "starts" else "ends_with"
        text = f"{fn}({s_text}, {lit(s)})"
        method = str.startswith if kind == "starts" else str.endswith

        def get(f: RuleFields, s_get: Getter = s_get, s: str = s, method: Any = method) -> Any:
            v = s_get(f)
            return None if v is None else method(v, s)

    form = draw(st.sampled_from(["", "eq true", "eq false", "ne true", "ne false", "== true"]))
    if not form:
        return Gen(text, present(get, lambda v: v is True))
    op, value = form.split()
    want = (value == "true") if op in ("eq", "==") else (value != "true")
    return Gen(f"{text} {form}", present(get, lambda v: v is want))


atoms = st.one_of(string_atom(), int_atom(), ip_atom(), bool_atom())


def combine(children: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
    def not_(g: Gen, spelling: str) -> Gen:
        return Gen(f"{spelling}({g.text})", lambda f: not g.oracle(f))

    def binary(a: Gen, b: Gen, op: str) -> Gen:
        fn: Callable[[bool, bool], bool] = {
            "and": lambda x, y: x and y, "&&": lambda x, y: x and y,
            "or": lambda x, y: x or y, "||": lambda x, y: x or y,
            "xor": lambda x, y: x != y, "^^": lambda x, y: x != y,
        }[op]
        return Gen(f"({a.text}) {op} ({b.text})", lambda f: fn(a.oracle(f), b.oracle(f)))

    return st.one_of(
        st.builds(not_, children, st.sampled_from(["not ", "!", "not"])),
        st.builds(binary, children, children,
                  st.sampled_from(["and", "&&", "or", "||", "xor", "^^"])),
    )


conditions = st.recursive(atoms, combine, max_leaves=8)


# --- properties ------------------------------------------------------------------------------

TOKENS = st.sampled_from([
    "ip.src", "dns.qry.name", "dns.qry.type", "dns.qry.qu", "http.host", "lower", "(", ")",
    "{", "}", "[", "]", ",", "*", "eq", "ne", "in", "and", "or", "xor", "not", "!", "==", "~",
    "strict", "wildcard", "matches", "contains", "1", "1..5", "10.0.0.0/8", "::1", '"a"',
    '"(a+)+"', 'r#"x"#', "true", "$x", "..", "-", ":", "/", '"', "\\", " ",
])


@SETTINGS
@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_rule_error(text: str) -> None:
    try:
        compile_condition(text)
    except RuleError as exc:
        assert 1 <= exc.column <= len(text) + 1


@SETTINGS
@given(st.lists(TOKENS, max_size=14).map(" ".join))
def test_token_soup_raises_only_rule_error(text: str) -> None:
    try:
        cond = compile_condition(text)
    except RuleError as exc:
        assert 1 <= exc.column <= len(text) + 1
    else:
        assert isinstance(cond.evaluate(RuleFields("a", "b", None, None, "c.", 1, False, None)),
                          bool)


@SETTINGS
@given(conditions, rule_fields)
def test_generated_conditions_match_oracle(gen: Gen, f: RuleFields) -> None:
    errors: list[BaseException] = []
    cond = compile_condition(gen.text, errors.append)
    assert cond.evaluate(f) is gen.oracle(f), gen.text
    assert errors == []


@SETTINGS
@given(conditions, junk_fields)
def test_generated_conditions_never_raise_on_junk(gen: Gen, f: RuleFields) -> None:
    result = compile_condition(gen.text).evaluate(f)
    assert result is True or result is False


@SETTINGS
@given(conditions, conditions, rule_fields)
def test_logical_operators_compose(a: Gen, b: Gen, f: RuleFields) -> None:
    x = compile_condition(a.text).evaluate(f)
    y = compile_condition(b.text).evaluate(f)
    assert compile_condition(f"not ({a.text})").evaluate(f) is (not x)
    assert compile_condition(f"({a.text}) and ({b.text})").evaluate(f) is (x and y)
    assert compile_condition(f"({a.text}) or ({b.text})").evaluate(f) is (x or y)
    assert compile_condition(f"({a.text}) xor ({b.text})").evaluate(f) is (x != y)


REGEX_ALPHABET = st.sampled_from([*"ab.-()[]{}|*+?^$\\,:=!<>#P0123dwsAZbxiu", "(?", "{2,}"])


@SETTINGS
@given(st.one_of(st.text(max_size=30), st.lists(REGEX_ALPHABET, max_size=25).map("".join)))
def test_regex_literals_raise_only_rule_error(pattern: str) -> None:
    hazard = regex_hazard(pattern)
    assert hazard is None or isinstance(hazard, str)
    try:
        pred = regex_predicate(pattern, 5)
    except RuleError as exc:
        assert exc.column == 5
    else:
        assert pred("lb.example.com.") in (True, False)
