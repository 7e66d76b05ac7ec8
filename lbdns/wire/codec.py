"""Hot-path DNS query parser and wire constants (RFC 1035 §4.1, RFC 6891, RFC 7871, RFC 7873).

:func:`parse_query` turns one received DNS message into a :class:`Query`. It reads only what an
authoritative answer needs — the 12-byte header, the single question and the OPT record with its
ECS and COOKIE options — and *fails closed*: any other problem raises
:class:`lbdns.errors.FormError` and nothing else (no ``IndexError``, ``struct.error``,
``ValueError``…). ``FormError.answerable`` is False when no response may be sent at all (shorter
than a header, or the packet is itself a response).

Speed notes: the common query shape — QDCOUNT=1, ANCOUNT=NSCOUNT=0 and ARCOUNT 0
or 1 with a root-owned OPT — is recognised without the general resource-record walker. Parsed
:class:`Edns` values are immutable and memoised by the exact OPT bytes (CLASS…RDATA), so the
payload/DO/ECS/cookie decoding and the ``ipaddress`` object are built once per distinct OPT
record (bounded memo; a miss costs ~2 µs more). :class:`Query`, :class:`Edns` and
:class:`ClientSubnet` instances are built through a mutable twin class with the same slot
layout whose ``__class__`` is then switched to the frozen class: a frozen dataclass's generated
``__init__`` costs ~1.2 µs for eleven fields, the twin ~0.3 µs, and the result is an ordinary,
immutable instance (``type(q) is Query``, equality, hashing and ``dataclasses.replace``
unchanged). Constructing the classes directly (``Query(...)``) works as usual.

This module is pure: no sockets, asyncio, logging, time or randomness.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import NoReturn, cast

from lbdns.errors import FormError

__all__ = [
    "CLASS_ANY",
    "CLASS_CH",
    "CLASS_IN",
    "EDNS_OPTION_COOKIE",
    "EDNS_OPTION_ECS",
    "EDNS_OPTION_NSID",
    "OPCODE_QUERY",
    "QTYPE_A",
    "QTYPE_AAAA",
    "QTYPE_ANY",
    "QTYPE_AXFR",
    "QTYPE_CAA",
    "QTYPE_CNAME",
    "QTYPE_DNAME",
    "QTYPE_DS",
    "QTYPE_HINFO",
    "QTYPE_HTTPS",
    "QTYPE_IXFR",
    "QTYPE_MX",
    "QTYPE_NS",
    "QTYPE_OPT",
    "QTYPE_PTR",
    "QTYPE_SOA",
    "QTYPE_SRV",
    "QTYPE_SVCB",
    "QTYPE_TXT",
    "RCODE_BADCOOKIE",
    "RCODE_BADVERS",
    "RCODE_FORMERR",
    "RCODE_NOERROR",
    "RCODE_NOTIMP",
    "RCODE_NXDOMAIN",
    "RCODE_REFUSED",
    "RCODE_SERVFAIL",
    "ClientSubnet",
    "Edns",
    "EdnsOptionError",
    "Query",
    "QuestionCountError",
    "parse_header",
    "parse_query",
]

# --- RR types (RFC 1035 §3.2.2/§3.2.3, RFC 3596, RFC 2782, RFC 6891, RFC 1995, RFC 8659) -------------
QTYPE_A = 1
QTYPE_NS = 2
QTYPE_CNAME = 5
QTYPE_SOA = 6
QTYPE_PTR = 12
QTYPE_HINFO = 13
QTYPE_MX = 15
QTYPE_TXT = 16
QTYPE_AAAA = 28
QTYPE_SRV = 33
QTYPE_DNAME = 39  # RFC 6672
QTYPE_OPT = 41
QTYPE_DS = 43  # RFC 4034
QTYPE_SVCB = 64  # RFC 9460
QTYPE_HTTPS = 65  # RFC 9460
QTYPE_IXFR = 251
QTYPE_AXFR = 252
QTYPE_ANY = 255
QTYPE_CAA = 257

# --- classes (RFC 1035 §3.2.4/§3.2.5) ------------------------------------------------------------
CLASS_IN = 1
CLASS_CH = 3
CLASS_ANY = 255

# --- opcodes and rcodes (RFC 1035 §4.1.1, RFC 6891 §9) --------------------------------------------
OPCODE_QUERY = 0
RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
RCODE_BADVERS = 16
RCODE_BADCOOKIE = 23  # RFC 7873 §8

# --- EDNS option codes (RFC 5001 §2.3, RFC 7871 §6, RFC 7873 §4) ------------------------------------
EDNS_OPTION_NSID = 3
EDNS_OPTION_ECS = 8
EDNS_OPTION_COOKIE = 10

# Header flag bits (RFC 1035 §4.1.1).
_FLAG_QR = 0x8000
_FLAG_RD = 0x0100
_FLAG_CD = 0x0010  # RFC 4035 §3.2.2

_MAX_NAME = 255  # RFC 1035 §2.3.4: a name is at most 255 octets in wire form
_QNAME_LIMIT = 12 + _MAX_NAME  # the root octet of the question name must lie before this offset
_MAX_POINTER_HOPS = 16  # as dnspython; only followed for an OPT owner

_unpack_header = struct.Struct("!HHHHHH").unpack_from
_unpack_hh = struct.Struct("!HH").unpack_from
_unpack_hhh = struct.Struct("!HHH").unpack_from
_unpack_rr = struct.Struct("!HHIH").unpack_from  # TYPE, CLASS, TTL, RDLENGTH
_unpack_opt_fixed = struct.Struct("!HIH").unpack_from  # CLASS, TTL, RDLENGTH (of a key, below)
_unpack_ecs = struct.Struct("!HBB").unpack_from  # FAMILY, SOURCE, SCOPE
_new_object = object.__new__


@dataclass(frozen=True, slots=True)
class ClientSubnet:
    """A validated EDNS Client Subnet option as received in a query (RFC 7871 §6).

    ``family`` is 1 (IPv4) or 2 (IPv6); ``source_prefix`` is 0–32 resp. 0–128;
    ``scope_prefix`` is the SCOPE PREFIX-LENGTH as received (always 0: the parser rejects
    anything else, see :func:`parse_query`); ``address`` is the ADDRESS field exactly as received
    (``ceil(source_prefix / 8)`` octets, no bits set beyond ``source_prefix``); ``packed`` is that
    address zero-padded to the full width (4 or 16 octets, already masked to the prefix) — the
    cheapest form for a GeoIP lookup; :attr:`ip` is the same as an ``ipaddress`` object, built on
    demand (constructing it costs more than parsing the whole query).
    """

    family: int
    source_prefix: int
    scope_prefix: int
    address: bytes
    packed: bytes

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The zero-padded ECS address as an ``ipaddress`` object."""
        return ipaddress.IPv4Address(self.packed) if self.family == 1 else ipaddress.IPv6Address(self.packed)


