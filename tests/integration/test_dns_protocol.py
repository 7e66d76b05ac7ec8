"""Authoritative DNS behaviour, black-box over real UDP and TCP sockets (SPEC.md §3.1,
R-ANS-01..03, R-ANS-51; RFC 1034 §4.3.2, RFC 1035, RFC 2308, RFC 4592, RFC 6604, RFC 6891,
RFC 7873, RFC 8482). One test per behaviour, against the static two-zone fixture of
:mod:`tests.integration.static_zone`.

Every exchange goes through :func:`ask` / :func:`ask_raw`, which check that the reply parses
with dnspython and carries the query ID.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.update
import pytest

from tests.integration.harness import Server
from tests.integration.static_zone import (
    BIG_ADDRS,
    COM_NEG_SOA,
    LONG_TXT,
    NET_NEG_SOA,
    tcp_exchange,
    udp_exchange,
    write_static_zones,
)

NOERROR, NXDOMAIN, REFUSED = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED
FORMERR, NOTIMP, BADVERS = dns.rcode.FORMERR, dns.rcode.NOTIMP, dns.rcode.BADVERS
COOKIE = 10


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d: Path = tmp_path_factory.mktemp("static")
    s = Server(write_static_zones(d), d, geoip=False)
    yield s
    s.stop()


# --- helpers ---------------------------------------------------------------------------------

def make(name: str, rdtype: str | int = "A", *, edns: int | None = 0, payload: int = 1232, rd: bool = False,
         options: list[dns.edns.Option] | None = None, do: bool = False,
         rdclass: int = dns.rdataclass.IN) -> dns.message.QueryMessage:
    q = dns.message.make_query(name, rdtype, rdclass=rdclass, use_edns=False if edns is None else edns,
                               payload=payload, options=options, want_dnssec=do)
    if rd:
        q.flags |= dns.flags.RD
    else:
        q.flags &= ~dns.flags.RD
    return q


def ask_raw(srv: Server, wire: bytes, *, tcp: bool = False) -> tuple[dns.message.Message, bytes]:
    """Send raw query bytes; the parsed reply and its bytes (asserting a reply came, parses and
    echoes the ID)."""
    if tcp:
        out: bytes | None = tcp_exchange(wire, srv.tcp_ports["IAD"])
    else:
        out = udp_exchange(wire, srv.ports["IAD"])
    assert out is not None, "no reply"
    assert out[:2] == wire[:2], "reply does not carry the query ID"
    msg = dns.message.from_wire(out, ignore_trailing=False)
    assert msg.flags & dns.flags.QR
    return msg, out


def ask(srv: Server, q: dns.message.Message | str, rdtype: str | int = "A", *, tcp: bool = False,
        **kw: object) -> dns.message.Message:
    if isinstance(q, str):
        q = make(q, rdtype, **kw)  # type: ignore[arg-type]
    msg, _ = ask_raw(srv, q.to_wire(), tcp=tcp)
    assert msg.id == q.id
    return msg


def rrs(section: list[dns.rrset.RRset]) -> set[tuple[str, int, str, str]]:
    return {(r.name.to_text(), r.ttl, dns.rdatatype.to_text(r.rdtype), rd.to_text()) for r in section for rd in r}


def types(section: list[dns.rrset.RRset]) -> list[str]:
    return [dns.rdatatype.to_text(r.rdtype) for r in section]


def assert_negative(msg: dns.message.Message, rcode: int, soa: tuple[str, int, str, str] = COM_NEG_SOA) -> None:
    assert msg.rcode() == rcode
    assert msg.flags & dns.flags.AA
    assert msg.answer == []
    assert rrs(msg.authority) == {soa}


def header_query(qid: int, flags: int, qd: int, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION_WWW = dns.name.from_text("www.example.com.").to_wire() + struct.pack("!HH", 1, 1)


# --- header flags (R-ANS-01, R-ANS-02) -----------------------------------------------------------

def test_aa_set_on_authoritative_answer(srv):
    r = ask(srv, "www.example.com")
    assert r.rcode() == NOERROR and r.flags & dns.flags.AA
    assert rrs(r.answer) == {("www.example.com.", 300, "A", "192.0.2.80")}


def test_ra_never_set_even_when_recursion_desired(srv):
    r = ask(srv, "www.example.com", rd=True)
    assert not r.flags & dns.flags.RA


@pytest.mark.parametrize("rd", [False, True])
def test_rd_copied(srv, rd):
    r = ask(srv, "www.example.com", rd=rd)
    assert bool(r.flags & dns.flags.RD) is rd


@pytest.mark.parametrize("flag", [dns.flags.CD, dns.flags.AD, 0x0040])  # 0x0040: the Z bit
def test_cd_ad_and_z_cleared(srv, flag):
    q = make("www.example.com")
    q.flags |= flag
    r = ask(srv, q)
    assert not r.flags & (dns.flags.CD | dns.flags.AD | 0x0040)
    assert r.rcode() == NOERROR


def test_question_echoed_with_client_letter_case(srv):
    r = ask(srv, "WwW.ExAmPlE.cOm")
    assert r.question[0].name.to_text() == "WwW.ExAmPlE.cOm."
    assert r.answer[0].name.to_text() == "WwW.ExAmPlE.cOm."


def test_answer_owner_compressed_to_question(srv):
    q = make("WwW.ExAmPlE.cOm", edns=None)
    _, wire = ask_raw(srv, q.to_wire())
    question = dns.name.from_text("WwW.ExAmPlE.cOm.").to_wire()
    assert wire[12:12 + len(question)] == question  # the client's spelling, byte for byte
    assert wire[12 + len(question) + 4:][:2] == b"\xc0\x0c"  # first answer owner → offset 12


def test_negative_answer_echoes_client_case(srv):
    r = ask(srv, "NoPe.ExAmPlE.CoM")
    assert r.rcode() == NXDOMAIN
    assert r.question[0].name.to_text() == "NoPe.ExAmPlE.CoM."


@pytest.mark.parametrize("name,rdtype", [("www.example.com", "A"), ("chain-a.example.com", "A"),
                                         ("nope.example.com", "A"), ("sub.example.com", "A"),
                                         ("example.com", "TXT"), ("foo.w.example.com", "A")])
def test_udp_and_tcp_answers_identical(srv, name, rdtype):
    u = ask(srv, name, rdtype)
    t = ask(srv, name, rdtype, tcp=True)
    assert (u.rcode(), u.flags) == (t.rcode(), t.flags)
    for a, b in ((u.answer, t.answer), (u.authority, t.authority), (u.additional, t.additional)):
        assert rrs(a) == rrs(b)


# --- ordinary data ---------------------------------------------------------------------------------

def test_apex_soa_ns_mx(srv):
    assert types(ask(srv, "example.com", "SOA").answer) == ["SOA"]
    assert rrs(ask(srv, "example.com", "NS").answer) == {("example.com.", 3600, "NS", "ns1.example.com.")}
    assert rrs(ask(srv, "example.com", "MX").answer) == {("example.com.", 3600, "MX", "10 mail.example.com.")}


def test_soa_answer_has_full_ttl(srv):
    r = ask(srv, "example.com", "SOA")
    assert r.answer[0].ttl == 3600


def test_aaaa(srv):
    assert rrs(ask(srv, "www.example.com", "AAAA").answer) == {("www.example.com.", 300, "AAAA", "2001:db8::80")}


def test_long_txt_split_into_character_strings(srv):
    r = ask(srv, "example.com", "TXT")
    strings = sorted(rd.strings for rd in r.answer[0])
    long_ = next(s for s in strings if len(s) > 1)
    assert [len(s) for s in long_] == [255, 45]
    assert b"".join(long_) == LONG_TXT.encode()
    assert (b"v=spf1 -all",) in strings


# --- negative answers (RFC 2308) ---------------------------------------------------------------------

def test_nxdomain_carries_soa_with_minimum_ttl(srv):
    assert_negative(ask(srv, "nope.example.com"), NXDOMAIN)


def test_nodata_carries_soa_with_minimum_ttl(srv):
    assert_negative(ask(srv, "www.example.com", "TXT"), NOERROR)


def test_negative_ttl_is_soa_ttl_when_smaller_than_minimum(srv):
    assert_negative(ask(srv, "nope.example.net"), NXDOMAIN, NET_NEG_SOA)
    assert_negative(ask(srv, "target.example.net", "AAAA"), NOERROR, NET_NEG_SOA)


def test_empty_non_terminal_is_nodata(srv):
    assert_negative(ask(srv, "b.c.example.com"), NOERROR)


def test_empty_non_terminal_two_levels_up_is_nodata(srv):
    assert_negative(ask(srv, "c.example.com", "TXT"), NOERROR)


def test_name_below_empty_non_terminal_is_nxdomain(srv):
    assert_negative(ask(srv, "x.b.c.example.com"), NXDOMAIN)
    assert_negative(ask(srv, "deeper.x.b.c.example.com"), NXDOMAIN)


def test_name_below_existing_leaf_is_nxdomain(srv):
    assert_negative(ask(srv, "below.www.example.com"), NXDOMAIN)


# --- wildcards (RFC 4592) -----------------------------------------------------------------------------

def test_wildcard_synthesised_with_query_name_as_owner(srv):
    r = ask(srv, "Foo.W.example.com")
    assert r.rcode() == NOERROR and r.flags & dns.flags.AA
    assert rrs(r.answer) == {("Foo.W.example.com.", 300, "A", "192.0.2.77")}
    assert r.answer[0].name.to_text() == "Foo.W.example.com."


def test_wildcard_matches_several_labels(srv):
    assert rrs(ask(srv, "a.b.w.example.com").answer) == {("a.b.w.example.com.", 300, "A", "192.0.2.77")}


def test_wildcard_does_not_cover_existing_name(srv):
    assert rrs(ask(srv, "real.w.example.com").answer) == {("real.w.example.com.", 300, "A", "192.0.2.78")}


def test_wildcard_does_not_cover_existing_name_for_other_types(srv):
    # real.w exists (A only): a TXT query is NODATA there, never the wildcard
    assert_negative(ask(srv, "real.w.example.com", "TXT"), NOERROR)


def test_wildcard_does_not_cover_empty_non_terminal(srv):
    assert_negative(ask(srv, "e.w.example.com"), NOERROR)


def test_name_below_empty_non_terminal_under_wildcard_is_nxdomain(srv):
    # closest encloser is e.w, which has no wildcard child (RFC 4592 §3.3.1)
    assert_negative(ask(srv, "z.e.w.example.com"), NXDOMAIN)


def test_wildcard_match_of_other_type_is_nodata(srv):
    assert_negative(ask(srv, "foo.w.example.com", "AAAA"), NOERROR)


def test_wildcard_does_not_match_its_parent(srv):
    assert_negative(ask(srv, "w.example.com"), NOERROR)


def test_wildcard_owner_queried_literally(srv):
    assert rrs(ask(srv, "*.w.example.com").answer) == {("*.w.example.com.", 300, "A", "192.0.2.77")}


def test_wildcard_cname_synthesised_and_chased(srv):
    r = ask(srv, "Any.CW.example.com")
    assert [(x.name.to_text(), types([x])[0]) for x in r.answer] == [
        ("Any.CW.example.com.", "CNAME"), ("www.example.com.", "A")]
    assert r.answer[1][0].to_text() == "192.0.2.80"


def test_wildcard_cname_for_qtype_cname(srv):
    r = ask(srv, "any.cw.example.com", "CNAME")
    assert rrs(r.answer) == {("any.cw.example.com.", 300, "CNAME", "www.example.com.")}

# --- CNAME (RFC 1034 §4.3.2, RFC 6604; R-ANS-12) --------------------------------------------------------

def test_cname_chain_followed_inside_zone(srv):
    r = ask(srv, "chain-a.example.com")
    assert r.rcode() == NOERROR and r.flags & dns.flags.AA
    assert [(x.name.to_text(), types([x])[0]) for x in r.answer] == [
        ("chain-a.example.com.", "CNAME"), ("chain-b.example.com.", "CNAME"), ("chain-c.example.com.", "A")]
    assert r.answer[-1][0].to_text() == "192.0.2.3"


def test_cname_chain_across_served_zones(srv):
    r = ask(srv, "xz.example.com")
    assert rrs(r.answer) == {("xz.example.com.", 300, "CNAME", "target.example.net."),
                             ("target.example.net.", 300, "A", "198.51.100.7")}
    r = ask(srv, "hop.example.net")
    assert rrs(r.answer) == {("hop.example.net.", 300, "CNAME", "chain-c.example.com."),
                             ("chain-c.example.com.", 300, "A", "192.0.2.3")}


def test_cname_to_out_of_zone_target_not_chased(srv):
    r = ask(srv, "out.example.com")
    assert r.rcode() == NOERROR and r.flags & dns.flags.AA
    assert rrs(r.answer) == {("out.example.com.", 300, "CNAME", "www.example.org.")}
    assert r.authority == []


def test_cname_loop_terminates(srv):
    q = make("loop-x.example.com")
    r, wire = ask_raw(srv, q.to_wire())
    ancount = struct.unpack("!H", wire[6:8])[0]
    assert 1 <= ancount <= 8
    assert r.rcode() in (NOERROR, dns.rcode.SERVFAIL)
    assert all(x.rdtype == dns.rdatatype.CNAME for x in r.answer)


def test_qtype_cname_returns_the_cname_itself(srv):
    r = ask(srv, "chain-a.example.com", "CNAME")
    assert rrs(r.answer) == {("chain-a.example.com.", 300, "CNAME", "chain-b.example.com.")}


def test_cname_chain_ending_in_nxdomain(srv):
    r = ask(srv, "dangling.example.com")
    assert r.rcode() == NXDOMAIN and r.flags & dns.flags.AA
    assert rrs(r.answer) == {("dangling.example.com.", 300, "CNAME", "nothere.example.com.")}
    assert rrs(r.authority) == {COM_NEG_SOA}


def test_cname_chain_ending_in_nxdomain_of_other_zone(srv):
    r = ask(srv, "dangling-net.example.com")
    assert r.rcode() == NXDOMAIN
    assert types(r.answer) == ["CNAME"]
    assert rrs(r.authority) == {NET_NEG_SOA}


def test_cname_chain_ending_in_nodata(srv):
    r = ask(srv, "chain-a.example.com", "AAAA")
    assert r.rcode() == NOERROR
    assert types(r.answer) == ["CNAME", "CNAME"]
    assert rrs(r.authority) == {COM_NEG_SOA}


def test_cname_chain_across_zones_ending_in_nodata(srv):
    q = make("xz.example.com", "TXT")
    r = ask(srv, q)
    assert types(r.answer) == ["CNAME"]
    assert rrs(r.authority) == {NET_NEG_SOA}


# --- delegations (RFC 1034 §4.3.2 step 3b) ---------------------------------------------------------------

REFERRAL_NS = {("sub.example.com.", 3600, "NS", "ns.sub.example.com.")}
REFERRAL_GLUE = {("ns.sub.example.com.", 3600, "A", "192.0.2.53")}


@pytest.mark.parametrize("name,rdtype", [("sub.example.com", "A"), ("host.sub.example.com", "A"),
                                         ("deep.host.sub.example.com", "AAAA"), ("ns.sub.example.com", "A"),
                                         ("sub.example.com", "NS")])
def test_referral_at_or_below_cut(srv, name, rdtype):
    r = ask(srv, name, rdtype)
    assert r.rcode() == NOERROR
    assert not r.flags & dns.flags.AA
    assert r.answer == []
    assert rrs(r.authority) == REFERRAL_NS
    assert rrs(r.additional) == REFERRAL_GLUE


def test_referral_over_tcp(srv):
    r = ask(srv, "host.sub.example.com", tcp=True)
    assert not r.flags & dns.flags.AA and rrs(r.authority) == REFERRAL_NS


def test_ds_at_cut_answered_by_parent(srv):
    # DS lives on the parent side of the cut (RFC 4035 §3.1.4.1): no referral, an
    # authoritative NODATA (no DS records are served)
    assert_negative(ask(srv, "sub.example.com", "DS"), NOERROR)


def test_ds_below_cut_is_referral(srv):
    r = ask(srv, "host.sub.example.com", "DS")
    assert not r.flags & dns.flags.AA and rrs(r.authority) == REFERRAL_NS


# --- REFUSED / FORMERR / NOTIMP / dropped (R-ANS-02) --------------------------------------------------

@pytest.mark.parametrize("name", ["www.example.org", "com", ".", "example.com.evil.test", "xexample.com"])
def test_refused_outside_served_zones(srv, name):
    r = ask(srv, name)
    assert r.rcode() == REFUSED
    assert not r.flags & dns.flags.AA
    assert r.answer == [] and r.authority == []


@pytest.mark.parametrize("rdclass", [dns.rdataclass.CH, dns.rdataclass.ANY, dns.rdataclass.HS])
def test_refused_for_non_in_class(srv, rdclass):
    r = ask(srv, make("www.example.com", "TXT", rdclass=rdclass))
    assert r.rcode() == REFUSED and r.answer == []


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
@pytest.mark.parametrize("tcp", [False, True])
def test_zone_transfers_refused(srv, rdtype, tcp):
    r = ask(srv, make("example.com", rdtype), tcp=tcp)
    assert r.rcode() == REFUSED and r.answer == []


@pytest.mark.parametrize("qdcount", [0, 2])
def test_formerr_for_qdcount_not_one(srv, qdcount):
    body = QUESTION_WWW * qdcount
    r, _ = ask_raw(srv, header_query(0x1234, 0, qdcount) + body)
    assert r.rcode() == FORMERR


def test_formerr_for_truncated_question(srv):
    r, _wire = ask_raw(srv, header_query(0x4242, 0x0100, 1) + QUESTION_WWW[:-3])
    assert r.rcode() == FORMERR
    assert r.flags & dns.flags.RD  # RD copied even on FORMERR


def test_formerr_for_garbage_after_question(srv):
    r, _ = ask_raw(srv, header_query(0x4243, 0, 1) + QUESTION_WWW + b"\x01\x02\x03")
    assert r.rcode() == FORMERR


def test_formerr_for_compression_pointer_in_question(srv):
    r, _ = ask_raw(srv, header_query(0x4244, 0, 1) + b"\xc0\x0c" + struct.pack("!HH", 1, 1))
    assert r.rcode() == FORMERR


def test_formerr_reply_not_larger_than_query(srv):
    data = header_query(0x4245, 0, 2) + QUESTION_WWW * 2
    _, wire = ask_raw(srv, data)
    assert len(wire) <= len(data)


@pytest.mark.parametrize("data", [b"", b"\x12", b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00"])
def test_packets_shorter_than_header_dropped(srv, data):
    assert udp_exchange(data, srv.ports["IAD"], timeout=0.3) is None


def test_responses_are_dropped(srv):
    q = make("www.example.com")
    q.flags |= dns.flags.QR
    assert udp_exchange(q.to_wire(), srv.ports["IAD"], timeout=0.3) is None


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.STATUS, dns.opcode.IQUERY])
def test_notimp_for_other_opcodes(srv, opcode):
    q = make("example.com", "SOA", edns=None)
    q.set_opcode(opcode)
    r = ask(srv, q)
    assert r.rcode() == NOTIMP
    assert r.opcode() == opcode


def test_notimp_for_update(srv):
    u = dns.update.UpdateMessage("example.com")
    u.add("new", 300, "A", "192.0.2.9")
    u.delete("www")
    r = ask(srv, u)
    assert r.rcode() == NOTIMP
    assert r.opcode() == dns.opcode.UPDATE


def test_notimp_for_dso_without_question(srv):
    # RFC 8490 §5.1: a DSO message has QDCOUNT 0; a server without DSO answers NOTIMP
    r, _ = ask_raw(srv, header_query(0x5151, 6 << 11, 0))
    assert r.rcode() == NOTIMP


# --- EDNS(0) (R-ANS-03; RFC 6891, RFC 3225, RFC 7873) ---------------------------------------------------------

@pytest.mark.parametrize("name,rdtype,rcode", [
    ("www.example.com", "A", NOERROR), ("nope.example.com", "A", NXDOMAIN), ("www.example.com", "TXT", NOERROR),
    ("www.example.org", "A", REFUSED), ("example.com", "AXFR", REFUSED), ("sub.example.com", "A", NOERROR),
])
def test_opt_in_every_response_to_edns_query(srv, name, rdtype, rcode):
    r = ask(srv, name, rdtype, payload=4096)
    assert r.rcode() == rcode
    assert r.edns == 0
    assert r.payload == 1232


def test_opt_in_notimp_response(srv):
    q = make("example.com", "SOA")
    q.set_opcode(dns.opcode.NOTIFY)
    r = ask(srv, q)
    assert r.rcode() == NOTIMP and r.edns == 0 and r.payload == 1232


def test_no_opt_without_edns(srv):
    for name in ("www.example.com", "nope.example.com", "www.example.org"):
        r = ask(srv, name, edns=None)
        assert r.edns == -1 and r.opt is None


def test_badvers_for_edns_version_1(srv):
    r = ask(srv, make("www.example.com", edns=1))
    assert r.rcode() == BADVERS
    assert r.edns == 0  # the response speaks the highest version we implement
    assert r.answer == []


def test_unknown_edns_options_ignored(srv):
    opts = [dns.edns.GenericOption(65001, b"\x01\x02\x03"), dns.edns.GenericOption(3, b"")]  # local-use, NSID
    r = ask(srv, "www.example.com", options=opts)
    assert r.rcode() == NOERROR
    assert rrs(r.answer) == {("www.example.com.", 300, "A", "192.0.2.80")}
    assert all(o.otype not in (65001, 3) for o in r.options)


@pytest.mark.parametrize("do", [False, True])
def test_do_bit_copied(srv, do):
    r = ask(srv, "www.example.com", do=do)
    assert bool(r.ednsflags & dns.flags.DO) is do


def test_small_edns_payload_is_raised_to_512(srv):
    r = ask(srv, "www.example.com", payload=100)
    assert r.rcode() == NOERROR and not r.flags & dns.flags.TC and r.answer


def _cookie(msg: dns.message.Message) -> bytes | None:
    for o in msg.options:
        if o.otype == COOKIE:
            return o.to_wire() if hasattr(o, "to_wire") else None
    return None


def test_client_cookie_gets_server_cookie(srv):
    client = os.urandom(8)
    r = ask(srv, "www.example.com", options=[dns.edns.GenericOption(COOKIE, client)])
    assert r.rcode() == NOERROR and r.answer
    cookie = _cookie(r)
    assert cookie is not None and len(cookie) == 16
    assert cookie[:8] == client


def test_server_cookie_is_stable_and_accepted_back(srv):
    client = os.urandom(8)
    first = _cookie(ask(srv, "www.example.com", options=[dns.edns.GenericOption(COOKIE, client)]))
    assert first is not None
    r = ask(srv, "www.example.com", options=[dns.edns.GenericOption(COOKIE, first)])
    assert r.rcode() == NOERROR and r.answer
    assert _cookie(r) == first


def test_cookie_on_error_responses(srv):
    client = os.urandom(8)
    r = ask(srv, "www.example.org", options=[dns.edns.GenericOption(COOKIE, client)])
    assert r.rcode() == REFUSED
    cookie = _cookie(r)
    assert cookie is not None and cookie[:8] == client


def test_malformed_cookie_is_formerr_with_opt(srv):
    q = make("www.example.com", options=[dns.edns.GenericOption(COOKIE, b"\x01\x02\x03")])
    r, wire = ask_raw(srv, q.to_wire())
    assert r.rcode() == FORMERR
    assert r.edns == 0 and r.payload == 1232  # the query had EDNS, so the reply has an OPT (RFC 6891 §7)
    assert len(wire) < len(q.to_wire())


@pytest.mark.parametrize("ecs", [
    b"\x00\x01\x18\x05\xc0\x00\x02",  # SCOPE PREFIX-LENGTH != 0
    b"\x00\x03\x18\x00\xc0\x00\x02",  # FAMILY 3
    b"\x00\x01\x21\x00\xc0\x00\x02\x00\x00",  # /33 for IPv4
    b"\x00\x01\x18\x00\xc0\x00",  # ADDRESS too short for /24
    b"\x00\x01\x14\x00\xc0\x00\x0f",  # bits set beyond /20
])
def test_malformed_ecs_is_formerr_with_opt(srv, ecs):
    q = make("www.example.com", options=[dns.edns.GenericOption(8, ecs)])
    r, wire = ask_raw(srv, q.to_wire())
    assert r.rcode() == FORMERR  # RFC 7871 §7.1.1 (SPEC.md R-ANS-03)
    assert r.edns == 0 and r.payload == 1232
    assert r.answer == []
    assert len(wire) < len(q.to_wire())


def test_formerr_without_opt_for_a_query_without_edns(srv):
    r, _ = ask_raw(srv, header_query(0x4246, 0, 2) + QUESTION_WWW * 2)
    assert r.rcode() == FORMERR and r.opt is None


# --- truncation (R-ANS-03, R-ANS-51) ---------------------------------------------------------------------------

def test_udp_without_edns_truncates_large_answer(srv):
    r, wire = ask_raw(srv, make("big.example.com", edns=None).to_wire())
    assert r.flags & dns.flags.TC
    assert r.answer == [] and r.authority == [] and r.additional == []
    assert len(wire) <= 512
    assert r.question[0].name.to_text() == "big.example.com."


def test_udp_with_edns_1232_fits_large_answer(srv):
    r, wire = ask_raw(srv, make("big.example.com", payload=1232).to_wire())
    assert not r.flags & dns.flags.TC
    assert {rd.to_text() for rd in r.answer[0]} == set(BIG_ADDRS)
    assert 512 < len(wire) <= 1232


def test_udp_with_edns_payload_512_truncates(srv):
    r, wire = ask_raw(srv, make("big.example.com", payload=512).to_wire())
    assert r.flags & dns.flags.TC and r.answer == []
    assert r.edns == 0  # the OPT survives truncation
    assert len(wire) <= 512


def test_udp_limit_is_our_payload_when_client_offers_more(srv):
    r, wire = ask_raw(srv, make("bigtxt.example.com", "TXT", payload=4096).to_wire())
    assert r.flags & dns.flags.TC and r.answer == []
    assert len(wire) <= 1232


@pytest.mark.parametrize("name,rdtype,count", [("big.example.com", "A", 40), ("bigtxt.example.com", "TXT", 12)])
def test_tcp_returns_everything(srv, name, rdtype, count):
    r = ask(srv, make(name, rdtype, edns=None), tcp=True)
    assert not r.flags & dns.flags.TC
    assert len(r.answer[0]) == count


# --- ANY (RFC 8482) ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tcp", [False, True])
def test_any_at_apex_is_minimal(srv, tcp):
    r = ask(srv, "example.com", "ANY", tcp=tcp)
    assert r.rcode() == NOERROR and r.flags & dns.flags.AA
    assert len(r.answer) == 1  # one RRset, never SOA+NS+MX+TXT
    assert r.answer[0].rdtype != dns.rdatatype.ANY


def test_any_at_name_with_two_rrsets_is_minimal(srv):
    r = ask(srv, "www.example.com", "ANY")
    assert len(r.answer) == 1 and types(r.answer)[0] in ("A", "AAAA", "HINFO")


def test_any_at_missing_name_is_nxdomain(srv):
    assert_negative(ask(srv, "nope.example.com", "ANY"), NXDOMAIN)


def test_any_at_empty_non_terminal_is_nodata(srv):
    assert_negative(ask(srv, "b.c.example.com", "ANY"), NOERROR)



# --- the UDP packet memo gives the strict path's bytes (server/handler.py) ---------------------

_MEMO_CASES = [
    make("www.example.com"), make("WwW.ExAmPlE.cOm", "AAAA"), make("www.example.com", rd=True),
    make("www.example.com", edns=None), make("big.example.com", edns=None),  # TC at 512
    make("big.example.com", payload=600), make("big.example.com", payload=4096, do=True),
    make("nonexistent.example.com"), make("x.e.w.example.com", "TXT"), make("e.w.example.com"),
    make("anything.w.example.com"), make("chain-a.example.com"), make("dangling.example.com"),
    make("loop-x.example.com"), make("host.sub.example.com"), make("example.com", "ANY"),
    make("example.com", "MX"), make("bigtxt.example.com", "TXT", payload=512),
    make("www.example.org"),  # REFUSED (not served)
]


@pytest.mark.parametrize("query", _MEMO_CASES, ids=lambda q: f"{q.question[0].name}/{q.question[0].rdtype}")
def test_repeated_udp_query_gets_identical_bytes(srv, query):
    """The first answer comes from the strict path, later ones from the static memo and then the
    packet memo: apart from the message ID every byte is the same."""
    wire = bytearray(query.to_wire())
    replies = []
    for qid in (0x1111, 0x2222, 0x3333, 0x4444):
        wire[:2] = qid.to_bytes(2, "big")
        _msg, out = ask_raw(srv, bytes(wire))
        assert out[:2] == qid.to_bytes(2, "big")
        replies.append(out[2:])
    assert all(r == replies[0] for r in replies), "a repeated query was answered differently"
    _msg, tcp_out = ask_raw(srv, bytes(wire), tcp=True)  # TCP (never memoised) agrees unless truncated
    if not dns.message.from_wire(b"\0\0" + replies[0]).flags & dns.flags.TC:
        assert tcp_out[2:] == replies[0]


def test_plan_answers_cookies_and_ecs_per_client(srv):
    """Server cookies depend on the client address and ECS answers echo the client's subnet:
    the serving plan keeps the answer by name, never by query bytes, so each client gets its
    own cookie and its own subnet echoed, as the strict path gives them."""
    handler = srv.app.handler
    client = os.urandom(8)
    cookie_q = make("www.example.com", options=[dns.edns.GenericOption(COOKIE, client)])
    ecs_q = make("www.example.com", options=[dns.edns.ECSOption("192.0.2.0", 24)])
    plain = make("www.example.com", payload=1400)
    for q in (cookie_q, ecs_q, plain):
        for _ in range(3):
            ask(srv, q)
        wire = q.to_wire()
        strict = handler.strict(wire, "127.0.0.1", False, srv.app.pops["IAD"], srv.app.ref.current)
        assert ask_raw(srv, wire)[1] == strict
    plan = srv.app.ref.current.plan
    assert not any(client in key for key in plan.names), "a cookie was kept"
    assert all(len(key) <= 259 for key in plan.names)


def test_plan_keeps_names_not_queries(srv):
    """A query padded with a large unknown EDNS option is answered (by the strict path), and the
    plan's keys stay names whatever clients send."""
    big = make("www.example.com", options=[dns.edns.GenericOption(65001, os.urandom(1000))])
    for _ in range(3):
        assert ask(srv, big).rcode() == NOERROR
    assert all(len(key) <= 259 for key in srv.app.ref.current.plan.names)
