"""UDP-ICMP health check (Cloudflare docs: Load Balancing › Monitors › Supported protocols): an ICMP
ping must succeed, then a UDP datagram is sent to the port; an ICMP Port Unreachable within the
timeout ⇒ unhealthy, silence or a reply ⇒ healthy.

On Linux a *connected* UDP socket reports a received ICMP Port Unreachable as
``ConnectionRefusedError``; asyncio delivers it to ``DatagramProtocol.error_received``.
"""

from __future__ import annotations

import asyncio

from lbdns.probes import result as r
from lbdns.probes.icmp import IcmpPinger, check_icmp
from lbdns.probes.result import ProbeResult

PROBE_PAYLOAD = b"lbdns-health-probe\n"


class _UdpWatch(asyncio.DatagramProtocol):
    def __init__(self, fut: asyncio.Future[BaseException | None]) -> None:
        self.fut = fut

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self.fut.done():
            self.fut.set_result(None)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_result(exc)


async def udp_port_probe(
    ip: str, port: int, timeout: float, payload: bytes = PROBE_PAYLOAD
) -> ProbeResult:
    """Send one datagram to ``ip``:``port`` from a connected socket and wait up to ``timeout``
    seconds. A port-unreachable (``ConnectionRefusedError``) or another socket error fails
    ("Other Failure", or "No route to host error"/"Network Unreachable"); a reply or silence
    passes (``rtt_ms`` None). Never raises."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[BaseException | None] = loop.create_future()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpWatch(fut), remote_addr=(ip, port)
        )
    except Exception as exc:  # a check never raises
        return r.failed(r.os_error_reason(exc, r.OTHER_FAILURE), detail=f"{type(exc).__name__}: {exc}")
    try:
        transport.sendto(payload)
        try:
            async with asyncio.timeout(timeout):
                outcome = await fut
        except TimeoutError:
            return r.passed(None)
    finally:
        transport.close()
    if outcome is None:
        return r.passed(None)
    if isinstance(outcome, ConnectionRefusedError):
        return r.failed(r.OTHER_FAILURE, detail=f"ICMP port unreachable from {ip}:{port}")
    reason = r.os_error_reason(outcome, r.OTHER_FAILURE)
    if reason in (r.TCP_CONNECTION_FAILED, r.CONNECTION_RESET):
        reason = r.OTHER_FAILURE
    return r.failed(reason, detail=f"{type(outcome).__name__}: {outcome}")


async def check_udp_icmp(
    ip: str,
    port: int,
    timeout: float,
    retries: int,
    *,
    pinger: IcmpPinger | None = None,
    ping: bool = True,
) -> ProbeResult:
    """UDP-ICMP monitor: ICMP ping (up to ``1 + retries`` attempts, as :func:`check_icmp`) then
    one UDP datagram to ``port`` watched for ``timeout`` seconds. ``rtt_ms`` is the ping round
    trip. ``ping=False`` skips the ping (tests; hosts without ICMP rights).
    Never raises."""
    rtt: float | None = None
    if ping:
        echo = await check_icmp(ip, timeout, retries, pinger=pinger)
        if not echo.passed:
            return echo
        rtt = echo.rtt_ms
    res = await udp_port_probe(ip, port, timeout)
    if res.passed:
        return r.passed(rtt)
    return res
