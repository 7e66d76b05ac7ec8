"""Resolution of hostname origins (docs/steering.md › Hostname origins; the cache: docs/decisions.md
› Answers and precedence): an asynchronous resolver feeding a cache the synchronous query path
reads.

Results (including failures) are cached for min(upstream TTL, ``hostname_cache_max_ttl``)
seconds. A stale entry is still served while a background refresh runs, so only the very
first query for a hostname waits for the upstream resolver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from ipaddress import ip_address

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from lbdns.steering.decide import NeedsLookup
from lbdns.steering.origins import HostAddresses
from lbdns.upstream import make_resolver

log = logging.getLogger("lbdns.hostnames")


class HostnameResolver:
    """Cache of hostname origin addresses.

    ``upstreams`` are resolver addresses (see :func:`lbdns.upstream.parse_upstream`); empty means the
    system resolver configuration. ``max_ttl`` caps the cache time in seconds; ``timeout``
    bounds one resolution (seconds).
    """

    def __init__(self, upstreams: list[str], *, max_ttl: float = 5.0, timeout: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.resolver = make_resolver(upstreams, timeout)
        self.max_ttl = max_ttl
        self.clock = clock
        self.cache: dict[str, tuple[HostAddresses, float]] = {}
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failing: set[str] = set()
        """Names whose last lookup failed (logged once when they start and stop failing)."""
        self._via = ", ".join(upstreams) if upstreams else "the system resolver"

    def lookup(self, name: str) -> HostAddresses:
        """The cached addresses of ``name`` (lower-case FQDN). Raises :class:`NeedsLookup`
        when nothing is cached; schedules a refresh when the entry is stale."""
        entry = self.cache.get(name)
        if entry is None:
            raise NeedsLookup(frozenset({name}))
        addrs, expires = entry
        if self.clock() >= expires and name not in self._refreshing:
            self._refreshing.add(name)
            try:
                task = asyncio.get_running_loop().create_task(self._refresh(name))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            except RuntimeError:  # no loop (explain): serve stale
                self._refreshing.discard(name)
        return addrs

    async def _refresh(self, name: str) -> None:
        try:
            await self.resolve({name})
        finally:
            self._refreshing.discard(name)

    async def resolve(self, names: frozenset[str] | set[str]) -> None:
        """Resolve ``names`` (A and AAAA concurrently) into the cache."""
        await asyncio.gather(*(self._resolve_one(n) for n in names))

    async def _query(self, name: str,
                     rdtype: dns.rdatatype.RdataType) -> tuple[bool, tuple[bytes, ...], float, str]:
        """(ok, packed addresses, TTL, failure text) of one lookup."""
        try:
            ans = await self.resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return False, (), self.max_ttl, "NXDOMAIN"
        except (dns.exception.DNSException, OSError) as exc:
            log.debug("lookup of %s %s failed: %s", name, rdtype, exc)
            return False, (), self.max_ttl, (str(exc) or type(exc).__name__).splitlines()[0]
        rrset = ans.rrset
        if rrset is None:
            # NODATA is not a failure: the origin stays eligible (docs/steering.md › Hostname origins)
            return True, (), self.max_ttl, ""
        return True, tuple(ip_address(rd.address).packed for rd in rrset), float(rrset.ttl), ""

    async def _resolve_one(self, name: str) -> None:
        (ok4, v4, ttl4, why4), (ok6, v6, ttl6, why6) = await asyncio.gather(
            self._query(name, dns.rdatatype.A), self._query(name, dns.rdatatype.AAAA))
        ok = ok4 or ok6
        ttl = min(ttl4, ttl6, self.max_ttl)
        self.cache[name] = (HostAddresses(ok, v4, v6), self.clock() + ttl)
        # one line when a name starts failing and one when it recovers, not one per retry
        if not ok and name not in self._failing:
            self._failing.add(name)
            log.warning("hostname origin %s cannot be resolved through %s: %s; its origins are left out of "
                        "A/AAAA answers until it resolves", name.rstrip(".") or name, self._via, why4 or why6)
        elif ok and name in self._failing:
            self._failing.discard(name)
            log.info("hostname origin %s resolves again", name.rstrip(".") or name)
