"""Domain names between presentation and wire form (RFC 1035 §2.3.4, §3.1, §5.1; RFC 4343).

Used at load time (zone names → wire keys) and for logs/context (``to_text``); the hot path
only needs :func:`lower`. Names are ASCII: internationalised names must be converted to
A-labels (IDNA) before they reach :func:`to_wire`.

This module is pure: no sockets, asyncio, logging, time or randomness.
"""

from __future__ import annotations

__all__ = ["lower", "to_text", "to_wire"]

_DIGITS = "0123456789"
_ESCAPED = frozenset(b'"().;\\@$')  # characters escaped with a backslash in text (as dnspython does)


def to_wire(name: str) -> bytes:
    """Convert a presentation-form name to uncompressed wire form (RFC 1035 §3.1, §5.1).

    Takes an absolute name such as ``"www.Example.com"`` or ``"www.example.com."`` (the
    trailing dot is optional; ``"."`` is the root). ``\\.`` and ``\\\\`` (any ``\\X``) escape a
    character, ``\\DDD`` gives an octet in decimal (000–255). Letter case is kept. Returns the
    length-prefixed labels followed by the root octet. Raises ValueError for an empty name or
    label, a bad escape, a non-ASCII character, a label over 63 octets or a name over
    255 octets (RFC 1035 §2.3.4).
    """
    if name == ".":
        return b"\x00"
    if not name:
        raise ValueError("empty name")
    out = bytearray()
    label = bytearray()
    i = 0
    n = len(name)
    while i < n:
        c = name[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError(f"{name!r}: dangling backslash")
            d = name[i + 1]
            if d in _DIGITS:
                digits = name[i + 1 : i + 4]
                if len(digits) != 3 or any(x not in _DIGITS for x in digits) or int(digits) > 255:
                    raise ValueError(f"{name!r}: bad \\DDD escape (RFC 1035 §5.1)")
                label.append(int(digits))
                i += 4
                continue
            if ord(d) > 127:
                raise ValueError(f"{name!r}: non-ASCII character (convert to IDNA A-labels first)")
            label.append(ord(d))
            i += 2
            continue
        if c == ".":
            _close_label(name, out, label)
            label = bytearray()
            i += 1
            continue
        code = ord(c)
        if code > 127:
            raise ValueError(f"{name!r}: non-ASCII character (convert to IDNA A-labels first)")
        label.append(code)
        i += 1
    if label:
        _close_label(name, out, label)
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"{name!r}: longer than 255 octets in wire form (RFC 1035 §2.3.4)")
    return bytes(out)


def _close_label(name: str, out: bytearray, label: bytearray) -> None:
    """Append ``label`` with its length octet to ``out``; ValueError if empty or > 63 octets."""
    if not label:
        raise ValueError(f"{name!r}: empty label")
    if len(label) > 63:
        raise ValueError(f"{name!r}: label longer than 63 octets (RFC 1035 §2.3.4)")
    out.append(len(label))
    out += label


def to_text(wire: bytes) -> str:
    """Convert an uncompressed wire-form name to presentation form (RFC 1035 §5.1).

    Takes length-prefixed labels ending with the root octet; returns the name with a trailing
    dot (``"."`` for the root), letter case kept, ``"().;\\@$`` and the backslash escaped with a
    backslash and octets outside 0x21–0x7E written as ``\\DDD`` (the same text dnspython
    produces). Raises ValueError for a compressed, truncated or over-long name or octets after
    the root.
    """
    parts: list[str] = []
    off = 0
    n = len(wire)
    while True:
        if off >= n:
            raise ValueError("truncated wire name")
        length = wire[off]
        if length == 0:
            break
        if length > 63:
            raise ValueError("compressed or invalid label type in wire name")
        label = wire[off + 1 : off + 1 + length]
        if len(label) != length:
            raise ValueError("truncated wire name")
        parts.append(_escape(label))
        off += length + 1
    if off + 1 != n:
        raise ValueError("octets after the root label")
    if n > 255:
        raise ValueError("wire name longer than 255 octets (RFC 1035 §2.3.4)")
    return ".".join(parts) + "."


def _escape(label: bytes) -> str:
    """Presentation form of one label (RFC 1035 §5.1)."""
    out = []
    for b in label:
        if b in _ESCAPED:
            out.append("\\" + chr(b))
        elif 0x20 < b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def lower(wire: bytes) -> bytes:
    """ASCII lower-case the label octets of a wire-form name (RFC 4343 §3).

    Takes a wire-form name (uncompressed, or ending in a compression pointer); returns it with
    ``A``–``Z`` mapped to ``a``–``z`` and every other octet unchanged. Length octets are never
    altered: they are ≤ 63 (and pointer octets ≥ 0xC0), outside the range 0x41–0x5A that
    ``bytes.lower`` touches, so this is a single C-level ``bytes.lower()``. Never raises.
    """
    return wire.lower()
