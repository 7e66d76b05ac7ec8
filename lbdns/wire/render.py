"""Response building on the hot path (RFC 1035 §4.1, RFC 6891 §6–§7, RFC 7871 §7.2.1, RFC 7873 §5.2).

A response is the 12-octet header, the client's question bytes echoed unchanged at offset 12
(so pre-encoded records may compress their owner to :data:`QNAME_POINTER`), the caller's
pre-encoded answer/authority/additional sections, and — when the query had EDNS — one OPT
record. :func:`build_response` enforces the transport's size limit by truncation (TC=1);
:func:`build_error` answers packets that did not parse; :func:`encode_rr` pre-encodes records
at load time; :func:`make_server_cookie` derives a DNS server cookie.

This module is pure: no sockets, asyncio, logging, time or randomness.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

from lbdns.wire.codec import EDNS_OPTION_COOKIE, EDNS_OPTION_ECS, EDNS_OPTION_NSID, Edns, Query

__all__ = [
    "QNAME_POINTER",
    "build_error",
    "build_headless",
    "build_response",
    "encode_rr",
    "make_server_cookie",
    "server_cookie_key",
]

QNAME_POINTER = b"\xc0\x0c"
"""A compression pointer to offset 12, where every response holds the question name
(RFC 1035 §4.1.4). Use it as the owner of records whose owner is the QNAME."""

_FLAG_QR = 0x8000
_FLAG_AA = 0x0400
_FLAG_TC = 0x0200
_COPY_MASK = 0x7900  # opcode (0x7800) + RD (0x0100); AA, TC, RA, Z, AD, CD and RCODE are not copied

_pack_header = struct.Struct("!HHHHHH").pack
_pack_opt = struct.Struct("!BHHBBHH").pack  # owner root, TYPE, CLASS, EXT-RCODE, VERSION, FLAGS, RDLEN
_pack_ecs = struct.Struct("!HHHBB").pack  # OPTION-CODE, OPTION-LENGTH, FAMILY, SOURCE, SCOPE
_pack_option = struct.Struct("!HH").pack
_pack_rr = struct.Struct("!HHIH").pack

_OPT_TYPE = 41
_DO = 0x8000


def build_response(  # noqa: PLR0912 -- per-answer hot path in one frame; split only with a bench comparison
    query: Query,
    *,
    rcode: int,
    aa: bool,
    answer: bytes = b"",
    ancount: int = 0,
    authority: bytes = b"",
    nscount: int = 0,
    additional: bytes = b"",
    arcount: int = 0,
    max_size: int = 65535,
    edns_payload: int = 1232,
    ecs_scope: int | None = None,
    server_cookie: bytes | None = None,
    nsid: bytes | None = None,
    optional: bytes = b"",
    opcount: int = 0,
    optional_parts: tuple[tuple[bytes, int], ...] = (),
) -> bytes:
    """Assemble the response to ``query`` (RFC 1035 §4.1.1, RFC 6891 §6.1.1/§7).

    Takes the parsed query; ``rcode`` 0–4095 (values > 15 need EDNS: the upper 8 bits travel in
    the OPT record, RFC 6891 §6.1.3, e.g. BADVERS = 16); ``aa`` the AA bit; each section as
    pre-encoded RR bytes with its record count (records may compress names to offset 12, the
    question name); ``max_size`` the transport's limit in octets (UDP: 512 without EDNS, else
    min(client payload, ours); TCP: 65535); ``edns_payload`` the UDP payload size advertised in
    our OPT (512–65535); ``ecs_scope`` the SCOPE PREFIX-LENGTH echoed when the query had ECS
    (None means 0; 0–32 for IPv4, 0–128 for IPv6, RFC 7871 §7.2.1); ``server_cookie`` our
    8–32-octet server cookie, returned after the client cookie when the query had one
    (RFC 7873 §5.2.2); ``nsid`` our server identity (1–512 octets), returned in an NSID option
    when the query asked for it (RFC 5001 §2.2; pass None when no identity is configured);
    ``optional``/``opcount`` additional-section records that may be left out (RFC 2181 §9,
    RFC 9471 §3: addresses of MX/SRV targets, sibling glue), placed after ``additional``, and
    ``optional_parts`` the same records as (RRset bytes, count) pieces, in order, when they may
    be left out one RRset at a time (empty: all or nothing).

    Returns the message bytes. Header: ID and opcode and RD copied, QR=1, AA as given, RA=0
    (never recursive), Z/AD/CD cleared, QDCOUNT=1. When the query had EDNS one OPT is appended
    as the last additional record: owner root, CLASS = ``edns_payload``, EXTENDED-RCODE =
    ``rcode >> 4``, version 0, DO copied (RFC 3225 §3), then the ECS echo (FAMILY, SOURCE
    PREFIX-LENGTH and ADDRESS as received, RFC 7871 §7.2.1) and the COOKIE option
    (client cookie + ``server_cookie``) when present, then NSID. When the message would exceed
    ``max_size``, the optional additional records are left out first (as many whole RRsets
    as fit are kept, TC stays clear); when it still does not fit, the sections are dropped and
    TC=1 is set: header, question and the OPT only (RFC 1035 §4.2.1, RFC 6891 §7, RFC 2181 §9).

    Raises ValueError when ``rcode`` > 15 without EDNS, or ``ecs_scope`` is outside the
    family's range.
    """
    edns = query.edns
    flags = _FLAG_QR | (query.flags & _COPY_MASK) | (rcode & 0xF)
    if aa:
        flags |= _FLAG_AA
    if edns is None:
        if rcode > 15:
            raise ValueError(f"rcode {rcode} needs EDNS (RFC 6891 §6.1.3)")
        opt = b""
    else:
        ecs = edns.ecs
        client_cookie = edns.client_cookie
        if ecs is None and (client_cookie is None or server_cookie is None) and (nsid is None or not edns.nsid):
            opt = _pack_opt(0, _OPT_TYPE, edns_payload, rcode >> 4, 0, _DO if edns.do else 0, 0)
        else:
            options = b""
            if ecs is not None:
                scope = 0 if ecs_scope is None else ecs_scope
                if scope < 0 or scope > (32 if ecs.family == 1 else 128):
                    raise ValueError(f"ECS scope {scope} out of range for family {ecs.family}")
                address = ecs.address
                options = _pack_ecs(EDNS_OPTION_ECS, 4 + len(address), ecs.family, ecs.source_prefix, scope) + address
            if client_cookie is not None and server_cookie is not None:
                options += (
                    _pack_option(EDNS_OPTION_COOKIE, len(client_cookie) + len(server_cookie))
                    + client_cookie
                    + server_cookie
                )
            if nsid is not None and edns.nsid:
                options += _pack_option(EDNS_OPTION_NSID, len(nsid)) + nsid
            opt = _pack_opt(0, _OPT_TYPE, edns_payload, rcode >> 4, 0, _DO if edns.do else 0, len(options)) + options
        arcount += 1
    question = query.question
    size = 12 + len(question) + len(answer) + len(authority) + len(additional) + len(opt)
    if not optional:
        if size <= max_size:
            return b"".join(
                (_pack_header(query.id, flags, 1, ancount, nscount, arcount), question, answer, authority, additional,
                 opt)
            )
    elif size + len(optional) <= max_size:
        return b"".join(
            (
                _pack_header(query.id, flags, 1, ancount, nscount, arcount + opcount),
                question,
                answer,
                authority,
                additional,
                optional,
                opt,
            )
        )
    elif size <= max_size:
        kept: list[bytes] = []
        for part, count in optional_parts:  # whole RRsets in order while they fit (RFC 2181 §9)
            if size + len(part) > max_size:
                break
            kept.append(part)
            size += len(part)
            arcount += count
        return b"".join((_pack_header(query.id, flags, 1, ancount, nscount, arcount), question, answer, authority,
                         additional, *kept, opt))
    return _pack_header(query.id, flags | _FLAG_TC, 1, 0, 0, 1 if opt else 0) + question + opt


def build_headless(data: bytes, rcode: int, edns: Edns, *, edns_payload: int,
                   cookie: bytes | None = None) -> bytes:
    """The reply to a request with EDNS whose QDCOUNT is not 1 (RFC 6891 §6.1.1, RFC 7873 §5.4).

    Takes the raw request (at least a 12-octet header, QR=0), the rcode 0–4095 (FORMERR,
    NOTIMP, BADVERS; NOERROR or BADCOOKIE for the RFC 7873 §5.4 query for a server cookie),
    the request's parsed OPT record, our UDP payload size (512–65535) and ``cookie`` — the
    whole COOKIE option data (client cookie + server cookie, 16–40 octets) or None. Returns
    the ID, opcode and RD copied, QR=1, no question (QDCOUNT 0, as no single question can be
    echoed) and one OPT record: our payload size, the upper rcode bits, version 0, DO copied
    (RFC 3225 §3) and the COOKIE option when given. Without ``cookie`` the reply (23 octets) is
    never longer than the request, which carried an OPT record of at least 11 octets.
    """
    flags = _FLAG_QR | ((data[2] << 8) & _COPY_MASK) | (rcode & 0xF)
    options = b"" if cookie is None else _pack_option(EDNS_OPTION_COOKIE, len(cookie)) + cookie
    opt = _pack_opt(0, _OPT_TYPE, edns_payload, rcode >> 4, 0, _DO if edns.do else 0, len(options)) + options
    return data[:2] + _pack_header(0, flags, 0, 0, 0, 1)[2:] + opt


def build_error(data: bytes, rcode: int, *, edns_payload: int | None = None) -> bytes | None:
    """Build a minimal reply to a packet that did not parse (RFC 1035 §4.1.1).

    Takes the raw received bytes and an rcode 0–15 (usually FORMERR). Returns a 12-octet header:
    ID, opcode and RD copied, QR=1, all other flags clear, the rcode, every count 0 (no
    question is echoed, so the reply is never longer than the request — no amplification).
    With ``edns_payload`` (the request carried an OPT record whose options were malformed,
    :class:`~lbdns.wire.codec.EdnsOptionError`) an OPT record without options advertising that
    payload follows, ARCOUNT 1 (RFC 6891 §7): 23 octets, still shorter than such a request.
    Returns None when ``data`` is shorter than 12 octets or is itself a response (QR=1):
    such packets are dropped. Raises ValueError when ``rcode`` > 15 (needs an OPT record).
    """
    if rcode > 15 or rcode < 0:
        raise ValueError(f"rcode {rcode} cannot be sent without EDNS")
    if len(data) < 12 or data[2] & 0x80:
        return None
    flags = _FLAG_QR | ((data[2] << 8) & _COPY_MASK) | rcode
    if edns_payload is None:
        return data[:2] + flags.to_bytes(2, "big") + bytes(8)
    return (data[:2] + flags.to_bytes(2, "big") + b"\x00\x00\x00\x00\x00\x00\x00\x01"
            + _pack_opt(0, _OPT_TYPE, edns_payload, 0, 0, 0, 0))


def encode_rr(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = 1) -> bytes:
    """Encode one resource record for a pre-built section (RFC 1035 §4.1.3).

    Takes ``owner`` as wire-form name bytes (uncompressed, or ending in a compression pointer
    such as :data:`QNAME_POINTER`), ``rtype`` and ``rclass`` 0–65535, ``ttl`` in seconds
    0–2147483647 (RFC 2181 §8), and ``rdata`` already in wire form (≤ 65535 octets; any names
    inside it must be uncompressed or point to offset 12). Returns the record bytes.
    Raises ValueError for an out-of-range field.
    """
    if not 0 <= ttl <= 0x7FFFFFFF:
        raise ValueError(f"TTL {ttl} outside 0-2147483647 (RFC 2181 §8)")
    if not 0 <= rtype <= 0xFFFF or not 0 <= rclass <= 0xFFFF:
        raise ValueError(f"type {rtype} or class {rclass} outside 0-65535")
    if len(rdata) > 0xFFFF:
        raise ValueError(f"RDATA of {len(rdata)} octets exceeds 65535")
    if not owner:
        raise ValueError("empty owner name")
    return owner + _pack_rr(rtype, rclass, ttl, len(rdata)) + rdata


def server_cookie_key(secret: bytes) -> Callable[[bytes, str], bytes]:
    """The server cookie function of ``secret`` (1–64 octets, the server secret; rotate it to
    expire cookies, RFC 7873 §7.1): ``(client_cookie, client_ip) -> 8 octets``, equal to
    :func:`make_server_cookie` with that secret. The key is set up once; each call copies the
    keyed BLAKE2b state (about half the cost of keying it again). Raises ValueError for a
    secret of 0 or > 64 octets."""
    if not 0 < len(secret) <= 64:
        raise ValueError("cookie secret must be 1-64 octets")
    keyed = hashlib.blake2b(key=secret, digest_size=8)

    def cookie(client_cookie: bytes, client_ip: str) -> bytes:
        h = keyed.copy()
        h.update(client_cookie + client_ip.encode())
        return h.digest()

    return cookie


def make_server_cookie(secret: bytes, client_cookie: bytes, client_ip: str) -> bytes:
    """Derive our 8-octet server cookie for a client (RFC 7873 §4.2, Appendix B.2).

    Takes ``secret`` (1–64 octets, the server secret; rotate it to expire cookies,
    RFC 7873 §7.1), the 8-octet ``client_cookie`` from the query and ``client_ip`` as text (use
    one consistent spelling per address, e.g. the string the socket layer reports). Returns
    ``BLAKE2b-64(key=secret, client_cookie | client_ip)``: a keyed PRF of the client cookie and
    address, as Appendix B.2 suggests. Raises ValueError for a secret of 0 or > 64 octets.
    """
    if not 0 < len(secret) <= 64:
        raise ValueError("cookie secret must be 1-64 octets")
    return hashlib.blake2b(client_cookie + client_ip.encode(), key=secret, digest_size=8).digest()
