"""Operator control of health: a durable state per origin and per pool that sits on top of
what the monitors report.

The four states follow the maintenance practice Cloudflare documents for endpoints (Cloudflare
docs: Load Balancing › Perform planned maintenance: take an endpoint out of rotation, let
cached answers expire, then work on it) and the admin states of other DNS load balancers:

* ``auto`` — the monitors decide (no entry is kept);
* ``force_up`` — counts as healthy whatever the monitors say (an unmonitored pool's origins
  already count as healthy);
* ``force_down`` — counts as unhealthy whatever the monitors say, in monitored and unmonitored
  pools alike;
* ``drain`` — taken out of new answers like ``force_down``; the admin API also reports when the
  last answer that could hold it has expired from resolver caches (its TTL after the drain).

Pure module: entries carry the wall-clock time (UNIX seconds) they were set, passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Control(StrEnum):
    """An operator state (see the module docstring)."""

    AUTO = "auto"
    FORCE_UP = "force_up"
    FORCE_DOWN = "force_down"
    DRAIN = "drain"

    @property
    def removes(self) -> bool:
        """True for the states that take the origin (or pool) out of answers."""
        return self is Control.FORCE_DOWN or self is Control.DRAIN


ControlKey = tuple[str, str | None]
"""(pool id, origin name), or (pool id, None) for the whole pool."""


@dataclass(frozen=True, slots=True)
class ControlEntry:
    """One operator decision: ``state``; ``who`` and ``why`` free text (audit); ``at`` the
    wall-clock UNIX time in seconds it was set."""

    state: Control
    who: str = ""
    why: str = ""
    at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (state file, ``/status``)."""
        return {"state": str(self.state), "who": self.who, "why": self.why, "at": self.at}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ControlEntry:
        """Inverse of :meth:`to_json`. Raises ValueError/KeyError/TypeError on a malformed entry."""
        return cls(Control(str(doc["state"])), str(doc.get("who", "")), str(doc.get("why", "")),
                   float(doc.get("at", 0.0)))


def control_of(controls: Mapping[ControlKey, ControlEntry], pool_id: str, origin_name: str | None) -> Control:
    """The operator state of (pool, origin) — or of the pool with ``origin_name`` None — in
    ``controls``; AUTO when there is no entry."""
    entry = controls.get((pool_id, origin_name))
    return entry.state if entry is not None else Control.AUTO


@dataclass(frozen=True, slots=True)
class PushedReport:
    """An origin's health reported by an external system, read as one result of an
    ``external`` monitor (the fields of a monitor result, Cloudflare docs: Load Balancing ›
    Analytics › Logs). ``rtt_ms`` milliseconds or None; ``at`` wall-clock UNIX seconds it was
    received; ``reason`` a failure reason ("" when healthy)."""

    passed: bool
    rtt_ms: float | None
    failure_reason: str
    at: float
    response_code: int | None = None


class UnknownTarget(LookupError):
    """A pool or origin name that the configuration does not have: ``valid`` lists the names
    that exist (pool names, or the pool's origin names)."""

    def __init__(self, what: str, name: str, valid: Sequence[str]) -> None:
        super().__init__(f"unknown {what} {name!r}")
        self.what, self.name, self.valid = what, name, list(valid)


class NotPushable(ValueError):
    """A pushed report for a pool without an ``external`` monitor."""
