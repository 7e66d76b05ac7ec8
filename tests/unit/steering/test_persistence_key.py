"""The ``hash`` persistence key (:func:`lbdns.steering.origins.persistence_key`) with injected
inputs: resolver address, resolver network (/24, /56) or the ECS prefix (docs/steering.md ›
Persistence key; Cloudflare docs: Load Balancing › DNS persistence › Method 2 › Limitations)."""

from __future__ import annotations

import ipaddress

import pytest

from lbdns.config.model import Pool
from lbdns.snapshot import compile_pool
from lbdns.steering.origins import choose_single, persistence_key, shed
from lbdns.wire.codec import ClientSubnet


def ecs(text: str) -> ClientSubnet:
    """A ClientSubnet as the parser builds it from ``address/prefix`` text."""
    net = ipaddress.ip_network(text, strict=False)
    plen = net.prefixlen
    packed = net.network_address.packed
    return ClientSubnet(1 if net.version == 4 else 2, plen, 0, packed[:(plen + 7) // 8], packed)


@pytest.mark.parametrize(("mode", "resolver", "subnet", "expected"), [
    ("resolver_ip", "192.0.2.7", None, ("192.0.2.7", 0)),
    ("resolver_ip", "192.0.2.7", "198.51.100.0/24", ("192.0.2.7", 0)),  # Cloudflare: never ECS
    ("resolver_network", "192.0.2.7", None, ("192.0.2.0/24", 0)),
    ("resolver_network", "192.0.2.7", "198.51.100.0/24", ("192.0.2.0/24", 0)),
    ("resolver_network", "2001:db8:1:2f3::53", None, ("2001:db8:1:200::/56", 0)),
    ("ecs", "192.0.2.7", "198.51.100.0/24", ("198.51.100.0/24", 24)),
    ("ecs", "192.0.2.7", "198.51.100.77/32", ("198.51.100.0/24", 24)),  # wider than /24: cut to /24
    ("ecs", "192.0.2.7", "198.51.96.0/20", ("198.51.96.0/20", 20)),     # narrower: as sent
    ("ecs", "192.0.2.7", "2001:db8:aa:bbcc::/64", ("2001:db8:aa:bb00::/56", 56)),
    ("ecs", "192.0.2.7", None, ("192.0.2.0/24", 0)),                    # no ECS: resolver network
    ("ecs", "192.0.2.7", "0.0.0.0/0", ("192.0.2.0/24", 0)),             # /0: no client information
    ("resolver_network", "not-an-ip", None, ("not-an-ip", 0)),
])
def test_persistence_key(mode, resolver, subnet, expected):
    assert persistence_key(mode, resolver, None if subnet is None else ecs(subnet)) == expected


def test_resolver_network_groups_a_24_and_separates_neighbours():
    key = [persistence_key("resolver_network", f"203.0.113.{i}", None)[0] for i in range(256)]
    assert set(key) == {"203.0.113.0/24"}
    assert persistence_key("resolver_network", "203.0.114.1", None)[0] != key[0]


def test_one_network_one_origin_and_one_shed_decision():
    """Every resolver address of a /24 gets the origin and shed decision of the network key,
    while per-address keys spread over the origins."""
    p = compile_pool(Pool.model_validate({
        "name": "p", "origin_steering": {"policy": "hash"}, "persistence_key": "resolver_network",
        "load_shedding": {"default_percent": 50, "default_policy": "hash"},
        "origins": [{"name": f"o{i}", "address": f"192.0.2.{i + 1}", "weight": 0.5 + i / 10} for i in range(4)],
    }))
    assert p.persistence_key == "resolver_network"
    addrs = [f"198.51.100.{i}" for i in range(1, 255)]
    by_net = {choose_single(p, p.origins, None, persistence_key(p.persistence_key, a, None)[0]).name  # type: ignore[arg-type]
              for a in addrs}
    by_ip = {choose_single(p, p.origins, None, persistence_key("resolver_ip", a, None)[0]).name  # type: ignore[arg-type]
             for a in addrs}
    assert len(by_net) == 1 and len(by_ip) == 4
    sheds = {shed(p, None, persistence_key(p.persistence_key, a, None)[0]) for a in addrs}  # type: ignore[arg-type]
    assert len(sheds) == 1
