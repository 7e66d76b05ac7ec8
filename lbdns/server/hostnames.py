"""Resolution of hostname origins ahead of queries (docs/steering.md › Hostname origins; the
cache: docs/decisions.md › Answers and precedence).

The query path only reads: :meth:`HostnameResolver.addresses` returns what is known about a
name at once and never raises, never waits and never starts a lookup. Everything else happens
outside the query path:

* **before a snapshot is published** (start-up, before warm start and the listeners; every
  reload, before the swap), :meth:`HostnameResolver.prepare` resolves every hostname origin of
  it, bounded by the resolver timeout;
* **in the background** every name is refreshed before its cache time is over (min(upstream
  TTL, ``hostname_cache_max_ttl``), at most every :data:`MIN_REFRESH_S`);
* concurrent resolutions of one name share one lookup (one A and one AAAA query);
* a name inside a zone lbdns serves is answered from lbdns's own configuration
  (:mod:`lbdns.server.local_names`), never upstream — also when an upstream answer's CNAME
  chain leads into such a zone;
* a resolution that leads back to the name being resolved (through in-zone CNAMEs and load
  balancers, or through an upstream resolver that asks lbdns) is cut off and counts as failed.

A name that is not resolved yet, or whose resolution failed, has no usable address: its origin
is not eligible for A/AAAA answers (Cloudflare docs: Load Balancing › How endpoints and pools
become unhealthy, note on endpoints with FQDN addresses that cannot be resolved).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import ip_address

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from lbdns.server.local_names import LocalAnswers
from lbdns.steering.origins import HostAddresses
from lbdns.upstream import make_resolver

log = logging.getLogger("lbdns.hostnames")

UNRESOLVED = HostAddresses(False)
"""What :meth:`HostnameResolver.addresses` returns for a name with no (successful) resolution."""
MIN_REFRESH_S = 0.5
"""Seconds between two resolutions of one name at least (an upstream TTL of 0 or
``hostname_cache_max_ttl: 0`` would otherwise refresh without pause)."""
REFRESH_AT = 0.75
"""A name is refreshed once this fraction of its cache time has passed, so the new result is
usually in before the old one's time is over."""
MAX_CHAIN = 8
"""CNAME links (and in-zone hops) followed per name, as for ordinary CNAME chasing."""
_A, _AAAA = dns.rdatatype.A, dns.rdatatype.AAAA


@dataclass(frozen=True, slots=True)
class _Step:
    """One step of a resolution: ``next`` set — continue at that name; otherwise the result
    (``ok``, addresses, ``ttl`` seconds, ``why`` a failure text)."""

    ok: bool = False
    v4: tuple[bytes, ...] = ()
    v6: tuple[bytes, ...] = ()
    ttl: float = math.inf
    why: str = ""
    next: str | None = None
    looped: bool = False


def hostnames_of(pools: Iterable[object]) -> frozenset[str]:
    """The lower-case FQDNs (trailing dot) of every flattened hostname origin of ``pools``
    (:class:`~lbdns.steering.plan.CompiledPool` objects): the names A/AAAA answers need."""
    return frozenset(o.hostname for p in pools for o in getattr(p, "origins", ())
                     if o.hostname is not None and o.flatten_cname)


