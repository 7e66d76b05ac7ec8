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


def network_key(ip: str) -> str:
    """The resolver network ``ip`` (IPv4 or IPv6 text) belongs to, as text: its /24 for IPv4,
    its /48 for IPv6 (the unit resolver caches are shared by); other text is returned as is."""
    if "." in ip and ":" not in ip:
        return ip.rpartition(".")[0] + ".0/24"
    try:
        return str(ipaddress.IPv6Network(f"{ip}/48", strict=False))
    except ValueError:
        return ip


def hash_choice(pool_id: str, items: Sequence[CompiledOrigin], key: str) -> CompiledOrigin:
    """Deterministic weighted choice keyed by ``key`` (the resolver IP, docs/decisions.md ›
    Steering); ties keep config order."""
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
    (``hash`` keyed by resolver IP; everything else weighted random; Cloudflare docs: Load
    Balancing › Endpoint steering)."""
    if pool.origin_policy == "hash":
        return hash_choice(pool.id, candidates, hash_key)
    return weighted_choice(candidates, rng)


def shed(pool: CompiledPool, rng: Rng, resolver_ip: str) -> bool:
    """Whether ``pool`` is shed for this query (Cloudflare docs: Load Balancing › Load
    shedding › Shedding policies): ``random`` draws with probability percent/100; ``hash``
    compares sha256("shed\\0{pool}\\0{resolver}") with the percentage of the 64-bit hash space."""
    pct = pool.shed_percent
    if pct <= 0:
        return False
    if pct >= 100:
        return True
    if pool.shed_policy == "hash":
        digest = hashlib.sha256(f"shed\0{pool.id}\0{resolver_ip}".encode()).digest()[:8]
        return int.from_bytes(digest, "big") < pct / 100.0 * 2.0**64
    return rng.random() < pct / 100.0
