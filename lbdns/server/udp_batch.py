"""Batched UDP listener on Linux: up to ``batch`` queries per recvmmsg(2) and their answers in
one sendmmsg(2), from the event loop's reader callback.

Why: the asyncio datagram transport costs two system calls, an event-loop wake-up and a Python
callback per query. The batch loop itself is C (:mod:`lbdns.server._mmsg`, built with lbdns on
Linux): it reads a batch, calls :meth:`~lbdns.server.handler.Handler.handle` (and the response
rate limiter) once per datagram and sends the answers, so no per-datagram Python runs around the
handler (docs/architecture.md › One query; docs/decisions.md › UDP batching). The queries of
one batch are answered in arrival order by the same handler and rate limiter as the asyncio
transport (:class:`~lbdns.server.transports.UdpServer`), which stays the fallback where the
extension is missing (not Linux, installed without a C compiler) or ``udp_batch`` is 0.

Memory: per listener one anonymous map of ``batch`` × 64 KiB (a slot holds the largest UDP
datagram, so nothing is ever truncated; pages are touched only as far as datagrams reach) and a
few KiB of addresses and message headers, all allocated once.

Send failures: sendmmsg stops at the first message it cannot send. A message refused for its
own reason (e.g. EPERM from a firewall, unreachable address) is skipped and the rest sent; a
full socket buffer (EAGAIN) drops the rest of the batch, as a UDP answer lost on the wire would
be (RFC 1035 §4.2.1: the client retries). Both are counted
(:attr:`~lbdns.server.counters.QueryCounters.udp_send_failed`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

from lbdns.geo.pops import Pop
from lbdns.server.handler import Handler

if TYPE_CHECKING:
    from lbdns.server._mmsg import Batch

_Batch: type[Batch] | None
try:
    from lbdns.server._mmsg import Batch as _Batch
except ImportError:  # not Linux, or installed without a C compiler: the asyncio transport answers
    _Batch = None

log = logging.getLogger("lbdns.server")

__all__ = ["BatchUdpServer", "batch_available"]

_ROUNDS = 8
"""Batches read per wake-up before the event loop runs other callbacks."""
_PEERS = 65536
"""Peer address texts kept (packed address → text); emptied when full."""


def batch_available() -> bool:
    """True when the recvmmsg(2)/sendmmsg(2) loop (:mod:`lbdns.server._mmsg`) is built here."""
    return _Batch is not None


class BatchUdpServer:
    """One UDP listener bound to a PoP, reading and answering in batches.

    ``sock`` is a bound UDP socket (AF_INET or AF_INET6; it is made non-blocking and owned from
    now on: :meth:`close` closes it); ``batch`` the most datagrams per system call (1–1024).
    Raises OSError when the batch loop is not available (:func:`batch_available`)."""

    def __init__(self, sock: socket.socket, handler: Handler, pop: Pop, batch: int = 16) -> None:
        if _Batch is None:
            raise OSError("the recvmmsg/sendmmsg loop (lbdns.server._mmsg) is not built here")
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.handler = handler
        self.pop = pop
        self.n = max(1, min(batch, 1024))
        self._serve = _Batch(self.fd, self.n).serve  # the bound method holds the buffers
        self._loop: asyncio.AbstractEventLoop | None = None
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
        """The text of the sender address ``raw`` (4 or 16 octets), kept for the next datagrams
        from it."""
        peer = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
        if len(self._peers) >= _PEERS:
            self._peers.clear()
        self._peers[raw] = peer
        return peer

    def _readable(self) -> None:
        handler = self.handler
        rrl = handler.rrl
        failed = self._serve(handler.handle, self.pop, rrl.filter if rrl is not None else None,
                             self._peers, self._peer, _ROUNDS)
        if failed:
            handler.counters.udp_send_failed += failed
