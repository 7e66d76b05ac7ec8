"""Endpoint selection inside the chosen pool (Cloudflare docs: Load Balancing › Endpoint steering;
docs/steering.md › Endpoint steering).

Pure: randomness comes in as a ``random.Random``-like object, hostname addresses through a
mapping filled by the edge.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from lbdns.steering.plan import CompiledOrigin, CompiledPool
from lbdns.wire.codec import ClientSubnet


class Rng(Protocol):
    """The part of ``random.Random`` steering uses."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class HostAddresses:
    """Resolved addresses of a hostname origin: ``ok`` False when the lookup failed
    (Cloudflare docs: Load Balancing › FAQs); ``v4``/``v6`` packed addresses (4 / 16 bytes each)."""

    ok: bool
    v4: tuple[bytes, ...] = ()
    v6: tuple[bytes, ...] = ()


HostLookup = Callable[[str], HostAddresses]
"""hostname FQDN text → resolved addresses (from the edge's cache)."""


def weighted_choice(items: Sequence[CompiledOrigin], rng: Rng) -> CompiledOrigin:
    """Pick one origin with probability weight / Σweight (Cloudflare docs: Load
    Balancing › Endpoint steering › Random). ``items`` must be non-empty with Σweight > 0."""
    total = 0.0
    for o in items:
        total += o.weight
    r = rng.random() * total
    acc = 0.0
    for o in items:
        acc += o.weight
        if r < acc:
            return o
    return items[-1]


def hash_score(pool_id: str, origin_name: str, key: str, weight: float) -> float:
    """Weighted rendezvous score for ``hash`` endpoint steering (higher wins; the algorithm is
    lbdns's, Cloudflare docs: Load Balancing › Endpoint steering › Hash names none)."""
    digest = hashlib.sha256(f"{pool_id}\0{origin_name}\0{key}".encode()).digest()[:8]
    u = (int.from_bytes(digest, "big") + 0.5) / 2.0**64
    return weight / -math.log(u)


def network_key(ip: str, v6_prefix: int = 48) -> str:
    """The resolver network ``ip`` (IPv4 or IPv6 text) belongs to, as text: its /24 for IPv4,
    its /``v6_prefix`` (default 48) for IPv6; other text is returned as is."""
    if "." in ip and ":" not in ip:
        return ip.rpartition(".")[0] + ".0/24"
    try:
        return str(ipaddress.IPv6Network(f"{ip}/{v6_prefix}", strict=False))
    except ValueError:
        return ip


PERSISTENCE_KEYS = ("resolver_ip", "resolver_network", "ecs")
"""The values of a pool's ``persistence_key`` (docs/steering.md › Persistence key)."""

PERSISTENCE_V4_PREFIX = 24
PERSISTENCE_V6_PREFIX = 56
"""How wide a network ``resolver_network`` and ``ecs`` key on: /24 and /56, the widths RFC 7871
§11.1 recommends as the most a resolver should reveal of a client (so one resolver site's
addresses, or one ECS client network, share one key)."""


def persistence_key(mode: str, resolver_ip: str, ecs: ClientSubnet | None) -> tuple[str, int]:
    """The key ``hash`` endpoint steering and ``hash`` load shedding use for one query
    (docs/steering.md › Persistence key), and the ECS SCOPE PREFIX-LENGTH it implies.

    ``mode`` is the pool's ``persistence_key``: ``resolver_ip`` (Cloudflare's key, the resolver
    address as text; Cloudflare docs: Load Balancing › DNS persistence › Method 2),
    ``resolver_network`` (the resolver's /24 or /56 network as text) or ``ecs`` (the ECS
    address masked to min(SOURCE PREFIX-LENGTH, /24 or /56) when the query carries an ECS
    option with a source prefix > 0 — RFC 7871 §6 — else the resolver's network).
    ``resolver_ip`` is the packet source as text; ``ecs`` the query's ECS option or None.
    Returns ``(key, scope)``: ``scope`` is the prefix length of the ECS network the key was
    taken from (0 when the key does not depend on ECS), the least SCOPE PREFIX-LENGTH the
    answer must carry (RFC 7871 §7.2.1). Never raises: unparsable text keys on itself.
    """
    if mode == "ecs" and ecs is not None and ecs.source_prefix > 0:
        v4 = ecs.family == 1
        plen = min(ecs.source_prefix, PERSISTENCE_V4_PREFIX if v4 else PERSISTENCE_V6_PREFIX)
        net = (ipaddress.IPv4Network if v4 else ipaddress.IPv6Network)((ecs.packed, plen), strict=False)
        return str(net), plen
    if mode == "resolver_ip":
        return resolver_ip, 0
    return network_key(resolver_ip, PERSISTENCE_V6_PREFIX), 0


def hash_choice(pool_id: str, items: Sequence[CompiledOrigin], key: str) -> CompiledOrigin:
    """Deterministic weighted choice keyed by ``key`` (:func:`persistence_key`; by default the
    resolver IP, docs/decisions.md › Steering); ties keep config order."""
    best = items[0]
    best_score = -1.0
    for o in items:
        s = hash_score(pool_id, o.name, key, o.weight)
        if s > best_score:
            best, best_score = o, s
    return best


def choose_single(pool: CompiledPool, candidates: Sequence[CompiledOrigin], rng: Rng,
                  hash_key: str) -> CompiledOrigin:
    """Single-answer mode: one origin by the pool's ``origin_steering.policy``
    (``hash`` keyed by ``hash_key``, see :func:`persistence_key`; everything else weighted
    random; Cloudflare docs: Load Balancing › Endpoint steering)."""
    if pool.origin_policy == "hash":
        return hash_choice(pool.id, candidates, hash_key)
    return weighted_choice(candidates, rng)


def shed(pool: CompiledPool, rng: Rng, hash_key: str) -> bool:
    """Whether ``pool`` is shed for this query (Cloudflare docs: Load Balancing › Load
    shedding › Shedding policies): ``random`` draws with probability percent/100; ``hash``
    compares sha256("shed\\0{pool}\\0{hash_key}") with the percentage of the 64-bit hash space
    (``hash_key`` from :func:`persistence_key`; by default the resolver IP)."""
    pct = pool.shed_percent
    if pct <= 0:
        return False
    if pct >= 100:
        return True
    if pool.shed_policy == "hash":
        digest = hashlib.sha256(f"shed\0{pool.id}\0{hash_key}".encode()).digest()[:8]
        return int.from_bytes(digest, "big") < pct / 100.0 * 2.0**64
    return rng.random() < pct / 100.0
