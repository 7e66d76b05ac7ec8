"""HTTP/HTTPS probes against real aiohttp listeners on 127.0.0.1 (SPEC.md §10.2;
SPEC-EXAMPLES.md EX-42, EX-43). Timeouts are 1 s to keep the run short."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from lbdns.config.model import Monitor, Origin
from lbdns.probes.http import check_http, make_session, user_agent
from lbdns.probes.result import ProbeResult

T = TypeVar("T")
POOL_ID = "17b5962d775c646f3f9725cbc7a53df4"


def run(coro: Awaitable[T]) -> T:
    """Run ``coro`` in a fresh event loop with a hard 30 s bound."""
    async def bounded() -> T:
        async with asyncio.timeout(30):
            return await coro
    return asyncio.run(bounded())


@dataclass
class Recorder:
    """What the test server saw."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def hits(self, path: str) -> int:
        return self.counts.get(path, 0)


def make_app(rec: Recorder, slow_s: float = 1.6) -> web.Application:
    """The EX-42 endpoints plus header recording."""

    async def track(request: web.Request) -> None:
        rec.counts[request.path] = rec.counts.get(request.path, 0) + 1
        rec.requests.append({"path": request.path, "method": request.method,
                             "headers": {k: request.headers.getall(k) for k in request.headers}})

    def text(body: str, status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            await track(request)
            return web.Response(text=body, status=status)
        return handler

    def redirect(to: str, status: int = 301) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            await track(request)
            return web.Response(status=status, headers={"Location": to})
        return handler

    async def slow(request: web.Request) -> web.Response:
        await track(request)
        await asyncio.sleep(slow_s)
        return web.Response(text="alive")

    async def flaky(request: web.Request) -> web.Response:
        await track(request)
        if rec.hits(request.path) == 1:
            await asyncio.sleep(slow_s)
        return web.Response(text="alive")

    async def loop(request: web.Request) -> web.Response:
        await track(request)
        return web.Response(status=302, headers={"Location": "/loop"})

    app = web.Application()
    app.router.add_route("*", "/health", text("Status: ALIVE"))
    app.router.add_get("/ok", text("ok"))
    app.router.add_get("/late", text("x" * 12_000 + "alive"))
    app.router.add_get("/redirect", redirect("/health2"))
    app.router.add_get("/health2", text("alive"))
    app.router.add_get("/503", text("down", 503))
    app.router.add_get("/302", redirect("/health", 302))
    app.router.add_get("/204", text("", 204))
    app.router.add_get("/slow", slow)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/loop", loop)
    return app


@asynccontextmanager
async def serve(app: web.Application, ssl_ctx: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """Serve ``app`` on 127.0.0.1, an ephemeral port; yields the port."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_ctx)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield port
    finally:
        await runner.cleanup()


def monitor(**kw: Any) -> Monitor:
    base: dict[str, Any] = {"id": "m", "type": "http", "path": "/health", "expected_codes": "2xx",
                            "expected_body": "alive", "timeout": 1, "retries": 2}
    base.update(kw)
    return Monitor.model_validate(base)


def origin(port: int, **kw: Any) -> Origin:
    return Origin.model_validate({"name": "o", "address": "127.0.0.1", "port": port, **kw})


async def probe(port: int, mon: Monitor, org: Origin | None = None,
                ssl_context: ssl.SSLContext | None = None) -> ProbeResult:
    session = make_session(8)
    try:
        return await check_http(mon, org or origin(port), POOL_ID, session, ssl_context=ssl_context)
    finally:
        await session.close()


# --------------------------------------------------------------------------------------- EX-42

EX42 = [
    # path, follow_redirects, passed, failure reason, requests to the path
    ("/health", False, True, "No failures", 1),
    ("/ok", False, False, "Response body mismatch error", 1),  # no retry
    ("/late", False, False, "Response body mismatch error", 1),  # only first 10 KB read
    ("/redirect", False, False, "Response code mismatch error", 1),
    ("/redirect", True, True, "No failures", 1),
    ("/503", False, False, "Response code mismatch error", 1),
    ("/slow", False, False, "HTTP timeout occurred", 3),  # 1 + retries attempts
    ("/flaky", False, True, "No failures", 2),  # first attempt times out, second passes
]


@pytest.mark.parametrize(("path", "follow", "ok", "reason", "hits"), EX42)
def test_ex42_table(path: str, follow: bool, ok: bool, reason: str, hits: int) -> None:
    rec = Recorder()

    async def main() -> ProbeResult:
        async with serve(make_app(rec)) as port:
            return await probe(port, monitor(path=path, follow_redirects=follow))

    t0 = time.monotonic()
    res = run(main())
    elapsed = time.monotonic() - t0
    assert (res.passed, res.failure_reason) == (ok, reason), res
    assert rec.hits(path) == hits
    if ok:
        assert res.rtt_ms is not None and res.rtt_ms > 0 and res.response_code == 200
    else:
        assert res.rtt_ms is None
    if path == "/slow":
        assert 2.9 < elapsed < 6.0  # three 1 s attempts
    if path == "/redirect" and follow:
        assert rec.hits("/health2") == 1
    assert abs(res.at - time.time()) < 30


@pytest.mark.parametrize(
    ("path", "codes", "ok", "code"),
    [("/302", "200, 302", True, 302), ("/204", "200, 302", False, 204), ("/redirect", "3xx", True, 301)],
)
def test_ex42_expected_codes(path: str, codes: str, ok: bool, code: int) -> None:
    async def main() -> ProbeResult:
        async with serve(make_app(Recorder())) as port:
            return await probe(port, monitor(path=path, expected_codes=codes, expected_body=""))

    res = run(main())
    assert res.passed is ok and res.response_code == code
    if not ok:
        assert res.failure_reason == "Response code mismatch error"


def test_redirect_loop_is_bounded_to_ten_hops() -> None:
    rec = Recorder()

    async def main() -> ProbeResult:
        async with serve(make_app(rec)) as port:
            return await probe(port, monitor(path="/loop", follow_redirects=True, expected_body=""))

    res = run(main())
    assert not res.passed and res.failure_reason == "Response code mismatch error"
    assert res.response_code == 302
    assert rec.hits("/loop") == 11  # the first request + 10 followed hops


def test_head_method_and_body_not_checked() -> None:
    rec = Recorder()

    async def main() -> ProbeResult:
        async with serve(make_app(rec)) as port:
            return await probe(port, monitor(method="HEAD"))

    res = run(main())
    assert res.passed, res
    assert rec.requests[0]["method"] == "HEAD"


# ------------------------------------------------------------------------- connection failures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_is_tcp_connection_failed() -> None:
    res = run(probe(_free_port(), monitor()))
    assert not res.passed and res.failure_reason == "TCP connection failed"


async def _raw_server(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
                      ) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0)


def test_garbage_is_invalid_response() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SPAM AND EGGS\r\n\r\n")
        await writer.drain()
        writer.close()

    async def main() -> ProbeResult:
        srv = await _raw_server(handler)
        async with srv:
            return await probe(srv.sockets[0].getsockname()[1], monitor())

    res = run(main())
    assert not res.passed and res.failure_reason == "HTTP Invalid Response", res


def test_reset_is_connection_reset() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def main() -> ProbeResult:
        srv = await _raw_server(handler)
        async with srv:
            return await probe(srv.sockets[0].getsockname()[1], monitor())

    res = run(main())
    assert not res.passed and res.failure_reason == "Connection Reset by Peer", res


def test_unknown_hostname_is_dns_unknown_host() -> None:
    from lbdns.config.model import Pool
    from lbdns.probes.scheduler import ProbeContext, run_check
    from lbdns.probes.targets import ProbeTarget

    pool = Pool.model_validate({"name": "p", "monitor": "m",
                                "origins": [{"name": "o", "address": "no-such-host.invalid"}]})

    async def main() -> ProbeResult:
        return await run_check(ProbeTarget(pool, pool.origins[0], monitor()), ProbeContext())

    res = run(main())
    assert not res.passed and res.failure_reason == "DNS Unknown Host"


# ------------------------------------------------------------------------------- HTTPS (EX-43)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for probe.test and 127.0.0.1 (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to generate a test certificate")
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=probe.test",
         "-addext", "subjectAltName=DNS:probe.test,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return crt, key


def server_ctx(cert: tuple[Path, Path], rec: Recorder) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))

    def sni_cb(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        rec.sni.append(name)

    ctx.sni_callback = sni_cb
    return ctx


def _https(cert: tuple[Path, Path], mon: Monitor, org_kw: dict[str, Any] | None = None,
           trust: bool = False) -> tuple[ProbeResult, Recorder]:
    rec = Recorder()

    async def main() -> ProbeResult:
        client = ssl.create_default_context(cafile=str(cert[0])) if trust else None
        async with serve(make_app(rec), server_ctx(cert, rec)) as port:
            return await probe(port, mon, origin(port, **(org_kw or {})), ssl_context=client)

    return run(main()), rec


def test_https_self_signed_untrusted(cert: tuple[Path, Path]) -> None:
    res, rec = _https(cert, monitor(type="https"))
    assert not res.passed and res.failure_reason == "TLS untrusted certificate error", res
    assert rec.requests == []


def test_https_allow_insecure_passes(cert: tuple[Path, Path]) -> None:
    res, rec = _https(cert, monitor(type="https", allow_insecure=True))
    assert res.passed, res
    assert rec.sni == [None]  # no Host configured ⇒ no SNI (R-MON-06)
    assert rec.requests[0]["headers"]["Host"] == ["127.0.0.1"]


def test_https_name_mismatch(cert: tuple[Path, Path]) -> None:
    res, rec = _https(cert, monitor(type="https", header={"Host": ["wrong.test"]}), trust=True)
    assert not res.passed and res.failure_reason == "TLS name mismatch error", res
    assert rec.sni[0] == "wrong.test"


def test_https_trusted_with_matching_host(cert: tuple[Path, Path]) -> None:
    res, rec = _https(cert, monitor(type="https", header={"Host": ["probe.test"]}), trust=True)
    assert res.passed, res
    assert rec.sni == ["probe.test"]


def test_ex43_headers_sni_user_agent(cert: tuple[Path, Path]) -> None:
    mon = monitor(type="https", allow_insecure=True,
                  header={"Host": ["www.example.com"], "X-App-ID": ["abc123"], "User-Agent": ["x"]})
    # Origin A: its own Host header wins.
    res, rec = _https(cert, mon, {"name": "A", "header": {"Host": ["lb-app-a.example.com"]}})
    assert res.passed, res
    h = rec.requests[0]["headers"]
    assert h["Host"] == ["lb-app-a.example.com"]
    assert rec.sni == ["lb-app-a.example.com"]
    assert h["X-App-ID"] == ["abc123"]
    assert h["User-Agent"] == [user_agent(POOL_ID)]
    assert h["User-Agent"] == ["Mozilla/5.0 (compatible; Cloudflare-Traffic-Manager/1.0; "
                               "+https://www.cloudflare.com/traffic-manager/; pool-id: 17b5962d775c646f)"]
    # Origin B: the monitor's Host header.
    res, rec = _https(cert, mon, {"name": "B"})
    assert res.passed, res
    assert rec.requests[0]["headers"]["Host"] == ["www.example.com"]
    assert rec.sni == ["www.example.com"]
    # Monitor without header: Host = address, no SNI.
    res, rec = _https(cert, monitor(type="https", allow_insecure=True), {"name": "B"})
    assert res.passed, res
    assert rec.requests[0]["headers"]["Host"] == ["127.0.0.1"]
    assert rec.sni == [None]
