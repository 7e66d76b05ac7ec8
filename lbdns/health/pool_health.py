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
* Operator states (:mod:`lbdns.health.control`) come first: ``force_down``/``drain`` take an
  origin (or every origin of a pool) out, ``force_up`` puts it in, in monitored and unmonitored
  pools alike.
* Whether a pool can serve is decided by one function, :func:`can_serve`: at least
  ``minimum_origins`` endpoints count as healthy (the Health Threshold, Cloudflare docs: Load
  Balancing › Manage pools), one of them has a weight above 0, and — for steering — the pool is
  enabled (Cloudflare docs, older Load balancers page › Important notes: pools "manually
  disabled or unhealthy").
* Reported states follow that page › How a pool becomes unhealthy (see :func:`pool_status`;
  when "No health" is shown is an lbdns decision, docs/decisions.md › Health and probes); the
  load-balancer status follows › How a load balancer becomes unhealthy (see :func:`lb_status`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol, TypeVar

from lbdns.health.control import Control
from lbdns.health.view import OriginState


class HealthLookup(Protocol):
    """Anything that reports the state of a (pool id, origin name) pair and the operator states
    (a :class:`~lbdns.health.view.HealthView` or a live :class:`~lbdns.health.book.HealthBook`)."""

    def state(self, pool_id: str, origin_name: str) -> OriginState:
        """The aggregated monitor state of the pair (UNKNOWN when nothing is recorded)."""
        ...

    def control(self, pool_id: str, origin_name: str | None) -> Control:
        """The operator state of the pair, or of the pool with ``origin_name`` None."""
        ...


class OriginLike(Protocol):
    """What the usable rule reads of an origin (a config ``Origin`` or a steering
    ``CompiledOrigin``): ``weight`` 0.0–1.0."""

    @property
    def name(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def weight(self) -> float: ...


OT = TypeVar("OT", bound=OriginLike)
OT_co = TypeVar("OT_co", bound=OriginLike, covariant=True)


class PoolLike(Protocol[OT_co]):
    """What the usable rule reads of a pool (a config ``Pool`` or a steering ``CompiledPool``)."""

    @property
    def id(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def monitored(self) -> bool: ...
    @property
    def minimum_origins(self) -> int: ...
    @property
    def origins(self) -> Sequence[OT_co]: ...


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


def origin_counts_healthy(pool: PoolLike[OT], origin: OT, view: HealthLookup) -> bool:
    """True when ``origin`` of ``pool`` counts as healthy for steering.

    Disabled origins never count (configuration wins over operator state). Then the operator
    state decides: an origin (or its pool) in ``force_down``/``drain`` does not count, one in
    ``force_up`` (or in a ``force_up`` pool) counts — monitored or not. Otherwise: in an
    unmonitored pool every enabled origin counts; in a monitored pool only state HEALTHY counts
    (UNKNOWN and UNHEALTHY are down).
    """
    if not origin.enabled:
        return False
    own = view.control(pool.id, origin.name)
    if own.removes:
        return False
    if own is Control.FORCE_UP:
        return True
    whole = view.control(pool.id, None)
    if whole.removes:
        return False
    if whole is Control.FORCE_UP or not pool.monitored:
        return True
    return view.state(pool.id, origin.name) is OriginState.HEALTHY


def serving_origins(pool: PoolLike[OT], view: HealthLookup) -> tuple[OT, ...]:
    """The origins of ``pool`` that count as healthy (:func:`origin_counts_healthy`), in order."""
    return tuple(o for o in pool.origins if origin_counts_healthy(pool, o, view))


def can_serve(pool: PoolLike[OT], healthy: Sequence[OT], *, ignore_enabled: bool = False) -> bool:
    """THE rule deciding whether ``pool`` can take traffic in normal (non-fallback) mode, given
    its ``healthy`` origins (:func:`serving_origins`). Steering, ``/status``, ``/metrics``,
    ``explain`` and notifications all call it.

    * the pool is enabled (Cloudflare docs, older Load balancers page › Important notes: pools
      "manually disabled or unhealthy" get no traffic) — skipped with ``ignore_enabled``, for
      the ``pool.healthy`` of health events;
    * at least ``minimum_origins`` origins count as healthy (the Health Threshold, Cloudflare
      docs: Load Balancing › Manage pools);
    * at least one of them has a weight above 0: an origin with weight 0 receives no traffic
      (Cloudflare docs: Load Balancing › Endpoint steering › Weights), so a pool whose only
      healthy origins have weight 0 has nothing to answer with and is not usable.
    """
    if not ignore_enabled and not pool.enabled:
        return False
    return len(healthy) >= pool.minimum_origins and any(o.weight > 0 for o in healthy)


def healthy_origin_count(pool: PoolLike[OT], view: HealthLookup) -> int:
    """Number of origins of ``pool`` that count as healthy (weight irrelevant)."""
    return len(serving_origins(pool, view))


def pool_healthy(pool: PoolLike[OT], view: HealthLookup) -> bool:
    """:func:`can_serve` ignoring ``pool.enabled``: the ``pool.healthy`` of health events
    (Cloudflare docs: Load Balancing › Analytics › Logs)."""
    return can_serve(pool, serving_origins(pool, view), ignore_enabled=True)


def usable_for_steering(pool: PoolLike[OT], view: HealthLookup) -> bool:
    """True when ``pool`` may receive traffic in normal (non-fallback) mode (:func:`can_serve`)."""
    return can_serve(pool, serving_origins(pool, view))


def pool_status(pool: PoolLike[OT], view: HealthLookup, *, serving_as_fallback: bool = False) -> PoolStatus:
    """The reported state of ``pool`` (Cloudflare docs: Load Balancing › How endpoints and pools
    become unhealthy › How a pool becomes unhealthy; docs/decisions.md › Health and probes).

    * ``serving_as_fallback`` ⇒ NO_HEALTH (the fallback pool's "health is not taken into
      account", Cloudflare docs: Load Balancing › Common configurations);
    * a pool that cannot serve (:func:`can_serve` ignoring ``enabled``: under the Health
      Threshold, only weight-0 origins healthy, or taken out by the operator) ⇒ CRITICAL, except
      a monitored pool whose enabled origins are all UNKNOWN with no operator state ⇒ UNKNOWN;
    * unmonitored pool (no operator state forcing any origin down) ⇒ UNKNOWN (usable);
    * every enabled origin counting as healthy ⇒ HEALTHY, otherwise DEGRADED.

    ``pool.enabled`` does not change the reported state; use :func:`usable_for_steering`.
    """
    if serving_as_fallback:
        return PoolStatus.NO_HEALTH
    enabled = [o for o in pool.origins if o.enabled]
    healthy = serving_origins(pool, view)
    controlled = view.control(pool.id, None) is not Control.AUTO or any(
        view.control(pool.id, o.name) is not Control.AUTO for o in enabled)
    if not can_serve(pool, healthy, ignore_enabled=True):
        if (pool.monitored and not controlled and enabled
                and all(view.state(pool.id, o.name) is OriginState.UNKNOWN for o in enabled)):
            return PoolStatus.UNKNOWN
        return PoolStatus.CRITICAL
    if not pool.monitored and not controlled:
        return PoolStatus.UNKNOWN
    if len(healthy) == len(enabled):
        return PoolStatus.HEALTHY
    return PoolStatus.DEGRADED


def lb_status(default_pools: Sequence[PoolLike[OT]], view: HealthLookup) -> LbStatus:
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
