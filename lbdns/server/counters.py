"""Hot-path counters: plain dict increments on the query path, exported to Prometheus by a
custom collector at scrape time (so no ``Counter.labels().inc()`` per query).

Every label has a bounded set of values, whatever clients send: QTYPEs are counted as
themselves only when they have an IANA mnemonic (:data:`QTYPE_NAMES`, RFC 6895 §3.1 registry as
dnspython knows it), else as :data:`OTHER_QTYPE` — the query path maps them with one tuple
index (:data:`QTYPE_BUCKET`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import dns.rdatatype

OTHER_QTYPE = -1
"""The counter bucket of every QTYPE without a mnemonic (label ``other``)."""

QTYPE_NAMES: dict[int, str] = {int(t): dns.rdatatype.to_text(t) for t in dns.rdatatype.RdataType if int(t)}
"""QTYPE → mnemonic for the types counted by themselves (about 90); 0 (unparsable query) is
``NONE``."""
QTYPE_NAMES[0] = "NONE"

QTYPE_BUCKET: tuple[int, ...] = tuple(t if t in QTYPE_NAMES else OTHER_QTYPE for t in range(65536))
"""QTYPE (0–65535) → the value counted: itself when it has a mnemonic, else OTHER_QTYPE."""


@dataclass(slots=True)
class QueryCounters:
    """Counts since start: ``queries[(transport, qtype bucket, rcode)]`` (qtype through
    :data:`QTYPE_BUCKET`), ``decisions[(lb, pool, fallback)]``, ``rule_matches[(lb, rule)]``
    (both bounded by the configuration), plus error counts (``internal_errors`` answered
    SERVFAIL, ``dropped`` unanswerable packets, ``tcp_evicted`` connections closed to make room
    for a new one over the cap, ``tcp_slow_closed`` connections closed for not completing a
    message in time, ``udp_send_failed`` UDP answers the kernel would not send: full socket
    buffer or refused destination)."""

    queries: Counter[tuple[str, int, int]] = field(default_factory=Counter)
    decisions: Counter[tuple[str, str, bool]] = field(default_factory=Counter)
    rule_matches: Counter[tuple[str, str]] = field(default_factory=Counter)
    internal_errors: int = 0
    dropped: int = 0
    tcp_evicted: int = 0
    tcp_slow_closed: int = 0
    udp_send_failed: int = 0