@dataclass(frozen=True, slots=True)
class Edns:
    """The OPT pseudo-record of a query (RFC 6891 §6.1.2–§6.1.3).

    ``payload`` is the requestor's UDP payload size in octets, values below 512 raised to 512
    (RFC 6891 §6.2.5); ``version`` the EDNS version 0–255 (the handler answers BADVERS when it
    is > 0); ``do`` the DNSSEC OK bit (RFC 3225 §3); ``ecs`` the client subnet option or None;
    ``client_cookie`` the 8-octet client cookie (RFC 7873 §4) or None; ``server_cookie`` the
    8–32-octet server cookie the client sent back, or None; ``nsid`` True when the query
    carried an NSID option asking for the server's identity (RFC 5001 §2.1; its data, which
    must be empty in queries, is ignored). When ``version`` > 0 the options are only checked
    for framing and not interpreted (``ecs``, cookies None, ``nsid`` False): their meaning is
    defined by that unknown version (RFC 6891 §6.1.3).
    """

    payload: int
    version: int
    do: bool
    ecs: ClientSubnet | None
    client_cookie: bytes | None
    server_cookie: bytes | None
    nsid: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """One parsed DNS query (RFC 1035 §4.1).

    ``id`` is the 16-bit message ID; ``flags`` the raw 16-bit header flags word; ``opcode``
    0–15 (:data:`OPCODE_QUERY` = 0; other opcodes are returned for the handler to answer
    NOTIMP); ``rd``/``cd`` the RD and CD bits; ``qname`` the question name in uncompressed wire
    form with the client's letter case (ending with the root octet); ``qname_lower`` the same
    with ASCII letters lower-cased (the lookup key); ``qtype``/``qclass`` 0–65535;
    ``question`` the question section exactly as received (``qname`` + QTYPE + QCLASS), which
    a response echoes at offset 12; ``edns`` the OPT record, or None without EDNS.
    """

    id: int
    flags: int
    opcode: int
    rd: bool
    cd: bool
    qname: bytes
    qname_lower: bytes
    qtype: int
    qclass: int
    question: bytes
    edns: Edns | None


