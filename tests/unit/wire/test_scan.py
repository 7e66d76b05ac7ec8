"""lbdns.wire.scan: what the serving plan reads of a query, and the C twin (lbdns/wire/_scan.c)
held to exactly the Python function's result for any bytes."""

from __future__ import annotations

import random
from typing import Any

import dns.edns
import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbdns.wire.scan import scan_py

try:
    from lbdns.wire._scan import scan as scan_c
except ImportError:  # pragma: no cover - only where the extension did not build
    scan_c = None

needs_c = pytest.mark.skipif(scan_c is None, reason="lbdns.wire._scan is not built here (no C compiler at install)")


def query(name: str = "www.example.com", rdtype: str = "A", *, edns: int = -1, payload: int = 1232,
          options: list[Any] | None = None, do: bool = False, qid: int = 0x1234) -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload, options=options or [],
                               want_dnssec=do)
    q.id = qid
    return q.to_wire()


def ecs(address: str, source: int) -> dns.edns.ECSOption:
    return dns.edns.ECSOption(address, source)


def cookie(length: int) -> dns.edns.GenericOption:
    return dns.edns.GenericOption(10, bytes(range(1, length + 1)))


def corpus() -> list[bytes]:
    out = [
        query(), query("WwW.ExAmPlE.cOm"), query("static.example.com", "AAAA", edns=0),
        query("geo.example.net", edns=0, options=[ecs("198.51.100.0", 24)]),
        query("Geo.Example.Net", edns=0, options=[ecs("198.51.100.128", 25), cookie(8)], do=True),
        query("geo.example.net", edns=0, options=[cookie(24), ecs("2001:db8::", 48)], payload=4096),
        query("geo.example.net", edns=0, options=[ecs("0.0.0.0", 0)]),
        query("x.example.com", "TXT", edns=0, options=[cookie(40)]),
        query("a." * 100 + "example.com"),
        query("nsid.example.com", edns=0, options=[dns.edns.GenericOption(3, b"")]),
        query("v1.example.com", edns=1),
        query("two.example.com", edns=0, options=[ecs("192.0.2.0", 24), ecs("192.0.2.0", 24)]),
    ]
    return out


def test_a_plain_query() -> None:
    data = query("www.example.com", "AAAA", qid=7)
    qend = 12 + 17 + 4
    assert scan_py(data) == (qend, b"\x03www\x07example\x03com\x00\x00\x1c\x00\x01", None, 0, 0, 0, -1, -1, 0, b"")


def test_letter_case_gives_the_lower_case_forms() -> None:
    data = query("WwW.ExAmPlE.cOm", edns=0)
    got = scan_py(data)
    assert got is not None
    assert got[1] == b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    assert got[2] == query("www.example.com", edns=0)[2:]


def test_opt_ecs_and_cookie_are_located() -> None:
    data = query("geo.example.net", edns=0, payload=4096, do=True, options=[ecs("198.51.100.128", 25), cookie(24)])
    got = scan_py(data)
    assert got is not None
    qend, _, _, ar, payload, do, ecs_at, source, width, client = got
    assert (ar, payload, do, source, width, client) == (1, 4096, 1, 25, 4, bytes(range(1, 9)))
    assert data[ecs_at:ecs_at + 2] == b"\x00\x08" and ecs_at == qend + 11


@pytest.mark.parametrize("data", [
    query("nsid.example.com", edns=0, options=[dns.edns.GenericOption(3, b"")]),  # NSID: strict path
    query("v1.example.com", edns=1),  # BADVERS
    query("two.example.com", edns=0, options=[ecs("192.0.2.0", 24), ecs("192.0.2.0", 24)]),
    query("c.example.com", edns=0, options=[cookie(8), cookie(8)]),
    query("c.example.com", edns=0, options=[cookie(9)]),  # RFC 7873 §4: 8, or 16..40 octets
    query("c.example.com", edns=0, options=[cookie(41)]),
    query("e.example.com", edns=0, options=[dns.edns.GenericOption(8, b"\x00\x01\x18\x00\xc6\x33\x64\x01")]),
    query("e.example.com", edns=0, options=[dns.edns.GenericOption(8, b"\x00\x03\x18\x00\xc6\x33\x64")]),
    query("e.example.com", edns=0, options=[dns.edns.GenericOption(8, b"\x00\x01\x21\x00\xc6\x33\x64\x01\x00")]),
    query("e.example.com", edns=0, options=[dns.edns.GenericOption(8, b"\x00\x01\x18\x08\xc6\x33\x64")]),
    query("e.example.com", edns=0, options=[dns.edns.GenericOption(8, b"\x00\x01")]),
    query() + b"\x00",  # trailing garbage
    query()[:-1],
    b"\x12\x34\x81\x00" + query()[4:],  # a response
    b"\x12\x34\x08\x00" + query()[4:],  # opcode 1
    query()[:5] + b"\x02" + query()[6:],  # two questions
    query()[:12] + b"\xc0\x0c" + b"\x00\x01\x00\x01",  # compressed name
])
def test_what_the_plan_does_not_read_is_none(data: bytes) -> None:
    assert scan_py(data) is None
    if scan_c is not None:
        assert scan_c(data) is None


def test_name_length_limit() -> None:
    ok = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61  # 255 octets with the root
    data = query(ok)
    assert scan_py(data) is not None
    labels = b"".join(bytes((len(x),)) + x for x in (b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 62))
    longer = data[:12] + labels + data[-5:]
    assert scan_py(longer) is None  # 256 octets (RFC 1035 §3.1: 255 at most)


@needs_c
def test_c_twin_on_the_corpus_and_every_truncation_and_one_octet_change() -> None:
    rng = random.Random(5)
    for data in corpus():
        for cut in range(len(data) + 1):
            assert scan_c(data[:cut]) == scan_py(data[:cut]), (data, cut)
        for _ in range(300):
            b = bytearray(data)
            b[rng.randrange(len(b))] = rng.randrange(256)
            assert scan_c(bytes(b)) == scan_py(bytes(b)), bytes(b)


@needs_c
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_c_twin_on_any_bytes(data: bytes) -> None:
    assert scan_c(data) == scan_py(data)


@needs_c
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(corpus()), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
       st.binary(max_size=12))
def test_c_twin_on_mutated_queries(data: bytes, changes: list[tuple[int, int]], tail: bytes) -> None:
    b = bytearray(data)
    for at, value in changes:
        b[at % len(b)] = value
    mutated = bytes(b) + tail
    assert scan_c(mutated) == scan_py(mutated)
