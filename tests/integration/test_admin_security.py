"""The admin listener as a control channel only the operator can use (issue #11 items 9 and 11):
a bearer token for every mutating request, no cross-site or DNS-rebinding requests, bounded
connections, bodies and idle time, no tracebacks to clients, counted failures, no secrets in
the log. Black-box: a real server's admin listener over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Fixture, Server
from tests.integration.test_reload_control import Serve


def start(serve: Any, fx: Fixture, tmp_path: Path, **admin: Any) -> Server:
    settings = {"enabled": True, "address": "127.0.0.1", "port": 0, "token_file": str(tmp_path / "admin.token")}
    settings.update(admin)
    return serve(fx, admin=settings)


def request(s: Server, method: str, path: str, *, body: bytes | None = None, token: str | None = "file",
            headers: dict[str, str] | None = None, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; ``token="file"`` sends the token from the server's token file."""
    conn = http.client.HTTPConnection("127.0.0.1", s.app.admin.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        h = dict(headers or {})
        if token == "file":
            token = Path(s.settings.admin.token_file).read_text().strip()
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if body is not None:
            h.setdefault("Content-Type", "application/json")
            h["Content-Length"] = str(len(body))
        for k, v in h.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


HEALTH = json.dumps({"pool": "p-us-east", "origin": "e1", "state": "unhealthy"}).encode()


def test_mutations_need_the_token_reads_do_not(fx, serve, tmp_path):
    s = start(serve, fx, tmp_path)
    token_file = tmp_path / "admin.token"
    assert token_file.exists() and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token_file.read_text().strip()) >= 32
    assert request(s, "POST", "/reload", token=None)[0] == 401
    assert request(s, "POST", "/reload", token="wrong")[0] == 401
    assert request(s, "POST", "/health", body=HEALTH, token=None)[0] == 401
    status, headers, _ = request(s, "POST", "/health", body=HEALTH, token="x" * 43)
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert request(s, "POST", "/reload")[0] == 200
    assert request(s, "POST", "/health", body=HEALTH)[0] == 200
    for path in ("/status", "/metrics", "/healthz"):
        assert request(s, "GET", path, token=None)[0] == 200


def test_token_from_the_environment(fx, serve, tmp_path, monkeypatch):
    monkeypatch.setenv("LBDNS_ADMIN_TOKEN", "correct-horse-battery-staple-0123456789")
    s = start(serve, fx, tmp_path)
    assert request(s, "POST", "/reload", token="correct-horse-battery-staple-0123456789")[0] == 200
    assert request(s, "POST", "/reload", token="correct-horse-battery-staple-012345678")[0] == 401
    assert not (tmp_path / "admin.token").exists()  # the environment wins; no file written


def test_cross_site_and_rebinding_requests_are_refused(fx, serve, tmp_path):
    s = start(serve, fx, tmp_path)
    port = s.app.admin.port
    # a form post or a no-cors fetch from a web page: not JSON
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        assert request(s, "POST", "/health", body=HEALTH, headers={"Content-Type": ctype})[0] == 415
    # a foreign Origin, even with the token
    assert request(s, "POST", "/reload", headers={"Origin": "http://evil.example"})[0] == 403
    assert request(s, "GET", "/status", headers={"Origin": "http://evil.example"})[0] == 403
    assert request(s, "POST", "/reload", headers={"Origin": f"http://127.0.0.1:{port}"})[0] == 200
    # DNS rebinding: a name the operator did not allow, reads included
    assert request(s, "GET", "/status", host=f"evil.example:{port}", token=None)[0] == 403
    assert request(s, "POST", "/reload", host=f"evil.example:{port}")[0] == 403
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1"):
        assert request(s, "GET", "/status", host=host, token=None)[0] == 200


def test_allowed_hosts_and_protected_reads(fx, serve, tmp_path):
    s = start(serve, fx, tmp_path, allowed_hosts=["lbdns-1.mgmt.example"], read_requires_token=True)
    port = s.app.admin.port
    assert request(s, "GET", "/status", host=f"lbdns-1.mgmt.example:{port}")[0] == 200
    assert request(s, "GET", "/status", token=None)[0] == 401
    assert request(s, "GET", "/metrics", token=None)[0] == 401
    assert request(s, "GET", "/metrics")[0] == 200
    assert request(s, "GET", "/healthz", token=None)[0] == 200  # liveness stays open


def test_deep_and_large_bodies_get_4xx_never_a_traceback(fx, serve, tmp_path):
    s = start(serve, fx, tmp_path, max_body_bytes=300_000)
    deep = b"[" * 100_000 + b"]" * 100_000
    status, _, body = request(s, "POST", "/health", body=deep)
    assert status == 400 and b"Traceback" not in body and json.loads(body)["error"]
    assert request(s, "POST", "/health", body=b"{" + b" " * 400_000 + b"}")[0] == 413
    assert request(s, "POST", "/health", body=b"{nope")[0] == 400
    assert request(s, "POST", "/health", body=b"[1, 2]")[0] == 400


