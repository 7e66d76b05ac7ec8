"""TCP ``connection_established`` health check (Cloudflare docs: Load Balancing › Monitors ›
Supported protocols)."""

from __future__ import annotations

import asyncio
import time

from lbdns.probes import result as r
from lbdns.probes.result import ProbeResult


async def tcp_connect_once(ip: str, port: int, timeout: float, *,
                           source: str | None = None) -> tuple[ProbeResult, bool]:
    """One connection attempt to ``ip``:``port`` within ``timeout`` seconds, from local
    address ``source`` (None: the kernel's choice).

    Returns the result (``rtt_ms`` = SYN → SYN/ACK as seen by connect()) and whether a failure
    may be retried (every TCP failure is connection-level). The connection
    is closed at once (FIN). Never raises.
    """
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(
                asyncio.Protocol, ip, port, local_addr=(source, 0) if source else None)
    except Exception as exc:  # a check never raises
        return r.failed(r.os_error_reason(exc, r.TCP_TIMEOUT), detail=f"{type(exc).__name__}: {exc}"), True
    rtt = r.elapsed_ms(start)
    transport.close()
    return r.passed(rtt), False


async def check_tcp(ip: str, port: int, timeout: float, retries: int, *,
                    source: str | None = None) -> ProbeResult:
    """TCP monitor: passes iff a handshake with ``ip``:``port`` completes
    within ``timeout`` seconds in one of ``1 + retries`` attempts. Failure reasons: "TCP
    connection failed" (refused), "TCP Timeout", "No route to host error", "Network
    Unreachable", "Connection Reset by Peer", "Other Failure". ``source``: local address to
    connect from (None: the kernel's choice). Never raises."""
    res = r.failed(r.OTHER_FAILURE, detail="no attempt made")
    for _ in range(1 + max(retries, 0)):
        res, retry = await tcp_connect_once(ip, port, timeout, source=source)
        if res.passed or not retry:
            return res
    return res
