"""The C batch loop (lbdns/server/_mmsg.c) on real UDP sockets: every queued datagram is handed to
the handler once, with its sender's address text, and each answer goes back to its own sender;
None, a non-bytes result, an exception or the filter drops just that datagram."""

from __future__ import annotations

import shutil
import socket
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from lbdns.server.udp_batch import batch_available


def test_the_loop_is_built_where_it_can_be() -> None:
    """With a C compiler and Python's headers on Linux (as .ci/run installs lbdns), the optional
    extension must have been built: a compile error would otherwise go unnoticed and every UDP
    listener fall back to one datagram per system call."""
    if not sys.platform.startswith("linux"):
        pytest.skip("recvmmsg/sendmmsg are Linux system calls")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: lbdns was installed without its batch loop")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        pytest.skip("no Python.h: lbdns was installed without its batch loop")
    assert batch_available(), "lbdns.server._mmsg did not build: see the compiler output of `pip install -e .`"


mmsg: Any = pytest.importorskip("lbdns.server._mmsg", reason="the C batch loop is not built here")


class Peers:
    """The peer cache the listener keeps, counting the addresses it had to format."""

    def __init__(self, family: int) -> None:
        self.family = family
        self.table: dict[bytes, str] = {}
        self.formatted = 0

    def __call__(self, raw: bytes) -> str:
        self.formatted += 1
        self.table[raw] = text = socket.inet_ntop(self.family, raw)
        return text


def sockets(family: int, host: str, clients: int) -> tuple[socket.socket, list[socket.socket]]:
    srv = socket.socket(family, socket.SOCK_DGRAM)
    srv.bind((host, 0))
    srv.setblocking(False)
    out = []
    for _ in range(clients):
        c = socket.socket(family, socket.SOCK_DGRAM)
        c.bind((host, 0))
        c.settimeout(2.0)
        out.append(c)
    return srv, out


def drain(c: socket.socket) -> list[bytes]:
    got = []
    c.setblocking(False)
    while True:
        try:
            got.append(c.recv(65535))
        except BlockingIOError:
            return got


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_every_datagram_handled_once_and_answered_to_its_sender(family: int, host: str) -> None:
    try:
        srv, (a, b) = sockets(family, host, 2)
    except OSError:
        pytest.skip(f"{host} is not available")
    calls: list[tuple[bytes, str, bool, object]] = []

    def handle(data: bytes, peer: str, tcp: bool, pop: object) -> bytes:
        calls.append((data, peer, tcp, pop))
        return b"re:" + data

    try:
        for i in range(10):
            a.sendto(b"a%d" % i, srv.getsockname())
            b.sendto(b"b%d" % i, srv.getsockname())
        peers = Peers(family)
        batch = mmsg.Batch(srv.fileno(), 4)  # 20 datagrams: five full batches
        assert batch.serve(handle, "IAD", None, peers.table, peers, 8) == 0
        assert [c[0] for c in calls] == [x for i in range(10) for x in (b"a%d" % i, b"b%d" % i)]
        assert {(c[1], c[2], c[3]) for c in calls} == {(host, False, "IAD")}
        assert peers.formatted == 1 and list(peers.table.values()) == [host]
        a.recv(1)  # wait for the first answer
        assert drain(a)[-1] == b"re:a9"
        assert drain(b) == [b"re:b%d" % i for i in range(10)]
    finally:
        for s in (srv, a, b):
            s.close()


def test_rounds_bound_the_batches_read_per_call() -> None:
    srv, (a,) = sockets(socket.AF_INET, "127.0.0.1", 1)
    try:
        for i in range(10):
            a.sendto(b"%d" % i, srv.getsockname())
        seen: list[bytes] = []
        peers = Peers(socket.AF_INET)
        batch = mmsg.Batch(srv.fileno(), 3)
        batch.serve(lambda d, p, t, pop: seen.append(d), None, None, peers.table, peers, 2)
        assert seen == [b"%d" % i for i in range(6)]  # two batches of three, the rest still queued
        batch.serve(lambda d, p, t, pop: seen.append(d), None, None, peers.table, peers, 8)
        assert seen == [b"%d" % i for i in range(10)]
        batch.serve(lambda d, p, t, pop: seen.append(d), None, None, peers.table, peers, 8)  # nothing queued
        assert len(seen) == 10
    finally:
        srv.close()
        a.close()


def test_drops_affect_only_their_own_datagram(monkeypatch: pytest.MonkeyPatch) -> None:
    """None or a non-bytes answer, an exception in the handler or the filter, or a filter that
    returns None drops that datagram; the exception is reported as unraisable; the rest of the
    batch is answered (the filter sees peer, query, answer and its result is what is sent)."""
    raised: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: raised.append(u.exc_value))
    srv, (a,) = sockets(socket.AF_INET, "127.0.0.1", 1)

    def handle(data: bytes, peer: str, tcp: bool, pop: object) -> object:
        if data == b"boom":
            raise RuntimeError("handler")
        return {b"none": None, b"text": "not bytes"}.get(data, data.upper())

    def limit(peer: str, data: bytes, out: object) -> object:
        if data == b"filter-boom":
            raise RuntimeError("filter")
        if data == b"limited":
            return None
        return out + b"!" + peer.encode() if isinstance(out, bytes) else out

    try:
        sent = [b"one", b"none", b"boom", b"text", b"limited", b"filter-boom", b"two"]
        for m in sent:
            a.sendto(m, srv.getsockname())
        peers = Peers(socket.AF_INET)
        assert mmsg.Batch(srv.fileno(), 64).serve(handle, None, limit, peers.table, peers, 8) == 0
        got = [a.recv(65535) for _ in range(2)]
        assert got == [b"ONE!127.0.0.1", b"TWO!127.0.0.1"]
        assert drain(a) == []
        assert [str(e) for e in raised] == ["handler", "filter"]
    finally:
        srv.close()
        a.close()


@pytest.mark.parametrize("n", [0, 1025])
def test_batch_size_is_checked(n: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(ValueError):
        mmsg.Batch(s.fileno(), n)
