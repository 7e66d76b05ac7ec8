"""Listening sockets of the edge: what a bound listener is, the one-line error of one that
could not be bound, and the UDP receive-buffer setting. Shared by the composition root
(:mod:`lbdns.app`) and the answering workers (:mod:`lbdns.workers`), which bind their own
SO_REUSEPORT sockets.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BoundListener", "ListenError", "bind_cause", "grow_rcvbuf", "host_port"]

log = logging.getLogger("lbdns")


def host_port(address: str, port: int) -> str:
    """``address:port`` for display, with an IPv6 address in brackets (``[::1]:5300``, RFC 3986 §3.2.2)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class ListenError(OSError):
    """A listener could not be bound: ``what`` (``udp``, ``tcp``, ``admin http``), the address
    and port, and the operating system's error (``errno``, ``strerror``). ``str()`` is one line:
    ``cannot listen on udp 127.0.0.1:5300: [Errno 98] Address already in use``."""

    def __init__(self, what: str, address: str, port: int, cause: OSError) -> None:
        code = cause.errno
        reason = os.strerror(code) if code else (cause.strerror or str(cause))
        super().__init__(code, reason)
        self.what, self.address, self.port = what, address, port

    def __str__(self) -> str:
        name = f"[Errno {self.errno}] " if self.errno else ""
        return f"cannot listen on {self.what} {host_port(self.address, self.port)}: {name}{self.strerror}"


@dataclass(slots=True)
class BoundListener:
    """A listening socket: transport ``udp``/``tcp``, the address and actual port, the PoP."""

    transport: str
    address: str
    port: int
    pop: str
    closer: Callable[[], Any]

    def __str__(self) -> str:
        return f"{self.transport} {host_port(self.address, self.port)} (PoP {self.pop})"


def bind_cause(exc: OSError) -> OSError:
    """The bind error with its errno: asyncio's ``create_server`` re-raises it as
    ``OSError(errno, 'error while attempting to bind on address …')``, uvloop's
    ``create_datagram_endpoint`` chains the original; otherwise EADDRINUSE is recognised from the
    text."""
    if exc.errno:
        return exc
    cause = exc.__cause__  # uvloop: OSError("could not bind to local_addr …") from OSError(98, …)
    if isinstance(cause, OSError) and cause.errno:
        return cause
    if "address already in use" in str(exc).lower():
        return OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
    return exc


def grow_rcvbuf(sock: Any, size: int) -> None:
    """Raise a UDP socket's receive buffer to ``size`` bytes (the ``udp_rcvbuf`` setting; 0 or
    no socket: nothing): SO_RCVBUFFORCE when permitted, else SO_RCVBUF, which the kernel caps at
    net.core.rmem_max. A refusal is logged, not raised."""
    if not size or sock is None:
        return
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is not None:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
            return
    except OSError:
        pass
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError as exc:
        log.warning("cannot set the UDP receive buffer to %d bytes: %s", size, exc)
