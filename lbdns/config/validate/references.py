"""Cross references from load balancers (and their rules' overrides) to pools: every pool list,
the geo maps that hold them (their keys too), the fallback pool, and pools nobody uses.

The pool references themselves are enumerated by :func:`lbdns.config.refs.pool_refs`.

Sources (Cloudflare docs, Load Balancing): Load Balancer Details [API] (``default_pools``,
``fallback_pool``, ``region_pools``, ``country_pools``, ``pop_pools``); Geo steering (region
codes, ISO 3166-1 alpha-2 country codes, 3-letter PoP codes; PoP steering is Enterprise only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lbdns.config.model import REGION_CODES, LoadBalancer, Pool
from lbdns.config.refs import pool_refs
from lbdns.config.settings import ServerSettings
from lbdns.config.source import PathKey, SourceFile
from lbdns.config.validate import plan
from lbdns.config.validate.issues import Collector, Placed, hint


@dataclass(slots=True)
class RefChecker:
    """Checks the pool references found in one file against ``pools`` (every pool name and
    id; a pool that failed validation maps to None: it is known, its own errors are reported)."""

    col: Collector
    src: SourceFile
    pools: Mapping[str, Pool | None]

    def check_list(self, path: PathKey, names: list[str], *, allow_empty: bool = False) -> None:
        """E-POOLS for an empty list (unless ``allow_empty``) and a name listed twice; E-REF
        for an unknown name."""
        if not names and not allow_empty:
            self.col.add(self.src, path, "E-POOLS", "the pool list must not be empty")
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                self.col.add(self.src, (*path, i), "E-POOLS", f"pool {n!r} is listed twice")
            seen.add(n)
            if n not in self.pools:
                self.col.add(self.src, (*path, i), "E-REF", f"unknown pool {n!r}{hint(n, self.pools)}")

    def lb_fallback(self, path: PathKey, lb: LoadBalancer) -> str | None:
        """The LB's fallback pool: ``fallback_pool``, or the last default pool when unset
        (W-FALLBACK-DEFAULT); E-REF when unknown."""
        fallback = lb.fallback_pool
        if fallback is None:
            if lb.default_pools:
                fallback = lb.default_pools[-1]
                self.col.add(self.src, (*path, "default_pools"), "W-FALLBACK-DEFAULT",
                             f"fallback_pool not set: using the last default pool {fallback!r}", warning=True)
        elif fallback not in self.pools:
            self.col.add(self.src, (*path, "fallback_pool"), "E-REF",
                         f"unknown pool {fallback!r}{hint(fallback, self.pools)}")
        return fallback

    def override_fallback(self, path: PathKey, fallback: str | None) -> None:
        """E-REF for an unknown ``overrides.fallback_pool`` (``path`` is the overrides')."""
        if fallback is not None and fallback not in self.pools:
            self.col.add(self.src, (*path, "fallback_pool"), "E-REF", f"unknown pool {fallback!r}")

    def check_maps(self, path: PathKey, region_pools: Mapping[str, list[str]],
                   country_pools: Mapping[str, list[str]], pop_pools: Mapping[str, list[str]],
                   settings: ServerSettings) -> None:
        """Each geo map key (E-REGION, E-COUNTRY, E-POP; E-PLAN for PoPs without Enterprise)
        and its pool list (may be empty: the key then counts as not set)."""
        from lbdns.geo.regions import is_country

        col, src = self.col, self.src
        for key, names in region_pools.items():
            if key not in REGION_CODES:
                why = " (use country_pools for countries)" if is_country(key) else hint(key, REGION_CODES)
                col.add(src, (*path, "region_pools", key), "E-REGION",
                        f"unknown region {key!r}{why} (allowed: {', '.join(REGION_CODES)})")
            self.check_list((*path, "region_pools", key), names, allow_empty=True)
        for key, names in country_pools.items():
            if not is_country(key):
                col.add(src, (*path, "country_pools", key), "E-COUNTRY",
                        f"{key!r} is not an ISO-3166-1 alpha-2 country code (e.g. US, GB, JP)")
            self.check_list((*path, "country_pools", key), names, allow_empty=True)
        for key, names in pop_pools.items():
            plan.check_pop_pools(col, src, path, settings)
            if not (len(key) == 3 and key.isalpha() and key.isupper()):
                col.add(src, (*path, "pop_pools", key), "E-POP",
                        f"{key!r} is not a PoP code (3 upper-case letters, e.g. LHR)")
            self.check_list((*path, "pop_pools", key), names, allow_empty=True)


def used_pools(lbs: Iterable[LoadBalancer]) -> set[str]:
    """Every pool name or id referenced by the load balancers, rule overrides included."""
    return {name for lb in lbs for _, name in pool_refs(lb)}


def check_unused_pools(col: Collector, pools: Mapping[str, Placed], used: set[str]) -> None:
    """W-UNUSED for each valid pool referenced neither by id nor by name."""
    for pid, placed in pools.items():
        if pid not in used and placed.obj.name not in used:
            col.add(placed.src, placed.path, "W-UNUSED",
                    f"pool {placed.obj.name!r} is not used by any load balancer", warning=True)
