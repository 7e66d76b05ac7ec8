"""Property and fuzz tests of the wire codec (hypothesis; whole file well under 20 s).

* the parser fails closed: on any input it returns a Query or raises FormError, nothing else;
* dnspython-generated queries round-trip: parse_query agrees with dnspython field by field and
  the response we build is a valid DNS message echoing question and ECS;
* build_error never amplifies; TcpFramer is independent of how the stream is chunked;
* names.to_wire / to_text agree with dnspython.
"""

from __future__ import annotations

import ipaddress
import struct

import dns.edns
import dns.exception
import dns.message
import dns.name
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbdns.errors import FormError
from lbdns.wire import names
from lbdns.wire.codec import Query, parse_query
from lbdns.wire.framing import TcpFramer, frame
from lbdns.wire.render import QNAME_POINTER, build_error, build_response, encode_rr
from tests.unit.wire.test_codec import assert_matches_dnspython

# Example budgets: ~1.5 ms of hypothesis per example dominates these cheap properties; every run
# draws new examples (not derandomized), so coverage accumulates across runs.
FAST = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAVY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- strategies

labels = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*", min_size=1, max_size=63),
    st.binary(min_size=1, max_size=63),
).map(lambda label: label.encode() if isinstance(label, str) else label)


@st.composite
def dns_names(draw: st.DrawFn) -> dns.name.Name:
    parts = draw(st.lists(labels, max_size=8))
    while sum(len(p) + 1 for p in parts) + 1 > 255:
        parts.pop()
    return dns.name.Name([*parts, b""])


@st.composite
def ecs_options(draw: st.DrawFn) -> dns.edns.ECSOption:
    if draw(st.booleans()):
        address = str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
        srclen = draw(st.integers(0, 32))
    else:
        address = str(ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1))))
        srclen = draw(st.integers(0, 128))
    return dns.edns.ECSOption(address, srclen)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    """Wire bytes of a dnspython query with random name/type/class/flags/EDNS/ECS/COOKIE."""
    name = draw(dns_names())
    rdtype = draw(st.integers(1, 65535).filter(lambda t: t not in (41,)))
    rdclass = draw(st.sampled_from([1, 3, 255, 254]))
    flags = draw(st.sampled_from([0, 0x0100, 0x0010, 0x0110, 0x0120]))
    kwargs: dict[str, object] = {"id": draw(st.integers(0, 65535)), "flags": flags}
    if draw(st.booleans()):
        options: list[dns.edns.Option] = []
        if draw(st.booleans()):
            options.append(draw(ecs_options()))
        if draw(st.booleans()):
            server = draw(st.sampled_from([b"", b"s" * 8, b"t" * 16, b"u" * 32]))
            options.append(dns.edns.CookieOption(draw(st.binary(min_size=8, max_size=8)), server))
        if draw(st.booleans()):
            options.append(
                dns.edns.GenericOption(
                    dns.edns.OptionType.make(draw(st.sampled_from([3]) | st.integers(65001, 65534))),
                    draw(st.binary(max_size=20)),
                )
            )
        draw(st.randoms()).shuffle(options)
        kwargs.update(
            use_edns=draw(st.sampled_from([0, 0, 0, 1])),
            payload=draw(st.integers(0, 65535)),
            want_dnssec=draw(st.booleans()),
            options=options,
        )
    message = dns.message.make_query(name, rdtype, rdclass, **kwargs)  # type: ignore[arg-type]
    return message.to_wire()


def parse_or_formerr(data: bytes) -> Query | None:
    """parse_query, asserting that the only possible failure is FormError."""
    try:
        return parse_query(data)
    except FormError as err:
        assert isinstance(err.answerable, bool)
        if len(data) < 12 or data[2] & 0x80:
            assert not err.answerable
        else:
            assert err.answerable
        return None


# --------------------------------------------------------------------------- fail closed


@FAST
@given(st.binary(max_size=700))
def test_random_bytes_only_formerr(data: bytes) -> None:
    parse_or_formerr(data)
    out = build_error(data, 1)
    assert out is None or len(out) == 12 <= len(data)