class _QueryBuilder:
    """Mutable twin of :class:`Query` with the identical slot layout (see the module notes)."""

    __slots__ = (  # noqa: RUF023 - order must equal Query.__slots__ (same memory layout)
        "id",
        "flags",
        "opcode",
        "rd",
        "cd",
        "qname",
        "qname_lower",
        "qtype",
        "qclass",
        "question",
        "edns",
    )

    id: int
    flags: int
    opcode: int
    rd: bool
    cd: bool
    qname: bytes
    qname_lower: bytes
    qtype: int
    qclass: int
    question: bytes
    edns: Edns | None


class _EdnsBuilder:
    """Mutable twin of :class:`Edns` with the identical slot layout."""

    __slots__ = ("payload", "version", "do", "ecs", "client_cookie", "server_cookie", "nsid")  # noqa: RUF023

    payload: int
    version: int
    do: bool
    ecs: ClientSubnet | None
    client_cookie: bytes | None
    server_cookie: bytes | None
    nsid: bool


class _ClientSubnetBuilder:
    """Mutable twin of :class:`ClientSubnet` with the identical slot layout."""

    __slots__ = ("family", "source_prefix", "scope_prefix", "address", "packed")  # noqa: RUF023

    family: int
    source_prefix: int
    scope_prefix: int
    address: bytes
    packed: bytes


for _frozen, _twin in ((Query, _QueryBuilder), (Edns, _EdnsBuilder), (ClientSubnet, _ClientSubnetBuilder)):
    if _twin.__slots__ != _frozen.__slots__:  # pragma: no cover - guards future edits
        raise ImportError(f"lbdns.wire.codec: {_twin.__name__} slots must mirror {_frozen.__name__} exactly")
del _frozen, _twin


class EdnsOptionError(FormError):
    """A :class:`FormError` inside the options of an otherwise well-formed OPT record (a bad
    ECS or COOKIE option, a broken option list). The query did carry EDNS, so the FORMERR
    response carries an OPT record too (RFC 6891 §7)."""


class QuestionCountError(FormError):
    """A query whose QDCOUNT is not 1 (RFC 1035 §4.1.2). ``qdcount`` is the count received;
    ``edns`` the request's OPT record when the rest of the message is well formed (else None).
    With an OPT the reply must carry one too (RFC 6891 §6.1.1), and a QDCOUNT of 0 with a
    COOKIE option is the RFC 7873 §5.4 query for a server cookie, answered NOERROR."""

    def __init__(self, message: str, edns: Edns | None, qdcount: int) -> None:
        super().__init__(message)
        self.edns = edns
        self.qdcount = qdcount


