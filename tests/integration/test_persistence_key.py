"""Black-box: a pool's ``persistence_key`` over real UDP from distinct loopback resolver
addresses (docs/steering.md › Persistence key). Cloudflare keys ``hash`` steering and shedding
on the resolver address, and its docs name the limitation: "Some recursive DNS providers (like
Google DNS 8.8.8.8 or Quad9 9.9.9.9) may use different egress IPs randomly, which can reduce
persistence stability" (Load Balancing › DNS persistence › Method 2 › Limitations)."""

from __future__ import annotations

import copy

from tests.integration.harness import addresses, ecs_option

# two egress addresses of one resolver site (one /24), then more of the same /24
SAME_24 = ["127.0.0.2", "127.0.0.3", *(f"127.0.0.{i}" for i in range(4, 30))]


def _hash_pool(fx, key: str | None, *, shed: bool = False) -> None:
    fx.lb["default_pools"] = ["p-hash", "p-us-west"]
    p = {"name": "p-hash", "origin_steering": {"policy": "hash"},
         "origins": [{"name": f"h{i}", "address": f"192.0.2.{100 + i}", "weight": 0.4 + i / 10} for i in range(4)]}
    if key is not None:
        p["persistence_key"] = key
    if shed:
        p["load_shedding"] = {"default_percent": 50, "default_policy": "hash"}
    fx.account["pools"].append(p)


def _answer(s, source: str, ecs: str | None = None) -> frozenset[str]:
    return frozenset(addresses(s.query("lb.example.com", source=source, ecs=ecs)))


def test_resolver_network_keeps_one_24_on_one_origin(fx, serve):
    """With ``resolver_network`` 127.0.0.2 and 127.0.0.3 (and the rest of their /24) get one
    origin; with the default key (Cloudflare's: the resolver address) the /24 spreads."""
    default = copy.deepcopy(fx)
    _hash_pool(fx, "resolver_network")
    s = serve(fx)
    got = {src: _answer(s, src) for src in SAME_24}
    assert got["127.0.0.2"] == got["127.0.0.3"]
    assert len(set(got.values())) == 1 and len(got["127.0.0.2"]) == 1

    _hash_pool(default, None)
    d = serve(default)
    got = {src: _answer(d, src) for src in SAME_24}
    assert all(_answer(d, src) == a for src, a in got.items())  # still sticky per address
    assert len(set(got.values())) > 1  # but one /24 spreads over several origins
    # and the default key ignores ECS (scope 0)
    assert len({_answer(d, "127.0.0.2", f"198.51.{n}.0/24") for n in range(20)}) == 1
    opt = ecs_option(d.query("lb.example.com", source="127.0.0.2", ecs="198.51.100.0/24"))
    assert opt is not None and opt.scopelen == 0


def test_resolver_network_also_keys_hash_shedding(fx, serve):
    _hash_pool(fx, "resolver_network", shed=True)
    s = serve(fx)
    nets = [f"127.0.{n}." for n in range(40, 60)]
    outcomes = set()
    for net in nets:
        per_net = {_answer(s, net + str(i)) for i in (2, 3, 77, 200)}
        assert len(per_net) == 1, (net, per_net)  # one decision (shed or not, and origin) per /24
        outcomes |= per_net
    assert frozenset({"192.0.2.20", "192.0.2.21"}) in outcomes  # some networks are shed to p-us-west
    assert any(a <= {f"192.0.2.{100 + i}" for i in range(4)} for a in outcomes)  # others stay


def test_ecs_key_follows_the_client_subnet_across_resolvers(fx, serve):
    _hash_pool(fx, "ecs")
    s = serve(fx)
    # one client network behind two resolver addresses, and behind one /32 ECS: one origin
    a = {_answer(s, "127.0.0.2", "198.51.100.0/24"), _answer(s, "127.0.0.3", "198.51.100.0/24"),
         _answer(s, "127.9.9.9", "198.51.100.77/32")}
    assert len(a) == 1
    # the client network decides, not the resolver: several networks from one resolver spread
    spread = {_answer(s, "127.0.0.2", f"198.51.{n}.0/24") for n in range(20)}
    assert len(spread) > 1
    r = s.query("lb.example.com", source="127.0.0.2", ecs="198.51.100.77/32")
    opt = ecs_option(r)
    assert opt is not None and opt.scopelen == 24  # the answer holds for the /24 it was keyed on
    # without ECS the resolver's network is the key
    assert len({_answer(s, src) for src in SAME_24}) == 1
