"""asyncio UDP and TCP front ends (RFC 1035 §4.2, RFC 7766). Thin: they move bytes to the
synchronous :class:`~lbdns.server.handler.Handler` and back; every query is answered inside the
callback (hostname origins are resolved ahead of queries, :mod:`lbdns.server.hostnames`).

UDP answers pass the handler's response rate limiter (:mod:`lbdns.server.rrl`) when it has one;
TCP answers never do (a TCP client's address is not spoofable).

TCP: 2-byte framing with partial reads and pipelining (RFC 7766 §6.2.1), an idle timeout
(default 10 s, RFC 7766 §6.2.3) that only complete messages (or the client reading answers)
restart, a per-message deadline (default 2 s) once a message has begun — so a client dribbling
octets cannot hold a connection (RFC 7766 §10) — and a connection cap at which a new
connection closes the least recently active one instead of being refused. A client that
misbehaves (bad frame, too slow) is disconnected without affecting others.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import cast

from lbdns.errors import FormError
from lbdns.geo.pops import Pop
from lbdns.server.handler import Handler
from lbdns.server.udp_batch import BatchUdpServer, batch_available
from lbdns.wire.framing import TcpFramer, frame

log = logging.getLogger("lbdns.server")

async def serve_udp(sock: socket.socket, handler: Handler, pop: Pop, batch: int) -> Callable[[], None]:
    """Answer the UDP queries arriving on the bound socket ``sock`` at PoP ``pop`` from now on:
    in batches of up to ``batch`` (:class:`~lbdns.server.udp_batch.BatchUdpServer`) where
    recvmmsg is available and ``batch`` > 0, else through the asyncio datagram transport
    (:class:`UdpServer`). Returns the function that stops answering and closes the socket."""
    loop = asyncio.get_running_loop()
    if batch > 0 and batch_available():
        server = BatchUdpServer(sock, handler, pop, batch)
        server.start(loop)
        return server.close
    if batch > 0:
        _say_unbatched()
    transport, _ = await loop.create_datagram_endpoint(lambda: UdpServer(handler, pop), sock=sock)
    return transport.close


@functools.cache
def _say_unbatched() -> None:
    """Log once per process that ``udp_batch`` cannot be honoured here."""
    log.warning("udp_batch: the recvmmsg/sendmmsg loop is not built in this install (not Linux, or "
                "installed without a C compiler and Python's headers): UDP is read one datagram per "
                "system call")


class UdpServer(asyncio.DatagramProtocol):
    """One UDP listener bound to a PoP, on the asyncio datagram transport (one datagram per
    system call)."""

    def __init__(self, handler: Handler, pop: Pop) -> None:
        self.handler = handler
        self.pop = pop
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        peer = str(addr[0])
        out = self.handler.handle(data, peer, False, self.pop)
        if out is not None and self.transport is not None:
            rrl = self.handler.rrl
            if rrl is not None and (out := rrl.filter(peer, data, out)) is None:
                return
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (e.g. port unreachable): nothing to do
        pass


class TcpServer:
    """Factory of :class:`TcpConnection` protocols sharing a cap, an idle timeout and a
    per-message deadline (seconds; ``message_timeout`` None: the ``tcp_message_timeout``
    setting of the published snapshot). ``active`` holds the open connections, least
    recently active first."""

    def __init__(self, handler: Handler, pop: Pop, *, idle_timeout: float = 10.0, max_connections: int = 1024,
                 message_timeout: float | None = None) -> None:
        self.handler = handler
        self.pop = pop
        self.idle_timeout = idle_timeout
        if message_timeout is None:
            message_timeout = handler.ref.current.snapshot.settings.tcp_message_timeout
        self.message_timeout = min(message_timeout, idle_timeout)
        self.max_connections = max_connections
        self.active: OrderedDict[TcpConnection, None] = OrderedDict()

    def __call__(self) -> TcpConnection:
        return TcpConnection(self)

    def make_room(self) -> None:
        """Close the least recently active connection and count it."""
        victim = next(iter(self.active))
        del self.active[victim]
        self.handler.counters.tcp_evicted += 1
        victim.abort()


class TcpConnection(asyncio.Protocol):
    """One TCP client: framing, pipelining, timeouts, flow control.

    Timeouts: one timer. Between messages it is the idle timeout, restarted by each complete
    message and by the client reading answers (never by a partial message). Once a message
    has begun it is the message deadline (``message_timeout``), which later octets do not
    extend; a connection that misses it is closed and counted.

    Flow control: while the transport's write buffer is above its high-water mark (a client
    that sends queries but does not read the answers) reading is paused and complete
    messages wait in ``backlog``, so the memory a connection holds stays bounded by one read
    chunk of answers instead of growing with everything the client sends. The idle timer
    aborts a connection whose client neither sends nor reads.
    """

    def __init__(self, server: TcpServer) -> None:
        self.server = server
        self.framer = TcpFramer()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.idle: asyncio.TimerHandle | None = None
        self.in_message = False
        self.closed = False
        self.backlog: deque[bytes] = deque()
        self.paused = False
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        if len(server.active) >= server.max_connections:
            server.make_room()
        server.active[self] = None
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""
        self._arm(server.idle_timeout)

    def abort(self) -> None:
        """Drop the connection now (pending answers are lost)."""
        self.closed = True
        self.backlog.clear()
        if self.idle is not None:
            self.idle.cancel()
        if self.transport is not None:
            self.transport.abort()

    def _arm(self, delay: float) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(delay, self._timeout)

    def _active(self) -> None:
        """A complete message arrived or the client read answers: restart the idle timer
        and move to the most recently active end."""
        if self in self.server.active:
            self.server.active.move_to_end(self)
        self._arm(self.server.idle_timeout)

    def _timeout(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        if self.in_message:
            self.server.handler.counters.tcp_slow_closed += 1
            transport.abort()  # a message begun and not completed in time (RFC 7766 §10)
        elif transport.get_write_buffer_size():
            transport.abort()  # answers the client has not read for a whole idle period
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        try:
            messages = self.framer.feed(data)
        except FormError:
            self.transport.close()
            return
        partial = self.framer.buffered > 0
        if messages:
            self._active()
            if partial:
                self._arm(self.server.message_timeout)  # a new message began after them
        elif partial and not self.in_message:
            self._arm(self.server.message_timeout)
        self.in_message = partial
        if messages:
            self.backlog.extend(messages)
            self._process()

    def _process(self) -> None:
        """Answer queued messages until the backlog is empty or writing is paused."""
        transport = self.transport
        handler = self.server.handler
        backlog = self.backlog
        while backlog and not self.paused and transport is not None and not transport.is_closing():
            msg = backlog.popleft()
            out = handler.handle(msg, self.peer, True, self.server.pop)
            if out is not None:
                transport.write(frame(out))
            else:
                # an unanswerable message on a stream: the framing can no longer be trusted
                backlog.clear()
                transport.close()
                return
        self._close_if_done()

    def pause_writing(self) -> None:
        self.paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.transport is None or self.transport.is_closing():
            return
        if not self.in_message:
            self._active()  # the client is reading: not idle
        self._process()
        if not self.paused and not self.eof:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        """The client half-closed: keep the write side open until every query it sent is
        answered (RFC 7766 §6.2.4 lets a client send its queries and then shut down writing)."""
        self.eof = True
        return bool(self.backlog)

    def _close_if_done(self) -> None:
        if (self.eof and not self.backlog and self.transport is not None
                and not self.transport.is_closing()):
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.backlog.clear()
        self.server.active.pop(self, None)
        if self.idle is not None:
            self.idle.cancel()
