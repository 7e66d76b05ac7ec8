"""The one reference the query path reads: ``(snapshot, health view)`` published as a unit, with
the serving plan of that pair (docs/architecture.md › Publication: one reference, swapped;
› The serving plan). Reloads and health changes build a new :class:`Current` and swap
:attr:`StateRef.current`; a query reads it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lbdns.health.view import HealthView
from lbdns.server.counters import QTYPE_BUCKET
from lbdns.serving import ServingPlan
from lbdns.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Current:
    """An immutable pair: the configuration snapshot and the health view to use with it, and
    ``plan``, the serving plan of this pair (a new, empty one unless given: pass the previous
    one only when it was built for the same snapshot and the same origin states)."""

    snapshot: Snapshot
    health: HealthView
    plan: ServingPlan = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.plan is None or self.plan.snapshot is not self.snapshot:
            object.__setattr__(self, "plan", ServingPlan(self.snapshot, self.health, QTYPE_BUCKET))


class StateRef:
    """Holder of the current :class:`Current`. Assignment of one attribute is atomic in
    CPython, and everything runs on one event loop, so no lock is needed."""

    __slots__ = ("current",)

    def __init__(self, current: Current) -> None:
        self.current = current

    def publish_health(self, view: HealthView) -> None:
        """Swap in a new health view, keeping the snapshot. The serving plan is kept when no
        origin state changed (``states_token``: only probe details such as RTTs did, which no
        plan entry depends on), else a new one starts empty."""
        cur = self.current
        same = view.states_token is cur.health.states_token
        self.current = Current(cur.snapshot, view, cur.plan if same else None)  # type: ignore[arg-type]

    def publish_snapshot(self, snapshot: Snapshot, view: HealthView | None = None) -> None:
        """Swap in a new snapshot (and optionally a health view carried over for it)."""
        self.current = Current(snapshot, view if view is not None else self.current.health)
