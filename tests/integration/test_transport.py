"""UDP/TCP transport behaviour, black-box over real sockets (SPEC.md R-ANS-01; RFC 1035 §4.2,
RFC 7766): TCP framing, pipelining, partial reads, idle timeout, connection cap, slow
clients, IPv6 listeners.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from lbdns.config.settings import Listener
from tests.integration.harness import Server
from tests.integration.static_zone import (
    BIG_ADDRS,
    is_closed,
    recv_frame,
    tcp_connect,
    tcp_exchange,
    udp_exchange,
    write_static_zones,
)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``start(**settings)``: a server on the static zones; stopped at teardown."""
    started: list[Server] = []

    def go(**settings: Any) -> Server:
        srv = Server(write_static_zones(tmp_path), tmp_path, geoip=False, **settings)
        started.append(srv)
        return srv

    yield go
    for srv in started:
        srv.stop()


@pytest.fixture
def srv(start: Callable[..., Server]) -> Server:
    return start()


def query(name: str = "www.example.com", rdtype: str = "A", qid: int | None = None, edns: bool = False) -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
    if qid is not None:
        q.id = qid
    return q.to_wire()


def framed(wire: bytes) -> bytes:
    return len(wire).to_bytes(2, "big") + wire


def parse(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire)


def a_records(msg: dns.message.Message) -> set[str]:
    return {rd.to_text() for r in msg.answer if r.rdtype == dns.rdatatype.A for rd in r}


def assert_www(wire: bytes, qid: int | None = None) -> None:
    msg = parse(wire)
    if qid is not None:
        assert msg.id == qid
    assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
    assert a_records(msg) == {"192.0.2.80"}


# --- framing -------------------------------------------------------------------------------------------

def test_tcp_two_byte_length_framing(srv):
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        s.sendall(framed(query(qid=7)))
        length = int.from_bytes(s.recv(2, socket.MSG_WAITALL), "big")
        body = s.recv(length, socket.MSG_WAITALL)
        assert len(body) == length
        assert_www(body, 7)


def test_tcp_connection_serves_several_queries_in_sequence(srv):
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        for qid in range(1, 6):
            s.sendall(framed(query(qid=qid)))
            assert_www(recv_frame(s), qid)


def test_tcp_pipelined_queries_in_one_write(srv):
    names = ["www.example.com", "chain-a.example.com", "nope.example.com", "big.example.com", "foo.w.example.com",
             "www.example.org", "sub.example.com"] * 3
    ids = list(range(1000, 1000 + len(names)))
    blob = b"".join(framed(query(n, qid=i)) for n, i in zip(names, ids, strict=True))
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        s.sendall(blob)
        got = {}
        for _ in ids:
            msg = parse(recv_frame(s))
            got[msg.id] = msg
    assert set(got) == set(ids)
    by_name = dict(zip(ids, names, strict=True))
    for qid, msg in got.items():
        assert msg.question[0].name.to_text() == by_name[qid] + "."
    assert a_records(got[1000 + 3]) == set(BIG_ADDRS)  # TCP: never truncated
    assert got[1000 + 2].rcode() == dns.rcode.NXDOMAIN
    assert got[1000 + 5].rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("cuts", [[1], [1, 2, 7], [2, 5, 20], list(range(1, 40))])
def test_tcp_query_split_across_writes(srv, cuts):
    data = framed(query(qid=4242, edns=True))
    points = [0, *[c for c in cuts if c < len(data)], len(data)]
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for a, b in itertools.pairwise(points):
            s.sendall(data[a:b])
            time.sleep(0.02)
        assert_www(recv_frame(s), 4242)


def test_tcp_pipelined_then_split(srv):
    """Two whole queries and half of a third in one write; the rest later."""
    q3 = framed(query(qid=3))
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        s.sendall(framed(query(qid=1)) + framed(query(qid=2)) + q3[:1])
        assert {parse(recv_frame(s)).id for _ in range(2)} == {1, 2}
        time.sleep(0.05)
        s.sendall(q3[1:])
        assert_www(recv_frame(s), 3)


def test_tcp_client_half_close_still_answered(srv):
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        s.sendall(framed(query(qid=9)) + framed(query(qid=10)))
        s.shutdown(socket.SHUT_WR)
        assert {parse(recv_frame(s)).id for _ in range(2)} == {9, 10}


