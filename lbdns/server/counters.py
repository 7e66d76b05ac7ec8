"""Hot-path counters: plain dict increments on the query path, exported to Prometheus by a
custom collector at scrape time (so no ``Counter.labels().inc()`` per query)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class QueryCounters:
    """Counts since start: ``queries[(transport, qtype, rcode)]``,
    ``decisions[(lb, pool, fallback)]``, ``rule_matches[(lb, rule)]``, plus error counts
    (``internal_errors`` answered SERVFAIL, ``dropped`` unanswerable packets, ``tcp_evicted``
    connections closed to make room for a new one over the cap, ``tcp_slow_closed``
    connections closed for not completing a message in time, ``deferred_lookups`` queries that
    waited for hostname lookups)."""

    queries: Counter[tuple[str, int, int]] = field(default_factory=Counter)
    decisions: Counter[tuple[str, str, bool]] = field(default_factory=Counter)
    rule_matches: Counter[tuple[str, str]] = field(default_factory=Counter)
    internal_errors: int = 0
    dropped: int = 0
    tcp_evicted: int = 0
    tcp_slow_closed: int = 0
    deferred_lookups: int = 0
