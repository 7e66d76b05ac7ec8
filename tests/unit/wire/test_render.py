"""build_response / build_error / encode_rr / make_server_cookie, checked with dnspython."""

from __future__ import annotations

import io
import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from lbdns.wire import codec
from lbdns.wire.codec import RCODE_BADVERS, RCODE_FORMERR, RCODE_NOTIMP, RCODE_NXDOMAIN, parse_query
from lbdns.wire.names import to_wire
from lbdns.wire.render import (
    QNAME_POINTER,
    build_error,
    build_response,
    encode_rr,
    make_server_cookie,
    server_cookie_key,
)


def query_wire(name: str = "www.ExAmple.com", rdtype: str = "A", **kwargs: object) -> bytes:
    kwargs.setdefault("id", 4242)
    return dns.message.make_query(name, rdtype, **kwargs).to_wire()  # type: ignore[arg-type]


def a_records(count: int, ttl: int = 60) -> bytes:
    return b"".join(encode_rr(QNAME_POINTER, 1, ttl, bytes([192, 0, 2, i % 256])) for i in range(count))


def respond(data: bytes, **kwargs: object) -> tuple[bytes, dns.message.Message]:
    kwargs.setdefault("rcode", 0)
    kwargs.setdefault("aa", True)
    out = build_response(parse_query(data), **kwargs)  # type: ignore[arg-type]
    return out, dns.message.from_wire(out)


_SOA_RDATA = dns.rdata.from_text("IN", "SOA", "ns1.example.com. h.example.com. 1 7200 3600 1209600 300")
SOA = encode_rr(to_wire("example.com"), 6, 300, _SOA_RDATA.to_wire() or b"")

# --------------------------------------------------------------------------- header and question


def test_noerror_answer_flags_and_question_case() -> None:
    data = query_wire()
    out, m = respond(data, answer=a_records(2), ancount=2)
    assert m.id == 4242
    assert m.flags & dns.flags.QR
    assert m.flags & dns.flags.AA
    assert m.flags & dns.flags.RD
    assert not m.flags & dns.flags.RA
    assert not m.flags & dns.flags.TC
    assert m.rcode() == dns.rcode.NOERROR
    assert m.opcode() == dns.opcode.QUERY
    assert m.question[0].name.to_text() == "www.ExAmple.com."
    assert out[12 : 12 + 21] == data[12 : 12 + 21]  # the question bytes, unchanged at offset 12
    rrset = m.answer[0]
    assert rrset.name.to_text() == "www.ExAmple.com."
    assert sorted(r.to_text() for r in rrset) == ["192.0.2.0", "192.0.2.1"]
    assert rrset.ttl == 60
    assert m.edns == -1  # no OPT without EDNS in the query


def test_rd_copied_when_clear_and_aa_false() -> None:
    _, m = respond(query_wire(flags=0), aa=False, rcode=5)
    assert not m.flags & dns.flags.RD
    assert not m.flags & dns.flags.AA
    assert m.rcode() == dns.rcode.REFUSED


def test_cd_ad_z_cleared_ra_never_set() -> None:
    data = bytearray(query_wire(flags=dns.flags.RD | dns.flags.CD | dns.flags.AD | dns.flags.RA | 0x0040))
    out, m = respond(bytes(data))
    flags = struct.unpack("!H", out[2:4])[0]
    assert flags == 0x8000 | 0x0400 | 0x0100
    assert not m.flags & (dns.flags.CD | dns.flags.AD | dns.flags.RA)


def test_opcode_copied_for_notimp() -> None:
    m = dns.message.make_query("example.com", "SOA", id=9)
    m.set_opcode(dns.opcode.NOTIFY)
    _, r = respond(m.to_wire(), rcode=RCODE_NOTIMP, aa=False)
    assert r.opcode() == dns.opcode.NOTIFY
    assert r.rcode() == dns.rcode.NOTIMP