def parse_header(data: bytes) -> tuple[int, int, int]:
    """Read the fixed header of a DNS message (RFC 1035 §4.1.1).

    Takes the raw message bytes; returns ``(id, flags, qdcount)``, each 0–65535.
    Raises :class:`FormError` with ``answerable=False`` when ``data`` is shorter than the
    12-octet header (there is nothing to answer to).
    """
    if len(data) < 12:
        raise FormError("message shorter than the 12-octet header (RFC 1035 §4.1.1)", answerable=False)
    qid, flags, qdcount = _unpack_hhh(data, 0)
    return qid, flags, qdcount


def parse_query(data: bytes) -> Query:  # noqa: C901, PLR0912 -- per-packet hot path in one frame; split only with a bench comparison
    """Parse one DNS query message (RFC 1035 §4.1, RFC 6891 §6, RFC 7871 §6, RFC 7873 §5.2).

    Takes the raw message (a UDP payload or one de-framed TCP message, ≤ 65535 octets;
    ``bytes``, other buffers are copied first) and returns a :class:`Query`. Raises only :class:`FormError`:

    * ``answerable=False``: shorter than 12 octets, or QR=1 (a response must never be
      answered — RFC 1035 §4.1.1, avoids reflection loops).
    * ``answerable=True`` (answer FORMERR): QDCOUNT ≠ 1 (the subclass
      :class:`QuestionCountError`, carrying the OPT record when the rest parses); a question name that is truncated,
      compressed (no pointer may appear in the question), uses the reserved label types 0x40/0x80
      (RFC 6891 §5), has a label > 63 octets or exceeds 255 octets (RFC 1035 §2.3.4, §4.1.4);
      any truncated resource record; a bad owner name in the other sections (label types as
      above; a pointer must point backwards past the header — pointers are checked, not
      followed, except for an OPT owner, ≤ 16 hops — so the walk is linear in the size); an OPT
      outside the additional section, a second OPT (RFC 6891 §6.1.1) or an OPT whose owner is
      not the root (RFC 6891 §6.1.2); a malformed option list (RFC 6891 §6.1.2); octets left
      after the last section; a malformed ECS option (RFC 7871 §6, §7.2.1: FAMILY not 1/2,
      SOURCE PREFIX-LENGTH over 32/128, ADDRESS not exactly ``ceil(source/8)`` octets, address
      bits set beyond the prefix, SCOPE PREFIX-LENGTH ≠ 0 — §6: "In queries, it MUST be set to
      0", and §7.2.1: "A query with a wrongly formatted option … MUST be rejected and a FORMERR
      response MUST be returned", as BIND 9 does) or a second ECS option; a COOKIE option whose
      length is not 8 or 16–40 (RFC 7873 §5.2.2) or a second COOKIE option. Problems inside
      the options of an OPT record raise the subclass :class:`EdnsOptionError` (the reply then
      carries an OPT record).

    A query with an opcode other than QUERY is still parsed and returned (the handler answers
    NOTIMP, RFC 1035 §4.1.1); if its question cannot be parsed the FormError stands. Unknown
    EDNS options are ignored (RFC 6891 §6.1.2); non-OPT records in any section are skipped.
    """
    if type(data) is not bytes:  # bytearray/memoryview: slices must be hashable bytes
        data = bytes(data)
    n = len(data)
    if n < 12:
        raise FormError("message shorter than the 12-octet header (RFC 1035 §4.1.1)", answerable=False)
    qid, flags, qdcount, ancount, nscount, arcount = _unpack_header(data, 0)
    if flags & _FLAG_QR:
        raise FormError("QR=1: the message is a response (RFC 1035 §4.1.1)", answerable=False)
    if qdcount != 1:
        _raise_question_count(data, qdcount, ancount, nscount, arcount)

    # Question name: plain labels only (RFC 1035 §4.1.2 / §3.1).
    off = 12
    limit = n if n < _QNAME_LIMIT else _QNAME_LIMIT
    while True:
        if off >= limit:
            if limit < n or off - 12 >= _MAX_NAME:
                raise FormError("question name longer than 255 octets (RFC 1035 §2.3.4)")
            raise FormError("question truncated (RFC 1035 §4.1.2)")
        length = data[off]
        if length == 0:
            break
        if length > 63:
            _raise_label_type(length, in_question=True)
        off += length + 1
    end = off + 1
    qend = end + 4
    if qend > n:
        raise FormError("question truncated (RFC 1035 §4.1.2)")
    qtype, qclass = _unpack_hh(data, end)

    # Fast path: nothing but (optionally) one root-owned OPT after the question.
    edns: Edns | None
    if ancount == 0 and nscount == 0:
        if arcount == 0:
            if qend != n:
                raise FormError("octets after the last section (RFC 1035 §4.1)")
            edns = None
        elif (
            arcount == 1 and qend + 11 <= n and data[qend] == 0 and data[qend + 1] == 0 and data[qend + 2] == QTYPE_OPT
        ):
            rdend = qend + 11 + (data[qend + 9] << 8 | data[qend + 10])
            if rdend != n:
                if rdend > n:
                    raise FormError("OPT record truncated (RFC 6891 §6.1.2)")
                raise FormError("octets after the last section (RFC 1035 §4.1)")
            edns = _parse_opt(data[qend + 3 : n])
        else:
            edns = _walk_records(data, qend, ancount, nscount, arcount)
    else:
        edns = _walk_records(data, qend, ancount, nscount, arcount)

    # Equivalent to Query(...), without the frozen dataclass's slow __init__ (module notes).
    query = _new_object(_QueryBuilder)
    query.id = qid
    query.flags = flags
    query.opcode = (flags >> 11) & 0xF
    query.rd = flags & _FLAG_RD != 0
    query.cd = flags & _FLAG_CD != 0
    query.qname = qname = data[12:end]
    query.qname_lower = qname.lower()  # length octets are <= 63, never in b"A".."Z"
    query.qtype = qtype
    query.qclass = qclass
    query.question = data[12:qend]
    query.edns = edns
    query.__class__ = Query  # type: ignore[assignment]
    return cast(Query, query)


