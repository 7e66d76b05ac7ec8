"""parse_query / parse_header / names: dnspython builds the queries and serves as the oracle."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdatatype
import dns.rrset
import dns.update
import pytest

from lbdns.errors import FormError
from lbdns.wire import codec, names
from lbdns.wire.codec import (
    CLASS_CH,
    CLASS_IN,
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_SOA,
    ClientSubnet,
    Edns,
    Query,
    parse_header,
    parse_query,
)

# --------------------------------------------------------------------------- helpers


def make(name: str = "www.example.com", rdtype: str = "A", **kwargs: object) -> dns.message.QueryMessage:
    """A dnspython query with a fixed id."""
    kwargs.setdefault("id", 0x1234)
    return dns.message.make_query(name, rdtype, **kwargs)  # type: ignore[arg-type]


def wire(name: str = "www.example.com", rdtype: str = "A", **kwargs: object) -> bytes:
    return make(name, rdtype, **kwargs).to_wire()


def opt_rr(rdata: bytes = b"", payload: int = 1232, ttl: int = 0, owner: bytes = b"\x00") -> bytes:
    """A raw OPT record."""
    return owner + struct.pack("!HHIH", 41, payload, ttl, len(rdata)) + rdata


def option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def ecs_data(family: int, source: int, scope: int, address: bytes) -> bytes:
    return struct.pack("!HBB", family, source, scope) + address


def raw_query(
    qname: bytes = b"\x03www\x07example\x03com\x00",
    *,
    qtype: int = 1,
    qclass: int = 1,
    flags: int = 0x0100,
    qdcount: int = 1,
    answer: bytes = b"",
    ancount: int = 0,
    authority: bytes = b"",
    nscount: int = 0,
    additional: bytes = b"",
    arcount: int = 0,
    qid: int = 0xBEEF,
) -> bytes:
    """Assemble a message by hand (for shapes dnspython will not produce)."""
    header = struct.pack("!HHHHHH", qid, flags, qdcount, ancount, nscount, arcount)
    return header + qname + struct.pack("!HH", qtype, qclass) + answer + authority + additional


def with_edns_rdata(rdata: bytes, **kwargs: object) -> bytes:
    return raw_query(additional=opt_rr(rdata), arcount=1, **kwargs)  # type: ignore[arg-type]


def assert_matches_dnspython(data: bytes) -> Query:
    """parse_query agrees with dns.message.from_wire field by field."""
    q = parse_query(data)
    m = dns.message.from_wire(data)
    assert q.id == m.id
    assert q.flags == m.flags
    assert q.opcode == m.opcode()
    assert q.rd == bool(m.flags & dns.flags.RD)
    assert q.cd == bool(m.flags & dns.flags.CD)
    question = m.question[0]
    assert q.qname == question.name.to_wire()
    assert q.qname_lower == question.name.to_digestable()
    assert q.qtype == question.rdtype
    assert q.qclass == question.rdclass
    assert q.question == data[12 : 12 + len(q.qname) + 4]
    if m.edns < 0:
        assert q.edns is None
    else:
        assert q.edns is not None
        assert q.edns.payload == max(m.payload, 512)
        assert q.edns.version == m.edns
        assert q.edns.do == bool(m.ednsflags & dns.flags.DO)
        ecs = [o for o in m.options if isinstance(o, dns.edns.ECSOption)]
        if ecs and m.edns == 0:
            assert q.edns.ecs is not None
            assert q.edns.ecs.family == ecs[0].family
            assert q.edns.ecs.source_prefix == ecs[0].srclen
            assert q.edns.ecs.scope_prefix == ecs[0].scopelen
            assert q.edns.ecs.ip == ipaddress.ip_address(ecs[0].address)
            assert q.edns.ecs.address == ecs[0].addrdata
        else:
            assert q.edns.ecs is None
        cookies = [o for o in m.options if isinstance(o, dns.edns.CookieOption)]
        if cookies and m.edns == 0:
            assert q.edns.client_cookie == cookies[0].client
            assert q.edns.server_cookie == (cookies[0].server or None)
        else:
            assert q.edns.client_cookie is None
            assert q.edns.server_cookie is None
    return q


def formerr(data: bytes, *, answerable: bool = True) -> FormError:
    with pytest.raises(FormError) as info:
        parse_query(data)
    assert info.value.answerable is answerable, str(info.value)
    return info.value


# --------------------------------------------------------------------------- plain queries


def test_plain_query_fields() -> None:
    data = wire("www.example.com", "AAAA")
    q = assert_matches_dnspython(data)
    assert q == Query(
        id=0x1234,
        flags=0x0100,
        opcode=0,
        rd=True,
        cd=False,
        qname=b"\x03www\x07example\x03com\x00",
        qname_lower=b"\x03www\x07example\x03com\x00",
        qtype=QTYPE_AAAA,
        qclass=CLASS_IN,
        question=b"\x03www\x07example\x03com\x00\x00\x1c\x00\x01",
        edns=None,
    )


def test_letter_case_kept_and_lowered() -> None:
    q = assert_matches_dnspython(wire("WwW.ExAmPlE.CoM", "A"))
    assert q.qname == b"\x03WwW\x07ExAmPlE\x03CoM\x00"
    assert q.qname_lower == b"\x03www\x07example\x03com\x00"
    assert q.question[: len(q.qname)] == q.qname


def test_non_ascii_octets_are_not_lowered() -> None:
    # \195 (0xC3) and 'Z': only A-Z change (RFC 4343 §3).
    q = parse_query(raw_query(b"\x02\xc3Z\x00"))
    assert q.qname_lower == b"\x02\xc3z\x00"


def test_root_qname() -> None:
    q = assert_matches_dnspython(wire(".", "NS"))
    assert q.qname == b"\x00"
    assert q.question == b"\x00\x00\x02\x00\x01"


def test_rd_clear_and_cd_set() -> None:
    q = assert_matches_dnspython(wire(flags=dns.flags.CD))
    assert not q.rd
    assert q.cd


def test_qclass_chaos_and_any_type() -> None:
    q = assert_matches_dnspython(wire("version.bind", "TXT", rdclass="CH"))
    assert q.qclass == CLASS_CH
    q = assert_matches_dnspython(wire("example.com", "ANY"))
    assert q.qtype == 255


def test_other_buffer_types_are_accepted() -> None:
    data = wire(use_edns=0, options=[dns.edns.ECSOption("198.51.100.0", 24)])
    assert parse_query(bytearray(data)) == parse_query(memoryview(data)) == parse_query(data)  # type: ignore[arg-type]


def test_result_is_a_frozen_query() -> None:
    q = parse_query(wire())
    assert type(q) is Query
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.id = 1  # type: ignore[misc]
    assert q == dataclasses.replace(q)
    assert hash(q) == hash(dataclasses.replace(q))
    assert dataclasses.asdict(q)["qtype"] == QTYPE_A
    assert codec._QueryBuilder.__slots__ == Query.__slots__


def test_parsed_edns_and_client_subnet_are_frozen_dataclasses() -> None:
    q = parse_query(wire(use_edns=0, options=[dns.edns.ECSOption("2001:db8::", 48)]))
    assert type(q.edns) is Edns
    assert q.edns is not None and type(q.edns.ecs) is ClientSubnet
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.edns.payload = 4096  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.edns.ecs.packed = bytes(16)  # type: ignore[misc]
    assert q.edns == dataclasses.replace(q.edns)
    assert q.edns.ecs == ClientSubnet(2, 48, 0, b"\x20\x01\x0d\xb8\x00\x00", ipaddress.IPv6Address("2001:db8::").packed)
    assert hash(q.edns) == hash(dataclasses.replace(q.edns))
    assert codec._EdnsBuilder.__slots__ == Edns.__slots__
    assert codec._ClientSubnetBuilder.__slots__ == ClientSubnet.__slots__


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, 3, 15])
def test_other_opcodes_are_returned(opcode: int) -> None:
    m = make("example.com", "SOA")
    m.set_opcode(dns.opcode.Opcode.make(opcode))
    q = parse_query(m.to_wire())
    assert q.opcode == opcode
    assert q.qtype == QTYPE_SOA


def test_notify_with_soa_in_answer_section() -> None:
    m = make("example.com", "SOA")
    m.set_opcode(dns.opcode.NOTIFY)
    m.answer.append(dns.rrset.from_text("example.com.", 3600, "IN", "SOA", "ns1.example.com. h.example.com. 5 1 1 1 1"))
    q = parse_query(m.to_wire())  # the SOA compresses its names to the question name
    assert q.opcode == dns.opcode.NOTIFY


def test_update_message_is_returned_with_its_opcode() -> None:
    u = dns.update.UpdateMessage("example.com", id=7)
    u.add("www", 300, "A", "192.0.2.1")
    u.delete("old")
    q = parse_query(u.to_wire())
    assert q.opcode == dns.opcode.UPDATE
    assert q.qtype == QTYPE_SOA
    assert q.qname == b"\x07example\x03com\x00"


def test_other_opcode_with_bad_question_still_formerr() -> None:
    formerr(raw_query(b"\x03www\xc0\x0c", flags=dns.opcode.to_flags(dns.opcode.NOTIFY)))


# --------------------------------------------------------------------------- header


def test_parse_header() -> None:
    assert parse_header(wire()) == (0x1234, 0x0100, 1)
    with pytest.raises(FormError) as info:
        parse_header(b"\x00" * 11)
    assert not info.value.answerable


@pytest.mark.parametrize("length", range(12))
def test_shorter_than_header_is_dropped(length: int) -> None:
    formerr(wire()[:length], answerable=False)


def test_response_is_dropped() -> None:
    m = make()
    r = dns.message.make_response(m)
    formerr(r.to_wire(), answerable=False)
    formerr(raw_query(flags=0x8000), answerable=False)


@pytest.mark.parametrize("qdcount", [0, 2, 65535])
def test_qdcount_not_one(qdcount: int) -> None:
    if qdcount == 2:
        data = raw_query(qdcount=2) + b"\x00\x00\x01\x00\x01"
    elif qdcount == 0:
        data = struct.pack("!HHHHHH", 1, 0x100, 0, 0, 0, 0)
    else:
        data = raw_query(qdcount=qdcount)
    assert "QDCOUNT" in str(formerr(data))


# --------------------------------------------------------------------------- question name


@pytest.mark.parametrize("cut", range(12, 33))
def test_truncated_question(cut: int) -> None:
    data = wire()  # 33 octets
    assert len(data) == 33
    formerr(data[:cut])


def test_every_truncation_of_an_edns_ecs_cookie_query() -> None:
    data = wire(
        use_edns=0,
        options=[dns.edns.ECSOption("198.51.100.0", 24), dns.edns.CookieOption(b"c" * 8, b"s" * 16)],
    )
    parse_query(data)
    for cut in range(len(data)):
        formerr(data[:cut], answerable=cut >= 12)


def test_compression_pointer_in_question() -> None:
    assert "compression" in str(formerr(raw_query(b"\x03www\xc0\x0c")))
    formerr(raw_query(b"\xc0\x0c"))


@pytest.mark.parametrize("length_octet", [0x40, 0x41, 0x7F, 0x80, 0xBF])
def test_reserved_label_types_in_question(length_octet: int) -> None:
    formerr(raw_query(bytes([length_octet]) + b"a" * 70 + b"\x00"))


def test_label_of_64_octets() -> None:
    formerr(raw_query(b"\x40" + b"a" * 64 + b"\x00"))
    assert parse_query(raw_query(b"\x3f" + b"a" * 63 + b"\x00")).qname[0] == 63


def _name_of_length(total: int) -> bytes:
    """A wire name of exactly ``total`` octets (root included)."""
    out = b""
    remaining = total - 1
    while remaining:
        label = min(63, remaining - 1)
        if remaining - (label + 1) == 1:  # avoid leaving a single octet (can't hold a label)
            label -= 1
        out += bytes([label]) + b"x" * label
        remaining -= label + 1
    return out + b"\x00"


def test_name_of_255_octets_accepted_256_rejected() -> None:
    ok = _name_of_length(255)
    assert len(ok) == 255
    q = assert_matches_dnspython(raw_query(ok))
    assert len(q.qname) == 255
    too_long = _name_of_length(256)
    assert len(too_long) == 256
    assert "255" in str(formerr(raw_query(too_long)))
    # Also with plenty of data behind it (the scan limit path).
    formerr(raw_query(too_long, additional=opt_rr(b"\x00" * 400), arcount=1))


def test_question_without_type_and_class() -> None:
    data = raw_query()
    formerr(data[:-1])
    formerr(data[:-4])


# --------------------------------------------------------------------------- sections


def test_trailing_octets_rejected() -> None:
    formerr(wire() + b"\x00")
    formerr(wire(use_edns=0) + b"\x00")
    formerr(wire(use_edns=0) + b"junkjunkjunk")


def test_arcount_without_record_is_truncation() -> None:
    formerr(raw_query(arcount=1))
    formerr(raw_query(ancount=1))
    formerr(raw_query(nscount=3))


def test_non_opt_additional_records_are_skipped() -> None:
    a_record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
    data = raw_query(additional=a_record + opt_rr(payload=4096), arcount=2)
    q = parse_query(data)
    assert q.edns is not None and q.edns.payload == 4096
    data = raw_query(additional=opt_rr(payload=4096) + a_record, arcount=2)
    assert parse_query(data).edns == q.edns
    data = raw_query(additional=a_record, arcount=1)
    assert parse_query(data).edns is None


def test_records_in_answer_and_authority_are_skipped() -> None:
    a_record = b"\x01x\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 1])
    ptr_to_prev = b"\xc0\x21" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(4)  # points at "x.<qname>"
    data = raw_query(answer=a_record, ancount=1, authority=ptr_to_prev, nscount=1, additional=opt_rr(), arcount=1)
    q = parse_query(data)
    assert q.edns is not None
    dns.message.from_wire(data)  # the oracle agrees the message is well-formed


def test_two_opt_records() -> None:
    data = raw_query(additional=opt_rr() + opt_rr(), arcount=2)
    assert "more than one OPT" in str(formerr(data))
    m = make(use_edns=0)
    data = m.to_wire()
    data = data[:10] + b"\x00\x02" + data[12:] + opt_rr()
    formerr(data)


def test_opt_owner_not_root() -> None:
    data = raw_query(additional=opt_rr(owner=b"\x01a\x00"), arcount=1)
    assert "root" in str(formerr(data))
    data = raw_query(additional=opt_rr(owner=b"\xc0\x0c"), arcount=1)
    formerr(data)


def test_opt_owner_pointer_to_root_is_root() -> None:
    # ". IN NS" question: the qname at offset 12 is the root, so a pointer to it names the root.
    data = raw_query(b"\x00", qtype=2, additional=opt_rr(owner=b"\xc0\x0c", payload=2048), arcount=1)
    q = parse_query(data)
    assert q.edns is not None and q.edns.payload == 2048


def test_opt_outside_additional_section() -> None:
    formerr(raw_query(answer=opt_rr(), ancount=1))
    formerr(raw_query(authority=opt_rr(), nscount=1))


def test_opt_rdlength_past_end() -> None:
    rr = opt_rr(option(10, b"c" * 8))
    formerr(raw_query(additional=rr[:-1], arcount=1))
    formerr(raw_query(additional=rr + b"\x00", arcount=1))


@pytest.mark.parametrize(
    "bad_name",
    [
        b"\xc0\x00",  # into the header
        b"\xc0\x0b",  # into the header
        b"\xc0\xff",  # forward / out of range
        b"\xc0",  # truncated pointer
        b"\x01a\xc0\x21",  # points at itself (run start)
        b"\x41" + b"a" * 5 + b"\x00",  # label type 0x40
        b"\x81" + b"a" * 5 + b"\x00",  # label type 0x80
    ],
)
def test_bad_names_in_additional_records(bad_name: bytes) -> None:
    record = bad_name + struct.pack("!HHIH", 1, 1, 0, 0)
    formerr(raw_query(additional=record, arcount=1))


def test_pointer_loop_is_rejected() -> None:
    qname = b"\x03www\x07example\x03com\x00"  # offsets 12..28, question ends at 33
    # Record at 33: owner "a" + pointer forward to 47 (the next record), which points back to 33.
    first = b"\x01a\xc0\x2f" + struct.pack("!HHIH", 1, 1, 0, 0)
    second = b"\xc0\x21" + struct.pack("!HHIH", 1, 1, 0, 0)
    formerr(raw_query(qname, additional=first + second, arcount=2))
    # A name that points at its own start.
    formerr(raw_query(qname, additional=b"\x01a\xc0\x21" + struct.pack("!HHIH", 1, 1, 0, 0), arcount=1))


def test_in_place_part_of_a_record_name_over_255_octets_rejected() -> None:
    three = b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63
    ok = three + b"\x3d" + b"d" * 61 + b"\x00"
    assert len(ok) == 255
    parse_query(raw_query(additional=ok + struct.pack("!HHIH", 10, 1, 0, 0), arcount=1))
    too_long = three + b"\x3e" + b"d" * 62 + b"\x00"
    formerr(raw_query(additional=too_long + struct.pack("!HHIH", 10, 1, 0, 0), arcount=1))
    formerr(raw_query(additional=too_long[:-1] + b"\xc0\x0c" + struct.pack("!HHIH", 10, 1, 0, 0), arcount=1))


def _opt_owner_chain(hops: int) -> bytes:
    """A ". IN NS" query whose additional section holds ``hops - 1`` NULL records, each owned
    by a pointer to the previous owner (the first to the root qname at 12), then an OPT whose
    owner points at the last of them: resolving the OPT owner takes ``hops`` pointer hops."""
    records = b""
    previous = 12
    offset = 12 + 1 + 4
    for _ in range(hops - 1):
        records += struct.pack("!H", 0xC000 | previous) + struct.pack("!HHIH", 10, 1, 0, 0)
        previous = offset
        offset += 12
    records += struct.pack("!H", 0xC000 | previous) + struct.pack("!HHIH", 41, 1232, 0, 0)
    return raw_query(b"\x00", qtype=2, additional=records, arcount=hops)


def test_opt_owner_pointer_chain_is_followed_a_bounded_number_of_hops() -> None:
    for hops in (1, 2, 16):
        q = parse_query(_opt_owner_chain(hops))
        assert q.edns is not None and q.edns.payload == 1232
    assert "chain" in str(formerr(_opt_owner_chain(17)))


def test_long_pointer_chains_in_skipped_records_cost_linear_time() -> None:
    # 1300 records (pointers reach only the first 16 KiB), each owned by a pointer to the
    # previous owner, then a root OPT: parsed without following the chains (dnspython rejects
    # chains over 16 hops; resolving them is not needed to skip a record).
    data = _opt_owner_chain(1300)
    data = data[:-11] + opt_rr(payload=4096)
    q = parse_query(data)
    assert q.edns is not None and q.edns.payload == 4096


# --------------------------------------------------------------------------- EDNS


@pytest.mark.parametrize("payload", [0, 1, 511, 512, 1232, 4096, 65535])
def test_edns_payload(payload: int) -> None:
    q = assert_matches_dnspython(wire(use_edns=0, payload=payload))
    assert q.edns is not None
    assert q.edns.payload == max(payload, 512)


def test_edns_do_bit() -> None:
    q = assert_matches_dnspython(wire(use_edns=0, want_dnssec=True))
    assert q.edns == Edns(payload=1232, version=0, do=True, ecs=None, client_cookie=None, server_cookie=None)
    q = assert_matches_dnspython(wire(use_edns=0))
    assert q.edns is not None and not q.edns.do


def test_edns_version_above_zero_is_reported_and_options_not_interpreted() -> None:
    q = assert_matches_dnspython(wire(use_edns=1))
    assert q.edns is not None and q.edns.version == 1
    # A malformed ECS under version 1 is not interpreted (the handler answers BADVERS).
    bad_ecs = option(8, ecs_data(3, 0, 0, b""))
    data = raw_query(additional=opt_rr(bad_ecs, ttl=1 << 16), arcount=1)
    q = parse_query(data)
    assert q.edns is not None and q.edns.version == 1 and q.edns.ecs is None
    # ... but the option list framing is still checked.
    formerr(raw_query(additional=opt_rr(b"\x00\x08\x00\x09", ttl=1 << 16), arcount=1))


def test_unknown_options_ignored() -> None:
    q = assert_matches_dnspython(
        wire(
            use_edns=0,
            options=[
                dns.edns.GenericOption(dns.edns.OptionType.make(3), b""),
                dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"xyz"),
            ],
        )
    )
    assert q.edns is not None and q.edns.ecs is None and q.edns.client_cookie is None
    q = assert_matches_dnspython(wire(use_edns=0, pad=128))  # RFC 7830 padding option
    assert q.edns is not None


@pytest.mark.parametrize("rdata", [b"\x00", b"\x00\x08\x00", b"\x00\x08\x00\x05abcd", b"\x00\x0a\x00\x08"])
def test_truncated_option_list(rdata: bytes) -> None:
    formerr(with_edns_rdata(rdata))


# --------------------------------------------------------------------------- ECS


@pytest.mark.parametrize(
    ("address", "srclen", "family", "raw"),
    [
        ("203.0.113.0", 24, 1, b"\xcb\x00\x71"),
        ("203.0.112.0", 20, 1, b"\xcb\x00\x70"),
        ("192.0.2.1", 32, 1, b"\xc0\x00\x02\x01"),
        ("128.0.0.0", 1, 1, b"\x80"),
        ("0.0.0.0", 0, 1, b""),
        ("2001:db8::", 56, 2, b"\x20\x01\x0d\xb8\x00\x00\x00"),
        ("2001:db8::1", 128, 2, bytes(ipaddress.IPv6Address("2001:db8::1").packed)),
        ("::", 0, 2, b""),
    ],
)
def test_ecs_valid(address: str, srclen: int, family: int, raw: bytes) -> None:
    q = assert_matches_dnspython(wire(use_edns=0, options=[dns.edns.ECSOption(address, srclen)]))
    assert q.edns is not None
    assert q.edns.ecs == ClientSubnet(
        family=family,
        source_prefix=srclen,
        scope_prefix=0,
        address=raw,
        packed=ipaddress.ip_address(address).packed,
    )


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (ecs_data(1, 20, 0, b"\xcb\x00\x71"), "bits"),  # 203.0.113/20: bits beyond the prefix
        (ecs_data(1, 24, 0, b"\xcb\x00\x71\x00"), "octets"),  # too long
        (ecs_data(1, 24, 0, b"\xcb\x00"), "octets"),  # too short
        (ecs_data(1, 0, 0, b"\x00"), "octets"),  # /0 with an address octet
        (ecs_data(1, 33, 0, b"\x00" * 5), "too long"),
        (ecs_data(2, 129, 0, b"\x00" * 17), "too long"),
        (ecs_data(2, 57, 0, b"\x20\x01\x0d\xb8\x00\x00\x00\x01"), "bits"),
        (ecs_data(3, 0, 0, b""), "FAMILY"),
        (ecs_data(0, 0, 0, b""), "FAMILY"),
        (ecs_data(1, 24, 24, b"\xcb\x00\x71"), "SCOPE"),  # RFC 7871 §6: 0 in queries
        (ecs_data(2, 56, 1, b"\x20\x01\x0d\xb8\x00\x00\x00"), "SCOPE"),
        (b"\x00\x01\x18", "4 octets"),
        (b"", "4 octets"),
    ],
)
def test_ecs_malformed(data: bytes, why: str) -> None:
    err = formerr(with_edns_rdata(option(8, data)))
    assert err.answerable
    assert why in str(err)


def test_ecs_bits_beyond_prefix_from_the_brief() -> None:
    # family 1, source 20, address 203.0.113 (0x71 has bits beyond /20).
    formerr(with_edns_rdata(option(8, ecs_data(1, 20, 0, bytes([203, 0, 113])))))


def test_two_ecs_options() -> None:
    ecs = option(8, ecs_data(1, 24, 0, b"\xcb\x00\x71"))
    assert "more than one ECS" in str(formerr(with_edns_rdata(ecs + ecs)))


def test_ecs_alongside_other_options() -> None:
    rdata = option(3, b"") + option(8, ecs_data(1, 24, 0, b"\xcb\x00\x71")) + option(12, b"\x00" * 5)
    q = parse_query(with_edns_rdata(rdata))
    assert q.edns is not None and q.edns.ecs is not None
    assert q.edns.ecs.ip == ipaddress.IPv4Address("203.0.113.0")


# --------------------------------------------------------------------------- COOKIE


@pytest.mark.parametrize("server_len", [0, 8, 16, 32])
def test_cookie_valid(server_len: int) -> None:
    client = bytes(range(8))
    server = bytes(range(100, 100 + server_len))
    q = assert_matches_dnspython(wire(use_edns=0, options=[dns.edns.CookieOption(client, server)]))
    assert q.edns is not None
    assert q.edns.client_cookie == client
    assert q.edns.server_cookie == (server or None)


@pytest.mark.parametrize("length", [0, 1, 7, 9, 12, 15, 41, 64])
def test_cookie_bad_length(length: int) -> None:
    assert "COOKIE" in str(formerr(with_edns_rdata(option(10, b"k" * length))))


def test_two_cookie_options() -> None:
    formerr(with_edns_rdata(option(10, b"a" * 8) + option(10, b"b" * 8)))


# --------------------------------------------------------------------------- no memo of Edns


def test_edns_parsed_per_query_without_module_state() -> None:
    """The parser keeps no module-level memo (caches live in the serving plan): equal OPT
    records give equal, separate values, and a large OPT record parses like a small one."""
    first = parse_query(wire(use_edns=0, options=[dns.edns.ECSOption("198.51.100.0", 24)]))
    again = parse_query(wire(use_edns=0, options=[dns.edns.ECSOption("198.51.100.0", 24)]))
    assert first.edns == again.edns and first.edns is not again.edns
    assert not [k for k, v in vars(codec).items() if isinstance(v, dict) and not k.startswith("__")]
    q = parse_query(wire(use_edns=0, pad=468))  # padding option: OPT RDATA of ~450 octets
    assert q.edns is not None


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "text",
    [
        "www.example.com",
        "www.example.com.",
        "WwW.ExAmPlE.CoM.",
        ".",
        "a",
        "_sip._tcp.example.com",
        "*.example.com",
        r"a\.b.example.com",
        r"a\\b.example",
        r"\000\255\032x.example",
        "x" * 63 + ".example",
        "my-host.example",
    ],
)
def test_names_to_wire_matches_dnspython(text: str) -> None:
    expected = dns.name.from_text(text).to_wire()
    assert names.to_wire(text) == expected
    assert names.to_text(expected) == dns.name.from_wire(expected, 0)[0].to_text()
    assert names.to_wire(names.to_text(expected)) == expected
    assert names.lower(expected) == dns.name.from_wire(expected, 0)[0].to_digestable()


@pytest.mark.parametrize(
    "text",
    ["", "a..b", ".a", "a..", "x" * 64 + ".example", "a\\", r"\25", r"\256", r"\2x5", "ä.example", "a\\ä"],
)
def test_names_to_wire_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        names.to_wire(text)


def test_names_to_wire_length_limit() -> None:
    label = "x" * 63
    ok = ".".join([label, label, label, "x" * 61])  # 64*3 + 62 + 1 = 255
    assert len(names.to_wire(ok)) == 255
    with pytest.raises(ValueError):
        names.to_wire(ok + "x")


@pytest.mark.parametrize(
    "data", [b"", b"\x03ab", b"\x03abc", b"\xc0\x0c", b"\x41" + b"a" * 65, b"\x01a\x00\x00", b"\x00\x00"]
)
def test_names_to_text_rejects(data: bytes) -> None:
    with pytest.raises(ValueError):
        names.to_text(data)


def test_names_lower_leaves_length_and_pointer_octets() -> None:
    assert names.lower(b"\x03WWW\x07EXAMPLE\xc0\x0c") == b"\x03www\x07example\xc0\x0c"
    assert names.lower(b"\x02\xc4\xd6\x00") == b"\x02\xc4\xd6\x00"


# --------------------------------------------------------------------------- QDCOUNT ≠ 1 with EDNS, NSID


def test_qdcount_zero_with_cookie_carries_the_opt_record() -> None:
    # RFC 7873 §5.4: QDCOUNT 0 and an OPT record holding only a COOKIE option
    data = struct.pack("!HHHHHH", 7, 0, 0, 0, 0, 1) + opt_rr(option(10, b"c" * 8))
    exc = formerr(data)
    assert isinstance(exc, codec.QuestionCountError) and exc.qdcount == 0
    assert exc.edns is not None and exc.edns.client_cookie == b"c" * 8 and exc.edns.server_cookie is None


def test_qdcount_two_with_edns_carries_the_opt_record() -> None:
    q = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    data = struct.pack("!HHHHHH", 7, 0, 2, 0, 0, 1) + q + q + opt_rr(payload=4096, ttl=0x8000)
    exc = formerr(data)
    assert isinstance(exc, codec.QuestionCountError) and exc.qdcount == 2
    assert exc.edns is not None and exc.edns.payload == 4096 and exc.edns.do


@pytest.mark.parametrize("data", [
    struct.pack("!HHHHHH", 7, 0, 0, 0, 0, 0),  # no OPT
    struct.pack("!HHHHHH", 7, 0, 0, 0, 0, 1) + opt_rr()[:-3],  # truncated OPT
    struct.pack("!HHHHHH", 7, 0, 2, 0, 0, 1) + b"\x03www\x00\x00\x01\x00\x01" + opt_rr(),  # one question short
])
def test_qdcount_not_one_without_a_readable_opt_record(data: bytes) -> None:
    exc = formerr(data)
    assert isinstance(exc, codec.QuestionCountError) and exc.edns is None


def test_qdcount_zero_with_malformed_cookie_is_an_edns_option_error() -> None:
    data = struct.pack("!HHHHHH", 7, 0, 0, 0, 0, 1) + opt_rr(option(10, b"c" * 5))
    assert isinstance(formerr(data), codec.EdnsOptionError)


def test_nsid_option_is_reported() -> None:
    q = assert_matches_dnspython(wire(use_edns=0, options=[dns.edns.GenericOption(3, b"")]))
    assert q.edns is not None and q.edns.nsid
    q = assert_matches_dnspython(wire(use_edns=0))
    assert q.edns is not None and not q.edns.nsid