def test_nxdomain_with_soa_in_authority() -> None:
    _, m = respond(query_wire("nope.example.com"), rcode=RCODE_NXDOMAIN, authority=SOA, nscount=1)
    assert m.rcode() == dns.rcode.NXDOMAIN
    assert len(m.answer) == 0
    assert m.authority[0].rdtype == dns.rdatatype.SOA
    assert m.authority[0].name.to_text() == "example.com."


def test_all_sections_with_counts() -> None:
    glue = encode_rr(to_wire("ns1.example.com"), 1, 300, bytes([198, 51, 100, 1]))
    _, m = respond(
        query_wire(use_edns=0),
        answer=a_records(3),
        ancount=3,
        authority=SOA,
        nscount=1,
        additional=glue,
        arcount=1,
    )
    assert len(m.answer[0]) == 3
    assert m.authority[0].rdtype == dns.rdatatype.SOA
    assert m.additional[0].name.to_text() == "ns1.example.com."
    assert m.edns == 0  # OPT appended after the caller's additional records


def test_rcode_above_15_without_edns_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        build_response(parse_query(query_wire()), rcode=RCODE_BADVERS, aa=False)


# --------------------------------------------------------------------------- OPT


@pytest.mark.parametrize("do", [False, True])
def test_opt_payload_and_do_copied(do: bool) -> None:
    out, m = respond(query_wire(use_edns=0, want_dnssec=do, payload=4096), edns_payload=1400)
    assert m.edns == 0
    assert m.payload == 1400
    assert bool(m.ednsflags & dns.flags.DO) is do
    assert m.options == ()
    assert out.endswith(b"\x00\x00\x29\x05\x78\x00\x00" + (b"\x80" if do else b"\x00") + b"\x00\x00\x00")


def test_badvers_extended_rcode() -> None:
    out, m = respond(query_wire(use_edns=1), rcode=RCODE_BADVERS, aa=False)
    assert m.rcode() == dns.rcode.BADVERS
    assert m.edns == 0  # we answer with version 0
    assert out[3] & 0x0F == 0  # low bits in the header, high bits in the OPT TTL
    assert out[-6] == 1  # EXTENDED-RCODE


def test_formerr_with_edns() -> None:
    _, m = respond(query_wire(use_edns=0), rcode=RCODE_FORMERR, aa=False)
    assert m.rcode() == dns.rcode.FORMERR
    assert m.edns == 0


@pytest.mark.parametrize(
    ("address", "srclen", "scope", "expected_scope"),
    [
        ("198.51.100.0", 24, 24, 24),
        ("198.51.100.0", 24, 16, 16),
        ("198.51.100.0", 24, None, 0),
        ("198.51.96.0", 20, 22, 22),  # a wider GeoIP network than the prefix is allowed
        ("0.0.0.0", 0, 0, 0),
        ("2001:db8::", 56, 48, 48),
        ("2001:db8:1::", 48, None, 0),
        ("::", 0, None, 0),
    ],
)
def test_ecs_echo(address: str, srclen: int, scope: int | None, expected_scope: int) -> None:
    data = query_wire(use_edns=0, options=[dns.edns.ECSOption(address, srclen)])
    _, m = respond(data, ecs_scope=scope, answer=a_records(1), ancount=1)
    (ecs,) = m.options
    assert isinstance(ecs, dns.edns.ECSOption)
    assert ecs.address == address
    assert ecs.srclen == srclen
    assert ecs.scopelen == expected_scope
    assert ecs.family == (1 if ":" not in address else 2)


def test_ecs_scope_out_of_range() -> None:
    q = parse_query(query_wire(use_edns=0, options=[dns.edns.ECSOption("198.51.100.0", 24)]))
    with pytest.raises(ValueError):
        build_response(q, rcode=0, aa=True, ecs_scope=33)
    with pytest.raises(ValueError):
        build_response(q, rcode=0, aa=True, ecs_scope=-1)


def test_ecs_scope_ignored_without_ecs() -> None:
    _, m = respond(query_wire(use_edns=0), ecs_scope=24)
    assert m.options == ()


