"""The upstream resolvers of hostname origins (the server setting ``upstream_resolvers``): one
configuration shared by answers (:mod:`lbdns.server.hostnames`) and probes
(:mod:`lbdns.probes.result`), so both see the same addresses for a hostname (docs/decisions.md ›
Answers and precedence)."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address

import dns.asyncresolver
import dns.resolver


def parse_upstream(text: str) -> tuple[str, int]:
    """``IP``, ``IP:port`` or ``[IPv6]:port`` → (ip, port); port defaults to 53.
    Raises ValueError for anything else."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host, port = text, 53
    ip_address(host)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port


def make_resolver(upstreams: Sequence[str], timeout: float) -> dns.asyncresolver.Resolver:
    """A dnspython async resolver for ``upstreams`` (see :func:`parse_upstream`; one port for
    all: the first entry's), or for the system configuration when empty (``127.0.0.1`` if there
    is no ``/etc/resolv.conf``). ``timeout`` (seconds) bounds one resolution. Raises ValueError
    for a malformed upstream."""
    if upstreams:
        resolver = dns.asyncresolver.Resolver(configure=False)
        parsed = [parse_upstream(u) for u in upstreams]
        resolver.nameservers = [h for h, _ in parsed]
        resolver.port = parsed[0][1]
    else:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = ["127.0.0.1"]
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver
