"""Who may use the admin listener, and how much of it (docs/operations.md, "The control
channel"): the access rules of :class:`~lbdns.admin.AdminServer`.

* **Credential.** Every mutating request (POST), and with ``read_requires_token`` every read
  but ``/healthz``, must carry ``Authorization: Bearer <token>``; the comparison takes
  constant time (``hmac.compare_digest``). The token comes from ``LBDNS_ADMIN_TOKEN``, else
  from ``admin.token_file``, else from ``$STATE_DIRECTORY/admin.token`` (systemd's
  ``StateDirectory=``), else from ``./admin.token``; a missing file is created with a random
  token, mode 0600 (as ``rndc-confgen -a`` does for BIND's control channel).
* **Browsers.** A request naming a host the operator did not list (DNS rebinding: only IP
  literals, ``localhost`` and ``admin.allowed_hosts`` are accepted) or coming from another
  site (an ``Origin`` other than the listener itself) gets 403. A POST body must be
  ``application/json`` (415 otherwise), which a page can only send cross-site after a CORS
  preflight that is never granted.
* **Size.** At most ``max_connections`` connections (more get a 503 and are closed), bodies of
  at most ``max_body_bytes`` (413), and a connection that does not complete a request within
  ``idle_timeout`` seconds is closed, however slowly it trickles bytes.
* **Failures.** An unhandled error is logged with its traceback and answered 500 with a JSON
  body (no traceback to the client); errors and refusals are counted for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from lbdns.config.settings import AdminListener

log = logging.getLogger("lbdns.admin")

TOKEN_ENV = "LBDNS_ADMIN_TOKEN"
TOKEN_FILE = "admin.token"
OPEN_PATHS = frozenset({"/healthz"})
"""Paths readable without the token even with ``read_requires_token`` (liveness probes)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, **headers: str) -> web.Response:
    """A JSON error response ``{"error": message}``."""
    return web.json_response({"error": message}, status=status, headers=headers or None)


async def read_json(request: web.Request, timeout: float) -> Any:
    """The request's JSON body. Raises HTTP 400 (not JSON, or nested too deeply for the
    parser), 408 (not received within ``timeout`` seconds) or 413 (larger than the limit)."""
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=json.dumps({"error": "request body not received in time"}),
                                     content_type="application/json") from None
    try:
        return json.loads(raw)
    except RecursionError:
        message = "JSON nested too deeply"
    except (ValueError, UnicodeDecodeError) as exc:
        message = f"invalid JSON: {exc}"
    raise web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def default_token_path() -> Path:
    """Where the token file is by default: systemd's state directory, else the working directory."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) / TOKEN_FILE if state else Path(TOKEN_FILE)


def load_token(token_file: str | None) -> tuple[str | None, str]:
    """The admin token and where it came from (for the log). ``LBDNS_ADMIN_TOKEN`` wins;
    otherwise ``token_file`` (None: :func:`default_token_path`) is read, or created with a
    random 256-bit token (mode 0600) when it does not exist. Returns ``(None, reason)`` when no
    token can be had (mutating requests are then refused)."""
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env, f"the {TOKEN_ENV} environment variable"
    path = Path(token_file) if token_file else default_token_path()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        return None, f"cannot create the token file {path}: {exc.strerror or exc}"
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        log.info("admin: wrote a new random token to %s (mode 0600)", path)
    try:
        token = path.read_text().strip()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read the token file {path}: {exc}"
    if not token:
        return None, f"the token file {path} is empty"
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("admin: the token file %s is readable by other users (mode %04o); chmod 600 it",
                    path, stat.S_IMODE(mode))
    if len(token) < 16:
        log.warning("admin: the token in %s is short (%d characters); use 32 or more", path, len(token))
    return token, str(path)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return address.lower() == "localhost"


def exposure_warning(address: str, *, read_requires_token: bool) -> str | None:
    """The warning to log when the listener on ``address`` lets anyone who can reach it read
    ``/status`` and ``/metrics`` (a non-loopback address without ``read_requires_token``);
    None when there is nothing to warn about."""
    if _is_loopback(address) or read_requires_token:
        return None
    return (f"the admin listener on {address} is reachable from the network and its reads (/status, /metrics) "
            "need no credential: set admin.read_requires_token, bind it to loopback, or firewall it")


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` is acceptable: absent (not a browser), an IP literal,
    ``localhost``, or one of ``allowed`` (lower case, no trailing dot). A page that made its
    own name resolve to this address (DNS rebinding) sends its own name and is refused."""
    if host is None:
        return True
    if "@" in host or "/" in host:
        return False
    try:
        name = (urlsplit("//" + host.strip()).hostname or "").rstrip(".")  # [::1]:8053 → ::1, lower case
    except ValueError:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name == "localhost" or name in allowed


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """Whether an ``Origin`` header is absent (curl, scripts) or names this very listener as
    the request's ``Host`` does (a page the listener itself served)."""
    if origin is None:
        return True
    parts = urlsplit(origin)
    return bool(parts.netloc) and host is not None and parts.netloc.lower() == host.strip().lower()


