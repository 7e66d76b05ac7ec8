"""ICMP echo health check with icmplib (Cloudflare docs: Load Balancing › Monitors › Supported
protocols).

Unprivileged ICMP ("ping") sockets need ``net.ipv4.ping_group_range`` to include the process's
group on Linux. :class:`IcmpPinger` tries them first; in ``auto`` mode it falls back to raw
sockets (which need root or CAP_NET_RAW) and remembers what worked. When neither is allowed
the probe fails with "Other Failure" and a ``detail`` starting with :data:`NOT_PERMITTED`.
"""

from __future__ import annotations

import icmplib

from lbdns.probes import result as r
from lbdns.probes.result import ProbeResult

NOT_PERMITTED = "ICMP sockets not permitted"
"""Prefix of ``ProbeResult.detail`` when this host may not send ICMP echo requests."""


class IcmpPinger:
    """Sends ICMP echo requests; ``privileged`` None = auto (unprivileged, then raw sockets),
    False = unprivileged only, True = raw sockets only."""

    def __init__(self, privileged: bool | None = None) -> None:
        self.privileged = privileged
        self._resolved: bool | None = privileged

    async def _ping(self, ip: str, timeout: float, privileged: bool) -> ProbeResult:
        host = await icmplib.async_ping(ip, count=1, timeout=timeout, privileged=privileged)
        if host.is_alive:
            return r.passed(float(host.avg_rtt))
        return r.failed(r.OTHER_FAILURE, detail=f"no ICMP echo reply from {ip} within {timeout} s")

    async def ping_once(self, ip: str, timeout: float) -> ProbeResult:
        """One echo request to ``ip`` waiting up to ``timeout`` seconds. ``rtt_ms`` is the echo
        round trip. Never raises."""
        modes = [self._resolved] if self._resolved is not None else [False, True]
        last = ""
        for mode in modes:
            try:
                res = await self._ping(ip, timeout, bool(mode))
            except icmplib.SocketPermissionError as exc:
                last = f"{NOT_PERMITTED} ({'raw' if mode else 'unprivileged'}): {exc}"
                continue
            except Exception as exc:  # a check never raises
                return r.failed(r.OTHER_FAILURE, detail=f"{type(exc).__name__}: {exc}")
            self._resolved = mode
            return res
        return r.failed(r.OTHER_FAILURE, detail=last)


async def check_icmp(
    ip: str, timeout: float, retries: int, *, pinger: IcmpPinger | None = None
) -> ProbeResult:
    """ICMP ping monitor: passes iff an echo reply arrives within ``timeout`` seconds in one of
    ``1 + retries`` attempts. Failures are "Other Failure" (lbdns decision: the docs give ICMP no
    reason of its own). Permission problems are not retried. Never raises."""
    p = pinger if pinger is not None else IcmpPinger()
    res = r.failed(r.OTHER_FAILURE, detail="no attempt made")
    for _ in range(1 + max(retries, 0)):
        res = await p.ping_once(ip, timeout)
        if res.passed or res.detail.startswith(NOT_PERMITTED):
            return res
    return res
