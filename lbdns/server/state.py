"""The one reference the query path reads: ``(snapshot, health view)`` published as a unit
(docs/architecture.md › Publication: one reference, swapped). Reloads and health changes build a
new :class:`Current` and swap :attr:`StateRef.current`; a query reads it once.
"""

from __future__ import annotations

from dataclasses import dataclass

from lbdns.health.view import HealthView
from lbdns.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Current:
    """An immutable pair: the configuration snapshot and the health view to use with it."""

    snapshot: Snapshot
    health: HealthView


class StateRef:
    """Holder of the current :class:`Current`. Assignment of one attribute is atomic in
    CPython, and everything runs on one event loop, so no lock is needed."""

    __slots__ = ("current",)

    def __init__(self, current: Current) -> None:
        self.current = current

    def publish_health(self, view: HealthView) -> None:
        """Swap in a new health view, keeping the snapshot."""
        self.current = Current(self.current.snapshot, view)

    def publish_snapshot(self, snapshot: Snapshot, view: HealthView | None = None) -> None:
        """Swap in a new snapshot (and optionally a health view carried over for it)."""
        self.current = Current(snapshot, view if view is not None else self.current.health)
