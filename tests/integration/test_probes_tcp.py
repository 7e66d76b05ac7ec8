"""TCP connection_established probes against a real listener (SPEC.md R-MON-12)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from lbdns.probes.result import ProbeResult
from lbdns.probes.tcp import check_tcp
from tests.integration.test_probes_http import run


async def _noop(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.close()


def test_tcp_listener_up_then_down() -> None:
    async def main() -> tuple[ProbeResult, ProbeResult]:
        srv = await asyncio.start_server(_noop, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        up = await check_tcp("127.0.0.1", port, 1, 0)
        srv.close()
        await srv.wait_closed()
        down = await check_tcp("127.0.0.1", port, 1, 2)
        return up, down

    up, down = run(main())
    assert up.passed and up.failure_reason == "No failures" and up.rtt_ms is not None and up.rtt_ms >= 0
    assert not down.passed and down.failure_reason == "TCP connection failed" and down.rtt_ms is None


def test_tcp_timeout() -> None:
    # A listening socket whose backlog is full never completes further handshakes on Linux;
    # an unroutable TEST-NET address would depend on the host's routing, so use the backlog.
    async def main() -> ProbeResult:
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        port = lst.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):  # fill the accept queue (never accepted)
                s = socket.socket()
                s.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    s.connect(("127.0.0.1", port))
                fillers.append(s)
            await asyncio.sleep(0.05)
            return await check_tcp("127.0.0.1", port, 0.3, 0)
        finally:
            for s in fillers:
                s.close()
            lst.close()

    res = run(main())
    if res.passed:  # kernel accepted anyway (e.g. syncookies); nothing to assert about timeouts
        return
    assert res.failure_reason == "TCP Timeout", res
