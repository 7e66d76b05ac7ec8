"""Pool and load-balancer health (Cloudflare docs: Load Balancing › How endpoints and pools
become unhealthy).

Pure functions of a :class:`~lbdns.config.model.Pool` and anything that answers
``state(pool_id, origin_name)`` — a :class:`~lbdns.health.view.HealthView` or a live
:class:`~lbdns.health.book.HealthBook`.

* An endpoint *counts as healthy* when it is enabled and either its pool is unmonitored ("the
  health status is not considered during steering") or its state is HEALTHY (UNKNOWN counts as
  down: "Origins are considered down when monitoring is enabled, but the health status is still
  unknown"), both from that page › How a pool becomes unhealthy. Weight is irrelevant (lbdns
  decision); disabled endpoints never count (Cloudflare docs: Load Balancing › Perform planned
  maintenance).
* A pool is *healthy* when at least ``minimum_origins`` endpoints count as healthy (the Health
  Threshold, Cloudflare docs: Load Balancing › Manage pools), and *usable for steering* when it
  is also enabled (Cloudflare docs, older Load balancers page › Important notes: pools "manually
  disabled or unhealthy").
* Reported states follow that page › How a pool becomes unhealthy (see :func:`pool_status`;
  when "No health" is shown is an lbdns decision, docs/decisions.md › Health and probes); the
  load-balancer status follows › How a load balancer becomes unhealthy (see :func:`lb_status`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from lbdns.health.view import OriginState

if TYPE_CHECKING:  # annotations only: importing health loads no pydantic
    from lbdns.config.model import Origin, Pool


class HealthLookup(Protocol):
    """Anything that reports the state of a (pool id, origin name) pair."""

    def state(self, pool_id: str, origin_name: str) -> OriginState:
        """The aggregated state of the pair (UNKNOWN when nothing is recorded)."""
        ...


class PoolStatus(StrEnum):
    """Reported pool state (Cloudflare docs: Load Balancing › How endpoints and pools become
    unhealthy › How a pool becomes unhealthy)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    NO_HEALTH = "no_health"


class LbStatus(StrEnum):
    """Reported load-balancer state (Cloudflare docs: Load Balancing › How endpoints and pools
    become unhealthy › How a load balancer becomes unhealthy)."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"


def origin_counts_healthy(pool: Pool, origin: Origin, view: HealthLookup) -> bool:
    """True when ``origin`` of ``pool`` counts as healthy for steering.

    Disabled origins never count; in an unmonitored pool every enabled origin counts; in a
    monitored pool only state HEALTHY counts (UNKNOWN and UNHEALTHY are down).
    """
    if not origin.enabled:
        return False
    if not pool.monitored:
        return True
    return view.state(pool.id, origin.name) is OriginState.HEALTHY


def healthy_origin_count(pool: Pool, view: HealthLookup) -> int:
    """Number of origins of ``pool`` that count as healthy (weight irrelevant, lbdns decision)."""
    return sum(1 for o in pool.origins if origin_counts_healthy(pool, o, view))


def pool_healthy(pool: Pool, view: HealthLookup) -> bool:
    """True when at least ``minimum_origins`` origins count as healthy (the Health Threshold).

    Ignores ``pool.enabled``; this is the ``pool.healthy`` of health events (Cloudflare docs: Load
    Balancing › Analytics › Logs).
    """
    return healthy_origin_count(pool, view) >= pool.minimum_origins


def usable_for_steering(pool: Pool, view: HealthLookup) -> bool:
    """True when ``pool`` may receive traffic in normal (non-fallback) mode.

    The pool must be enabled and have ≥ ``minimum_origins`` origins counting as healthy.
    """
    return pool.enabled and pool_healthy(pool, view)


def pool_status(pool: Pool, view: HealthLookup, *, serving_as_fallback: bool = False) -> PoolStatus:
    """The reported state of ``pool`` (Cloudflare docs: Load Balancing › How endpoints and pools
    become unhealthy › How a pool becomes unhealthy; docs/decisions.md › Health and probes).

    * ``serving_as_fallback`` ⇒ NO_HEALTH (the fallback pool's "health is not taken into
      account", Cloudflare docs: Load Balancing › Common configurations);
    * unmonitored pool ⇒ UNKNOWN (still usable);
    * monitored pool whose enabled origins are all UNKNOWN ⇒ UNKNOWN (not usable);
    * fewer healthy origins than ``minimum_origins`` ⇒ CRITICAL;
    * every enabled origin HEALTHY ⇒ HEALTHY, otherwise DEGRADED.

    ``pool.enabled`` does not change the reported state; use :func:`usable_for_steering`.
    """
    if serving_as_fallback:
        return PoolStatus.NO_HEALTH
    if not pool.monitored:
        return PoolStatus.UNKNOWN
    enabled = [o for o in pool.origins if o.enabled]
    states = [view.state(pool.id, o.name) for o in enabled]
    if states and all(s is OriginState.UNKNOWN for s in states):
        return PoolStatus.UNKNOWN
    healthy = sum(1 for s in states if s is OriginState.HEALTHY)
    if healthy < pool.minimum_origins:
        return PoolStatus.CRITICAL
    if healthy == len(enabled):
        return PoolStatus.HEALTHY
    return PoolStatus.DEGRADED


def lb_status(default_pools: Sequence[Pool], view: HealthLookup) -> LbStatus:
    """The reported state of a load balancer from its ``default_pools`` (Cloudflare docs: Load
    Balancing › How endpoints and pools become unhealthy › How a load balancer becomes unhealthy).

    HEALTHY when every default pool is usable for steering (Healthy or Degraded, or
    unmonitored), CRITICAL when none is (traffic goes to the fallback pool; also for an empty
    list), DEGRADED otherwise.
    """
    usable = [usable_for_steering(p, view) for p in default_pools]
    if not usable or not any(usable):
        return LbStatus.CRITICAL
    if all(usable):
        return LbStatus.HEALTHY
    return LbStatus.DEGRADED