def test_tcp_many_pipelined_large_answers_all_delivered(srv):
    """3000 pipelined queries with ≈ 700-octet answers (well over the write buffer), then a
    half-close: every answer arrives, in spite of flow control."""
    n = 3000
    blob = b"".join(framed(query("big.example.com", qid=i)) for i in range(n))
    with tcp_connect(srv.tcp_ports["IAD"], timeout=5.0) as s:
        sender = threading.Thread(target=lambda: (s.sendall(blob), s.shutdown(socket.SHUT_WR)))
        sender.start()
        frames = [recv_frame(s) for _ in range(n)]
        sender.join(5)
        assert is_closed(s, 2.0)
    assert sorted(int.from_bytes(f[:2], "big") for f in frames) == list(range(n))
    assert a_records(parse(frames[-1])) == set(BIG_ADDRS)


def test_tcp_formerr_keeps_connection(srv):
    bad = struct.pack("!HHHHHH", 77, 0, 0, 0, 0, 0)  # QDCOUNT 0 → FORMERR
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        s.sendall(framed(bad))
        r = parse(recv_frame(s))
        assert r.id == 77 and r.rcode() == dns.rcode.FORMERR
        s.sendall(framed(query(qid=78)))
        assert_www(recv_frame(s), 78)


def test_tcp_zero_length_frame_closes_connection(srv):
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        s.sendall(b"\x00\x00")
        assert is_closed(s, 2.0)


def test_tcp_response_message_closes_connection(srv):
    q = dns.message.make_query("www.example.com", "A")
    q.flags |= dns.flags.QR
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        s.sendall(framed(q.to_wire()))
        assert is_closed(s, 2.0)


# --- idle timeout and connection cap (RFC 7766 §6.2.3, §6.2.2) ---------------------------------------------

def test_tcp_idle_timeout_closes_idle_connection(start):
    srv = start(tcp_idle_timeout=0.5)
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        t0 = time.monotonic()
        assert is_closed(s, 3.0)
        assert 0.3 <= time.monotonic() - t0 < 2.5


def test_tcp_idle_timeout_counts_from_last_activity(start):
    srv = start(tcp_idle_timeout=0.8)
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        for qid in range(4):  # 4 × 0.3 s > the timeout, but never idle for 0.8 s
            s.sendall(framed(query(qid=qid)))
            assert_www(recv_frame(s), qid)
            time.sleep(0.3)
        assert is_closed(s, 3.0)


def test_tcp_idle_timeout_closes_connection_holding_half_a_message(start):
    srv = start(tcp_idle_timeout=0.5)
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        s.sendall(framed(query())[:7])
        assert is_closed(s, 3.0)


def test_tcp_connection_cap_closes_the_least_recently_active(start):
    """Over ``tcp_max_connections`` a new connection is served and the least recently active
    one is closed instead (a full table must not lock out new clients); counted."""
    srv = start(tcp_max_connections=3)
    port = srv.tcp_ports["IAD"]
    first = [tcp_connect(port) for _ in range(3)]
    try:
        for i, s in enumerate(first):  # all three accepted; first[0] is now the least recently active
            s.sendall(framed(query(qid=i)))
            assert_www(recv_frame(s), i)
        first[1].sendall(framed(query(qid=7)))  # first[1] becomes the most recently active
        assert_www(recv_frame(first[1]), 7)
        with tcp_connect(port) as fourth:
            fourth.sendall(framed(query(qid=99)))
            assert_www(recv_frame(fourth), 99)
            assert is_closed(first[0], 2.0)
            for i in (1, 2):  # the others still work
                first[i].sendall(framed(query(qid=10 + i)))
                assert_www(recv_frame(first[i]), 10 + i)
        assert srv.app.counters.tcp_evicted == 1
    finally:
        for s in first:
            s.close()


def test_connection_cap_does_not_affect_udp(start):
    srv = start(tcp_max_connections=1)
    with tcp_connect(srv.tcp_ports["IAD"]) as s:
        s.sendall(framed(query(qid=1)))
        assert_www(recv_frame(s), 1)
        out = udp_exchange(query(qid=2), srv.ports["IAD"])
        assert out is not None
        assert_www(out, 2)


