"""Batched UDP listener on Linux: up to ``batch`` queries per recvmmsg(2) and their answers in
one sendmmsg(2), called through ctypes from the event loop's reader callback.

Why: the asyncio datagram transport costs two system calls and an event-loop wake-up per
query; on loopback that was ~1 µs of kernel time and ~0.5 µs of Python per query more than a
recvmmsg/sendmmsg loop (measured with dnsperf, docs/architecture.md › One query). The queries of
one batch are answered in arrival order by the same :class:`~lbdns.server.handler.Handler` and
response rate limiter as the asyncio transport (:class:`~lbdns.server.transports.UdpServer`),
which stays the fallback where recvmmsg is missing (not Linux, no ``ctypes``) or
``udp_batch`` is 0.

Memory: per listener two anonymous maps of ``batch`` × 64 KiB (a slot holds the largest UDP
datagram, so nothing is ever truncated; pages are touched only as far as datagrams reach) and a
few KiB of message headers, all allocated once.

Send failures: sendmmsg stops at the first message it cannot send. A message refused for its
own reason (e.g. EPERM from a firewall, unreachable address) is skipped and the rest sent; a
full socket buffer (EAGAIN) drops the rest of the batch, as a UDP answer lost on the wire would
be (RFC 1035 §4.2.1: the client retries). Both are counted
(:attr:`~lbdns.server.counters.QueryCounters.udp_send_failed`).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import logging
import mmap
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

from lbdns.geo.pops import Pop
from lbdns.server.handler import Handler

log = logging.getLogger("lbdns.server")

__all__ = ["BatchUdpServer", "batch_available"]

_MSG_DONTWAIT = 0x40
_HDR = 64
"""sizeof(struct mmsghdr) on 64-bit Linux: msghdr (56) + msg_len (4) + padding."""
_HDR_FORMAT = "PI4xPNPNi4xI4x"
"""struct mmsghdr: msg_name, msg_namelen, msg_iov, msg_iovlen, msg_control, msg_controllen,
msg_flags, msg_len."""
_NAME = 32
"""Bytes per peer address slot (sockaddr_in6 is 28)."""
_IOV = 16
"""sizeof(struct iovec): iov_base, iov_len."""
_SLOT = 65536
"""Bytes per datagram slot: the largest UDP payload fits."""
_ROUNDS = 8
"""Batches read per wake-up before the event loop runs other callbacks."""
_PEERS = 65536
"""Peer address texts kept (raw sockaddr octets → text); emptied when full."""

@functools.cache
def _load() -> Any:
    """libc with recvmmsg/sendmmsg typed (loaded once per process), or None when this platform
    has none."""
    if not sys.platform.startswith("linux") or struct.calcsize("P") != 8:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    return libc


def batch_available() -> bool:
    """True when recvmmsg(2)/sendmmsg(2) can be called here (64-bit Linux)."""
    return _load() is not None


class BatchUdpServer:
    """One UDP listener bound to a PoP, reading and answering in batches.

    ``sock`` is a bound UDP socket (AF_INET or AF_INET6; it is made non-blocking and owned from
    now on: :meth:`close` closes it); ``batch`` the most datagrams per system call (1–1024).
    Raises OSError when recvmmsg is not available (:func:`batch_available`)."""

    def __init__(self, sock: socket.socket, handler: Handler, pop: Pop, batch: int = 64) -> None:
        libc = _load()
        if libc is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg not available")
        self._recvmmsg: Callable[..., int] = libc.recvmmsg
        self._sendmmsg: Callable[..., int] = libc.sendmmsg
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self.handler = handler
        self.pop = pop
        self.n = n = max(1, min(batch, 1024))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rbuf = mmap.mmap(-1, n * _SLOT)
        self._wbuf = mmap.mmap(-1, n * _SLOT)
        self._names = mmap.mmap(-1, n * _NAME)  # slices of a map are bytes: hashable peer keys
        self._rh = bytearray(n * _HDR)
        self._wh = bytearray(n * _HDR)
        riov = bytearray(n * _IOV)
        self._wiov = bytearray(n * _IOV)
        # each pin holds its buffer (and keeps it from being resized) while the addresses are in use
        self._pins = [ctypes.c_char.from_buffer(b) for b in
                      (self._rbuf, self._wbuf, self._names, self._rh, self._wh, riov, self._wiov)]
        rbuf, wbuf, names, rh, wh, ri, wi = (ctypes.addressof(p) for p in self._pins)
        for i in range(n):
            struct.pack_into("PN", riov, i * _IOV, rbuf + i * _SLOT, _SLOT)
            struct.pack_into("PN", self._wiov, i * _IOV, wbuf + i * _SLOT, 0)
            struct.pack_into(_HDR_FORMAT, self._rh, i * _HDR, names + i * _NAME, _NAME, ri + i * _IOV, 1, 0, 0, 0, 0)
            struct.pack_into(_HDR_FORMAT, self._wh, i * _HDR, names + i * _NAME, _NAME, wi + i * _IOV, 1, 0, 0, 0, 0)
        self._template = bytes(self._rh)
        self._words = memoryview(self._rh).cast("I")
        self._rh_addr, self._wh_addr, self._names_addr = rh, wh, names
        self._peers: dict[bytes, str] = {}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Answer from now on, from ``loop``'s reader callback."""
        self._loop = loop
        loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        """Stop reading and close the socket (idempotent)."""
        if self._loop is not None:
            if not self._loop.is_closed():
                self._loop.remove_reader(self.fd)
            self._loop = None
        self.sock.close()

    def _peer(self, raw: bytes) -> str:
        """The text of the sender address ``raw`` (4 or 16 octets, as the socket module writes it),
        kept for the next datagrams from it."""
        peer = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
        if len(self._peers) >= _PEERS:
            self._peers.clear()
        self._peers[raw] = peer
        return peer

    def _readable(self) -> None:
        for _ in range(_ROUNDS):
            if self._round() < self.n:
                return

    def _round(self) -> int:
        """Read one batch, answer it, send the answers; returns how many datagrams were read."""
        self._rh[:] = self._template
        got = self._recvmmsg(self.fd, self._rh_addr, self.n, _MSG_DONTWAIT, None)
        if got <= 0:
            return 0
        words, rbuf, wbuf, wh, wiov = self._words, self._rbuf, self._wbuf, self._wh, self._wiov
        handler, pop, rrl = self.handler, self.pop, self.handler.rrl
        handle = handler.handle
        pack = struct.pack_into
        names, peers, name_buf = self._names_addr, self._peers, self._names
        lo, hi = (4, 8) if self.family == socket.AF_INET else (8, 24)  # sin_addr / sin6_addr
        out_n = 0
        for i in range(got):
            at = i * _SLOT
            data = rbuf[at:at + words[16 * i + 14]]
            raw = name_buf[i * _NAME + lo:i * _NAME + hi]
            peer = peers.get(raw) or self._peer(raw)
            out = handle(data, peer, False, pop)
            if out is None:
                continue
            if rrl is not None and (out := rrl.filter(peer, data, out)) is None:
                continue
            w = out_n * _SLOT
            wbuf[w:w + len(out)] = out
            pack("PI", wh, out_n * _HDR, names + i * _NAME, words[16 * i + 2])
            pack("N", wiov, out_n * _IOV + 8, len(out))
            out_n += 1
        self._send(out_n)
        return got

    def _send(self, count: int) -> None:
        """sendmmsg the first ``count`` prepared answers, skipping one that is refused."""
        sent = 0
        while sent < count:
            r = self._sendmmsg(self.fd, self._wh_addr + sent * _HDR, count - sent, 0)
            if r > 0:
                sent += r
                continue
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                self.handler.counters.udp_send_failed += count - sent
                return
            self.handler.counters.udp_send_failed += 1  # this destination refused: skip it, send the rest
            sent += 1
