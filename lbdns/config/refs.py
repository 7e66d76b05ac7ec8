"""The pool references of a load balancer and the resolution of its steering policy: one
walk and one rule, shared by the validator, the snapshot builder and the admin API.

Pure: no I/O, no pydantic at run time (the models are named for typing only).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lbdns.config.model import LoadBalancer, RuleOverrides

RefPath = tuple[str | int, ...]
"""A key path relative to the load balancer, e.g. ``("region_pools", "WEU", 0)``."""

GEO_MAPS: tuple[str, str, str] = ("region_pools", "country_pools", "pop_pools")
"""The geo maps of a load balancer (and of a rule's overrides), key → list of pool names."""


def pool_refs(lb: LoadBalancer, *, fallback: bool = True, rules: bool = True) -> Iterator[tuple[RefPath, str]]:
    """Every pool reference of ``lb`` as ``(key path relative to the LB, pool name)``.

    Order: ``default_pools[i]``, ``fallback_pool``, ``region_pools.<key>[i]``,
    ``country_pools.<key>[i]``, ``pop_pools.<key>[i]``, then the same fields of
    ``rules[i].overrides`` (Cloudflare docs: Load Balancing › Load Balancer Details [API],
    ``rules[].overrides``). An unset or empty ``fallback_pool`` is no reference. With
    ``fallback=False`` the fallback pools are left out, with ``rules=False`` the rules.
    Names are yielded as written: unknown names and duplicates included.
    """
    yield from _refs((), lb, fallback)
    if rules:
        for i, rule in enumerate(lb.rules):
            yield from _refs(("rules", i, "overrides"), rule.overrides, fallback)


def _refs(prefix: RefPath, obj: LoadBalancer | RuleOverrides, fallback: bool) -> Iterator[tuple[RefPath, str]]:
    for i, name in enumerate(obj.default_pools or ()):
        yield (*prefix, "default_pools", i), name
    if fallback and obj.fallback_pool:
        yield (*prefix, "fallback_pool"), obj.fallback_pool
    for field in GEO_MAPS:
        mapping: Mapping[str, list[str]] = getattr(obj, field) or {}
        for key, names in mapping.items():
            for i, name in enumerate(names):
                yield (*prefix, field, key, i), name


def resolve_policy(policy: str, region_pools: Mapping[str, Sequence[object]],
                   country_pools: Mapping[str, Sequence[object]], pop_pools: Mapping[str, Sequence[object]]) -> str:
    """The steering policy in effect: ``""`` resolves to ``"geo"`` when any of the three geo
    maps has a key with a non-empty pool list, otherwise to ``"off"``; any other value is
    returned unchanged (not checked). Applied after rule overrides are merged.

    Source: Cloudflare docs, Load Balancing › Load Balancer Details [API], ``steering_policy``:
    ``""`` "will map to ``geo`` if you use ``region_pools``/``country_pools``/``pop_pools``
    otherwise ``off``"; a key mapped to an empty list counts as not set.
    """
    if policy != "":
        return policy
    return "geo" if geo_maps_set(region_pools, country_pools, pop_pools) else "off"


def geo_maps_set(region_pools: Mapping[str, Sequence[object]], country_pools: Mapping[str, Sequence[object]],
                 pop_pools: Mapping[str, Sequence[object]]) -> bool:
    """Whether any geo map has a key with a non-empty pool list (an empty list counts as
    not set)."""
    return any(region_pools.values()) or any(country_pools.values()) or any(pop_pools.values())
