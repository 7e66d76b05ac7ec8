"""SMTP probes against an asyncio SMTP stub (SPEC.md R-MON-15, A-41)."""

from __future__ import annotations

import asyncio

import pytest

from lbdns.probes.result import ProbeResult
from lbdns.probes.smtp import check_smtp
from tests.integration.test_probes_http import run


def smtp_stub(greeting: bytes, helo: bytes, quit_: bytes, seen: list[bytes]):  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(greeting)
            await writer.drain()
            line = await reader.readline()
            seen.append(line)
            writer.write(helo)
            await writer.drain()
            line = await reader.readline()
            seen.append(line)
            writer.write(quit_)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
    return handler


async def _probe(greeting: bytes, helo: bytes, quit_: bytes, seen: list[bytes]) -> ProbeResult:
    srv = await asyncio.start_server(smtp_stub(greeting, helo, quit_, seen), "127.0.0.1", 0)
    async with srv:
        return await check_smtp("127.0.0.1", srv.sockets[0].getsockname()[1], 1, 2)


@pytest.mark.parametrize(
    ("greeting", "helo", "quit_", "ok", "code"),
    [
        (b"220 mx ESMTP\r\n", b"250 hello\r\n", b"221 bye\r\n", True, 221),
        (b"220-mx first\r\n220 mx second\r\n", b"250-hello\r\n250 SIZE\r\n", b"221 bye\r\n", True, 221),
        (b"554 no service\r\n", b"250 hello\r\n", b"221 bye\r\n", False, 554),
        (b"220 mx\r\n", b"502 no HELO\r\n", b"221 bye\r\n", False, 502),
        (b"220 mx\r\n", b"250 hello\r\n", b"250 what\r\n", False, 250),
    ],
)
def test_smtp_codes(greeting: bytes, helo: bytes, quit_: bytes, ok: bool, code: int) -> None:
    seen: list[bytes] = []
    res = run(_probe(greeting, helo, quit_, seen))
    assert res.passed is ok, res
    assert res.response_code == code
    if ok:
        assert res.rtt_ms is not None and seen == [b"HELO localhost\r\n", b"QUIT\r\n"]
    else:
        assert res.failure_reason == "Other Failure"
    # a wrong reply code is not retried (one conversation only)
    assert seen.count(b"HELO localhost\r\n") <= 1


def test_smtp_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def main() -> ProbeResult:
        srv = await asyncio.start_server(silent, "127.0.0.1", 0)
        async with srv:
            return await check_smtp("127.0.0.1", srv.sockets[0].getsockname()[1], 0.3, 1)

    res = run(main())
    assert not res.passed and res.failure_reason == "TCP Timeout"
