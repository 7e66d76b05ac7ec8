"""HTTP and HTTPS health checks with aiohttp (Cloudflare docs: Load Balancing › Manage monitors;
Load Balancing › Monitors › Supported protocols; Load Balancing › Common error codes).

:func:`plan_request` decides *what* to send (URL, Host, SNI, headers, TLS verification) from
the monitor, the origin and the pool id; :func:`check_http` sends it with up to
``1 + retries`` attempts and maps every outcome to a :class:`ProbeResult` (never raises).
Redirects are followed by hand (not by aiohttp) so that the explicit Host header and SNI are
only kept while the redirect stays on the probed origin, the hop limit is exactly 10, and the
whole chain runs inside the monitor timeout (the hop limit and the timeout are lbdns
decisions; the docs only say redirects are followed "to the final endpoint").
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from lbdns.config.model import Monitor, Origin
from lbdns.health.expected_codes import ExpectedCodes, parse_expected_codes
from lbdns.probes import result as r
from lbdns.probes.result import ProbeResult

USER_AGENT_PREFIX = (
    "Mozilla/5.0 (compatible; Cloudflare-Traffic-Manager/1.0; "
    "+https://www.cloudflare.com/traffic-manager/; pool-id: "
)
BODY_LIMIT = 10_240
"""Bytes of the response body searched for ``expected_body`` ("we only read the first 10 KB of the
response", Cloudflare docs: Load Balancing › Common error codes › Response body mismatch error)."""
MAX_REDIRECTS = 10
"""Redirect hops followed with ``follow_redirects`` (lbdns decision)."""
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)


def user_agent(pool_id: str) -> str:
    """The probe User-Agent for ``pool_id`` (first 16 characters used; Cloudflare docs: Load
    Balancing › Manage monitors)."""
    return f"{USER_AGENT_PREFIX}{pool_id[:16]})"


@dataclass(frozen=True, slots=True)
class HttpPlan:
    """What one HTTP(S) probe sends (before redirects).

    ``headers`` are (name, value) pairs in order, Host first; ``server_hostname`` is the SNI
    and certificate name (None ⇒ no SNI, Cloudflare docs: Load Balancing › Common error codes ›
    TLS unrecognized name error); ``verify`` False ⇒ ``allow_insecure``.
    """

    method: str
    url: URL
    headers: tuple[tuple[str, str], ...]
    server_hostname: str | None
    verify: bool

    @property
    def host(self) -> str:
        """The Host header value."""
        return self.headers[0][1]


def _header(headers: dict[str, list[str]], name: str) -> str | None:
    for k, vals in headers.items():
        if k.lower() == name and vals:
            return vals[0]
    return None


def _sni_name(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def _url_host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


def probe_port(monitor: Monitor, origin: Origin) -> int:
    """Port precedence (lbdns decision, docs/decisions.md › Health and probes): monitor ``port``
    if non-zero, else the origin ``port`` if set, else 443 for https and 80 otherwise."""
    if monitor.port:
        return monitor.port
    if origin.port:
        return origin.port
    return 443 if monitor.type == "https" else 80


def plan_request(monitor: Monitor, origin: Origin, pool_id: str, ip: str | None = None) -> HttpPlan:
    """Build the request of an HTTP(S) probe (Cloudflare docs: Load Balancing › Monitors › Host
    header prioritization; Load Balancing › Override HTTP Host headers; Load Balancing › Manage
    monitors).

    Takes the monitor, the origin, the pool id and the IP to connect to (default: the origin
    address, which must then be an IP literal). Host = origin ``header.Host`` > monitor
    ``header.Host`` > origin address; SNI only for an explicitly configured Host; other
    monitor headers are sent one line per value, ``User-Agent`` replaced by :func:`user_agent`.
    """
    scheme = "https" if monitor.type == "https" else "http"
    target = ip if ip is not None else origin.address
    url = URL(f"{scheme}://{_url_host(target)}:{probe_port(monitor, origin)}{monitor.path or '/'}")
    explicit = origin.header.Host[0] if origin.header is not None and origin.header.Host else None
    if explicit is None:
        explicit = _header(monitor.header, "host")
    host = explicit if explicit is not None else _url_host(origin.address)
    headers: list[tuple[str, str]] = [("Host", host)]
    for name, values in monitor.header.items():
        if name.lower() in ("host", "user-agent"):
            continue
        headers.extend((name, v) for v in values)
    headers.append(("User-Agent", user_agent(pool_id)))
    sni = _sni_name(explicit) if explicit is not None and scheme == "https" else None
    return HttpPlan(
        monitor.effective_method.upper(), url, tuple(headers), sni, not monitor.allow_insecure
    )


def make_session(limit: int = 256, *, source: str | None = None) -> aiohttp.ClientSession:
    """A ClientSession for probes: connections are closed after every request (so a stopped
    listener is noticed), at most ``limit`` open at once, no cookies, no proxy environment,
    connecting from local address ``source`` (None: the kernel's choice).
    Must be called with a running event loop; close it with ``await session.close()``."""
    connector = aiohttp.TCPConnector(force_close=True, limit=limit, limit_per_host=0,
                                     local_addr=(source, 0) if source else None)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        timeout=_NO_TIMEOUT,
    )


def _tls_reason(exc: BaseException) -> str:
    text = str(exc).upper()
    if "UNRECOGNIZED_NAME" in text or "UNRECOGNIZED NAME" in text:
        return r.TLS_UNRECOGNIZED_NAME
    if any(s in text for s in ("WRONG_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS", "VERSION")):
        return r.TLS_PROTOCOL
    return r.TLS_HANDSHAKE