def test_cookie_echo_with_server_cookie() -> None:
    client = b"C" * 8
    server = make_server_cookie(b"secret", client, "192.0.2.7")
    data = query_wire(use_edns=0, options=[dns.edns.CookieOption(client, b"")])
    _, m = respond(data, server_cookie=server)
    (cookie,) = m.options
    assert isinstance(cookie, dns.edns.CookieOption)
    assert cookie.client == client
    assert cookie.server == server


def test_cookie_and_ecs_together() -> None:
    data = query_wire(
        use_edns=0,
        options=[dns.edns.CookieOption(b"C" * 8, b"S" * 16), dns.edns.ECSOption("198.51.100.0", 24)],
    )
    _, m = respond(data, server_cookie=b"N" * 8, ecs_scope=24)
    ecs, cookie = m.options
    assert isinstance(ecs, dns.edns.ECSOption) and ecs.scopelen == 24
    assert isinstance(cookie, dns.edns.CookieOption)
    assert (cookie.client, cookie.server) == (b"C" * 8, b"N" * 8)


def test_no_cookie_without_server_cookie_or_client_cookie() -> None:
    data = query_wire(use_edns=0, options=[dns.edns.CookieOption(b"C" * 8, b"")])
    _, m = respond(data)
    assert m.options == ()
    _, m = respond(query_wire(use_edns=0), server_cookie=b"N" * 8)
    assert m.options == ()


# --------------------------------------------------------------------------- truncation


def test_truncation_at_512_without_edns() -> None:
    data = query_wire()
    answer = a_records(40)  # 40 * 16 octets
    out, m = respond(data, answer=answer, ancount=40, authority=SOA, nscount=1, max_size=512)
    assert len(out) <= 512
    assert m.flags & dns.flags.TC
    assert len(m.answer) == len(m.authority) == len(m.additional) == 0
    assert m.question[0].name.to_text() == "www.ExAmple.com."
    assert struct.unpack("!HHHH", out[4:12]) == (1, 0, 0, 0)


def test_exact_limit_boundary() -> None:
    data = query_wire()
    q = parse_query(data)
    answer = a_records(29)
    size = 12 + len(q.question) + len(answer)
    out = build_response(q, rcode=0, aa=True, answer=answer, ancount=29, max_size=size)
    assert len(out) == size and not out[2] & 0x02
    out = build_response(q, rcode=0, aa=True, answer=answer, ancount=29, max_size=size - 1)
    assert out[2] & 0x02


def test_truncation_at_client_payload_keeps_opt_and_ecs() -> None:
    data = query_wire(use_edns=0, payload=1232, options=[dns.edns.ECSOption("198.51.100.0", 24)])
    answer = a_records(100)
    out, m = respond(data, answer=answer, ancount=100, max_size=1232, ecs_scope=24)
    assert len(out) <= 1232
    assert m.flags & dns.flags.TC
    assert len(m.answer) == 0
    assert m.edns == 0
    (ecs,) = m.options
    assert isinstance(ecs, dns.edns.ECSOption) and ecs.scopelen == 24
    assert struct.unpack("!HHHH", out[4:12]) == (1, 0, 0, 1)
    # The same answer over TCP is complete.
    out, m = respond(data, answer=answer, ancount=100, max_size=65535, ecs_scope=24)
    assert not m.flags & dns.flags.TC
    assert len(m.answer[0]) == 100


def test_truncated_badvers_keeps_extended_rcode() -> None:
    _, m = respond(
        query_wire(use_edns=1), rcode=RCODE_BADVERS, aa=False, answer=a_records(40), ancount=40, max_size=512
    )
    assert m.flags & dns.flags.TC
    assert m.rcode() == dns.rcode.BADVERS


