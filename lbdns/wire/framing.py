"""DNS-over-TCP message framing (RFC 1035 §4.2.2, RFC 7766 §8).

Every message on a TCP connection is preceded by a two-octet, big-endian length. A client may
send several queries back to back (pipelining, RFC 7766 §6.2.1) and a read may end anywhere —
even between the two length octets — so :class:`TcpFramer` buffers partial input and returns
every complete message as soon as it is available.

This module is pure: no sockets, asyncio, logging, time or randomness.
"""

from __future__ import annotations

from lbdns.errors import FormError

__all__ = ["TcpFramer", "frame"]


class TcpFramer:
    """Splits a TCP byte stream into DNS messages (RFC 1035 §4.2.2, RFC 7766 §8).

    Feed every chunk read from the connection to :meth:`feed`; it returns the complete
    messages (without their length prefix) in arrival order. Messages are at most 65535
    octets by construction (16-bit length). One framer serves one connection; after
    :meth:`feed` raised, the stream is out of sync and the connection must be closed.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Number of octets received but not yet returned (0 between messages)."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk`` (any length, possibly empty) and return the messages now complete.

        Returns a list of 0 or more message bodies (each 1–65535 octets, as ``bytes``).
        Raises :class:`FormError` (``answerable=False``) for a length prefix of 0: an empty
        message is never valid and nothing can be answered. Cost is linear in the input even
        when it arrives one octet at a time.
        """
        messages: list[bytes] = []
        buf = self._buf
        if not buf:
            # Common case: nothing pending, parse the chunk in place without copying it.
            n = len(chunk)
            pos = 0
            while n - pos >= 2:
                length = chunk[pos] << 8 | chunk[pos + 1]
                if length == 0:
                    raise FormError("TCP length prefix of 0 (RFC 1035 §4.2.2)", answerable=False)
                end = pos + 2 + length
                if end > n:
                    break
                messages.append(bytes(chunk[pos + 2 : end]))
                pos = end
            if pos < n:
                buf += chunk[pos:]
            return messages
        buf += chunk
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            length = buf[pos] << 8 | buf[pos + 1]
            if length == 0:
                buf.clear()
                raise FormError("TCP length prefix of 0 (RFC 1035 §4.2.2)", answerable=False)
            end = pos + 2 + length
            if end > n:
                break
            messages.append(bytes(buf[pos + 2 : end]))
            pos = end
        if pos:
            del buf[:pos]
        return messages


def frame(message: bytes) -> bytes:
    """Prefix ``message`` with its two-octet length for TCP (RFC 1035 §4.2.2).

    Takes a message of 0–65535 octets; returns length prefix + message. Raises ValueError
    for a longer message.
    """
    length = len(message)
    if length > 0xFFFF:
        raise ValueError(f"message of {length} octets does not fit a TCP frame (max 65535)")
    return length.to_bytes(2, "big") + message