def _closed_now(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def test_slowloris_cannot_hold_the_tcp_slots(start):
    """A full table of connections that dribble one octet per second: a real client still
    gets its truncated-over-UDP answer over TCP at once (the least recently active dribbler
    makes room), and every dribbler is closed within ``tcp_message_timeout`` (default 2 s)
    of its first octet — later octets do not extend it (RFC 7766 §10)."""
    cap = 64
    srv = start(tcp_max_connections=cap)
    port = srv.tcp_ports["IAD"]
    wire = framed(query(qid=1))
    socks = [tcp_connect(port) for _ in range(cap)]
    try:
        started = []
        for s in socks:
            s.sendall(wire[:1])
            started.append(time.monotonic())
        time.sleep(0.2)
        out = udp_exchange(query("big.example.com", qid=2), srv.ports["IAD"])
        assert out is not None and parse(out).flags & dns.flags.TC
        t0 = time.monotonic()
        msg = parse(tcp_exchange(query("big.example.com", qid=3), port, timeout=2.0))
        assert time.monotonic() - t0 < 1.0
        assert msg.id == 3 and len(a_records(msg)) == 40
        closed_at: dict[int, float] = {}
        sent = dict.fromkeys(range(cap), 1)
        deadline = time.monotonic() + 6.0
        while len(closed_at) < cap and time.monotonic() < deadline:
            for i, s in enumerate(socks):
                if i in closed_at:
                    continue
                if _closed_now(s):
                    closed_at[i] = time.monotonic()
                    continue
                with contextlib.suppress(OSError):
                    s.sendall(wire[sent[i]:sent[i] + 1])  # one more octet
                    sent[i] += 1
            time.sleep(1.0 if len(closed_at) < cap // 2 else 0.05)
        assert len(closed_at) == cap, f"{cap - len(closed_at)} dribblers still open"
        late = [closed_at[i] - started[i] for i in range(cap) if closed_at[i] - started[i] > 2.0 + 1.5]
        assert not late, f"closed {max(late):.1f} s after their first octet"
        assert srv.app.counters.tcp_evicted >= 1
        assert srv.app.counters.tcp_slow_closed >= cap - 1
    finally:
        for s in socks:
            s.close()


# --- slow clients ------------------------------------------------------------------------------------------------

def test_slow_client_with_half_a_message_blocks_nobody(srv):
    port = srv.tcp_ports["IAD"]
    slow = tcp_connect(port)
    try:
        pending = framed(query(qid=555))
        slow.sendall(pending[:9])  # length prefix + part of the header, then nothing
        time.sleep(0.1)
        t0 = time.monotonic()
        out = udp_exchange(query(qid=1), srv.ports["IAD"])
        assert out is not None
        assert_www(out, 1)
        assert_www(tcp_exchange(query(qid=2), port), 2)
        with tcp_connect(port) as other:  # pipelining on another connection is unaffected too
            other.sendall(framed(query(qid=3)) + framed(query(qid=4)))
            assert {parse(recv_frame(other)).id for _ in range(2)} == {3, 4}
        assert time.monotonic() - t0 < 1.0
        slow.sendall(pending[9:])  # the slow client finally completes its query
        assert_www(recv_frame(slow), 555)
    finally:
        slow.close()


def test_many_slow_clients_in_parallel(srv):
    port = srv.tcp_ports["IAD"]
    socks = [tcp_connect(port) for _ in range(20)]
    try:
        for s in socks:
            s.sendall(b"\x00")  # half a length prefix
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                out = udp_exchange(query(qid=i), srv.ports["IAD"])
                assert out is not None
                assert_www(out, i)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert not errors
        for i, s in enumerate(socks):
            rest = framed(query(qid=100 + i))[1:]
            s.sendall(rest)
        for i, s in enumerate(socks):
            assert_www(recv_frame(s), 100 + i)
    finally:
        for s in socks:
            s.close()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_client_that_never_reads_cannot_make_the_server_buffer_answers(srv):
    """~4 MB of pipelined queries for a 40-address RRset (≈ 700-octet answers) from a client
    that never reads: the server must stop reading (flow control) instead of queueing
    ~80 MB of answers in memory. (The server runs in this process, so its memory is ours.)"""
    wire = framed(query("big.example.com", qid=1))
    blob = wire * 20_000  # ≈ 0.7 MB per write
    before = _rss_bytes()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", srv.tcp_ports["IAD"]))
        s.settimeout(1.0)
        try:
            for _ in range(6):
                s.sendall(blob)
        except TimeoutError:
            pass  # the server stopped reading: that is the point
        time.sleep(0.5)
        grown = _rss_bytes() - before
        assert grown < 25 * 2**20, f"server memory grew by {grown / 2**20:.0f} MiB"
    # and the server is fine for everyone else
    out = udp_exchange(query(qid=5), srv.ports["IAD"])
    assert out is not None
    assert_www(out, 5)


def test_idle_timeout_frees_the_slot_of_a_client_that_never_reads(start):
    """A client that floods queries and never reads holds a connection slot; after an idle
    period without reading or sending it is aborted and the slot becomes free again."""
    srv = start(tcp_idle_timeout=0.5, tcp_max_connections=1)
    port = srv.tcp_ports["IAD"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hog:
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.connect(("127.0.0.1", port))
        hog.settimeout(1.0)
        try:
            for _ in range(6):
                hog.sendall(framed(query("big.example.com")) * 20_000)
        except (TimeoutError, OSError):
            pass
        deadline = time.monotonic() + 4.0
        while True:
            try:
                assert_www(tcp_exchange(query(qid=8), port, timeout=1.0), 8)
                break
            except (ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


# --- UDP -------------------------------------------------------------------------------------------------------

def test_udp_each_datagram_answered_separately(srv):
    port = srv.ports["IAD"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        for qid in range(20):
            s.sendto(query(qid=qid), ("127.0.0.1", port))
        ids = set()
        for _ in range(20):
            msg = parse(s.recv(65535))
            ids.add(msg.id)
    assert ids == set(range(20))


@pytest.mark.parametrize("udp_batch", [64, 1, 0])
def test_udp_burst_from_many_clients_each_gets_its_own_answers(start, udp_batch):
    """Datagrams from many clients queued at once (several recvmmsg batches with 64, one per
    call with 1, the asyncio transport with 0): every query answered once, to its own sender,
    with its own ID and question."""
    srv = start(udp_batch=udp_batch)
    port = srv.ports["IAD"]
    names = ["www.example.com", "big.example.com"]
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(12)]
    try:
        for c in clients:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            c.bind(("127.0.0.1", 0))
        sent: dict[int, set[tuple[int, str]]] = {}
        for qid in range(25):
            for k, c in enumerate(clients):
                name = names[(qid + k) % 2]
                c.sendto(query(name, qid=qid * 100 + k), ("127.0.0.1", port))
                sent.setdefault(k, set()).add((qid * 100 + k, name + "."))
        for k, c in enumerate(clients):
            c.settimeout(3.0)
            got = set()
            for _ in range(25):
                msg = parse(c.recv(65535))
                got.add((msg.id, msg.question[0].name.to_text()))
            assert got == sent[k], k
            c.setblocking(False)
            with pytest.raises(BlockingIOError):
                c.recv(65535)  # nothing more: each query answered once
    finally:
        for c in clients:
            c.close()


def test_udp_large_datagrams_are_read_whole(srv):
    """A query padded to 4,000 and to 60,000 octets (EDNS padding, RFC 7830) is read whole and
    answered; the next datagram in the same batch is not affected."""
    port = srv.ports["IAD"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3.0)
        for size, qid in ((4000, 71), (60000, 72)):
            q = dns.message.make_query("www.example.com", "A", use_edns=0, payload=1232,
                                       options=[dns.edns.GenericOption(12, bytes(size))])
            q.id = qid
            s.sendto(q.to_wire(max_size=65535), ("127.0.0.1", port))
            s.sendto(query(qid=qid + 100), ("127.0.0.1", port))
            first, second = parse(s.recv(65535)), parse(s.recv(65535))
            assert (first.id, second.id) == (qid, qid + 100)
            assert a_records(first) == {"192.0.2.80"}
            assert_www(second.to_wire(), qid + 100)


def test_every_pop_listener_answers(srv):
    for pop, port in srv.ports.items():
        out = udp_exchange(query(qid=1), port)
        assert out is not None, pop
        assert_www(out, 1)
        assert_www(tcp_exchange(query(qid=2), srv.tcp_ports[pop]), 2)


# --- IPv6 -------------------------------------------------------------------------------------------------------

def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="::1 is not available")
def test_ipv6_listener_answers(start):
    srv = start(listen=[Listener(address="::1", port=0, transport="both", pop="IAD")])
    out = udp_exchange(query(qid=61), srv.ports["IAD"], host="::1")
    assert out is not None
    assert_www(out, 61)
    assert_www(tcp_exchange(query(qid=62), srv.tcp_ports["IAD"], host="::1"), 62)
    big = parse(tcp_exchange(query("big.example.com", qid=63), srv.tcp_ports["IAD"], host="::1"))
    assert a_records(big) == set(BIG_ADDRS)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as b:
        for c in (a, b):
            c.bind(("::1", 0))
            c.settimeout(3.0)
        for qid in range(10):  # interleaved: answers must go back to each IPv6 sender
            a.sendto(query(qid=qid), ("::1", srv.ports["IAD"]))
            b.sendto(query(qid=qid + 500), ("::1", srv.ports["IAD"]))
        assert {parse(a.recv(65535)).id for _ in range(10)} == set(range(10))
        assert {parse(b.recv(65535)).id for _ in range(10)} == set(range(500, 510))