# --------------------------------------------------------------------------- build_error


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("abcd0100 0000 0000 0000 0000"),  # QDCOUNT 0
        bytes.fromhex("abcd2900 0002 0000 0000 0000") + b"junk",  # opcode 5 (UPDATE), RD
        bytes.fromhex("0001 7800 0001 0000 0000 0000") + b"\x03www\xc0\x0c\x00\x01\x00\x01",
        b"\x12\x34\x01\x00" + b"\xff" * 8,
    ],
)
def test_build_error_copies_id_opcode_rd(data: bytes) -> None:
    out = build_error(data, RCODE_FORMERR)
    assert out is not None
    assert len(out) == 12 <= len(data)
    m = dns.message.from_wire(out)
    assert m.id == struct.unpack("!H", data[:2])[0]
    assert m.opcode() == (data[2] >> 3) & 0x0F
    assert bool(m.flags & dns.flags.RD) == bool(data[2] & 0x01)
    assert m.flags & dns.flags.QR
    assert not m.flags & (dns.flags.AA | dns.flags.TC | dns.flags.RA | dns.flags.AD | dns.flags.CD)
    assert m.rcode() == dns.rcode.FORMERR
    assert out[4:] == bytes(8)


def test_build_error_drops_short_and_responses() -> None:
    for length in range(12):
        assert build_error(b"\x00" * length, RCODE_FORMERR) is None
    assert build_error(b"\x12\x34\x80\x00" + bytes(8), RCODE_FORMERR) is None


def test_build_error_rejects_extended_rcode() -> None:
    with pytest.raises(ValueError):
        build_error(bytes(12), RCODE_BADVERS)


# --------------------------------------------------------------------------- encode_rr / cookies


def rrset_wire(rrset: dns.rrset.RRset) -> bytes:
    buf = io.BytesIO()
    rrset.to_wire(buf)
    return buf.getvalue()


def test_encode_rr_matches_dnspython() -> None:
    rrset = dns.rrset.from_text("www.example.com.", 300, "IN", "AAAA", "2001:db8::1")
    ours = encode_rr(to_wire("www.example.com"), 28, 300, rrset[0].to_wire())
    assert ours == rrset_wire(rrset)
    txt = dns.rrset.from_text("t.example.", 5, "CH", "TXT", '"hello"')
    assert encode_rr(to_wire("t.example."), 16, 5, txt[0].to_wire(), rclass=3) == rrset_wire(txt)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": -1},
        {"ttl": 2**31},
        {"rtype": 65536},
        {"rtype": -1},
        {"rclass": 70000},
        {"rdata": b"x" * 65536},
        {"owner": b""},
    ],
)
def test_encode_rr_rejects(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"owner": QNAME_POINTER, "rtype": 1, "ttl": 1, "rdata": b"\x00" * 4}
    args.update(kwargs)
    with pytest.raises(ValueError):
        encode_rr(**args)  # type: ignore[arg-type]


def test_server_cookie() -> None:
    base = make_server_cookie(b"k" * 16, b"c" * 8, "192.0.2.1")
    assert len(base) == 8
    assert base == make_server_cookie(b"k" * 16, b"c" * 8, "192.0.2.1")
    assert base != make_server_cookie(b"j" * 16, b"c" * 8, "192.0.2.1")
    assert base != make_server_cookie(b"k" * 16, b"d" * 8, "192.0.2.1")
    assert base != make_server_cookie(b"k" * 16, b"c" * 8, "192.0.2.2")
    for secret in (b"", b"x" * 65):
        with pytest.raises(ValueError):
            make_server_cookie(secret, b"c" * 8, "192.0.2.1")


def test_response_to_every_parsed_shape_is_valid_dns() -> None:
    shapes = [
        query_wire(),
        query_wire(use_edns=0, want_dnssec=True),
        query_wire(use_edns=0, options=[dns.edns.ECSOption("2001:db8::", 64)]),
        query_wire(".", "NS", use_edns=0),
    ]
    for data in shapes:
        for rcode in (0, 2, 3, 5):
            out = build_response(parse_query(data), rcode=rcode, aa=rcode != 5, answer=a_records(1), ancount=1)
            m = dns.message.from_wire(out)
            assert m.rcode() == rcode
    assert codec.RCODE_SERVFAIL == 2


# --------------------------------------------------------------------------- NSID, optional additional, headless


