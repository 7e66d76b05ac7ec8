"""Static health overrides (``health_overrides`` in lbdns.yaml) laid over a health view: lets
an operator see steering with ``dig`` before monitors exist. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from lbdns.health.view import HealthView, OriginHealth, OriginState

if TYPE_CHECKING:
    from lbdns.config.settings import HealthOverride

_STATES = MappingProxyType(
    {"healthy": OriginState.HEALTHY, "unhealthy": OriginState.UNHEALTHY, "unknown": OriginState.UNKNOWN}
)


def apply_overrides(view: HealthView, overrides: Sequence[HealthOverride]) -> HealthView:
    """``view`` with each (pool, origin) of ``overrides`` set to its static state (reason
    ``"static override"``; last probe time, RTT and response code kept); ``view`` itself when
    there are none.

    The result keeps ``view.states_token``: the overrides are fixed for the process's lifetime
    and every published view passes through here, so equal base states still mean equal served
    states."""
    if not overrides:
        return view
    merged = dict(view.origins)
    for o in overrides:
        old = merged.get((o.pool, o.origin), OriginHealth())
        merged[(o.pool, o.origin)] = OriginHealth(_STATES[o.state], "static override", old.last_probe_at,
                                                  old.rtt_ms, old.response_code)
    return replace(view, origins=MappingProxyType(merged))
