"""Probe results, failure reasons and helpers shared by every check.

Every check returns a :class:`ProbeResult` and never raises: monitors report facts, the health
tracker decides (docs/architecture.md › One probe result). The failure reasons are those of
Cloudflare docs: Load Balancing › Common error codes; ``detail`` carries the underlying error
text for logs (it never drives health decisions).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.rdatatype

# Failure reasons (Cloudflare docs: Load Balancing › Common error codes) -----------------------
NO_FAILURES = "No failures"
TCP_CONNECTION_FAILED = "TCP connection failed"
HTTP_TIMEOUT = "HTTP timeout occurred"
CODE_MISMATCH = "Response code mismatch error"
BODY_MISMATCH = "Response body mismatch error"
TLS_UNTRUSTED = "TLS untrusted certificate error"
TLS_NAME_MISMATCH = "TLS name mismatch error"
TLS_PROTOCOL = "TLS protocol error"
TLS_UNRECOGNIZED_NAME = "TLS unrecognized name error"
NO_ROUTE = "No route to host error"
TCP_TIMEOUT = "TCP Timeout"
TLS_HANDSHAKE = "TLS Handshake Failure"
NETWORK_UNREACHABLE = "Network Unreachable"
HTTP_INVALID_RESPONSE = "HTTP Invalid Response"
DNS_UNKNOWN_HOST = "DNS Unknown Host"
CONNECTION_RESET = "Connection Reset by Peer"
MONITOR_CONFIG_ERROR = "Monitor Config Error"
DNS_INTERNAL = "DNS Internal"
OTHER_FAILURE = "Other Failure"

FAILURE_REASONS: frozenset[str] = frozenset({
    NO_FAILURES, TCP_CONNECTION_FAILED, HTTP_TIMEOUT, CODE_MISMATCH, BODY_MISMATCH, TLS_UNTRUSTED,
    TLS_NAME_MISMATCH, TLS_PROTOCOL, TLS_UNRECOGNIZED_NAME, NO_ROUTE, TCP_TIMEOUT, TLS_HANDSHAKE,
    NETWORK_UNREACHABLE, HTTP_INVALID_RESPONSE, DNS_UNKNOWN_HOST, CONNECTION_RESET,
    MONITOR_CONFIG_ERROR, DNS_INTERNAL, OTHER_FAILURE,
})
"""Every failure reason a probe may report (Cloudflare docs: Load Balancing › Common error
codes)."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe (all attempts) of one (monitor, origin) from one vantage.

    ``rtt_ms``: milliseconds of the passing attempt, as each check defines it (None when failed);
    ``failure_reason``: one of :data:`FAILURE_REASONS`, ``"No failures"`` when passed;
    ``response_code``: HTTP status or SMTP reply code seen (None otherwise);
    ``at``: wall-clock UNIX seconds when the result was produced;
    ``detail``: free-text diagnostic for logs (exception text), ``""`` when none.
    """

    passed: bool
    rtt_ms: float | None
    failure_reason: str
    response_code: int | None
    at: float
    detail: str = ""


def passed(rtt_ms: float | None, response_code: int | None = None) -> ProbeResult:
    """A passing result stamped now (wall clock)."""
    return ProbeResult(True, rtt_ms, NO_FAILURES, response_code, time.time())


def failed(reason: str, response_code: int | None = None, detail: str = "") -> ProbeResult:
    """A failing result with a failure ``reason``, stamped now (wall clock)."""
    return ProbeResult(False, None, reason, response_code, time.time(), detail)


def os_error_reason(exc: BaseException, timeout_reason: str = TCP_TIMEOUT) -> str:
    """Map a connection-level exception to a failure reason.

    Refused ⇒ "TCP connection failed", reset/broken pipe ⇒ "Connection Reset by Peer",
    EHOSTUNREACH ⇒ "No route to host error", ENETUNREACH ⇒ "Network Unreachable", timeouts ⇒
    ``timeout_reason``; anything else ⇒ "Other Failure".
    """
    if isinstance(exc, TimeoutError):
        return timeout_reason
    if isinstance(exc, ConnectionRefusedError):
        return TCP_CONNECTION_FAILED
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return CONNECTION_RESET
    if isinstance(exc, OSError):
        code = exc.errno
        if code == errno.ECONNREFUSED:
            return TCP_CONNECTION_FAILED
        if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            return CONNECTION_RESET
        if code == errno.EHOSTUNREACH:
            return NO_ROUTE
        if code == errno.ENETUNREACH:
            return NETWORK_UNREACHABLE
        if code == errno.ETIMEDOUT:
            return timeout_reason
    return OTHER_FAILURE


def is_public(ip: str) -> bool:
    """True when ``ip`` is a globally routable address (else "DNS Internal" with
    ``strict_public_endpoints``)."""
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


async def resolve_host(
    host: str, timeout: float, *, strict_public: bool = False,
    resolver: dns.asyncresolver.Resolver | None = None, known: str | None = None,
) -> tuple[str | None, ProbeResult | None]:
    """Resolve a hostname origin before a probe (failures: "DNS Unknown Host", "DNS Internal",
    Cloudflare docs: Load Balancing › Common error codes).

    Takes the hostname, a timeout in seconds, whether private results are rejected
    (``strict_public_endpoints``) and the resolver: a dnspython resolver for the configured
    ``upstream_resolvers`` (A first, then AAAA — the same upstreams that answers use, see
    :mod:`lbdns.upstream`), or None for the system resolver (``getaddrinfo``). Returns ``(ip,
    None)`` on success, or ``(None, failure)`` with "DNS Unknown Host" (no such name, no
    address, resolver failure or timeout) or "DNS Internal". IP literals are returned
    unchanged; ``known`` is an address already known for ``host`` (lbdns's own answer for a
    name in its zones), used without a lookup. Never raises.
    """
    try:
        ipaddress.ip_address(host)
        return host, None
    except ValueError:
        pass
    ip: str | None = known
    try:
        async with asyncio.timeout(timeout):
            if ip is not None:
                pass
            elif resolver is not None:
                for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    ans = await resolver.resolve(host, rdtype, raise_on_no_answer=False, search=False)
                    if ans.rrset:
                        ip = str(next(iter(ans.rrset)).address)
                        break
            else:
                infos = await asyncio.get_running_loop().getaddrinfo(host.rstrip("."), None,
                                                                     type=socket.SOCK_STREAM)
                ip = str(infos[0][4][0]) if infos else None
    except (OSError, TimeoutError, dns.exception.DNSException) as exc:
        return None, failed(DNS_UNKNOWN_HOST, detail=f"{host}: {type(exc).__name__}: {exc}")
    if ip is None:
        return None, failed(DNS_UNKNOWN_HOST, detail=f"{host}: no addresses")
    if strict_public and not is_public(ip):
        return None, failed(DNS_INTERNAL, detail=f"{host} resolves to non-public {ip}")
    return ip, None


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` value)."""
    return (time.perf_counter() - start) * 1000.0