def _cert_reason(exc: aiohttp.ClientConnectorCertificateError) -> str:
    err = exc.certificate_error
    code = getattr(err, "verify_code", None)
    text = str(err).lower()
    if code in (62, 64) or "mismatch" in text or "doesn't match" in text:
        return r.TLS_NAME_MISMATCH
    return r.TLS_UNTRUSTED


def classify_exception(exc: BaseException) -> tuple[str, bool]:
    """Map an exception of an HTTP attempt to (failure reason, retryable): the reasons of
    Cloudflare docs: Load Balancing › Common error codes; only timeouts and connection-level
    failures are retryable (lbdns decision, docs/decisions.md › Health and probes)."""
    if isinstance(exc, TimeoutError):
        return r.HTTP_TIMEOUT, True
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _cert_reason(exc), True
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (r.TLS_NAME_MISMATCH if exc.verify_code in (62, 64) else r.TLS_UNTRUSTED), True
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError | ssl.SSLError):
        return _tls_reason(exc), True
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return r.CONNECTION_RESET, True
    if isinstance(exc, aiohttp.ClientConnectorError):
        return r.os_error_reason(exc.os_error, r.HTTP_TIMEOUT), True
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return r.HTTP_INVALID_RESPONSE, False
    if isinstance(exc, OSError):
        reason = r.os_error_reason(exc, r.HTTP_TIMEOUT)
        return reason, reason != r.OTHER_FAILURE
    return r.OTHER_FAILURE, False


async def _read_prefix(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    buf = bytearray()
    while len(buf) < limit:
        chunk = await resp.content.read(limit - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


async def _attempt(
    plan: HttpPlan,
    monitor: Monitor,
    expected: ExpectedCodes,
    session: aiohttp.ClientSession,
    ssl_context: ssl.SSLContext | None,
) -> tuple[ProbeResult, bool]:
    """One attempt, redirects included, bounded by the monitor timeout.
    Returns the result and whether a failure may be retried."""
    verify: bool | ssl.SSLContext = (ssl_context or True) if plan.verify else False
    method, url = plan.method, plan.url
    headers = CIMultiDict(plan.headers)
    sni = plan.server_hostname
    start = time.perf_counter()
    try:
        async with asyncio.timeout(monitor.timeout):
            for hop in range(MAX_REDIRECTS + 1):
                async with session.request(
                    method, url, headers=headers, allow_redirects=False, ssl=verify,
                    server_hostname=sni, timeout=_NO_TIMEOUT,
                ) as resp:
                    rtt = r.elapsed_ms(start)
                    status = resp.status
                    location = resp.headers.get("Location")
                    if (monitor.follow_redirects and status in REDIRECT_CODES and location
                            and hop < MAX_REDIRECTS):
                        nxt = url.join(URL(location))
                        if nxt.scheme in ("http", "https"):
                            if nxt.origin() != url.origin():
                                headers = CIMultiDict(
                                    (k, v) for k, v in headers.items() if k.lower() != "host"
                                )
                                sni = None
                            if status == 303 and method != "HEAD":
                                method = "GET"
                            url = nxt
                            continue
                    if not expected.matches(status):
                        return r.failed(r.CODE_MISMATCH, status, f"{status} not in {expected}"), False
                    if monitor.expected_body and method != "HEAD":
                        body = await _read_prefix(resp, BODY_LIMIT)
                        text = body.decode("utf-8", "replace").casefold()
                        if monitor.expected_body.casefold() not in text:
                            return r.failed(r.BODY_MISMATCH, status), False
                    return ProbeResult(True, rtt, r.NO_FAILURES, status, time.time()), False
    except Exception as exc:  # a check never raises
        reason, retry = classify_exception(exc)
        return r.failed(reason, None, f"{type(exc).__name__}: {exc}"), retry
    return r.failed(r.OTHER_FAILURE, None, "redirect loop"), False  # pragma: no cover


async def check_http(
    monitor: Monitor,
    origin: Origin,
    pool_id: str,
    session: aiohttp.ClientSession,
    *,
    ip: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    expected: ExpectedCodes | None = None,
) -> ProbeResult:
    """Probe ``origin`` with an HTTP/HTTPS ``monitor`` for pool ``pool_id``.

    Takes the shared aiohttp ``session`` (see :func:`make_session`), the IP to connect to
    (default: the origin address, an IP literal), an optional ``ssl_context`` used for
    verification (default: the system trust store; ignored with ``allow_insecure``), and the
    pre-parsed ``expected`` codes. Runs up to ``1 + retries`` attempts, retrying only timeouts
    and connection-level failures. ``rtt_ms`` is the time from sending the request to the final
    response status line, connect and TLS included. Never raises; an
    unparsable ``expected_codes`` yields "Monitor Config Error".
    """
    try:
        codes = expected if expected is not None else parse_expected_codes(monitor.expected_codes)
        plan = plan_request(monitor, origin, pool_id, ip)
    except ValueError as exc:
        return r.failed(r.MONITOR_CONFIG_ERROR, detail=str(exc))
    res = r.failed(r.OTHER_FAILURE, detail="no attempt made")
    for _ in range(1 + max(monitor.retries, 0)):
        res, retry = await _attempt(plan, monitor, codes, session, ssl_context)
        if res.passed or not retry:
            return res
    return res