def _raise_question_count(data: bytes, qdcount: int, ancount: int, nscount: int, arcount: int) -> NoReturn:
    """Raise :class:`QuestionCountError` for a message with QDCOUNT ≠ 1, with its OPT record
    when the questions and records after the header are well formed (each question name is
    checked like a record owner, :func:`_skip_name`). A malformed option list in that OPT
    raises :class:`EdnsOptionError` instead (FORMERR with OPT). Linear in the message size."""
    n = len(data)
    off = 12
    edns: Edns | None
    try:
        for _ in range(qdcount):
            off = _skip_name(data, off, n) + 4
            if off > n:
                raise FormError("question truncated (RFC 1035 §4.1.2)")
        edns = _walk_records(data, off, ancount, nscount, arcount)
    except EdnsOptionError:
        raise
    except FormError:
        edns = None
    raise QuestionCountError(f"QDCOUNT is {qdcount}, must be 1 (RFC 1035 §4.1.2)", edns, qdcount)


def _raise_label_type(length: int, *, in_question: bool) -> NoReturn:
    """Raise the FormError for a length octet > 63 (RFC 1035 §4.1.4, RFC 6891 §5)."""
    kind = length & 0xC0
    if kind == 0xC0:
        if in_question:
            raise FormError("compression pointer in the question name (not allowed in queries)")
        raise FormError("malformed compression pointer (RFC 1035 §4.1.4)")
    raise FormError(f"unsupported label type 0x{kind:02x} (RFC 6891 §5)")