class HostnameResolver:
    """The addresses of hostname origins, resolved ahead of queries.

    ``upstreams`` are resolver addresses (see :func:`lbdns.upstream.parse_upstream`; empty: the
    system resolver configuration); ``max_ttl`` caps the cache time in seconds; ``timeout``
    bounds one upstream lookup and :meth:`prepare` (seconds); ``clock`` is monotonic seconds.
    Attach the configuration with :meth:`use_local` to answer in-zone names locally.
    """

    def __init__(self, upstreams: list[str], *, max_ttl: float = 5.0, timeout: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.resolver = make_resolver(upstreams, timeout)
        self.max_ttl = max_ttl
        self.timeout = timeout
        self.clock = clock
        self.cache: dict[str, HostAddresses] = {}
        """Name → its last result (the query path reads this)."""
        self.due: dict[str, float] = {}
        """Name → when (``clock``) its next refresh starts."""
        self.names: frozenset[str] = frozenset()
        """The names the published snapshot needs (refreshed in the background)."""
        self.local: LocalAnswers | None = None
        self._answered_locally: set[str] = set()
        """Names whose last resolution used lbdns's own answers (they follow health changes)."""
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._active: frozenset[str] = frozenset()
        self._looped = False
        self._failing: dict[str, bool] = {}
        """Names whose last lookup failed → whether it led back to itself (logged once when they
        start failing, start or stop looping, and stop failing)."""
        self._via = ", ".join(upstreams) if upstreams else "the system resolver"

    # -- the query path ------------------------------------------------------------------------
    def addresses(self, name: str) -> HostAddresses:
        """What is known about ``name`` (lower-case FQDN with trailing dot): its last result, or
        :data:`UNRESOLVED` (not usable). Never raises, never waits."""
        return self.cache.get(name, UNRESOLVED)

    def local_address(self, name: str) -> str | None:
        """The first address (IPv4 first) lbdns itself answers for ``name`` when it lies in a
        zone lbdns serves and resolved, else None (probes use it instead of a lookup)."""
        local = self.local
        got = self.cache.get(name)
        if local is None or got is None or not got.ok or not local.serves(name):
            return None
        packed = got.v4[:1] or got.v6[:1]
        return str(ip_address(packed[0])) if packed else None

    # -- publishing ------------------------------------------------------------------------------
    def use_local(self, local: LocalAnswers | None) -> None:
        """Answer names in served zones from ``local`` (None: everything goes upstream)."""
        self.local = local

    async def prepare(self, names: Iterable[str]) -> None:
        """Resolve ``names`` before the snapshot that needs them is published: names served
        locally again (the configuration changed), others unless already known. Returns when
        all are done or after the timeout (the rest keep resolving in the background and are
        unusable until they are done)."""
        want = [n for n in names if n not in self.cache or (self.local is not None and self.local.serves(n))]
        if not want:
            return
        tasks = [self._start(n) for n in want]
        await asyncio.wait(tasks, timeout=self.timeout)

    def health_changed(self) -> None:
        """Health changed: resolve again, now, the names lbdns answered itself (an origin named
        after another load balancer follows that balancer's health without waiting for its
        refresh). Does nothing outside a running event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        for n in self._answered_locally & self.names:
            self._start(n)

    def track(self, names: frozenset[str]) -> None:
        """The published snapshot needs ``names``: refresh those, forget (and stop resolving)
        the others."""
        self.names = names
        for n, task in list(self._inflight.items()):
            if n not in names:
                task.cancel()
        for n in (self.cache.keys() | self.due.keys()) - names:
            self.cache.pop(n, None)
            self.due.pop(n, None)
            self._failing.pop(n, None)
            self._answered_locally.discard(n)

    def start(self) -> None:
        """Start the background refresh (on the running loop)."""
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def stop(self) -> None:
        """Stop the background refresh and the lookups in flight."""
        tasks = [t for t in (self._refresher, *self._inflight.values()) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._refresher = None

    async def resolve(self, names: Iterable[str]) -> None:
        """Resolve ``names`` now (sharing lookups already in flight) and wait for them."""
        tasks = [self._start(n) for n in names]
        if tasks:
            await asyncio.wait(tasks)

    async def _refresh_forever(self) -> None:
        while True:
            now = self.clock()
            wake = now + self.max_ttl + MIN_REFRESH_S
            for n in self.names:
                at = self.due.get(n, now)
                if at <= now:
                    self._start(n)
                else:
                    wake = min(wake, at)
            await asyncio.sleep(max(0.05, wake - now))

    def _start(self, name: str) -> asyncio.Task[None]:
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._resolve_one(name))
            self._inflight[name] = task
            self.due[name] = math.inf  # not again while in flight
            task.add_done_callback(lambda _t: self._inflight.pop(name, None))
        return task

    # -- one name --------------------------------------------------------------------------------
    async def _resolve_one(self, name: str) -> None:
        try:
            step = await self._chain(name)
        except Exception as exc:  # a resolver bug must not end the refresh of this name
            log.exception("resolving hostname origin %s failed", name)
            step = _Step(why=f"{type(exc).__name__}: {exc}")
        ttl = min(step.ttl, self.max_ttl) if step.ok else self.max_ttl
        now = self.clock()
        self.cache[name] = HostAddresses(step.ok, step.v4, step.v6)
        self.due[name] = now + max(ttl * REFRESH_AT, MIN_REFRESH_S)
        # one line when a name starts failing and one when it recovers, not one per retry
        if not step.ok and self._failing.get(name) is not step.looped:
            self._failing[name] = step.looped
            log.warning("hostname origin %s cannot be resolved through %s: %s; its origins are left out of "
                        "A/AAAA answers until it resolves", name.rstrip(".") or name, self._via, step.why)
        elif step.ok and name in self._failing:
            del self._failing[name]
            log.info("hostname origin %s resolves again", name.rstrip(".") or name)

    async def _chain(self, name: str) -> _Step:
        """Follow ``name`` through lbdns's own zones and the upstream resolver to its addresses."""
        chain = [name]
        current = name
        ttl = math.inf
        self._answered_locally.discard(name)
        for _ in range(MAX_CHAIN + 1):
            local = self.local
            if local is not None and local.serves(current):
                self._answered_locally.add(name)
                step = self._ask_local(local, current, frozenset(chain))
            else:
                step = await self._ask_upstream(current)
            ttl = min(ttl, step.ttl)
            if step.next is None:
                return _Step(step.ok, step.v4, step.v6, ttl, step.why, looped=step.looped)
            if step.next in chain:
                return _Step(why=f"CNAME loop at {step.next.rstrip('.')}")
            chain.append(step.next)
            current = step.next
        return _Step(why=f"more than {MAX_CHAIN} CNAME links")

    def _ask_local(self, local: LocalAnswers, name: str, active: frozenset[str]) -> _Step:
        """``name``'s addresses as lbdns itself answers them. Hostname origins met on the way
        are read from the cache; one that is being resolved in this chain (``active``) means
        the name leads back to itself: the resolution is cut off."""
        outer_active, outer_looped = self._active, self._looped
        self._active, self._looped = active, False
        try:
            a, aaaa = local.ask(name, _A), local.ask(name, _AAAA)
            looped = self._looped
        finally:
            self._active, self._looped = outer_active, outer_looped or self._looped
        if looped:
            return _Step(why=f"it leads back to itself through lbdns's own answer for {name.rstrip('.')}",
                         looped=True)
        return _from_responses(name, a, aaaa, local)

    def lookup_for_local(self, name: str) -> HostAddresses:
        """The hostname lookup the local answers use: the cache, except that a name being
        resolved in the current chain marks the chain as a loop (and is not usable)."""
        if name in self._active:
            self._looped = True
            return UNRESOLVED
        return self.cache.get(name, UNRESOLVED)

    async def _ask_upstream(self, name: str) -> _Step:
        (s4, r4), (s6, r6) = await asyncio.gather(self._query(name, _A), self._query(name, _AAAA))
        if s4 is not None or s6 is not None:  # the answer's chain enters our zones: continue there
            return _Step(next=s4 or s6, ttl=min(r4.ttl, r6.ttl))
        ok = r4.ok or r6.ok
        return _Step(ok, r4.v4, r6.v6, min(r4.ttl, r6.ttl), "" if ok else (r4.why or r6.why))

    async def _query(self, name: str, rdtype: dns.rdatatype.RdataType) -> tuple[str | None, _Step]:
        """(in-zone name the answer's CNAME chain reaches or None, result) of one lookup."""
        try:
            ans = await self.resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return None, _Step(why="NXDOMAIN")
        except (dns.exception.DNSException, OSError) as exc:
            log.debug("lookup of %s %s failed: %s", name, rdtype, exc)
            return None, _Step(why=(str(exc) or type(exc).__name__).splitlines()[0])
        local = self.local
        if local is not None and ans.response is not None:
            for target in _cname_targets(name, ans.response):
                if local.serves(target):
                    return target, _Step(ttl=self.max_ttl)
        rrset = ans.rrset
        if rrset is None:
            # NODATA is not a failure: the origin stays eligible (docs/steering.md › Hostname origins)
            return None, _Step(ok=True, ttl=self.max_ttl)
        packed = tuple(ip_address(rd.address).packed for rd in rrset)
        if rdtype == _A:
            return None, _Step(ok=True, v4=packed, ttl=float(rrset.ttl))
        return None, _Step(ok=True, v6=packed, ttl=float(rrset.ttl))


def _cname_targets(name: str, response: dns.message.Message) -> list[str]:
    """The CNAME targets of ``response``'s answer chain starting at ``name``, in order."""
    targets: list[str] = []
    owner = dns.name.from_text(name)
    for _ in range(MAX_CHAIN):
        rrset = next((r for r in response.answer if r.rdtype == dns.rdatatype.CNAME and r.name == owner), None)
        if rrset is None:
            break
        owner = next(iter(rrset)).target
        targets.append(owner.to_text().lower())
    return targets


def _from_responses(name: str, a: dns.message.Message | None, aaaa: dns.message.Message | None,
                    local: LocalAnswers) -> _Step:
    """A local resolution step from lbdns's own A and AAAA responses for ``name``: the
    addresses at the end of the CNAME chain, or the next name when the chain leaves our zones."""
    v4: tuple[bytes, ...] = ()
    v6: tuple[bytes, ...] = ()
    ttl = math.inf
    for resp, rdtype in ((a, _A), (aaaa, _AAAA)):
        if resp is None:
            return _Step(why="no answer")
        rcode = resp.rcode()
        if rcode != dns.rcode.NOERROR:
            return _Step(why=dns.rcode.to_text(rcode))
        owner = dns.name.from_text(name)
        targets = _cname_targets(name, resp)
        if targets:
            owner = dns.name.from_text(targets[-1])
        for rrset in resp.answer:
            ttl = min(ttl, float(rrset.ttl))
            if rrset.name == owner and rrset.rdtype == rdtype:
                packed = tuple(ip_address(rd.address).packed for rd in rrset)
                if rdtype == _A:
                    v4 = packed
                else:
                    v6 = packed
        if targets and not local.serves(targets[-1]):
            return _Step(next=targets[-1], ttl=ttl)
    return _Step(True, v4, v6, ttl)

