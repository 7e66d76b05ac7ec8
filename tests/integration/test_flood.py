"""A flood of malformed packets over UDP and TCP (DESIGN.md principle 6; RFC 1035 §4.1.1,
RFC 6891, RFC 7871 §7.1.1): the server must survive, must not amplify (no reply longer than the
request that caused it), must answer only with parseable messages carrying the request's ID,
and must still answer a valid query correctly afterwards.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import pytest

from tests.integration.harness import Server
from tests.integration.static_zone import (
    is_closed,
    recv_frame,
    tcp_connect,
    tcp_exchange,
    udp_exchange,
    write_static_zones,
)

UDP_PACKETS = 4000
TCP_MESSAGES = 400
TCP_BATCH = 20


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d: Path = tmp_path_factory.mktemp("flood")
    s = Server(write_static_zones(d), d, geoip=False)
    yield s
    s.stop()


# --- malformed message generators (each returns bytes whose first two octets are free for the ID) -----------

def _header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 0, flags, qd, an, ns, ar)


QNAME = dns.name.from_text("www.example.com.").to_wire()
QUESTION = QNAME + struct.pack("!HH", 1, 1)


def _opt(rdata: bytes, *, payload: int = 1232, ttl: int = 0, owner: bytes = b"\x00",
         rdlen: int | None = None) -> bytes:
    return owner + struct.pack("!HHIH", 41, payload, ttl, len(rdata) if rdlen is None else rdlen) + rdata


def _option(code: int, data: bytes, length: int | None = None) -> bytes:
    return struct.pack("!HH", code, len(data) if length is None else length) + data


def _ecs(family: int, source: int, scope: int, address: bytes) -> bytes:
    return _option(8, struct.pack("!HBB", family, source, scope) + address)


def gen_random(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(0, 600))


def gen_random_header_valid_counts(rng: random.Random) -> bytes:
    return _header(rng.choice([0, 1, 2]), rng.randint(0, 3), rng.randint(0, 3), rng.randint(0, 3)) + \
        rng.randbytes(rng.randint(0, 200))


def gen_truncated_query(rng: random.Random) -> bytes:
    q = dns.message.make_query("www.example.com", "A", use_edns=0,
                               options=[dns.edns.ECSOption("192.0.2.0", 24)]).to_wire()
    return q[:rng.randint(2, len(q) - 1)]


BAD_OPTS: list[Callable[[random.Random], bytes]] = [
    lambda r: _header(ar=1) + QUESTION + _opt(b"", rdlen=r.randint(1, 400)),  # RDLENGTH past the end
    lambda r: _header(ar=2) + QUESTION + _opt(b"") + _opt(b""),  # two OPTs
    lambda r: _header(ar=1) + QUESTION + _opt(b"", owner=b"\x03www\x00"),  # non-root owner
    lambda r: _header(an=1) + QUESTION + _opt(b""),  # OPT in the answer section
    lambda r: _header(ar=1) + QUESTION + _opt(b"\x00\x0a\x00"),  # option header truncated
    lambda r: _header(ar=1) + QUESTION + _opt(_option(65001, b"xx", length=r.randint(3, 300))),  # option past end
    lambda r: _header(ar=1) + QUESTION + _opt(_option(10, r.randbytes(r.choice([1, 7, 9, 15, 41, 60])))),  # cookie
    lambda r: _header(ar=1) + QUESTION + _opt(_option(10, r.randbytes(8)) + _option(10, r.randbytes(8))),
    lambda r: _header(ar=1) + QUESTION + _opt(b"") + r.randbytes(r.randint(1, 20)),  # trailing garbage
]

BAD_ECS: list[Callable[[random.Random], bytes]] = [
    lambda r: _ecs(r.choice([0, 3, 65535]), 24, 0, b"\xc0\x00\x02"),  # family
    lambda r: _ecs(1, r.randint(33, 255), 0, b"\xc0\x00\x02\x00"),  # source prefix too long
    lambda r: _ecs(2, r.randint(129, 255), 0, bytes(16)),
    lambda r: _ecs(1, 24, r.randint(1, 255), b"\xc0\x00\x02"),  # scope != 0 in a query
    lambda r: _ecs(1, 24, 0, b"\xc0\x00\x02\x05"),  # address longer than the prefix
    lambda r: _ecs(1, 24, 0, b"\xc0\x00"),  # address shorter than the prefix
    lambda r: _ecs(1, 20, 0, b"\xc0\x00\x0f"),  # bits beyond the prefix
    lambda r: _option(8, b"\x00\x01\x18"),  # shorter than 4 octets
    lambda r: _ecs(1, 24, 0, b"\xc0\x00\x02") + _ecs(1, 24, 0, b"\xc0\x00\x02"),  # two ECS options
]


def gen_bad_opt(rng: random.Random) -> bytes:
    return rng.choice(BAD_OPTS)(rng)


def gen_bad_ecs(rng: random.Random) -> bytes:
    return _header(ar=1) + QUESTION + _opt(rng.choice(BAD_ECS)(rng))


def gen_huge_labels(rng: random.Random) -> bytes:
    kind = rng.randint(0, 3)
    if kind == 0:  # too many labels: name over 255 octets
        name = b"\x01a" * rng.randint(128, 2000) + b"\x00"
    elif kind == 1:  # a label over 63 octets
        n = rng.randint(64, 255)
        name = bytes([n]) + b"a" * n + b"\x00"
    elif kind == 2:  # reserved label types 0x40 / 0x80
        name = b"\x03www" + bytes([rng.choice([0x40, 0x41, 0x80, 0xBF])]) + b"\x00"
    else:  # labels running off the end
        name = b"\x01a" * rng.randint(1, 120) + b"\x3f" + b"x" * rng.randint(0, 60)
    return _header() + name + struct.pack("!HH", 1, 1)


def gen_compression_loop(rng: random.Random) -> bytes:
    """Records in the additional section whose owner names point at themselves, forwards,
    into the header, or around in a loop."""
    base = _header(ar=2) + QUESTION
    here = len(base)
    kind = rng.randint(0, 4)
    if kind == 0:  # pointer to itself
        owner = struct.pack("!H", 0xC000 | here)
    elif kind == 1:  # pointer forwards
        owner = struct.pack("!H", 0xC000 | (here + rng.randint(2, 40)))
    elif kind == 2:  # pointer into the header
        owner = struct.pack("!H", 0xC000 | rng.randint(0, 11))
    elif kind == 3:  # a label then a pointer back to that label: a loop
        owner = b"\x01a" + struct.pack("!H", 0xC000 | here)
    else:  # OPT with a looping owner
        return _header(ar=1) + QUESTION + struct.pack("!H", 0xC000 | here) + struct.pack("!HHIH", 41, 1232, 0, 0)
    rr = owner + struct.pack("!HHIH", 1, 1, 0, 4) + b"\x7f\x00\x00\x01"
    return base + rr + rr


def gen_bad_counts(rng: random.Random) -> bytes:
    return _header(rng.randint(0, 65535), rng.randint(0, 65535), rng.randint(0, 65535), rng.randint(0, 65535)) + \
        QUESTION + rng.randbytes(rng.randint(0, 40))


def gen_bad_qdcount(rng: random.Random) -> bytes:
    return _header(qd=rng.choice([0, 2, 3, 255])) + QUESTION * rng.randint(0, 3)


GENERATORS = [gen_random, gen_random_header_valid_counts, gen_truncated_query, gen_bad_opt, gen_bad_ecs,
              gen_huge_labels, gen_compression_loop, gen_bad_counts, gen_bad_qdcount]


def malformed(rng: random.Random, count: int) -> list[bytes]:
    """``count`` malformed messages, each with a unique ID (index) when it is ≥ 2 octets long."""
    out = []
    for i in range(count):
        data = GENERATORS[i % len(GENERATORS)](rng)
        if len(data) >= 2:
            data = struct.pack("!H", i) + data[2:]
        out.append(data)
    return out


def check_reply(reply: bytes, requests: list[bytes], where: str) -> int:
    """A reply must parse, carry the ID of a request and be no longer than it; returns its rcode."""
    qid = struct.unpack("!H", reply[:2])[0]
    assert qid < len(requests), f"{where}: reply with unknown ID {qid}"
    request = requests[qid]
    assert reply[:2] == request[:2]
    assert len(reply) <= len(request), (
        f"{where}: {len(reply)}-octet reply to a {len(request)}-octet request {request.hex()}")
    msg = dns.message.from_wire(reply)
    assert msg.flags & dns.flags.QR
    assert msg.rcode() != dns.rcode.SERVFAIL, f"{where}: SERVFAIL (internal error) for {request.hex()}"
    return int(msg.rcode())


def assert_still_answers(srv: Server) -> None:
    q = dns.message.make_query("www.example.com", "A", use_edns=0)
    out = udp_exchange(q.to_wire(), srv.ports["IAD"])
    assert out is not None
    for wire in (out, tcp_exchange(q.to_wire(), srv.tcp_ports["IAD"])):
        r = dns.message.from_wire(wire)
        assert r.id == q.id and r.rcode() == dns.rcode.NOERROR
        assert {rd.to_text() for rr in r.answer for rd in rr} == {"192.0.2.80"}


# --- tests ---------------------------------------------------------------------------------------------------

def test_generators_produce_malformed_messages():
    """Sanity check of the corpus: dnspython rejects every generated message that is long
    enough to hold a header (so none of them is a valid query by accident)."""
    rng = random.Random(7)
    for data in malformed(rng, 600):
        if len(data) < 12:
            continue
        with pytest.raises(Exception):  # noqa: B017 - any dnspython parse error
            msg = dns.message.from_wire(data)
            if msg.flags & dns.flags.QR or len(msg.question) != 1:
                raise ValueError("not a query")
            raise AssertionError(f"valid query generated: {data.hex()}")


def test_udp_flood_of_malformed_packets(srv):
    rng = random.Random(20240501)
    requests = malformed(rng, UDP_PACKETS)
    replies: list[bytes] = []
    t0 = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
        s.connect(("127.0.0.1", srv.ports["IAD"]))
        s.setblocking(False)
        for data in requests:
            while True:
                try:
                    s.send(data)
                    break
                except BlockingIOError:
                    time.sleep(0.0005)
                except ConnectionRefusedError:  # ICMP from an earlier datagram: keep going
                    continue
            try:  # drain as we go
                while True:
                    replies.append(s.recv(65535))
            except (BlockingIOError, ConnectionRefusedError):
                pass
        s.settimeout(0.5)
        try:
            while True:
                replies.append(s.recv(65535))
        except (TimeoutError, ConnectionRefusedError):
            pass
    assert time.monotonic() - t0 < 15
    rcodes = [check_reply(r, requests, "udp") for r in replies]
    expected = sum(1 for r in requests if _answerable(r))
    # UDP may lose datagrams under a flood (the kernel's receive buffer overflows while the
    # server works); what matters is that some were answered, none twice, none amplified
    assert 0 < len(rcodes) <= expected
    assert len({r[:2] for r in replies}) == len(replies), "a request was answered twice"
    assert set(rcodes) <= {dns.rcode.FORMERR, dns.rcode.NOTIMP, dns.rcode.REFUSED, dns.rcode.BADVERS,
                           dns.rcode.NXDOMAIN, dns.rcode.NOERROR}
    assert_still_answers(srv)
    assert srv.app.counters.internal_errors == 0


def _answerable(data: bytes) -> bool:
    """RFC 1035 §4.1.1: a message with a whole header that is not a response gets a reply."""
    return len(data) >= 12 and not data[2] & 0x80


def test_tcp_flood_of_malformed_messages(srv):
    """Answerable malformed messages pipelined on connections (20 per connection) each get
    exactly one reply, and the connection stays usable; unanswerable ones (shorter than a
    header, QR=1, a zero length prefix) close their connection without a reply."""
    rng = random.Random(99)
    generated = malformed(rng, TCP_MESSAGES * 2)
    answerable = [m for m in generated if _answerable(m)][:TCP_MESSAGES]
    table = _by_id(answerable)
    t0 = time.monotonic()
    for start in range(0, len(answerable), TCP_BATCH):
        batch = answerable[start:start + TCP_BATCH]
        with tcp_connect(srv.tcp_ports["IAD"], timeout=2.0) as s:
            s.sendall(b"".join(len(m).to_bytes(2, "big") + m for m in batch))
            for _ in batch:
                check_reply(recv_frame(s), table, "tcp")
            q = dns.message.make_query("www.example.com", "A")
            s.sendall(len(q.to_wire()).to_bytes(2, "big") + q.to_wire())
            assert dns.message.from_wire(recv_frame(s)).id == q.id
    unanswerable = [*[m for m in generated if not _answerable(m) and m][:60], b""]
    for m in unanswerable:
        with tcp_connect(srv.tcp_ports["IAD"], timeout=2.0) as s:
            s.sendall(len(m).to_bytes(2, "big") + m)
            assert is_closed(s, 2.0)
    assert time.monotonic() - t0 < 15
    assert_still_answers(srv)
    assert srv.app.counters.internal_errors == 0


def _by_id(requests: list[bytes]) -> list[bytes]:
    """``requests`` indexed by the ID they carry (IDs are their index in the generated list)."""
    table: list[bytes] = [b""] * (max(int.from_bytes(r[:2], "big") for r in requests if len(r) >= 2) + 1)
    for r in requests:
        if len(r) >= 2:
            table[int.from_bytes(r[:2], "big")] = r
    return table


def test_valid_queries_interleaved_with_garbage(srv):
    """Valid queries sent between malformed ones are all answered correctly."""
    rng = random.Random(5)
    junk = malformed(rng, 200)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        s.connect(("127.0.0.1", srv.ports["IAD"]))
        good = {}
        for i, data in enumerate(junk):
            if data:
                s.send(b"\xff\xff" + data[2:] if len(data) >= 2 else data)
            if i % 20 == 0:
                q = dns.message.make_query("chain-a.example.com", "A")
                q.id = 40000 + i
                good[q.id] = q
                s.send(q.to_wire())
        answered = {}
        deadline = time.monotonic() + 3
        while len(answered) < len(good) and time.monotonic() < deadline:
            try:
                reply = s.recv(65535)
            except TimeoutError:
                break
            msg = dns.message.from_wire(reply)
            if msg.id in good:
                answered[msg.id] = msg
    assert set(answered) == set(good)
    for msg in answered.values():
        assert msg.rcode() == dns.rcode.NOERROR
        assert msg.answer[-1][0].to_text() == "192.0.2.3"
