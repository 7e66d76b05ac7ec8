"""Plan limits: what ``plan: non_enterprise`` rejects, and the object counts checked for every
plan. Each check is called by the validator of the object it concerns, where that object is
checked, so the issues keep their place in the report.

Sources (Cloudflare docs, Load Balancing): Limitations (load balancers, pools and endpoints
per pool 20 without Enterprise; monitors at most 1.5 × pools; monitor interval 15–3600 s
without Enterprise, 10–3600 s with); Custom load balancing rules › Availability (one rule per
load balancer without Enterprise); Monitors (http, https and tcp monitors without
Enterprise); Geo steering › PoP steering and Monitor Groups › Availability (Enterprise only).
With ``plan: enterprise`` the "custom" limits are not enforced and too many monitors is a
warning.
"""

from __future__ import annotations

from collections.abc import Mapping

from lbdns.config.model import LoadBalancer, Monitor, Pool
from lbdns.config.monitor_types import MONITOR_KINDS
from lbdns.config.settings import ServerSettings
from lbdns.config.source import PathKey, SourceFile
from lbdns.config.validate.issues import Collector, Placed

NON_ENTERPRISE_COUNT = 20
"""Load balancers, pools, and endpoints per pool allowed without Enterprise."""
MONITORS_PER_POOL = 1.5
INTERVAL_MIN = {"non_enterprise": 15, "enterprise": 10}
"""Shortest monitor interval in seconds per plan (unless ``monitor_interval_min`` is set)."""


def non_enterprise(settings: ServerSettings) -> bool:
    """Whether the non-Enterprise limits apply."""
    return settings.plan == "non_enterprise"


def interval_min(settings: ServerSettings) -> int:
    """Shortest monitor interval in seconds: ``monitor_interval_min`` or the plan's."""
    return settings.monitor_interval_min or (INTERVAL_MIN["non_enterprise"] if non_enterprise(settings)
                                             else INTERVAL_MIN["enterprise"])


def check_monitor_type(col: Collector, p: Placed, settings: ServerSettings) -> None:
    """E-PLAN: a monitor type that needs Enterprise."""
    m: Monitor = p.obj
    if non_enterprise(settings) and MONITOR_KINDS[m.type].enterprise_only:
        allowed = ", ".join(k.name for k in MONITOR_KINDS.values() if not k.enterprise_only)
        col.add(p.src, (*p.path, "type"), "E-PLAN",
                f"monitor type {m.type!r} needs plan enterprise (non-Enterprise: {allowed})")


def check_monitor_group(col: Collector, src: SourceFile, path: PathKey, settings: ServerSettings) -> None:
    """E-PLAN: a pool monitored by a monitor group (``path`` is the pool's)."""
    if non_enterprise(settings):
        col.add(src, (*path, "monitor_group"), "E-PLAN", "monitor groups need plan enterprise")


def check_pop_pools(col: Collector, src: SourceFile, path: PathKey, settings: ServerSettings) -> None:
    """E-PLAN: one ``pop_pools`` key (``path`` is the LB's or the overrides')."""
    if non_enterprise(settings):
        col.add(src, (*path, "pop_pools"), "E-PLAN", "pop_pools needs plan enterprise")


def check_rule_count(col: Collector, src: SourceFile, path: PathKey, lb: LoadBalancer,
                     settings: ServerSettings) -> None:
    """E-QUOTA: more than one custom rule on a load balancer."""
    if non_enterprise(settings) and len(lb.rules) > 1:
        col.add(src, (*path, "rules"), "E-QUOTA",
                f"{len(lb.rules)} rules exceed the non-Enterprise limit of 1 rule per load balancer")


def check_quotas(col: Collector, sources: list[SourceFile], lb_count: int, pools: Mapping[str, Pool],
                 monitors: Mapping[str, Placed], settings: ServerSettings) -> None:
    """Count limits over the whole configuration, located at the first file: E-QUOTA without
    Enterprise; with Enterprise only too many monitors, as W-QUOTA."""
    if not sources:
        return
    first = sources[0]
    limit = NON_ENTERPRISE_COUNT
    if non_enterprise(settings):
        if lb_count > limit:
            col.add(first, (), "E-QUOTA", f"{lb_count} load balancers exceed the non-Enterprise limit of {limit}")
        if len(pools) > limit:
            col.add(first, (), "E-QUOTA", f"{len(pools)} pools exceed the non-Enterprise limit of {limit}")
        for pid, pool in pools.items():
            if len(pool.origins) > limit:
                col.add(first, (), "E-QUOTA",
                        f"pool {pid!r} has {len(pool.origins)} origins (non-Enterprise limit {limit})")
    if pools and len(monitors) > MONITORS_PER_POOL * len(pools):
        code = "E-QUOTA" if non_enterprise(settings) else "W-QUOTA"
        col.add(first, ("monitors",), code,
                f"{len(monitors)} monitors exceed 1.5 × {len(pools)} pools",
                warning=code == "W-QUOTA")
