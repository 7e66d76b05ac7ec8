"""Compiled load-balancer plans: the per-LB, per-pool and per-origin data steering reads on
every query, built once per snapshot (docs/architecture.md › Compile once).

Everything here is immutable: a published snapshot is never written to. Health-dependent
facts (which origins count as healthy, whether a pool is usable) are memoised on the published
:class:`~lbdns.health.view.HealthView` (:attr:`~lbdns.health.view.HealthView.pool_states`), so
a query after the first one for a pool and a view does no per-origin work, publishing a new
view drops them with it, and the pools of a new snapshot replace their entries (identity check).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from lbdns.health.pool_health import can_serve, serving_origins
from lbdns.health.view import HealthView


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class PoolState:
    """Health-derived facts of a pool for one health view (the Health Threshold of Cloudflare
    docs: Load Balancing › Manage pools, and whether the pool is usable)."""

    pool: CompiledPool                       # the compiled pool they were computed for
    healthy: tuple[CompiledOrigin, ...]      # enabled origins that count as healthy
    usable: bool                             # enabled, ≥ minimum_origins healthy, has an eligible origin


@dataclass(frozen=True, slots=True)
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

    def state(self, view: HealthView) -> PoolState:
        """Health facts of this pool for ``view``, memoised in ``view.pool_states`` under the
        pool id (an entry computed for another compiled pool of that id, from an earlier
        snapshot, is replaced)."""
        memo = view.pool_states
        try:
            st: PoolState = memo[self.id]
            if st.pool is self:
                return st
        except KeyError:
            pass
        healthy = serving_origins(self, view)
        usable = can_serve(self, healthy)  # the one rule, shared with /status, explain and events
        st = memo[self.id] = PoolState(self, healthy, usable)
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

