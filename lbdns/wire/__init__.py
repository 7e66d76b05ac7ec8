"""The hot-path DNS wire codec (RFC 1035 §4, EDNS RFC 6891, ECS RFC 7871, cookies RFC 7873;
docs/architecture.md › Module map).

* :mod:`lbdns.wire.codec` — :func:`parse_query` (header, question, OPT/ECS/COOKIE; fails closed
  with :class:`lbdns.errors.FormError`) and the protocol constants.
* :mod:`lbdns.wire.render` — :func:`build_response`, :func:`build_error`, :func:`encode_rr`,
  :func:`make_server_cookie`, :data:`QNAME_POINTER`.
* :mod:`lbdns.wire.framing` — :class:`TcpFramer` and :func:`frame` (RFC 1035 §4.2.2).
* :mod:`lbdns.wire.names` — presentation ↔ wire names and ASCII lower-casing.

Pure code: no sockets, asyncio, logging, time or randomness; dnspython is not used here.
"""

from lbdns.wire.codec import (
    CLASS_ANY,
    CLASS_CH,
    CLASS_IN,
    EDNS_OPTION_COOKIE,
    EDNS_OPTION_ECS,
    OPCODE_QUERY,
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_ANY,
    QTYPE_AXFR,
    QTYPE_CAA,
    QTYPE_CNAME,
    QTYPE_HINFO,
    QTYPE_IXFR,
    QTYPE_MX,
    QTYPE_NS,
    QTYPE_OPT,
    QTYPE_PTR,
    QTYPE_SOA,
    QTYPE_SRV,
    QTYPE_TXT,
    RCODE_BADVERS,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTIMP,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    ClientSubnet,
    Edns,
    EdnsOptionError,
    Query,
    parse_header,
    parse_query,
)
from lbdns.wire.framing import TcpFramer, frame
from lbdns.wire.render import QNAME_POINTER, build_error, build_response, encode_rr, make_server_cookie

__all__ = [
    "CLASS_ANY",
    "CLASS_CH",
    "CLASS_IN",
    "EDNS_OPTION_COOKIE",
    "EDNS_OPTION_ECS",
    "OPCODE_QUERY",
    "QNAME_POINTER",
    "QTYPE_A",
    "QTYPE_AAAA",
    "QTYPE_ANY",
    "QTYPE_AXFR",
    "QTYPE_CAA",
    "QTYPE_CNAME",
    "QTYPE_HINFO",
    "QTYPE_IXFR",
    "QTYPE_MX",
    "QTYPE_NS",
    "QTYPE_OPT",
    "QTYPE_PTR",
    "QTYPE_SOA",
    "QTYPE_SRV",
    "QTYPE_TXT",
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
    "TcpFramer",
    "build_error",
    "build_response",
    "encode_rr",
    "frame",
    "make_server_cookie",
    "parse_header",
    "parse_query",
]