def test_unhandled_errors_are_500_json_and_counted(fx, serve, tmp_path, monkeypatch, caplog):
    from lbdns.admin import AdminServer

    s = start(serve, fx, tmp_path)

    def broken(self: AdminServer) -> dict[str, Any]:
        raise RuntimeError("status exploded")

    monkeypatch.setattr(AdminServer, "status_document", broken)
    with caplog.at_level(logging.ERROR):
        status, headers, body = request(s, "GET", "/status")
    assert status == 500 and headers["Content-Type"].startswith("application/json")
    assert b"Traceback" not in body and b"exploded" not in body
    assert any("status exploded" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
    fams = {f.name: f for f in text_string_to_metric_families(request(s, "GET", "/metrics")[2].decode())}
    assert fams["lbdns_admin_errors"].samples[0].value == 1
    rejected = {x.labels["reason"]: x.value for x in fams["lbdns_admin_rejected"].samples
                if x.name == "lbdns_admin_rejected_total"}
    assert rejected.get("token", 0) == 0
    request(s, "POST", "/reload", token=None)
    fams = {f.name: f for f in text_string_to_metric_families(request(s, "GET", "/metrics")[2].decode())}
    rejected = {x.labels["reason"]: x.value for x in fams["lbdns_admin_rejected"].samples
                if x.name == "lbdns_admin_rejected_total"}
    assert rejected["token"] == 1


def _cap_and_idle(port: int) -> None:
    """With max_connections 4 and idle_timeout 1 s: a fifth connection gets a 503 (or is
    closed), idle and trickling connections are closed within the timeout, slots come back."""
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHo")  # a slow client that never finishes
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port)) as extra:  # over the cap
            extra.settimeout(3)
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            reply = extra.recv(1024)
            assert reply == b"" or reply.startswith(b"HTTP/1.1 503"), reply
        time.sleep(0.4)
        held[0].sendall(b"s")  # trickling bytes does not keep a connection open
        t0 = time.monotonic()
        for c in held:  # every idle or unfinished connection is closed after idle_timeout
            c.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert c.recv(1024) == b""
        assert time.monotonic() - t0 < 3
    finally:
        for c in held:
            c.close()
    with socket.create_connection(("127.0.0.1", port)) as again:  # the slots are free again
        again.settimeout(5)
        again.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert again.recv(1024).startswith(b"HTTP/1.1 200")


def test_connection_cap_and_idle_timeout(fx, serve, tmp_path):
    s = start(serve, fx, tmp_path, max_connections=4, idle_timeout=1.0)
    _cap_and_idle(s.app.admin.port)


def test_connection_cap_and_idle_timeout_in_lbdns_serve(fx, tmp_path):
    """The same on the real command, whose event loop is uvloop."""
    (tmp_path / "lbdns.yaml").write_text(yaml.safe_dump({"admin": {"max_connections": 4, "idle_timeout": 1.0}}))
    fx.write(tmp_path)
    proc = Serve(tmp_path, "--config", str(tmp_path / "lbdns.yaml"), admin=True)
    try:
        proc.wait_line("admin listening", 60)
        _cap_and_idle(proc.admin_port)
    finally:
        assert proc.stop() == 0


def test_webhook_url_secrets_are_not_logged(caplog):
    from lbdns.health.view import OriginState
    from lbdns.probes.notify import WebhookNotifier
    from tests.integration.test_probes_notify import _event

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    url = f"http://user:hunter2@127.0.0.1:{closed}/hook?token=s3cr3t-value"

    async def main() -> None:
        n = WebhookNotifier(url, timeout=2, retry_for=0.3, backoff_initial=0.05)  # retry and give-up lines too
        n(_event(OriginState.UNHEALTHY))
        await n.aclose()

    with caplog.at_level(logging.WARNING, logger="lbdns"):
        asyncio.run(main())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "webhook" in text and "127.0.0.1" in text
    assert "s3cr3t" not in text and "hunter2" not in text


@pytest.mark.parametrize(("address", "loud"), [("127.0.0.1", False), ("::1", False), ("0.0.0.0", True),
                                               ("192.0.2.7", True)])
def test_exposure_warning(address, loud):
    from lbdns.admin_guard import exposure_warning

    msg = exposure_warning(address, read_requires_token=False)
    assert (msg is not None) == loud
    assert exposure_warning(address, read_requires_token=True) is None


def test_token_file_is_not_world_readable_warning(fx, serve, tmp_path, caplog):
    path = tmp_path / "admin.token"
    path.write_text("a" * 40 + "\n")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        s = start(serve, fx, tmp_path)
    assert any("admin.token" in r.getMessage() and "readable" in r.getMessage() for r in caplog.records)
    assert request(s, "POST", "/reload", token="a" * 40)[0] == 200


@pytest.mark.parametrize(("host", "ok"), [
    ("127.0.0.1:8053", True), ("[::1]:8053", True), ("localhost", True), ("LocalHost:80", True), (None, True),
    ("lbdns-1.mgmt.example.:8053", True), ("evil.example:8053", False), ("127.0.0.1.evil.example", False),
    ("evil@127.0.0.1", False), ("[::1", False)])
def test_host_rule(host, ok):
    from lbdns.admin_guard import host_allowed

    assert host_allowed(host, frozenset({"lbdns-1.mgmt.example"})) is ok


@pytest.mark.parametrize(("origin", "ok"), [
    (None, True), ("http://127.0.0.1:8053", True), ("http://127.0.0.1:8054", False), ("null", False),
    ("http://evil.example", False)])
def test_origin_rule(origin, ok):
    from lbdns.admin_guard import origin_allowed

    assert origin_allowed(origin, "127.0.0.1:8053") is ok
