"""UDP-ICMP and ICMP ping probes (SPEC.md R-MON-13, R-MON-14)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from lbdns.probes.icmp import NOT_PERMITTED, IcmpPinger, check_icmp
from lbdns.probes.result import ProbeResult
from lbdns.probes.udp import check_udp_icmp, udp_port_probe
from tests.integration.test_probes_http import run


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_udp_bound_socket_passes_closed_port_fails() -> None:
    async def main() -> tuple[ProbeResult, ProbeResult]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
            bound.bind(("127.0.0.1", 0))
            up = await udp_port_probe("127.0.0.1", bound.getsockname()[1], 0.3)
        down = await udp_port_probe("127.0.0.1", _closed_udp_port(), 0.3)
        return up, down

    up, down = run(main())
    assert up.passed, up
    assert not down.passed and down.failure_reason == "Other Failure"
    assert "port unreachable" in down.detail


def test_udp_echo_reply_passes_early() -> None:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.t.sendto(data, addr)  # type: ignore[attr-defined]

    async def main() -> tuple[ProbeResult, float]:
        loop = asyncio.get_running_loop()
        tr, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        try:
            t0 = loop.time()
            res = await udp_port_probe("127.0.0.1", tr.get_extra_info("sockname")[1], 2.0)
            return res, loop.time() - t0
        finally:
            tr.close()

    res, took = run(main())
    assert res.passed and took < 1.5


def _icmp_or_skip(privileged: bool | None) -> ProbeResult:
    res = run(check_icmp("127.0.0.1", 1, 0, pinger=IcmpPinger(privileged)))
    if res.detail.startswith(NOT_PERMITTED):
        pytest.skip(f"ICMP not permitted on this host: {res.detail}")
    return res


def test_icmp_unprivileged() -> None:
    res = _icmp_or_skip(False)
    assert res.passed and res.rtt_ms is not None


def test_icmp_auto_mode() -> None:
    res = _icmp_or_skip(None)
    assert res.passed and res.rtt_ms is not None


def test_udp_icmp_full() -> None:
    _icmp_or_skip(None)

    async def main() -> tuple[ProbeResult, ProbeResult]:
        pinger = IcmpPinger(None)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
            bound.bind(("127.0.0.1", 0))
            up = await check_udp_icmp("127.0.0.1", bound.getsockname()[1], 0.3, 0, pinger=pinger)
        down = await check_udp_icmp("127.0.0.1", _closed_udp_port(), 0.3, 0, pinger=pinger)
        return up, down

    up, down = run(main())
    assert up.passed and up.rtt_ms is not None, up
    assert not down.passed and down.failure_reason == "Other Failure"