def _skip_name(data: bytes, off: int, n: int) -> int:
    """Skip the owner name of a record at ``off``; return the offset just after it (RFC 1035 §4.1.4).

    Only the name's own octets are read — compression pointers are checked but not followed —
    so skipping every record of a message costs time linear in its size, whatever pointer
    chains it contains. Checks: labels ≤ 63 octets, no reserved label type (RFC 6891 §5), the
    in-place part ≤ 255 octets, and a pointer must target a position after the header and
    before this name (a prior occurrence, RFC 1035 §4.1.4). Raises FormError.
    """
    start = off
    while True:
        if off >= n:
            raise FormError("record name truncated (RFC 1035 §4.1.3)")
        length = data[off]
        if length == 0:
            return off + 1
        if length > 63:
            if length & 0xC0 != 0xC0:
                _raise_label_type(length, in_question=False)
            if off + 1 >= n:
                raise FormError("record name truncated (RFC 1035 §4.1.3)")
            target = (length & 0x3F) << 8 | data[off + 1]
            if target < 12 or target >= start:
                raise FormError("compression pointer not pointing backwards (RFC 1035 §4.1.4)")
            return off + 2
        off += length + 1
        if off - start >= _MAX_NAME:
            raise FormError("record name longer than 255 octets (RFC 1035 §2.3.4)")


def _is_root_name(data: bytes, off: int) -> bool:
    """Whether the (possibly compressed) name at ``off`` is the root (RFC 1035 §4.1.4).

    ``off`` starts a name already checked by :func:`_skip_name`. Follows at most
    :data:`_MAX_POINTER_HOPS` pointers, each strictly backwards and past the header, so it
    always terminates. Raises FormError for a bad pointer or label type.
    """
    hops = 0
    while True:
        length = data[off]
        if length == 0:
            return True
        if length <= 63:
            return False
        if length & 0xC0 != 0xC0:
            _raise_label_type(length, in_question=False)
        hops += 1
        if hops > _MAX_POINTER_HOPS or off + 1 >= len(data):
            raise FormError("compression pointer chain too long (RFC 1035 §4.1.4)")
        target = (length & 0x3F) << 8 | data[off + 1]
        if target < 12 or target >= off:
            raise FormError("compression pointer not pointing backwards (RFC 1035 §4.1.4)")
        off = target


def _walk_records(data: bytes, off: int, ancount: int, nscount: int, arcount: int) -> Edns | None:
    """Walk every answer/authority/additional record after the question (RFC 1035 §4.1.3).

    Returns the parsed OPT record or None. Non-OPT records are skipped (their owner names
    checked in place, see :func:`_skip_name`; RDATA not interpreted). Raises FormError for
    truncation, bad names, an OPT outside the additional section or more than one OPT
    (RFC 6891 §6.1.1), a non-root OPT owner (RFC 6891 §6.1.2), or trailing octets. Time is
    linear in the message size.
    """
    n = len(data)
    edns: Edns | None = None
    seen_opt = False
    before_additional = ancount + nscount
    for index in range(before_additional + arcount):
        owner = off
        off = _skip_name(data, off, n)
        if off + 10 > n:
            raise FormError("resource record truncated (RFC 1035 §4.1.3)")
        rtype, _rclass, _ttl, rdlength = _unpack_rr(data, off)
        rdend = off + 10 + rdlength
        if rdend > n:
            raise FormError("resource record data truncated (RFC 1035 §4.1.3)")
        if rtype == QTYPE_OPT:
            if index < before_additional:
                raise FormError("OPT record outside the additional section (RFC 6891 §6.1.1)")
            if seen_opt:
                raise FormError("more than one OPT record (RFC 6891 §6.1.1)")
            if not _is_root_name(data, owner):
                raise FormError("OPT record owner is not the root (RFC 6891 §6.1.2)")
            seen_opt = True
            edns = _parse_opt(data[off + 2 : rdend])
        off = rdend
    if off != n:
        raise FormError("octets after the last section (RFC 1035 §4.1)")
    return edns


