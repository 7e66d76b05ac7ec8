"""Evaluation of compiled custom-rule conditions (SPEC.md §8.2 R-RUL-10..15; SPEC-EXAMPLES
EX-34, EX-35, EX-36, EX-41, EX-47)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import pytest

from lbdns.rules import RuleFields, compile_condition

BASE = RuleFields(
    lb_name="lb.example.com",
    region="ENAM",
    ip_src=IPv4Address("198.51.100.5"),
    asnum=64502,
    qname="lb.example.com.",
    qtype=1,
    ecs_present=False,
    ecs_addr=None,
    country="US",
)


def fields(**changes: Any) -> RuleFields:
    return replace(BASE, **changes)


def ev(text: str, f: RuleFields = BASE) -> bool:
    return compile_condition(text).evaluate(f)


# --- every field -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('cf.load_balancer.name eq "lb.example.com"', True),
        ('cf.load_balancer.name eq "lb.example.com."', False),
        ('cf.load_balancer.region == "ENAM"', True),
        ('cf.load_balancer.region in {"WEU" "WNAM"}', False),
        ("ip.src eq 198.51.100.5", True),
        ("ip.src == 198.51.100.6", False),
        ("ip.src ne 198.51.100.6", True),
        ("ip.src eq 198.51.100.0/24", True),
        ("ip.src ne 198.51.100.0/24", False),
        ("ip.src.asnum eq 64502", True),
        ("ip.src.asnum in {64500..64510}", True),
        ("ip.src.asnum gt 64502", False),
        ("ip.src.asnum ge 64502", True),
        ("ip.src.asnum < 64503", True),
        ("ip.src.asnum <= 64501", False),
        ('dns.qry.name eq "lb.example.com."', True),
        ("dns.qry.name.len eq 15", True),
        ("dns.qry.name.len > 15", False),
        ("dns.qry.qu", True),
        ("dns.qry.qu eq true", True),
        ("dns.qry.qu ne true", False),
        ("dns.qry.qu == false", False),
        ("dns.qry.type eq 1", True),
        ("dns.qry.type != 1", False),
        ("dns.qry.type in {1 28}", True),
        ("dns.rr.opt.client", False),
        ("not dns.rr.opt.client", True),
        ("dns.rr.opt.client eq false", True),
        ("dns.rr.opt.client ne false", False),
        ('lbdns.client.country eq "US"', True),
        ('lbdns.client.country in {"CA" "MX"}', False),
    ],
)
def test_every_field(text: str, expected: bool) -> None:
    assert ev(text) is expected


def test_ecs_fields() -> None:
    f = fields(ecs_present=True, ecs_addr="203.0.113.0", ip_src=IPv4Address("203.0.113.0"))
    assert ev("dns.rr.opt.client", f)
    assert ev('dns.rr.opt.client.addr eq "203.0.113.0"', f)
    assert ev('dns.rr.opt.client.addr contains "113"', f)
    assert ev('dns.rr.opt.client.addr wildcard "203.0.113.*"', f)


# --- absent fields (R-RUL-13) ----------------------------------------------------------------

ABSENT = fields(ip_src=None, asnum=None, ecs_addr=None, country=None)


@pytest.mark.parametrize(
    "text",
    [
        "ip.src eq 1.2.3.4",
        "ip.src ne 1.2.3.4",
        "ip.src in {0.0.0.0/0 ::/0}",
        "ip.src.asnum eq 1",
        "ip.src.asnum ne 1",
        "ip.src.asnum lt 99999999",
        "ip.src.asnum ge 0",
        'dns.rr.opt.client.addr eq "1.2.3.0"',
        'dns.rr.opt.client.addr ne "1.2.3.0"',
        'dns.rr.opt.client.addr contains ""',
        'dns.rr.opt.client.addr matches ""',
        'dns.rr.opt.client.addr wildcard "*"',
        'dns.rr.opt.client.addr strict wildcard "*"',
        'lbdns.client.country ne "US"',
        'lbdns.client.country in {"US"}',
        'len(lbdns.client.country) eq 0',
        'len(lbdns.client.country) ne 0',
        'lower(lbdns.client.country) ne "us"',
        'starts_with(lbdns.client.country, "")',
        'ends_with(dns.rr.opt.client.addr, "") eq true',
        'ends_with(dns.rr.opt.client.addr, "") eq false',
        'ends_with(dns.rr.opt.client.addr, "") ne true',
        # proxied-only fields are always absent (R-RUL-14)
        'http.host ne "x"',
        'http.request.uri.path contains "/x"',
        'http.request.headers["a"][0] ne "b"',
        "http.request.timestamp.sec ge 0",
        'lower(http.cookie) eq ""',
        'starts_with(http.host, "")',
    ],
)
def test_absent_field_comparisons_are_false_and_not_is_true(text: str) -> None:
    assert ev(text, ABSENT) is False
    assert ev(f"not ({text})", ABSENT) is True
    assert ev(f"!({text})", ABSENT) is True


def test_absent_when_present_compares_normally() -> None:
    assert ev('lbdns.client.country ne "CA"') is True
    assert ev("ip.src.asnum ne 1") is True


# --- sets, ranges, CIDRs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("0.0.0.0", True),
        ("10.1.2.3", True),
        ("127.255.255.255", True),
        ("128.0.0.0", False),
        ("198.51.100.5", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::ffff:10.1.2.3", False),  # an IPv6 address never matches an IPv4 CIDR
    ],
)
def test_ex34_lower_half(addr: str, expected: bool) -> None:
    assert ev("ip.src in {0.0.0.0/1}", fields(ip_src=ip_address(addr))) is expected


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("10.0.0.0", True),
        ("10.255.255.255", True),
        ("11.0.0.0", False),
        ("192.168.1.1", True),
        ("192.168.1.9", True),
        ("192.168.1.10", False),
        ("192.168.1.0", False),
        ("172.16.5.4", True),
        ("2001:db8::1", True),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", True),
        ("2001:db9::", False),
        ("::1", True),
        ("::2", False),
        ("fe80::1", False),
        ("0.0.0.1", False),
    ],
)
def test_mixed_ip_set(addr: str, expected: bool) -> None:
    text = (
        "ip.src in {10.0.0.0/8 2001:db8::/32 192.168.1.1..192.168.1.9 ::1 172.16.0.0/12 "
        "10.1.0.0/16}"
    )
    assert ev(text, fields(ip_src=ip_address(addr))) is expected


def test_ip_eq_ipv6_and_host_bits() -> None:
    f = fields(ip_src=IPv6Address("2001:db8::5"))
    assert ev("ip.src eq 2001:db8::5", f)
    assert ev("ip.src eq 2001:DB8:0::5", f)
    assert not ev("ip.src eq 198.51.100.5", f)
    assert ev("ip.src ne 198.51.100.5", f)
    # host bits in a CIDR are ignored (network 2001:db8::/64)
    assert ev("ip.src eq 2001:db8::1/64", f)


@pytest.mark.parametrize(
    ("qtype", "expected"),
    [(0, False), (1, True), (5, True), (6, True), (7, True), (8, False), (15, True), (28, True),
     (29, False), (33, True), (65535, False)],
)
def test_int_set_with_ranges(qtype: int, expected: bool) -> None:
    assert ev("dns.qry.type in {1 5..7 15 28 30..33 6..6}", fields(qtype=qtype)) is expected


def test_int_set_singletons_only() -> None:
    assert ev("dns.qry.type in {1 28}", fields(qtype=28))
    assert not ev("dns.qry.type in {1 28}", fields(qtype=5))


def test_negative_integers() -> None:
    assert ev("dns.qry.type gt -1", fields(qtype=0))
    assert ev("dns.qry.type in {-5..5}", fields(qtype=0))


def test_string_set() -> None:
    text = 'dns.qry.name in {"a.example.com." "lb.example.com."}'
    assert ev(text)
    assert not ev(text, fields(qname="b.example.com."))


# --- string operators ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "wildcard", "strict"),
    [
        ("*.example.com.", "lb.example.com.", True, True),
        ("*.EXAMPLE.com.", "lb.example.com.", True, False),
        ("*.example.com.", "LB.example.com.", True, True),
        ("*.example.com.", "example.com.", False, False),
        ("*", "", True, True),
        ("*", "anything", True, True),
        ("", "", True, True),
        ("", "x", False, False),
        ("lb.example.com.", "lb.example.com.", True, True),
        ("LB.example.com.", "lb.example.com.", True, False),
        ("lb.*", "lb.example.com.", True, True),
        ("lb*com.", "lb.example.com.", True, True),
        ("l*b*.*e*.", "lb.example.com.", True, True),
        ("*a*a*", "aa", True, True),
        ("*a*a*", "a", False, False),
        ("a*a", "a", False, False),
        ("a*a", "aa", True, True),
        ("*ab*ab", "abab", True, True),
        ("*ab*ab", "xabxab", True, True),
        ("*ab*ab", "ababx", False, False),
        ("a\\*b", "a*b", True, True),
        ("a\\*b", "axb", False, False),
        ("a\\\\b", "a\\b", True, True),
        ("*.c", "x.C", True, False),
    ],
)
def test_wildcard_and_strict_wildcard(pattern: str, value: str, wildcard: bool, strict: bool) -> None:
    literal = '"' + pattern.replace("\\", "\\\\") + '"'
    f = fields(qname=value)
    assert ev(f"dns.qry.name wildcard {literal}", f) is wildcard
    assert ev(f"dns.qry.name strict wildcard {literal}", f) is strict
    raw = f'r"{pattern}"'
    assert ev(f"dns.qry.name wildcard {raw}", f) is wildcard


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('dns.qry.name contains "example"', True),
        ('dns.qry.name contains "EXAMPLE"', False),
        ('dns.qry.name contains ""', True),
        ('dns.qry.name matches "^lb\\\\.example"', True),
        ('dns.qry.name ~ r"\\.com\\.$"', True),
        ('dns.qry.name matches "example"', True),  # unanchored search
        ('dns.qry.name matches "^example"', False),
        ('dns.qry.name matches "LB"', False),  # case-sensitive
        ('dns.qry.name matches "(?i)LB"', True),
        ('dns.qry.name matches "^[a-z0-9.-]*\\\\.example\\\\.com\\\\.$"', True),
        ('dns.qry.name matches "^(www|lb)\\\\."', True),
        ('dns.qry.name matches "^(?:ab)*lb"', True),
        ('dns.qry.name eq "LB.example.com."', False),
        ('dns.qry.name ne "x."', True),
    ],
)
def test_string_operators(text: str, expected: bool) -> None:
    assert ev(text) is expected


def test_matches_subject_bound() -> None:
    cond = compile_condition('dns.qry.name matches "x"')
    assert cond.evaluate(fields(qname="x" * 256))
    assert not cond.evaluate(fields(qname="x" * 257))


# --- functions (lbdns extension) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('lower(cf.load_balancer.region) eq "enam"', True),
        ('upper(dns.qry.name) eq "LB.EXAMPLE.COM."', True),
        ("len(dns.qry.name) eq 15", True),
        ("len(cf.load_balancer.region) in {1..4}", True),
        ('starts_with(dns.qry.name, "lb.")', True),
        ('starts_with(dns.qry.name, "www.")', False),
        ('ends_with(dns.qry.name, ".com.")', True),
        ('ends_with(dns.qry.name, ".com.") eq false', False),
        ('not ends_with(dns.qry.name, ".net.")', True),
        ('starts_with(upper(dns.qry.name), "LB")', True),
        ('lower(upper(dns.qry.name)) wildcard "LB.*"', True),
        ('upper(lbdns.client.country) in {"US"}', True),
    ],
)
def test_functions(text: str, expected: bool) -> None:
    assert ev(text) is expected


# --- precedence, verified by evaluation ------------------------------------------------------

T = "dns.qry.qu"
F = "dns.rr.opt.client"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{T} or {F} and {F}", True),  # or (and) -> T or F
        (f"({T} or {F}) and {F}", False),
        (f"not {T} and {F}", False),  # (not T) and F
        (f"not ({F} and {T})", True),
        (f"not {F} and {T}", True),
        (f"{T} xor {T} or {T}", True),  # (T xor T) or T
        (f"{T} xor ({T} or {T})", False),
        (f"{T} xor {F} and {F}", True),  # T xor (F and F)
        (f"({T} xor {F}) and {F}", False),
        (f"{T} or {T} xor {T}", True),  # T or (T xor T)
        (f"({T} or {T}) xor {T}", False),
        (f"{F} and {F} or {T}", True),
        (f"{F} and ({F} or {T})", False),
        (f"!{T} || {T} && !{F}", True),
        (f"{T} ^^ {T} ^^ {T}", True),  # odd count
        (f"{T} ^^ {T} ^^ {T} ^^ {T}", False),
        (f"{T} xor {F} xor {F}", True),
        (f"not not {T}", True),
        (f"not not not {T}", False),
        (" and ".join([T] * 50), True),
        (" and ".join([T] * 49 + [F]), False),
        (" or ".join([F] * 49 + [T]), True),
        (" or ".join([F] * 50), False),
        ("((((" + T + "))))", True),
    ],
)
def test_precedence(text: str, expected: bool) -> None:
    assert ev(text) is expected


# --- SPEC-EXAMPLES ---------------------------------------------------------------------------


def test_ex34_ecs_semantics_via_ip_src() -> None:
    cond = compile_condition("ip.src in {0.0.0.0/1}")
    assert cond.fields == {"ip.src"}
    assert cond.evaluate(fields(ip_src=IPv4Address("10.1.2.3")))  # EX-34.1
    assert not cond.evaluate(fields(ip_src=IPv4Address("198.51.100.5")))  # EX-34.2
    # EX-34.3: the caller puts the ECS address into ip_src
    assert cond.evaluate(
        fields(ip_src=IPv4Address("10.20.0.0"), ecs_present=True, ecs_addr="10.20.0.0")
    )


def test_ex35_conditions() -> None:
    r1 = compile_condition("dns.qry.type == 1")
    r2 = compile_condition('cf.load_balancer.region == "ENAM"')
    iad = fields(region="ENAM")
    lhr = fields(region="WEU")
    assert r1.evaluate(iad) and r2.evaluate(iad)
    assert r1.evaluate(lhr) and not r2.evaluate(lhr)
    assert compile_condition("").evaluate(lhr)  # EX-35.5: empty condition


def test_ex36_dns_fields() -> None:
    v6 = compile_condition("dns.qry.type eq 28")
    ecs = compile_condition('dns.rr.opt.client and dns.rr.opt.client.addr eq "203.0.113.0"')
    name = compile_condition('dns.qry.name eq "lb.example.com." and dns.qry.name.len eq 15')
    asn = compile_condition("ip.src.asnum in {64502}")
    # 1: AAAA
    q1 = fields(qtype=28, asnum=None)
    assert [c.evaluate(q1) for c in (v6, ecs, name, asn)] == [True, False, True, False]
    # 2: mixed-case query: qname is lower-cased by the caller
    q2 = fields(qname="LB.Example.COM.".lower(), asnum=None)
    assert [c.evaluate(q2) for c in (v6, ecs, name, asn)] == [False, False, True, False]
    # 3: ECS 203.0.113.0/24
    q3 = fields(ecs_present=True, ecs_addr="203.0.113.0", ip_src=IPv4Address("203.0.113.0"),
                asnum=None)
    assert [c.evaluate(q3) for c in (v6, ecs, name, asn)] == [False, True, True, False]
    # 4: resolver 198.51.100.130 in AS64502
    q4 = fields(ip_src=IPv4Address("198.51.100.130"), asnum=64502)
    assert [c.evaluate(q4) for c in (v6, ecs, name, asn)] == [False, False, True, True]


def test_ex41_condition() -> None:
    assert compile_condition("dns.qry.type == 1").evaluate(fields(region="WEU"))


def test_ex47_proxied_field_never_matches() -> None:
    cond = compile_condition('http.request.uri.path contains "/x"')
    assert [w[0] for w in cond.warnings] == ["W-PROXIED-FIELD"]
    assert not cond.evaluate(BASE)


# --- robustness ------------------------------------------------------------------------------


def test_empty_condition_always_true() -> None:
    assert compile_condition("").evaluate(BASE)
    assert compile_condition(" \n ").evaluate(ABSENT)


def test_evaluate_never_raises_and_reports() -> None:
    seen: list[BaseException] = []
    cond = compile_condition('dns.qry.name contains "x" or dns.qry.type eq 1', seen.append)
    bad = fields(qname=None, qtype=1)
    assert cond.evaluate(bad) is False
    assert len(seen) == 1 and isinstance(seen[0], TypeError)
    # a raising callback is contained too
    def boom(_exc: BaseException) -> None:
        raise RuntimeError("counter broke")

    assert compile_condition('dns.qry.name contains "x"', boom).evaluate(bad) is False
    # without a callback
    assert compile_condition('dns.qry.name contains "x"').evaluate(bad) is False


def test_garbage_ip_src_is_not_a_match() -> None:
    f = fields(ip_src="10.0.0.1")
    assert ev("ip.src in {0.0.0.0/1}", f) is False
    assert ev("ip.src ne 1.2.3.4", f) is True  # present, and not that address


def test_results_are_real_bools() -> None:
    for text in ("dns.qry.qu", "dns.qry.type in {1}", 'dns.qry.name contains "lb"',
                 "dns.qry.qu xor dns.rr.opt.client", 'ends_with(dns.qry.name, ".")'):
        assert ev(text) is True
