"""Cross references from load balancers (and their rules' overrides) to pools: every pool list,
the geo maps that hold them (their keys too), the fallback pool, pools nobody uses, and origin
hostnames that lead back to their own load balancer.

The pool references themselves are enumerated by :func:`lbdns.config.refs.pool_refs`.

Sources (Cloudflare docs, Load Balancing): Load Balancer Details [API] (``default_pools``,
``fallback_pool``, ``region_pools``, ``country_pools``, ``pop_pools``); Geo steering (region
codes, ISO 3166-1 alpha-2 country codes, 3-letter PoP codes; PoP steering is Enterprise only).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import dns.name
import dns.rdatatype

from lbdns.config.loaded import ZoneData
from lbdns.config.model import REGION_CODES, LoadBalancer, Pool
from lbdns.config.refs import pool_refs
from lbdns.config.settings import ServerSettings
from lbdns.config.source import PathKey, SourceFile
from lbdns.config.validate import plan
from lbdns.config.validate.issues import Collector, Placed, hint
from lbdns.geo.regions import RegionMap


@dataclass(slots=True)
class RefChecker:
    """Checks the pool references found in one file against ``pools`` (every pool name and
    id; a pool that failed validation maps to None: it is known, its own errors are reported)
    and the ``country_pools`` keys against the country list of ``regions``."""

    col: Collector
    src: SourceFile
    pools: Mapping[str, Pool | None]
    regions: RegionMap

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
        col, src, is_country = self.col, self.src, self.regions.is_country
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


MAX_HOPS = 16
"""Names followed from one origin hostname (CNAME links and load balancers) before giving up."""


class _NameGraph:
    """Where a name in the served zones leads: a load balancer's pools (whose origin hostnames
    it answers with) or a CNAME target. ``pools`` maps pool ids and names to placed pools."""

    def __init__(self, pools: Mapping[str, Placed], zones: Iterable[ZoneData]) -> None:
        self.pools = pools
        self.lb_pools: dict[dns.name.Name, tuple[str, ...]] = {}
        self.cnames: dict[dns.name.Name, dns.name.Name] = {}
        for zd in zones:
            for owner, balancer in zd.load_balancers.items():
                self.lb_pools[owner] = tuple(dict.fromkeys(ref for _, ref in pool_refs(balancer)))
            for (owner, rdtype), rrset in zd.rrsets.items():
                if rdtype == dns.rdatatype.CNAME and len(rrset):
                    self.cnames[owner] = next(iter(rrset)).target

    def lb_at(self, name: dns.name.Name) -> dns.name.Name | None:
        """The load balancer answering ``name``: its own, or a wildcard one of its parent."""
        if name in self.lb_pools:
            return name
        if len(name) > 1 and name not in self.cnames:
            wild = dns.name.Name(("*", *name.parent().labels))
            if wild in self.lb_pools:
                return wild
        return None

    def hostnames(self, ref: str) -> Iterator[str]:
        """The origin hostnames of pool ``ref`` (id or name)."""
        placed = self.pools.get(ref)
        if placed is not None and placed.obj is not None:
            for o in placed.obj.origins:
                if o.hostname is not None:
                    yield o.hostname

    def loop(self, start: dns.name.Name, own: set[str]) -> tuple[list[str], str] | None:
        """(the names from ``start`` on, the load balancer) when ``start`` leads to a load
        balancer using one of the pools ``own`` (ids or names), else None (breadth first, at
        most :data:`MAX_HOPS` names)."""
        queue: deque[tuple[dns.name.Name, list[str]]] = deque([(start, [_text(start)])])
        seen: set[dns.name.Name] = set()
        while queue and len(seen) < MAX_HOPS:
            name, trail = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            lb = self.lb_at(name)
            if lb is not None:
                refs = self.lb_pools[lb]
                if own.intersection(refs):
                    return trail, _text(lb)
                for ref in refs:
                    queue.extend((dns.name.from_text(h), [*trail, h.rstrip(".")]) for h in self.hostnames(ref))
            target = self.cnames.get(name)
            if target is not None:
                queue.append((target, [*trail, _text(target)]))
        return None


def _text(name: dns.name.Name) -> str:
    return name.to_text().rstrip(".")


def check_hostname_loops(col: Collector, pools: Mapping[str, Placed], zones: Iterable[ZoneData]) -> None:
    """E-HOST-LOOP for an origin whose hostname leads back to a load balancer that uses its own
    pool — the hostname itself, or a chain of CNAME records and load balancers in the served
    zones. lbdns answers names in its zones from its own configuration, so such an origin's
    address would be the answer that needs it. ``pools`` maps pool ids and names to the placed
    pools; names outside the served zones are not followed (their data is not known here)."""
    graph = _NameGraph(pools, zones)
    for placed in {id(p): p for p in pools.values()}.values():
        pool = placed.obj
        if pool is None:
            continue
        for j, origin in enumerate(pool.origins):
            found = None if origin.hostname is None else graph.loop(dns.name.from_text(origin.hostname),
                                                                    {pool.id, pool.name})
            if found is not None:
                trail, lb = found
                col.add(placed.src, (*placed.path, "origins", j, "address"), "E-HOST-LOOP",
                        f"origin address {origin.address!r} leads back to load balancer {lb}, which uses pool "
                        f"{pool.name!r} ({' → '.join(trail)}): lbdns answers names in its zones itself, so "
                        "this origin's address would be the answer that needs it; give the origin's own "
                        "address or a name outside this chain")
