"""SMTP health check (Cloudflare docs: Load Balancing › Monitors › Supported protocols): read the
220 greeting (lbdns decision, docs/decisions.md › Health and probes), ``HELO`` → 250, ``QUIT`` →
221, close."""

from __future__ import annotations

import asyncio
import contextlib
import time

from lbdns.probes import result as r
from lbdns.probes.result import ProbeResult

DEFAULT_HELO = "localhost"
_MAX_LINES = 64


class _BadReply(Exception):
    """The server sent something that is not an SMTP reply."""


async def read_reply(reader: asyncio.StreamReader) -> int:
    """Read one (possibly multi-line) SMTP reply and return its three-digit code.

    Raises :class:`ConnectionResetError` on end of stream and ``_BadReply`` on a malformed line.
    """
    for _ in range(_MAX_LINES):
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("connection closed by the SMTP server")
        if len(line) < 3 or not line[:3].isdigit():
            raise _BadReply(f"malformed SMTP reply {line[:64]!r}")
        if line[3:4] != b"-":
            return int(line[:3])
    raise _BadReply("SMTP reply too long")


async def smtp_once(ip: str, port: int, timeout: float, helo: str, *,
                    source: str | None = None) -> tuple[ProbeResult, bool]:
    """One SMTP conversation within ``timeout`` seconds. Returns the result (``rtt_ms`` =
    HELO → 250; ``response_code`` = the last reply code) and whether a failure may be
    retried (connection-level failures and timeouts only; a wrong reply code is final).
    ``source``: local address to connect from (None: the kernel's choice)."""
    writer: asyncio.StreamWriter | None = None
    code: int | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                ip, port, local_addr=(source, 0) if source else None)
            code = await read_reply(reader)
            if code != 220:
                return r.failed(r.OTHER_FAILURE, code, f"greeting {code}, expected 220"), False
            start = time.perf_counter()
            writer.write(f"HELO {helo}\r\n".encode("ascii", "replace"))
            await writer.drain()
            code = await read_reply(reader)
            rtt = r.elapsed_ms(start)
            if code != 250:
                return r.failed(r.OTHER_FAILURE, code, f"HELO reply {code}, expected 250"), False
            writer.write(b"QUIT\r\n")
            await writer.drain()
            code = await read_reply(reader)
            if code != 221:
                return r.failed(r.OTHER_FAILURE, code, f"QUIT reply {code}, expected 221"), False
            return r.passed(rtt, code), False
    except _BadReply as exc:
        return r.failed(r.OTHER_FAILURE, code, str(exc)), False
    except Exception as exc:  # a check never raises
        return r.failed(r.os_error_reason(exc, r.TCP_TIMEOUT), code, f"{type(exc).__name__}: {exc}"), True
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()


async def check_smtp(
    ip: str, port: int, timeout: float, retries: int, *, helo: str = DEFAULT_HELO,
    source: str | None = None,
) -> ProbeResult:
    """SMTP monitor: up to ``1 + retries`` attempts of 220 / HELO 250 /
    QUIT 221 with ``ip``:``port``, each within ``timeout`` seconds. A wrong code fails at once
    with "Other Failure" (lbdns decision: the docs give SMTP no reason of its own). Never raises."""
    res = r.failed(r.OTHER_FAILURE, detail="no attempt made")
    for _ in range(1 + max(retries, 0)):
        res, retry = await smtp_once(ip, port, timeout, helo, source=source)
        if res.passed or not retry:
            return res
    return res
