"""One pass over a query for the serving plan: the header, the question and at most one OPT record,
read only as far as the plan needs them (docs/architecture.md › The serving plan).

:func:`scan` is the C function of :mod:`lbdns.wire._scan` when that extension is built (it is
optional at install time), else :func:`scan_py`, its pure-Python twin; tests hold the two to
the same result for any input bytes. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Scan", "scan", "scan_py"]

Scan = tuple[int, bytes, bytes | None, int, int, int, int, int, int, bytes]
"""What :func:`scan` returns: ``(qend, key, low, arcount, payload, do, ecs_at, source, width,
cookie)``:

* ``qend`` — offset just after the question (after QTYPE and QCLASS);
* ``key`` — the question name in lower case (uncompressed wire form) + QTYPE + QCLASS octets;
* ``low`` — the query after its ID with the name in lower case, or None when the name has no
  upper-case letter (the query itself is then that form, RFC draft "0x20");
* ``arcount`` — 0 (no OPT record) or 1 (one OPT record of EDNS version 0, RFC 6891 §6.1);
* ``payload`` — the requestor's UDP payload size (0 without OPT);
* ``do`` — 1 when the DO bit is set (RFC 3225 §3), else 0;
* ``ecs_at`` — offset of the Client Subnet option (RFC 7871 §6), -1 without one;
* ``source`` — its SOURCE PREFIX-LENGTH (-1 without ECS); ``width`` its address family's
  address length (4 or 16; 0 without ECS);
* ``cookie`` — the 8-octet client cookie (RFC 7873 §4.1), or ``b""``.
"""

_QUESTION_ONLY = b"\x00\x01\x00\x00\x00\x00\x00"  # QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT high octet 0


def scan_py(data: bytes) -> Scan | None:  # noqa: C901, PLR0912 -- one pass over the wire, read in order
    """Read ``data`` as a query the serving plan can answer: a QUERY (QR clear, opcode 0) with
    exactly one question whose name is uncompressed with labels of 1–63 octets (RFC 1035
    §4.1.1, §3.1), no answer or authority records, and either no additional record or one OPT
    record of version 0 (RFC 6891 §6.1.2) whose options are at most one Client Subnet (RFC 7871
    §6: family 1 or 2, SOURCE PREFIX-LENGTH within it, SCOPE 0, ADDRESS of the right length with
    no bits set beyond the prefix) and at most one COOKIE of a valid length (RFC 7873 §4: 8, or
    16–40 octets). Returns a :data:`Scan`, or None for anything else (the strict path then
    answers it: FORMERR, BADVERS, NSID, …). Never raises."""
    n = len(data)
    if n < 17 or data[2] & 0xF8 or data[4:11] != _QUESTION_ONLY:
        return None
    i = 12
    while True:  # labels of 1..63 octets up to the root, 255 octets at most
        if i >= n:
            return None
        length = data[i]
        if length == 0:
            break
        if length > 63 or i + length - 10 > 255:  # the name with its root octet: 255 octets at most
            return None
        i += length + 1
    end = i
    qend = end + 5
    if qend > n:
        return None
    name = data[12:end + 1]
    lname = name.lower()
    key = lname + data[end + 1:qend]
    low = data[2:12] + lname + data[end + 1:] if lname != name else None
    ar = data[11]
    ecs_at = -1
    cookie = b""
    if ar == 0:
        if n != qend:
            return None
        return qend, key, low, 0, 0, 0, -1, -1, 0, b""
    if ar != 1:
        return None
    if n < qend + 11 or data[qend:qend + 3] != b"\x00\x00\x29" or data[qend + 6]:
        return None  # not a root-owned OPT of EDNS version 0
    if qend + 11 + (data[qend + 9] << 8 | data[qend + 10]) != n:
        return None
    pos = qend + 11
    while pos < n:
        if pos + 4 > n:
            return None
        code = data[pos] << 8 | data[pos + 1]
        oend = pos + 4 + (data[pos + 2] << 8 | data[pos + 3])
        if oend > n:
            return None
        if code == 8 and ecs_at < 0:
            ecs_at = pos
        elif code == 10 and not cookie and (oend - pos == 12 or 20 <= oend - pos <= 44):
            cookie = data[pos + 4:pos + 12]
        else:
            return None  # NSID, padding, unknown or repeated options
        pos = oend
    source = -1
    width = 0
    if ecs_at >= 0:
        olen = data[ecs_at + 2] << 8 | data[ecs_at + 3]
        if olen < 4:
            return None
        family = data[ecs_at + 4] << 8 | data[ecs_at + 5]
        source = data[ecs_at + 6]
        width = 4 if family == 1 else 16 if family == 2 else 0
        alen = olen - 4
        if (not width or source > width * 8 or data[ecs_at + 7] or alen != (source + 7) >> 3
                or (source & 7 and data[ecs_at + 8 + alen - 1] & (0xFF >> (source & 7)))):
            return None
    return (qend, key, low, 1, data[qend + 3] << 8 | data[qend + 4], data[qend + 7] >> 7, ecs_at, source, width,
            cookie)


scan: Callable[[bytes], Scan | None]
try:
    from lbdns.wire._scan import scan
except ImportError:  # built without a C compiler: the same function in Python
    scan = scan_py
