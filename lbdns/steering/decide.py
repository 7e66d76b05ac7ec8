"""The load-balancer decision: effective config → pool order → usable pool (or fallback) →
endpoints → records (Cloudflare docs: Load Balancing › Traffic steering, with its Global and
Local traffic steering pages; Load Balancing › Load shedding; docs/steering.md).

Pure and synchronous: health comes as a :class:`HealthView`, randomness as an ``Rng``,
hostname addresses through a :data:`HostLookup`, the client location through a
:data:`Locator` — all injected, so tests need neither probes nor sockets.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from lbdns.geo.distance import haversine_km
from lbdns.health.view import HealthView
from lbdns.steering.origins import HostLookup, Rng, choose_single, hash_score, network_key, persistence_key, shed
from lbdns.steering.plan import CompiledOrigin, CompiledPool, Effective
from lbdns.wire.codec import QTYPE_A, QTYPE_AAAA, QTYPE_CNAME, QTYPE_HTTPS, QTYPE_MX, QTYPE_SRV, QTYPE_SVCB

if TYPE_CHECKING:
    from lbdns.wire.codec import ClientSubnet

_ADDRESS_QTYPES = (QTYPE_A, QTYPE_AAAA, QTYPE_HTTPS, QTYPE_SVCB)
"""Query types whose answer needs the addresses of hostname origins."""


@dataclass(frozen=True, slots=True)
class ClientLocation:
    """Where the client is, for geo and proximity (from ``location_strategy``, see
    :func:`lbdns.geo.location.resolve_location`). ``source`` is ``ecs``/``resolver``/``pop``;
    ``network_prefix`` the GeoIP network length that decided (ECS scope, RFC 7871 §7.2.1);
    ``ecs_consulted`` True when the ECS address was looked up."""

    source: str
    country: str | None
    latitude: float | None
    longitude: float | None
    region: str | None = None
    network_prefix: int | None = None
    ecs_consulted: bool = False


class Locator(Protocol):
    """Computes the client location for a policy (``need`` = ``country`` or ``coordinates``)."""

    def __call__(self, *, need: str, prefer_ecs: str, mode: str, policy: str) -> ClientLocation: ...


@dataclass(slots=True)
class Decision:
    """The outcome of one LB decision.

    ``records`` are (rtype, rdata bytes) pairs for the answer section (empty ⇒ NODATA; for an
    HTTPS/SVCB query the A and AAAA records the address hints are made of);
    ``pool`` the pool that answered (None when nothing could); ``fallback`` True when the
    fallback pool answered; ``location`` the client location used (None if none was
    needed); ``trail`` human-readable steps (only filled for ``lbdns explain``);
    ``cacheable`` True when, for the same snapshot, health view, PoP and client ``location``,
    the same pool and candidate records would be chosen again (no random pool draw, shedding,
    RTT freshness, hostname lookups or hash key involved); ``weighted`` the (weight, record)
    candidates of a random single-answer choice, so a cache can redraw per query;
    ``hash_scope`` the ECS prefix length a ``hash`` key was taken from (0: none, see
    :func:`~lbdns.steering.origins.persistence_key`), the least ECS scope the answer needs.
    """

    records: list[tuple[int, bytes]] = field(default_factory=list)
    pool: CompiledPool | None = None
    fallback: bool = False
    multi: bool = False
    policy: str = ""
    location: ClientLocation | None = None
    origins: list[CompiledOrigin] = field(default_factory=list)
    trail: list[str] | None = None
    cacheable: bool = True
    weighted: list[tuple[float, tuple[int, bytes]]] | None = None
    hash_scope: int = 0

    def note(self, text: str) -> None:
        """Append an explanation line when tracing is on."""
        if self.trail is not None:
            self.trail.append(text)


@dataclass(slots=True)
class Query:
    """The per-query inputs steering needs. ``resolver_ip`` is the packet source (hash and
    shedding key, lbdns decision, docs/decisions.md › Steering); ``pop``/``pop_region`` identify
    the receiving PoP; ``now`` is a monotonic time in seconds (RTT freshness); ``ecs`` the
    query's valid ECS option (a pool's ``persistence_key: ecs`` keys on it)."""

    qtype: int
    resolver_ip: str
    pop: str
    pop_region: str
    now: float
    ecs: ClientSubnet | None = None


def _hash_key(pool: CompiledPool, q: Query, d: Decision) -> str:
    """The pool's ``hash`` key for ``q`` (docs/steering.md › Persistence key); records the ECS
    scope it implies in ``d``."""
    key, scope = persistence_key(pool.persistence_key, q.resolver_ip, q.ecs)
    if scope > d.hash_scope:
        d.hash_scope = scope
    if d.trail is not None and pool.persistence_key != "resolver_ip":
        d.note(f"pool {pool.name}: hash key {key} (persistence_key {pool.persistence_key})")
    return key


def _usable(pool: CompiledPool, view: HealthView, q: Query, rng: Rng, lookup: HostLookup | None,
            d: Decision) -> bool:
    st = pool.state(view)
    if not st.usable:
        if d.trail is not None:
            why = "disabled" if not pool.enabled else (
                f"critical ({len(st.healthy)} healthy < minimum_origins {pool.minimum_origins})"
                if len(st.healthy) < pool.minimum_origins else "no origin with weight > 0")
            d.note(f"pool {pool.name}: not usable — {why}")
        return False
    if pool.has_hostnames and q.qtype in _ADDRESS_QTYPES and lookup is not None:
        d.cacheable = False  # the outcome depends on the hostname cache, not only on health
        if not any(o.weight > 0 and (o.hostname is None or not o.flatten_cname or lookup(o.hostname).ok)
                   for o in st.healthy):
            if d.trail is not None:
                d.note(f"pool {pool.name}: not usable — every hostname origin failed to resolve")
            return False
    if pool.shed_percent > 0:
        d.cacheable = False
    if pool.shed_percent > 0 and shed(
            pool, rng, _hash_key(pool, q, d) if pool.shed_policy == "hash" else q.resolver_ip):
        if d.trail is not None:
            d.note(f"pool {pool.name}: shed ({pool.shed_percent:g}% {pool.shed_policy})")
        return False
    if d.trail is not None:
        enabled = sum(1 for o in pool.origins if o.enabled)
        d.note(f"pool {pool.name}: usable — {len(st.healthy)}/{enabled} origins healthy, minimum_origins "
               f"{pool.minimum_origins}" + ("" if pool.monitored else " (no monitor: health not considered)"))
    return True


def _weighted_pools(eff: Effective, pools: Sequence[CompiledPool], view: HealthView, q: Query, rng: Rng,
                    lookup: HostLookup | None, d: Decision) -> Iterator[CompiledPool]:
    """Random / LOR / LC: one weighted draw among usable, non-shed pools (Cloudflare docs: Load
    Balancing › Standard › Random steering; Load Balancing › Global traffic steering › Least
    Outstanding Requests: DNS-only uses the weights alone; weight-0 pools and shedding before the
    draw: docs/decisions.md › Steering)."""
    usable: list[tuple[CompiledPool, float]] = []
    total = 0.0
    for p in pools:
        if _usable(p, view, q, rng, lookup, d):
            w = eff.pool_weights.get(p.id, eff.default_weight)
            if w > 0:
                usable.append((p, w))
                total += w
            else:
                if d.trail is not None:
                    d.note(f"pool {p.name}: weight 0, never drawn")
    if total <= 0:
        return
    if len(usable) > 1:
        d.cacheable = False  # a real draw between pools
    r = rng.random() * total
    acc = 0.0
    for p, w in usable:
        acc += w
        if r < acc:
            if d.trail is not None:
                d.note(f"pool {p.name}: drawn with weight {w:g} of {total:g}")
            yield p
            return
    yield usable[-1][0]


def _ordered(pools: Sequence[CompiledPool], view: HealthView, q: Query, rng: Rng, lookup: HostLookup | None,
             d: Decision) -> Iterator[CompiledPool]:
    for p in pools:
        if _usable(p, view, q, rng, lookup, d):
            yield p


def _geo_list(eff: Effective, q: Query, locate: Locator | None, d: Decision) -> tuple[
        Sequence[CompiledPool], bool]:
    """The geo candidate list and whether it came from a mapping (Cloudflare docs: Load Balancing ›
    Geo › Pool assignment: PoP, then country, then region, then ``default_pools``)."""
    lst = eff.pop_pools.get(q.pop)
    if lst:
        if d.trail is not None:
            d.note(f"geo: pop_pools[{q.pop}]")
        return lst, True
    if eff.country_pools and locate is not None:
        loc = locate(need="country", prefer_ecs=eff.prefer_ecs, mode=eff.location_mode, policy="geo")
        d.location = loc
        if loc.country is not None:
            lst = eff.country_pools.get(loc.country)
            if lst:
                if d.trail is not None:
                    d.note(f"geo: country_pools[{loc.country}] (location from {loc.source})")
                return lst, True
    region = q.pop_region
    if eff.region_source == "location" and eff.region_pools and locate is not None:
        if d.location is None:
            d.location = locate(need="country", prefer_ecs=eff.prefer_ecs, mode=eff.location_mode, policy="geo")
        if d.location.region and d.location.source != "pop":
            region = d.location.region
    lst = eff.region_pools.get(region)
    if lst:
        if d.trail is not None:
            d.note(f"geo: region_pools[{region}]")
        return lst, True
    d.note("geo: no mapping matched, default_pools")
    return eff.default_pools, False


def _proximity_order(eff: Effective, locate: Locator | None, d: Decision) -> list[CompiledPool]:
    """Pools by distance from the client location (Cloudflare docs: Load Balancing › Proximity);
    pools without coordinates last (lbdns decision)."""
    if locate is None:
        return list(eff.default_pools)
    loc = locate(need="coordinates", prefer_ecs=eff.prefer_ecs, mode=eff.location_mode, policy="proximity")
    d.location = loc
    if loc.latitude is None or loc.longitude is None:
        return list(eff.default_pools)
    lat, lon = loc.latitude, loc.longitude
    with_coords = [(haversine_km(lat, lon, p.latitude, p.longitude), i, p) for i, p in enumerate(eff.default_pools)
                   if p.latitude is not None and p.longitude is not None]
    with_coords.sort(key=lambda t: (t[0], t[1]))
    if d.trail is not None:
        d.note("proximity from " + loc.source + ": " + ", ".join(f"{p.name} {km:.0f} km" for km, _, p in with_coords))
    rest = [p for p in eff.default_pools if p.latitude is None or p.longitude is None]
    return [p for _, _, p in with_coords] + rest


def _latency_order(eff: Effective, view: HealthView, now: float, d: Decision,
                   region: str | None = None) -> list[CompiledPool]:
    """Pools with current RTT data first by EWMA, then the rest in failover order (Cloudflare
    docs: Load Balancing › Global traffic steering › Dynamic); the RTT is the one measured from
    ``region`` (the querying PoP's) when the view has per-region data (``rtt_scope: region``)."""
    timed: list[tuple[float, int, CompiledPool]] = []
    rest: list[CompiledPool] = []
    for i, p in enumerate(eff.default_pools):
        rtt = view.rtt_for(p.id, region) if p.monitored else None
        if rtt is not None and rtt.is_current(now):
            timed.append((rtt.ewma_ms, i, p))
        else:
            rest.append(p)
    timed.sort(key=lambda t: (t[0], t[1]))
    if d.trail is not None:
        d.note("dynamic_latency: " + (", ".join(f"{p.name} {ms:.1f} ms" for ms, _, p in timed) or "no RTT data")
               + (f"; without data: {', '.join(p.name for p in rest)}" if rest else ""))
    return [p for _, _, p in timed] + rest


Candidates = tuple[Iterator[CompiledPool], bool]
"""The pools to try in order (lazily: usability is tested as they are drawn) and whether they
came from a geo mapping (an exhausted mapping goes to the fallback pool, no cascade)."""


class Steer(Protocol):
    """A pool steering policy: the candidate pools for one query."""

    def __call__(self, eff: Effective, q: Query, view: HealthView, rng: Rng, lookup: HostLookup | None,
                 locate: Locator | None, d: Decision) -> Candidates: ...


def _steer_off(eff: Effective, q: Query, view: HealthView, rng: Rng, lookup: HostLookup | None,
               locate: Locator | None, d: Decision) -> Candidates:
    return _ordered(eff.default_pools, view, q, rng, lookup, d), False


def _steer_random(eff: Effective, q: Query, view: HealthView, rng: Rng, lookup: HostLookup | None,
                  locate: Locator | None, d: Decision) -> Candidates:
    return _weighted_pools(eff, eff.default_pools, view, q, rng, lookup, d), False


def _steer_geo(eff: Effective, q: Query, view: HealthView, rng: Rng, lookup: HostLookup | None,
               locate: Locator | None, d: Decision) -> Candidates:
    lst, mapped = _geo_list(eff, q, locate, d)
    return _ordered(lst, view, q, rng, lookup, d), mapped


def _steer_proximity(eff: Effective, q: Query, view: HealthView, rng: Rng, lookup: HostLookup | None,
                     locate: Locator | None, d: Decision) -> Candidates:
    return _ordered(_proximity_order(eff, locate, d), view, q, rng, lookup, d), False


def _steer_latency(eff: Effective, q: Query, view: HealthView, rng: Rng, lookup: HostLookup | None,
                   locate: Locator | None, d: Decision) -> Candidates:
    return _ordered(_latency_order(eff, view, q.now, d, q.pop_region), view, q, rng, lookup, d), False


POLICIES: Mapping[str, tuple[Steer, bool]] = MappingProxyType({
    "off": (_steer_off, True),
    "random": (_steer_random, True),
    "least_outstanding_requests": (_steer_random, True),  # DNS-only: the weights alone (docs/decisions.md)
    "least_connections": (_steer_random, True),
    "geo": (_steer_geo, True),
    "proximity": (_steer_proximity, True),
    "dynamic_latency": (_steer_latency, False),  # RTTs change with every probe round
})
"""The steering policies (Cloudflare docs: Load Balancing › Traffic steering): name → (function
returning the candidate pools, whether its outcome is fixed for a snapshot, origin states,
PoP and client location — so the serving plan may keep it). Adding a policy is one entry here
plus its function; a name missing here is steered like ``off``, and never kept."""


def decide(eff: Effective, q: Query, view: HealthView, rng: Rng, *, lookup: HostLookup | None = None,
           locate: Locator | None = None, trace: bool = False) -> Decision:
    """Run pool and endpoint selection for one query (docs/steering.md › The decision in one
    paragraph).

    Returns a :class:`Decision` whose ``records`` are the answer rdatas (empty ⇒ NODATA, RFC 2308;
    docs/decisions.md › Answers and precedence).
    """
    d = Decision(trail=[] if trace else None, policy=eff.steering_policy)
    policy = eff.steering_policy
    if d.trail is not None:
        d.note(f"steering_policy: {policy}" + (f" (configured {eff.configured_policy!r})"
                                                 if eff.configured_policy != policy else ""))
    steer, cacheable = POLICIES.get(policy, (_steer_off, False))
    d.cacheable = cacheable
    candidates, mapped = steer(eff, q, view, rng, lookup, locate, d)
    for pool in candidates:
        d.pool = pool
        _select_for(pool, pool.state(view).healthy, q, rng, lookup, d, eff)
        return d
    if mapped:
        d.note("geo: mapped list exhausted — fallback pool (no cascade)")
    fb = eff.fallback_pool
    if fb is None or not fb.enabled:
        d.note("fallback pool disabled — NODATA with SOA")
        return d
    d.pool, d.fallback = fb, True
    if d.trail is not None:
        d.note(f"fallback pool {fb.name}: health ignored")
    _select_for(fb, tuple(o for o in fb.origins if o.enabled), q, rng, lookup, d, eff)
    if not d.records:
        d.note("fallback pool has no eligible origin — NODATA with SOA")
    return d


def _capped(pool: CompiledPool, cands: list[tuple[CompiledOrigin, list[tuple[int, bytes]]]], limit: int,
            resolver_ip: str, d: Decision) -> list[tuple[CompiledOrigin, list[tuple[int, bytes]]]]:
    """The origins whose addresses fill a multi-answer capped at ``limit`` addresses: the best
    by weighted rendezvous score (:func:`~lbdns.steering.origins.hash_score`) keyed by the
    resolver's network (/24, /48), in pool order. The same resolver network keeps getting the
    same subset while health does not change (caches do not churn); different networks spread
    over all healthy origins in proportion to weight. The answer depends on the resolver, so
    it is not cached."""
    d.cacheable = False
    key = network_key(resolver_ip)
    ranked = sorted(cands, key=lambda c: -hash_score(pool.id, c[0].name, key, c[0].weight))
    chosen: set[int] = set()
    count = 0
    for o, rds in ranked:
        if count >= limit:
            break
        chosen.add(o.index)
        count += len(rds)
    if d.trail is not None:
        d.note(f"max_answers {limit}: origins {', '.join(o.name for o, _ in cands if o.index in chosen)} "
               f"for resolver network {key}")
    return [c for c in cands if c[0].index in chosen]


def _rdata_for(o: CompiledOrigin, qtype: int, lookup: HostLookup | None) -> list[tuple[int, bytes]]:
    """The answer rdatas one eligible origin contributes for ``qtype``: its addresses of the
    family, its CNAME (``flatten_cname: false``), or its MX / SRV record (docs/steering.md ›
    Hostname origins; › MX and SRV)."""
    if qtype == QTYPE_MX:
        if o.hostname is None:
            return []
        return [(QTYPE_MX, struct.pack("!H", o.mx_preference) + o.hostname_wire)]
    if qtype == QTYPE_SRV:
        if o.hostname is None or o.port is None:
            return []
        return [(QTYPE_SRV, struct.pack("!HHH", o.srv_priority, o.srv_weight, o.port) + o.hostname_wire)]
    if o.hostname is not None and not o.flatten_cname:
        return [(QTYPE_CNAME, o.hostname_wire)]
    if qtype == QTYPE_CNAME:
        return []
    fam = 4 if qtype == QTYPE_A else 6
    if o.hostname is None:
        return [(qtype, o.packed)] if o.family == fam else []
    if lookup is None:
        return []
    addrs = lookup(o.hostname)
    return [(qtype, a) for a in (addrs.v4 if fam == 4 else addrs.v6)]


def _select_for(pool: CompiledPool, base: Sequence[CompiledOrigin], q: Query, rng: Rng,
                lookup: HostLookup | None, d: Decision, eff: Effective) -> None:
    """Endpoint selection for the query type: for HTTPS/SVCB (an LB's service binding) the A
    and then the AAAA selection in the same pool, whose records become the address hints —
    the addresses A and AAAA queries would get (RFC 9460 §7.3). Such an answer is cacheable
    only when neither selection was a random single answer."""
    if q.qtype not in (QTYPE_HTTPS, QTYPE_SVCB):
        _select(pool, base, q, rng, lookup, d, eff, q.qtype)
        return
    _select(pool, base, q, rng, lookup, d, eff, QTYPE_A)
    v4_weighted = d.weighted
    d.weighted = None
    _select(pool, base, q, rng, lookup, d, eff, QTYPE_AAAA)
    if v4_weighted is not None or d.weighted is not None:
        d.weighted = None
        d.cacheable = False


def _select(pool: CompiledPool, base: Sequence[CompiledOrigin], q: Query, rng: Rng,  # noqa: C901, PLR0912 -- per-query hot path in one frame; split only with a bench comparison
            lookup: HostLookup | None, d: Decision, eff: Effective, qtype: int) -> None:
    """Endpoint selection of ``qtype`` records in ``pool`` among ``base`` (healthy, or all
    enabled in fallback mode): eligibility, single- vs multi-answer (Cloudflare docs: Load Balancing
    Reference Architecture › DNS-only load balancing; docs/steering.md › Endpoint steering), and
    the ``max_answers`` cap of multi-answers (:func:`_capped`)."""
    cands: list[tuple[CompiledOrigin, list[tuple[int, bytes]]]] = []
    for o in base:
        if o.weight <= 0:
            continue
        if o.hostname is not None:
            d.cacheable = False  # depends on the hostname cache (lookup results, failures)
        if (o.hostname is not None and o.flatten_cname and qtype in (QTYPE_A, QTYPE_AAAA) and lookup is not None
                and not lookup(o.hostname).ok):
            if d.trail is not None:
                d.note(f"origin {o.name}: hostname {o.hostname} failed to resolve")
            continue
        rd = _rdata_for(o, qtype, lookup)
        if qtype == QTYPE_CNAME:
            cands.append((o, rd))  # CNAME selection ignores family
        elif rd:
            cands.append((o, rd))
    if not cands:
        if d.trail is not None:
            d.note(f"pool {pool.name}: no origin provides the requested type — NODATA")
        return
    w0 = cands[0][0].weight
    multi = all(o.weight == w0 for o, _ in cands) and all(
        o.hostname is None or o.flatten_cname for o, _ in cands)
    d.multi = multi
    if multi:
        limit = pool.max_answers if eff.max_answers is None or (
            pool.max_answers is not None and pool.max_answers < eff.max_answers) else eff.max_answers
        if limit is not None and sum(len(r) for _, r in cands) > limit:
            cands = _capped(pool, cands, limit, q.resolver_ip, d)
        seen: set[bytes] = set()
        for o, rds in cands:
            d.origins.append(o)
            for rtype, rdata in rds:
                if rdata not in seen and (limit is None or len(seen) < limit):
                    seen.add(rdata)
                    d.records.append((rtype, rdata))
        if d.trail is not None:
            d.note(f"multi-answer: all {len(cands)} eligible origins share weight {w0:g}")
        return
    origins = [o for o, _ in cands]
    if pool.origin_policy == "hash":
        d.cacheable = False
    elif d.cacheable and all(len(r) == 1 for _, r in cands):
        d.weighted = [(o.weight, r[0]) for o, r in cands]
    key = _hash_key(pool, q, d) if pool.origin_policy == "hash" else q.resolver_ip
    chosen = choose_single(pool, origins, rng, key)
    d.origins.append(chosen)
    rds = dict((o.index, r) for o, r in cands)[chosen.index]
    if len(rds) > 1:
        if pool.origin_policy == "hash":
            digest = hashlib.sha256(f"{pool.id}\0{chosen.name}\0{key}\0addr".encode()).digest()
            idx = int.from_bytes(digest[:8], "big") % len(rds)
        else:
            idx = int(rng.random() * len(rds)) % len(rds)
        rds = [rds[idx]]
    d.records.extend(rds)
    if d.trail is not None:
        d.note(f"single-answer ({pool.origin_policy}): origin {chosen.name} of "
               + ", ".join(f"{o.name}={o.weight:g}" for o in origins))
