"""The one interface by which probing reports (docs/architecture.md › One probe result): a
probe scheduler — in the server or in the probe worker process — hands every result to a
:class:`ProbeSink`. The server's health owner (:class:`lbdns.health_owner.HealthRecorder`)
implements it, and so does the worker's pipe writer; probing depends on nothing else of the
server.
"""

from __future__ import annotations

from typing import Protocol

from lbdns.health.book import MemberKey
from lbdns.probes.result import ProbeResult

JobKey = tuple[str, str]
"""(pool id, monitor id): the targets probed together as one round."""


class ProbeSink(Protocol):
    """Where a probe scheduler reports (implemented by the server's health owner and by the
    worker process's pipe writer)."""

    def probe_done(self, key: MemberKey, result: ProbeResult, lag: float | None) -> None:
        """One probe of target ``key`` finished with ``result``; ``lag`` is seconds it started
        behind its due time (None for warm-start probes, which have no due time)."""

    def round_done(self, job: JobKey, rtts_ms: list[float]) -> None:
        """A round of ``job`` finished; ``rtts_ms`` are the passing probes' RTTs (ms)."""