@FAST
@given(
    st.integers(0, 65535),
    st.integers(0, 0x7FFF),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
    st.lists(
        st.sampled_from([b"\x00", b"\x29", b"\xc0", b"\x0c", b"\x01", b"\x08", b"\x0a", b"\x3f", b"a"])
        | st.binary(max_size=4),
        max_size=80,
    ),
)
def test_header_shaped_garbage_only_formerr(
    qid: int, flags: int, counts: tuple[int, int, int], body: list[bytes]
) -> None:
    data = struct.pack("!HHHHHH", qid, flags, 1, *counts) + b"".join(body)
    parse_or_formerr(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(queries()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        value = draw(st.sampled_from([0, 1, 8, 10, 12, 41, 63, 64, 0x80, 0xC0, 0xFF]) | st.integers(0, 255))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = value
        elif op == "insert":
            data.insert(pos, value)
        elif op == "delete" and data:
            del data[pos]
        elif op == "truncate":
            del data[pos:]
        elif op == "append":
            data.append(value)
    return bytes(data)


@HEAVY
@given(mutated())
def test_mutated_queries_only_formerr_and_agree_with_dnspython(data: bytes) -> None:
    q = parse_or_formerr(data)
    if q is None:
        return
    try:
        m = dns.message.from_wire(data)
    except dns.exception.DNSException:
        return  # dnspython is stricter about record data we skip, or rejects other things
    if len(m.question) != 1:
        return
    assert q.id == m.id
    assert q.qname == m.question[0].name.to_wire()
    assert q.qtype == m.question[0].rdtype
    assert q.qclass == m.question[0].rdclass
    assert (q.edns is None) == (m.edns < 0)
    if q.edns is not None:
        assert q.edns.payload == max(m.payload, 512)
        assert q.edns.version == m.edns


# --------------------------------------------------------------------------- round trips


@HEAVY
@given(queries())
def test_dnspython_queries_round_trip(data: bytes) -> None:
    assert_matches_dnspython(data)


@HEAVY
@given(queries(), st.integers(0, 3), st.sampled_from([512, 1232, 4096, 65535]), st.integers(0, 32))
def test_responses_are_valid_and_echo(data: bytes, count: int, max_size: int, scope: int) -> None:
    q = parse_query(data)
    answer = b"".join(encode_rr(QNAME_POINTER, 1, 30, bytes([10, 0, 0, i])) for i in range(count))
    rcode = 16 if q.edns is not None and q.edns.version > 0 else 0
    ecs = q.edns.ecs if q.edns is not None else None
    out = build_response(
        q,
        rcode=rcode,
        aa=True,
        answer=answer,
        ancount=count,
        max_size=max_size,
        ecs_scope=min(scope, ecs.source_prefix) if ecs is not None else None,
        server_cookie=b"S" * 8,
    )
    assert len(out) <= max_size
    m = dns.message.from_wire(out)
    assert m.id == q.id
    assert m.rcode() == rcode
    assert m.question[0].name.to_wire() == q.qname  # case preserved (Name equality ignores case)
    assert (m.question[0].rdtype, m.question[0].rdclass) == (q.qtype, q.qclass)
    assert (m.edns >= 0) == (q.edns is not None)
    if ecs is not None:
        (echo,) = [o for o in m.options if isinstance(o, dns.edns.ECSOption)]
        assert (echo.family, echo.srclen, echo.addrdata) == (ecs.family, ecs.source_prefix, ecs.address)
    if not m.flags & 0x0200 and count:
        assert len(m.answer[0]) == len({bytes([10, 0, 0, i]) for i in range(count)})


# --------------------------------------------------------------------------- framing / names


@FAST
@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    st.lists(st.integers(1, 400), min_size=1, max_size=50),
)
def test_framer_is_independent_of_chunking(messages: list[bytes], sizes: list[int]) -> None:
    stream = b"".join(frame(m) for m in messages)
    framer = TcpFramer()
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        out += framer.feed(stream[pos : pos + size])
        pos += size
        i += 1
    assert out == messages
    assert framer.buffered == 0


@FAST
@given(dns_names())
def test_names_agree_with_dnspython(name: dns.name.Name) -> None:
    wire = name.to_wire()
    assert wire is not None
    text = names.to_text(wire)
    assert text == name.to_text()
    assert names.to_wire(text) == wire
    assert names.lower(wire) == name.to_digestable()
