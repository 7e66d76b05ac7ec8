"""Differential fuzzing of the hot-path wire codec against two independent DNS libraries,
dnspython and dnslib (hypothesis generates and mutates the messages; a few hundred examples per
property, a few seconds in all).

The server under test is a real :class:`~lbdns.server.handler.Handler` over a snapshot of the
zone of ``tests/integration/test_dns_answers.py`` (every record type, a DNAME, delegations, load
balancers with HTTPS and ``max_answers``), called in process with the raw bytes.

* Every message that dnspython or dnslib parses as a query (QR=0) gets an answer — never a drop.
  The answer is FORMERR only when the RFCs allow it, judged independently of lbdns: QDCOUNT ≠ 1,
  an ECS option that RFC 7871 §6/§7.2.1 rejects, a COOKIE option of a length RFC 7873 §5.2.2
  rejects, a repeated ECS or COOKIE option, or a message the strict oracle (dnspython) rejects as
  malformed (trailing octets, bad pointers, OPT misuse…).
* Every response lbdns renders parses in both libraries, and both read the same thing: header
  bits, question, every record (owner, type, class, TTL, RDATA in canonical form) and the OPT
  record (payload, extended rcode, version, DO, options).
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

dnslib = pytest.importorskip("dnslib", reason="dnslib is a test dependency (pip install -e '.[test]')")

from lbdns.config.settings import ServerSettings  # noqa: E402
from lbdns.config.validate import load_config  # noqa: E402
from lbdns.health.view import HealthView, OriginHealth, OriginState  # noqa: E402
from lbdns.server.handler import Handler  # noqa: E402
from lbdns.server.state import Current, StateRef  # noqa: E402
from lbdns.snapshot import build_snapshot  # noqa: E402
from tests.fixtures.geo import BASE_POPS  # noqa: E402
from tests.integration.test_dns_answers import account, answers_zone, net_zone  # noqa: E402

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.function_scoped_fixture])
POP = BASE_POPS["IAD"]
FORMERR, NOTIMP = 1, 4


@pytest.fixture(scope="module")
def handler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Handler]:
    zones: Path = tmp_path_factory.mktemp("diff") / "zones"
    zones.mkdir()
    (zones / "_account.yaml").write_text(yaml.safe_dump(account(), sort_keys=False))
    (zones / "example.com.yaml").write_text(yaml.safe_dump(answers_zone(), sort_keys=False))
    (zones / "example.net.yaml").write_text(yaml.safe_dump(net_zone(), sort_keys=False))
    settings_ = ServerSettings(nsid="diff-1")
    snap = build_snapshot(load_config(zones, settings_), settings_)
    states = {(pid, o.name): OriginHealth(OriginState.HEALTHY, "ok")
              for pid, pool in snap.config.pools.items() for o in pool.origins}
    ref = StateRef(Current(snap, HealthView(1, MappingProxyType(states))))
    yield Handler(ref, rng=random.Random(7))


# --------------------------------------------------------------------------- generation

NAMES = ["example.com", "www.example.com", "lb.example.com", "mx-lb.example.com", "many.example.com",
         "x.dn.example.com", "dn.example.com", "sub.example.com", "a.sub.example.com", "svc.example.com",
         "_443._tcp.www.example.com", "geo.example.com", "naptr.example.com", "bigmx.example.com",
         "nope.example.com", "www.example.net", "example.org", "ruled.example.com", "."]
QTYPES = [1, 2, 5, 6, 13, 15, 16, 28, 29, 33, 35, 39, 43, 44, 52, 64, 65, 99, 255, 256, 257, 251, 252]


@st.composite
def options(draw: st.DrawFn) -> list[dns.edns.Option]:
    out: list[dns.edns.Option] = []
    for kind in draw(st.lists(st.sampled_from(["ecs", "ecs6", "cookie", "nsid", "other", "raw"]), max_size=3)):
        if kind == "ecs":
            out.append(dns.edns.ECSOption(str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))),
                                          draw(st.integers(0, 32))))
        elif kind == "ecs6":
            out.append(dns.edns.ECSOption(str(ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1)))),
                                          draw(st.integers(0, 128))))
        elif kind == "cookie":
            out.append(dns.edns.GenericOption(10, draw(st.sampled_from([b"c" * 8, b"c" * 8 + b"s" * 8, b"c" * 5,
                                                                         b"c" * 24]))))
        elif kind == "nsid":
            out.append(dns.edns.GenericOption(3, b""))
        elif kind == "other":
            out.append(dns.edns.GenericOption(draw(st.integers(11, 65000)), draw(st.binary(max_size=8))))
        else:
            out.append(dns.edns.GenericOption(8, draw(st.binary(max_size=12))))
    return out


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    name = draw(st.one_of(st.sampled_from(NAMES), st.from_regex(r"[a-zA-Z0-9-]{1,20}\.example\.com", fullmatch=True)))
    use_edns = draw(st.sampled_from([False, 0, 0, 0, 1]))
    q = dns.message.make_query(name, draw(st.sampled_from(QTYPES)), rdclass=draw(st.sampled_from([1, 1, 1, 3, 255])),
                               use_edns=use_edns, payload=draw(st.sampled_from([512, 1232, 4096, 100])),
                               want_dnssec=draw(st.booleans()),
                               options=draw(options()) if use_edns is not False else None)
    q.id = draw(st.integers(0, 65535))
    q.flags = draw(st.sampled_from([0, dns.flags.RD, dns.flags.CD, dns.flags.AD | dns.flags.RD]))
    if draw(st.integers(0, 9)) == 0:
        q.set_opcode(draw(st.sampled_from([1, 2, 4, 5, 6])))
    wire = q.to_wire()
    shape = draw(st.integers(0, 9))
    if shape == 0:  # QDCOUNT 0: drop the question (the RFC 7873 §5.4 shape when a cookie is present)
        qlen = len(q.question[0].name.to_wire() or b"") + 4
        wire = wire[:4] + b"\x00\x00" + wire[6:12] + wire[12 + qlen:]
    elif shape == 1:  # QDCOUNT 2
        qlen = len(q.question[0].name.to_wire() or b"") + 4
        wire = wire[:4] + b"\x00\x02" + wire[6:12] + wire[12:12 + qlen] * 2 + wire[12 + qlen:]
    return wire


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(queries()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == 0 and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == 2 and len(data) > 12:
            del data[pos:pos + draw(st.integers(1, 4))]
        else:
            data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


# --------------------------------------------------------------------------- the two oracles


def parse_dnspython(wire: bytes) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(wire, ignore_trailing=False)
    except Exception:
        return None


def parse_dnslib(wire: bytes) -> Any:
    try:
        return dnslib.DNSRecord.parse(wire)
    except Exception:
        return None


def _labels(labels: Any) -> tuple[bytes, ...]:
    return tuple(bytes(x).lower() for x in labels if x)


def _canonical(rdtype: int, wire: bytes) -> bytes:
    return dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RdataType(rdtype), wire, 0, len(wire)).to_digestable()


def view_dnspython(m: dns.message.Message) -> tuple[Any, ...]:
    """What dnspython reads: header bits, question, records (sorted), OPT."""
    sections = []
    for section in (m.answer, m.authority, m.additional):
        sections.append(sorted((_labels(rrset.name.labels), rrset.rdtype, rrset.rdclass, rrset.ttl,
                                rd.to_digestable()) for rrset in section for rd in rrset))
    opt = None
    if m.edns >= 0:
        opt = (m.payload, (m.ednsflags >> 24) & 0xFF, m.edns, bool(m.ednsflags & dns.flags.DO),
               [(o.otype, o.to_wire()) for o in m.options])
    return (m.id, m.flags & 0xFFF0, m.rcode() & 0xF, [(_labels(q.name.labels), q.rdtype, q.rdclass)
                                                      for q in m.question], *sections, opt)


def view_dnslib(r: Any) -> tuple[Any, ...]:
    """What dnslib reads, in the same shape as :func:`view_dnspython`."""
    h = r.header
    flags = (h.qr << 15) | (h.opcode << 11) | (h.aa << 10) | (h.tc << 9) | (h.rd << 8) | (h.ra << 7) | (
        h.bitmap & 0x70)
    sections = []
    opt = None
    for section in (r.rr, r.auth, r.ar):
        rows = []
        for rr in section:
            if rr.rtype == 41:
                opt = (rr.rclass, (rr.ttl >> 24) & 0xFF, (rr.ttl >> 16) & 0xFF, bool(rr.ttl & 0x8000),
                       [(o.code, bytes(o.data)) for o in rr.rdata])
                continue
            buf = dnslib.DNSBuffer()
            rr.rdata.pack(buf)
            rows.append((_labels(rr.rname.label), rr.rtype, rr.rclass, rr.ttl, _canonical(rr.rtype, bytes(buf.data))))
        sections.append(sorted(rows))
    return (h.id, flags, h.rcode & 0xF, [(_labels(q.qname.label), q.qtype, q.qclass) for q in r.questions],
            *sections, opt)


# --------------------------------------------------------------------------- RFC judgement, independent of lbdns


def _options_ok(rdata: bytes) -> bool:
    """Whether an OPT RDATA holds well-formed ECS and COOKIE options, each at most once
    (RFC 7871 §6, §7.2.1; RFC 7873 §5.2.2)."""
    seen: set[int] = set()
    pos = 0
    while pos + 4 <= len(rdata):
        code, length = struct.unpack_from("!HH", rdata, pos)
        data = rdata[pos + 4:pos + 4 + length]
        pos += 4 + length
        if len(data) != length:
            return False
        if code in (8, 10):
            if code in seen:
                return False
            seen.add(code)
        if code == 10 and not (length == 8 or 16 <= length <= 40):
            return False
        if code == 8:
            if length < 4:
                return False
            family, source, scope = struct.unpack_from("!HBB", data)
            width = {1: 32, 2: 128}.get(family)
            if width is None or source > width or scope != 0 or len(data) - 4 != (source + 7) // 8:
                return False
            if source % 8 and data[-1] & (0xFF >> (source % 8)):
                return False
    return pos == len(rdata)


def formerr_allowed(wire: bytes, strict: dns.message.Message | None) -> bool:
    """May a query be answered FORMERR? QDCOUNT ≠ 1, a message the strict oracle rejects, or
    EDNS (version 0) options that RFC 7871/7873 reject."""
    if len(wire) >= 6 and struct.unpack_from("!H", wire, 4)[0] != 1:
        return True
    if strict is None:
        return True
    if strict.edns == 0:
        opt_rdata = b"".join(struct.pack("!HH", o.otype, len(o.to_wire())) + o.to_wire() for o in strict.options)
        return not _options_ok(opt_rdata)
    return False


def out_question_end(out: bytes) -> int:
    """Offset just past the (uncompressed) question of a response with QDCOUNT 1."""
    off = 12
    while off < len(out) and out[off]:
        off += out[off] + 1
    return off + 5


def check(handler: Handler, wire: bytes, tcp: bool) -> None:
    strict = parse_dnspython(wire)
    lenient = parse_dnslib(wire)
    out = handler.handle(wire, "192.0.2.200", tcp, POP)
    is_query = len(wire) >= 12 and not wire[2] & 0x80
    if (strict is not None or lenient is not None) and is_query:
        assert out is not None, "a query one oracle parses was dropped"
    if out is None:
        return
    assert out[:2] == wire[:2] and out[2] & 0x80
    if not tcp:
        assert len(out) <= 1232
    a, b = parse_dnspython(out), parse_dnslib(out)
    echoed = out[12:].startswith(wire[12:out_question_end(out)]) and out[4:6] != b"\x00\x00"
    if b is None and lenient is None and echoed:
        pass  # dnslib rejects the client's own question (e.g. a label with octets ≥ 0x80), echoed as is
    else:
        assert b is not None, f"dnslib cannot parse the response {out.hex()}"
    if (out[2] >> 3) & 0xF == 5:
        return  # an UPDATE reply: dnspython reads its first section as the zone (SOA only)
    assert a is not None, f"dnspython cannot parse the response {out.hex()}"
    if b is not None:
        assert view_dnspython(a) == view_dnslib(b)
    rcode = a.rcode() & 0xF
    if rcode == FORMERR and (wire[2] >> 3) & 0xF == 0:
        assert formerr_allowed(wire, strict), f"FORMERR for a well-formed query {wire.hex()}"
    if strict is not None and strict.opcode() != 0:
        assert rcode in (NOTIMP, FORMERR)


# --------------------------------------------------------------------------- properties


@EXAMPLES
@given(wire=queries(), tcp=st.booleans())
def test_generated_queries(handler: Handler, wire: bytes, tcp: bool) -> None:
    check(handler, wire, tcp)


@EXAMPLES
@given(wire=mutated(), tcp=st.booleans())
def test_mutated_queries(handler: Handler, wire: bytes, tcp: bool) -> None:
    check(handler, wire, tcp)


@pytest.mark.parametrize("name,rdtype", [(n, t) for n in NAMES[:16] for t in (1, 15, 28, 65, 64, 39, 43, 255)])
def test_every_answer_kind_parses_identically(handler: Handler, name: str, rdtype: int) -> None:
    """The rendered answers of every kind in the zone (LB, HTTPS at an LB, DNAME, referral,
    additional data, max_answers…) read the same in both libraries, over UDP and TCP."""
    q = dns.message.make_query(name, rdtype, use_edns=0, options=[dns.edns.GenericOption(3, b""),
                                                                 dns.edns.ECSOption("198.51.100.0", 24)])
    for tcp in (False, True):
        check(handler, q.to_wire(), tcp)
