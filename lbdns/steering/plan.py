"""Compiled load-balancer plans: the per-LB, per-pool and per-origin data steering reads on
every query, built once per snapshot (docs/architecture.md › Compile once).

Health-dependent facts (which origins count as healthy, whether a pool is usable) are
memoised per :attr:`HealthView.states_token <lbdns.health.view.HealthView>` inside each
:class:`CompiledPool`, so a query after the first one for given origin states does no
per-origin work, however many views with new probe details are published meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lbdns.health.pool_health import can_serve, serving_origins
from lbdns.health.view import HealthView


@dataclass(slots=True)
class CompiledOrigin:
    """One origin, pre-encoded.

    ``family`` is 4, 6 or 0 (hostname); ``packed`` the address bytes for IP origins;
    ``hostname`` the lower-case FQDN text (with trailing dot) for hostname origins and
    ``hostname_wire`` its wire form; ``weight`` 0.0–1.0.
    """

    index: int
    name: str
    enabled: bool
    weight: float
    family: int
    packed: bytes
    address: str
    hostname: str | None
    hostname_wire: bytes
    port: int | None
    flatten_cname: bool
    mx_preference: int
    srv_priority: int
    srv_weight: int


@dataclass(slots=True)
class PoolState:
    """Health-derived facts of a pool for one health view (the Health Threshold of Cloudflare
    docs: Load Balancing › Manage pools, and whether the pool is usable)."""

    token: object                            # the HealthView.states_token it was computed for
    healthy: tuple[CompiledOrigin, ...]      # enabled origins that count as healthy
    usable: bool                             # enabled, ≥ minimum_origins healthy, has an eligible origin


@dataclass(slots=True)
class CompiledPool:
    """One pool. ``shed_percent`` 0–100 with ``shed_policy`` ``random``/``hash``;
    ``latitude``/``longitude`` in degrees or None; ``max_answers`` the most addresses a
    multi-answer from this pool carries (None: no limit); ``persistence_key`` what ``hash``
    steering and shedding key on (``resolver_ip``, ``resolver_network`` or ``ecs``,
    :func:`lbdns.steering.origins.persistence_key`)."""

    id: str
    name: str
    enabled: bool
    monitored: bool
    minimum_origins: int
    origins: tuple[CompiledOrigin, ...]
    origin_policy: str
    shed_percent: float
    shed_policy: str
    latitude: float | None
    longitude: float | None
    has_hostnames: bool
    max_answers: int | None = None
    persistence_key: str = "resolver_ip"
    _state: PoolState = field(default_factory=lambda: PoolState(None, (), False))

    def state(self, view: HealthView) -> PoolState:
        """Health facts for ``view`` (memoised on its ``states_token``)."""
        st = self._state
        if st.token is view.states_token:
            return st
        healthy = serving_origins(self, view)
        usable = can_serve(self, healthy)  # the one rule, shared with /status, explain and events
        st = PoolState(view.states_token, healthy, usable)
        self._state = st
        return st


@dataclass(frozen=True, slots=True)
class Effective:
    """The effective configuration of one LB for one query: the LB's fields after rule overrides
    (Cloudflare docs: Load Balancing › Create custom rules). ``steering_policy`` is already
    resolved (``""`` ⇒ ``geo`` with geo maps, else ``off``; Cloudflare API docs: Load Balancer
    Details › ``steering_policy``);
    ``max_answers`` the LB's cap on multi-answers (None: none)."""

    default_pools: tuple[CompiledPool, ...]
    fallback_pool: CompiledPool | None
    region_pools: Mapping[str, tuple[CompiledPool, ...]]
    country_pools: Mapping[str, tuple[CompiledPool, ...]]
    pop_pools: Mapping[str, tuple[CompiledPool, ...]]
    steering_policy: str
    configured_policy: str
    pool_weights: Mapping[str, float]
    default_weight: float
    prefer_ecs: str
    location_mode: str
    ttl: int
    region_source: str = "pop"
    max_answers: int | None = None

    def with_changes(self, **changes: Any) -> Effective:
        """A copy with fields replaced (used when rule overrides apply)."""
        return replace(self, **changes)