@dataclass
class GuardStats:
    """Counters for ``/metrics``: ``errors`` (unhandled → 500), ``rejected`` requests and
    connections by reason (``host``, ``origin``, ``token``, ``content_type``,
    ``connections``), and ``idle_closed`` connections."""

    errors: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("host", "origin", "token", "content_type", "connections"), 0))
    idle_closed: int = 0


class _Conn(asyncio.Protocol):
    """One admin connection: forwards to aiohttp's protocol and tracks whether a request is
    being handled (``busy``) and since when the connection is idle (``since``)."""

    def __init__(self, guard: Guard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner: asyncio.Protocol | None = inner
        self.transport: asyncio.Transport | None = None
        self.busy = 0
        self.since = time.monotonic()

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # uvloop's transports do not subclass asyncio's
        g = self.guard
        if len(g.conns) >= g.max_connections:
            g.stats.rejected["connections"] += 1
            body = b'{"error": "too many admin connections"}'
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            transport.close()
            self.inner = None
            return
        self.transport = transport
        g.conns[transport] = self
        assert self.inner is not None
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.guard.conns.pop(self.transport, None)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class Guard:
    """The access rules of one admin listener (see the module docstring). ``token`` None
    refuses every request that needs it; ``allowed_hosts`` are extra ``Host`` names."""

    def __init__(self, *, token: str | None, token_problem: str = "", allowed_hosts: Iterable[str] = (),
                 read_requires_token: bool = False, max_connections: int = 64, idle_timeout: float = 15.0) -> None:
        self.token = token.encode() if token is not None else None
        self.token_problem = token_problem
        self.allowed_hosts = frozenset(h.lower().rstrip(".") for h in allowed_hosts)
        self.read_requires_token = read_requires_token
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.stats = GuardStats()
        self.conns: dict[asyncio.Transport, _Conn] = {}
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, s: AdminListener) -> Guard:
        """A guard for the ``admin`` settings, its token loaded (see :func:`load_token`)."""
        token, source = load_token(s.token_file)
        if token is None:
            log.warning("admin: no token (%s): POST /reload and POST /health are refused; set %s or "
                        "admin.token_file", source, TOKEN_ENV)
        else:
            log.info("admin: mutating requests need the bearer token from %s", source)
        return cls(token=token, token_problem=source if token is None else "", allowed_hosts=s.allowed_hosts,
                   read_requires_token=s.read_requires_token, max_connections=s.max_connections,
                   idle_timeout=s.idle_timeout)

    # -- HTTP ------------------------------------------------------------------------------------

    @property
    def middlewares(self) -> list[Any]:
        """aiohttp middlewares, outermost first: error containment, then access checks."""
        return [self._errors, self._access]

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = self.conns.get(request.transport) if request.transport is not None else None
        if conn is not None:
            conn.busy += 1
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            self.stats.errors += 1
            log.exception("admin: %s %s failed", request.method, request.path)
            return json_error(500, "internal server error (logged by the server)")
        finally:
            if conn is not None:
                conn.busy -= 1
                conn.since = time.monotonic()

    def _refuse(self, reason: str, status: int, message: str, **headers: str) -> web.Response:
        self.stats.rejected[reason] += 1
        return json_error(status, message, **headers)

    @web.middleware
    async def _access(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not host_allowed(host, self.allowed_hosts):
            return self._refuse("host", 403, "unknown Host (add it to admin.allowed_hosts)")
        if not origin_allowed(request.headers.get("Origin"), host):
            return self._refuse("origin", 403, "cross-origin requests are not allowed")
        mutating = request.method not in SAFE_METHODS
        if mutating or (self.read_requires_token and request.path not in OPEN_PATHS):
            if self.token is None:
                return self._refuse("token", 403, f"no admin token is configured ({self.token_problem})")
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
                return self._refuse("token", 401, "missing or wrong bearer token",
                                    **{"WWW-Authenticate": 'Bearer realm="lbdns admin"'})
        if mutating and (request.body_exists or "Content-Type" in request.headers) \
                and request.content_type != "application/json":
            return self._refuse("content_type", 415, "the body must be application/json")
        return await handler(request)

    # -- connections -----------------------------------------------------------------------------

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """Wrap aiohttp's protocol factory with the connection cap and idle tracking."""
        return lambda: _Conn(self, inner())

    def start(self) -> None:
        """Start closing connections idle (no request being handled) for ``idle_timeout`` s."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="lbdns-admin-idle")

    async def stop(self) -> None:
        """Stop the idle sweeper."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep(self) -> None:
        tick = min(1.0, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            deadline = time.monotonic() - self.idle_timeout
            for transport, conn in list(self.conns.items()):
                if not conn.busy and conn.since < deadline:
                    self.stats.idle_closed += 1
                    transport.close()
