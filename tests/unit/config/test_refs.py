"""lbdns.config.refs: the one walk over a load balancer's pool references and the one
steering-policy resolution (Cloudflare docs: Load Balancing › Load Balancer Details [API])."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lbdns.config.model import LoadBalancer
from lbdns.config.refs import pool_refs, resolve_policy

LB_YAML = """
default_pools: [p1, p2]
fallback_pool: fb
region_pools: {WEU: [p3], ENAM: []}
country_pools: {JP: [p4, p1]}
pop_pools: {LHR: [p5]}
rules:
  - condition: ""
    overrides: {default_pools: [r1], fallback_pool: rfb, region_pools: {WNAM: [r2]}}
  - condition: ""
    overrides: {ttl: 60}
  - condition: ""
    overrides: {country_pools: {DE: [r3]}, pop_pools: {FRA: [r4]}}
"""


def _lb() -> tuple[LoadBalancer, dict[str, Any]]:
    data = yaml.safe_load(LB_YAML)
    return LoadBalancer.model_validate(data), data


def test_pool_refs_yields_every_reference_in_document_order() -> None:
    lb, _ = _lb()
    assert list(pool_refs(lb)) == [
        (("default_pools", 0), "p1"), (("default_pools", 1), "p2"), (("fallback_pool",), "fb"),
        (("region_pools", "WEU", 0), "p3"), (("country_pools", "JP", 0), "p4"), (("country_pools", "JP", 1), "p1"),
        (("pop_pools", "LHR", 0), "p5"),
        (("rules", 0, "overrides", "default_pools", 0), "r1"), (("rules", 0, "overrides", "fallback_pool"), "rfb"),
        (("rules", 0, "overrides", "region_pools", "WNAM", 0), "r2"),
        (("rules", 2, "overrides", "country_pools", "DE", 0), "r3"),
        (("rules", 2, "overrides", "pop_pools", "FRA", 0), "r4"),
    ]


def test_every_pool_ref_path_points_at_its_name_in_the_yaml() -> None:
    lb, data = _lb()
    for path, name in pool_refs(lb):
        node: Any = data
        for key in path:
            node = node[key]
        assert node == name, path


def test_pool_refs_without_fallbacks_or_rules() -> None:
    lb, _ = _lb()
    assert [n for _, n in pool_refs(lb, fallback=False, rules=False)] == ["p1", "p2", "p3", "p4", "p1", "p5"]
    assert [n for _, n in pool_refs(lb, fallback=False)] == ["p1", "p2", "p3", "p4", "p1", "p5", "r1", "r2", "r3", "r4"]
    assert [n for _, n in pool_refs(lb, rules=False)] == ["p1", "p2", "fb", "p3", "p4", "p1", "p5"]


def test_an_unset_fallback_pool_is_no_reference() -> None:
    lb = LoadBalancer.model_validate({"default_pools": ["a"]})
    assert list(pool_refs(lb)) == [(("default_pools", 0), "a")]


@pytest.mark.parametrize(("policy", "region", "country", "pop", "resolved"), [
    ("", {}, {}, {}, "off"),
    ("", {"WEU": []}, {"JP": []}, {"LHR": []}, "off"),    # a key mapped to an empty list is not set
    ("", {"WEU": ["a"]}, {}, {}, "geo"),
    ("", {}, {"JP": ["a"]}, {}, "geo"),
    ("", {}, {}, {"LHR": ("compiled pool",)}, "geo"),     # compiled maps hold tuples
    ("random", {"WEU": ["a"]}, {}, {}, "random"),         # an explicit policy is kept
    ("off", {"WEU": ["a"]}, {}, {}, "off"),
    ("no_such_policy", {}, {}, {}, "no_such_policy"),     # not checked here
])
def test_resolve_policy(policy: str, region: dict[str, Any], country: dict[str, Any], pop: dict[str, Any],
                        resolved: str) -> None:
    assert resolve_policy(policy, region, country, pop) == resolved