def test_nsid_returned_only_when_asked() -> None:
    _, m = respond(query_wire(use_edns=0, options=[dns.edns.GenericOption(3, b"")]), nsid=b"pop-1")
    nsid = [o for o in m.options if o.otype == 3]
    assert len(nsid) == 1 and nsid[0].to_wire() == b"pop-1"
    _, m = respond(query_wire(use_edns=0), nsid=b"pop-1")
    assert not [o for o in m.options if o.otype == 3]


def test_optional_additional_left_out_before_truncation() -> None:
    glue = encode_rr(to_wire("ns.example.com"), 1, 60, b"\xc0\x00\x02\x01")
    extra = [encode_rr(to_wire(f"mx{i}.example.com"), 1, 60, bytes([192, 0, 2, i])) for i in range(3)]
    data = query_wire(use_edns=False)
    answer = a_records(20)  # 20 × 16 octets
    base = 12 + 21 + len(answer) + len(glue)
    # everything fits
    _, m = respond(data, answer=answer, ancount=20, additional=glue, arcount=1, optional=b"".join(extra), opcount=3,
                   optional_parts=tuple((e, 1) for e in extra), max_size=base + 3 * len(extra[0]))
    assert len(m.additional) == 4 and not m.flags & dns.flags.TC
    # room for one optional RRset: it is kept, the others left out, TC clear
    out, m = respond(data, answer=answer, ancount=20, additional=glue, arcount=1, optional=b"".join(extra), opcount=3,
                     optional_parts=tuple((e, 1) for e in extra), max_size=base + len(extra[0]) + 5)
    assert [r.name.to_text() for r in m.additional] == ["ns.example.com.", "mx0.example.com."]
    assert not m.flags & dns.flags.TC and len(out) <= base + len(extra[0]) + 5
    # the required glue does not fit: TC
    _, m = respond(data, answer=answer, ancount=20, additional=glue, arcount=1, optional=b"".join(extra), opcount=3,
                   max_size=base - 1)
    assert m.flags & dns.flags.TC and not m.answer and not m.additional


def test_build_headless_cookie_reply() -> None:
    from lbdns.wire.render import build_headless

    data = struct.pack("!HHHHHH", 99, 0x0100, 0, 0, 0, 1) + b"\x00" + struct.pack("!HHIH", 41, 1232, 0x8000, 12) + (
        struct.pack("!HH", 10, 8) + b"c" * 8)
    with pytest.raises(codec.QuestionCountError) as info:
        parse_query(data)
    exc = info.value
    assert exc.edns is not None
    out = build_headless(data, 0, exc.edns, edns_payload=1232, cookie=b"c" * 8 + b"s" * 8)
    m = dns.message.from_wire(out)
    assert m.id == 99 and m.rcode() == dns.rcode.NOERROR and m.flags & dns.flags.RD and m.flags & dns.flags.QR
    assert m.question == [] and m.edns == 0 and m.ednsflags & dns.flags.DO
    (cookie,) = m.options
    assert isinstance(cookie, dns.edns.CookieOption) and cookie.client == b"c" * 8 and cookie.server == b"s" * 8
    out = build_headless(data, 23, exc.edns, edns_payload=1232)  # BADCOOKIE: extended rcode in the OPT
    m = dns.message.from_wire(out)
    assert m.rcode() == dns.rcode.BADCOOKIE and len(out) <= len(data)


def test_server_cookie_key_equals_make_server_cookie():
    """The pre-keyed cookie function gives the same cookie as keying BLAKE2b per call, for
    every secret length, client cookie and address (RFC 7873 §4.2)."""
    for secret in (b"k", b"k" * 16, b"k" * 64):
        cookie = server_cookie_key(secret)
        for client, ip in ((b"c" * 8, "192.0.2.1"), (b"d" * 8, "2001:db8::1"), (b"c" * 8, "192.0.2.2")):
            assert cookie(client, ip) == make_server_cookie(secret, client, ip)
    for bad in (b"", b"k" * 65):
        with pytest.raises(ValueError):
            server_cookie_key(bad)