def _parse_opt(key: bytes) -> Edns:
    """Decode an OPT record from ``key`` = CLASS, TTL, RDLENGTH and RDATA (RFC 6891 §6.1.2–§6.1.3).

    RDLENGTH has already been checked against the message. Returns the :class:`Edns`. Raises
    FormError for a malformed option list, ECS option or COOKIE option.
    """
    payload, ttl, _rdlength = _unpack_opt_fixed(key, 0)
    version = (ttl >> 16) & 0xFF
    ecs: ClientSubnet | None = None
    client_cookie: bytes | None = None
    server_cookie: bytes | None = None
    nsid = False
    seen_ecs = seen_cookie = False
    pos = 8
    end = len(key)
    while pos < end:
        if pos + 4 > end:
            raise EdnsOptionError("EDNS option header truncated (RFC 6891 §6.1.2)")
        code, length = _unpack_hh(key, pos)
        pos += 4
        opt_end = pos + length
        if opt_end > end:
            raise EdnsOptionError("EDNS option data truncated (RFC 6891 §6.1.2)")
        if version == 0:
            if code == EDNS_OPTION_ECS:
                if seen_ecs:
                    raise EdnsOptionError("more than one ECS option (RFC 7871 §7.2.1)")
                seen_ecs = True
                ecs = _parse_ecs(key[pos:opt_end])
            elif code == EDNS_OPTION_COOKIE:
                if seen_cookie:
                    raise EdnsOptionError("more than one COOKIE option (RFC 7873 §5.2)")
                seen_cookie = True
                if length == 8:
                    client_cookie = key[pos:opt_end]
                elif 16 <= length <= 40:
                    client_cookie = key[pos : pos + 8]
                    server_cookie = key[pos + 8 : opt_end]
                else:
                    raise EdnsOptionError(f"COOKIE option length {length}, must be 8 or 16-40 (RFC 7873 §5.2.2)")
            elif code == EDNS_OPTION_NSID:
                nsid = True
        pos = opt_end
    built = _new_object(_EdnsBuilder)  # == Edns(...), see the module notes
    built.payload = payload if payload >= 512 else 512
    built.version = version
    built.do = ttl & 0x8000 != 0
    built.ecs = ecs
    built.client_cookie = client_cookie
    built.server_cookie = server_cookie
    built.nsid = nsid
    built.__class__ = Edns  # type: ignore[assignment]
    return cast(Edns, built)


def _parse_ecs(opt: bytes) -> ClientSubnet:
    """Validate and decode the data of an ECS option from a query (RFC 7871 §6, §7.2.1).

    ``opt`` is the option data (FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH, ADDRESS).
    Raises FormError when it is malformed (see :func:`parse_query`).
    """
    if len(opt) < 4:
        raise EdnsOptionError("ECS option shorter than 4 octets (RFC 7871 §6)")
    family, source, scope = _unpack_ecs(opt, 0)
    if family == 1:
        width = 4
    elif family == 2:
        width = 16
    else:
        raise EdnsOptionError(f"ECS FAMILY {family}, must be 1 or 2 (RFC 7871 §6, §7.2.1)")
    if source > width * 8:
        raise EdnsOptionError(f"ECS SOURCE PREFIX-LENGTH {source} too long for FAMILY {family} (RFC 7871 §6)")
    if scope != 0:
        raise EdnsOptionError("ECS SCOPE PREFIX-LENGTH must be 0 in queries (RFC 7871 §6, §7.2.1)")
    address = opt[4:]
    if len(address) != (source + 7) >> 3:
        raise EdnsOptionError(
            f"ECS ADDRESS is {len(address)} octets, must be {(source + 7) >> 3} for /{source} (RFC 7871 §6)"
        )
    if source & 7 and address[-1] & (0xFF >> (source & 7)):
        raise EdnsOptionError("ECS ADDRESS has bits set beyond SOURCE PREFIX-LENGTH (RFC 7871 §6)")
    built = _new_object(_ClientSubnetBuilder)  # == ClientSubnet(...), see the module notes
    built.family = family
    built.source_prefix = source
    built.scope_prefix = scope
    built.address = address
    built.packed = address + bytes(width - len(address))
    built.__class__ = ClientSubnet  # type: ignore[assignment]
    return cast(ClientSubnet, built)
