"""Server settings models (``lbdns.yaml``). Not Cloudflare fields: these describe the server
itself — listeners, PoP identity, GeoIP databases, limits. CLI flags override them.

Models only: reading and validating the file is :mod:`lbdns.config.read_settings`, so the
query path can name these types without loading the YAML reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_WORKERS = 256
"""The most answering worker processes ``workers`` accepts."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Listener(_Settings):
    """One listening socket pair. ``port`` 0 picks an ephemeral port (tests). ``pop``
    overrides the server PoP for queries received here (multi-PoP, SPEC.md R-LOC-00)."""

    address: str = "127.0.0.1"
    port: int = Field(default=5300, ge=0, le=65535)
    transport: Literal["udp", "tcp", "both"] = "both"
    pop: str | None = None


class AdminListener(_Settings):
    """The admin HTTP listener (``/metrics``, ``/status``, ``/healthz``, ``POST /reload``,
    ``POST /health``); loopback by default. Access rules: :mod:`lbdns.admin_guard`."""

    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = Field(default=8053, ge=0, le=65535)
    token_file: str | None = None
    """File holding the bearer token of mutating requests, created with a random token (mode
    0600) when missing. None: ``$STATE_DIRECTORY/admin.token`` under systemd, else
    ``./admin.token``. The ``LBDNS_ADMIN_TOKEN`` environment variable overrides it."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Host names (besides IP literals and ``localhost``) requests may name in ``Host``."""
    read_requires_token: bool = False
    """Require the token for ``/status`` and ``/metrics`` too (``/healthz`` stays open)."""
    max_connections: int = Field(default=64, ge=1, le=100_000)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=64 * 1024 * 1024)
    idle_timeout: float = Field(default=15.0, gt=0, le=3600)
    """Seconds a connection may take to complete a request (and stay idle between requests)."""


AlertType = Literal["load_balancing_health_alert", "load_balancing_pool_enablement_alert"]
HEALTH_ALERT: AlertType = "load_balancing_health_alert"
POOL_ENABLEMENT_ALERT: AlertType = "load_balancing_pool_enablement_alert"
"""Cloudflare Notifications alert types (Cloudflare docs: Load Balancing › Manage pools › Set up
alerts: "Load Balancing Health Alert" and "Pool Enablement")."""


class NotificationWebhook(_Settings):
    """``notification_webhook:`` (docs/operations.md › Notification webhook). A plain URL string
    is accepted as ``{url: URL}``.

    ``url`` http(s) URL events are POSTed to (never logged with user info or query);
    ``secret_file`` file holding the HMAC-SHA256 signing key (surrounding whitespace stripped;
    None: unsigned); ``timeout`` seconds per attempt; ``retry_for`` seconds an event is retried
    after it was queued (0: one attempt); ``backoff_initial``/``backoff_max`` the first and the
    largest pause between attempts, seconds (doubling in between); ``max_queue`` events waiting
    at most (more: the oldest is dropped, a gap in ``seq``); ``sequence_file`` where the
    sequence number survives restarts (None: ``$STATE_DIRECTORY/webhook.seq`` under systemd,
    else ``./webhook.seq``; ``""``: not persisted); ``alert_types`` which events are sent.
    """

    url: str = Field(min_length=1)
    secret_file: str | None = None
    timeout: float = Field(default=5.0, gt=0, le=300)
    retry_for: float = Field(default=300.0, ge=0, le=7 * 86400)
    backoff_initial: float = Field(default=0.5, gt=0, le=3600)
    backoff_max: float = Field(default=30.0, gt=0, le=3600)
    max_queue: int = Field(default=10_000, ge=1, le=1_000_000)
    sequence_file: str | None = None
    alert_types: list[AlertType] = Field(default_factory=lambda: [HEALTH_ALERT, POOL_ENABLEMENT_ALERT],
                                         min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        try:
            parts = urlsplit(v)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return v

    @field_validator("secret_file")
    @classmethod
    def _secret(cls, v: str | None) -> str | None:
        if v is not None:
            read_secret(v)
        return v


def read_secret(path: str) -> bytes:
    """The webhook signing key in ``path`` (surrounding whitespace stripped). Raises
    ValueError (with the reason, never the content) when it cannot be read or is empty."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret_file {path}: {exc.strerror or exc}") from None
    if not key:
        raise ValueError(f"secret_file {path} is empty")
    return key


def _webhook_from_url(v: Any) -> Any:
    return {"url": v} if isinstance(v, str) else v


class RateLimit(_Settings):
    """Response rate limiting for UDP answers (``rrl:``), as BIND's ``rate-limit``: per client
    network and response class, ``responses_per_second`` identical responses (NXDOMAINs per
    zone and errors may have their own rates), a debt of up to ``window`` seconds, every
    ``slip``-th limited response sent truncated (TC=1; 0 = drop all, 1 = slip all). Networks
    in ``exempt`` are never limited; ``table_size`` bounds each of the two tables."""

    enabled: bool = True
    responses_per_second: int = Field(default=20, ge=1, le=1_000_000)
    nxdomains_per_second: int | None = Field(default=None, ge=1, le=1_000_000)
    errors_per_second: int | None = Field(default=None, ge=1, le=1_000_000)
    window: int = Field(default=15, ge=1, le=3600)
    slip: int = Field(default=2, ge=0, le=10)
    ipv4_prefix_length: int = Field(default=24, ge=8, le=32)
    ipv6_prefix_length: int = Field(default=56, ge=16, le=128)
    exempt: list[str] = Field(default_factory=list)
    table_size: int = Field(default=20_000, ge=100, le=10_000_000)

    @field_validator("exempt")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        from ipaddress import ip_network

        for text in value:
            try:
                ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"not an IP network: {text!r} (e.g. 192.0.2.0/24 or 2001:db8::/56)") from None
        return value


class HealthOverride(_Settings):
    """A static health state for one (pool, origin), applied on top of probe results
    (lets operators see steering with ``dig`` before monitors exist; SPEC.md R-ARCH-02)."""

    pool: str
    origin: str
    state: Literal["healthy", "unhealthy", "unknown"]


class ClusterSettings(_Settings):
    """Shared health across lbdns instances (``cluster:``, docs/scaling.md): every instance is
    a probe vantage in its PoP's region and publishes its probe results to a Redis-compatible
    store (Redis, Valkey); every instance decides health by region majority over the fresh
    results of all vantages (Cloudflare docs: Load Balancing › Monitors › Health monitor
    regions).

    ``store_url``: ``redis://host:port/db``, ``rediss://…`` (TLS) or ``unix:///path.sock``;
    ``username`` and ``password_file`` (a file holding the password, read at start; ACL user
    "default" when no username); ``instance_id``: this instance's vantage id (default
    ``<pop>-<host name>``); ``key_prefix``: namespace of every key, so several clusters share
    one store; ``sync_interval``: seconds between reads of the other vantages' results;
    ``timeout``: seconds a store operation may take; ``tls_ca_file``/``tls_cert_file``/
    ``tls_key_file``: trust and client certificate for ``rediss://``."""

    store_url: str
    probe: bool = True
    """False: a *reader* — while the store is reachable and some vantage is live it runs no
    probes and writes nothing (it decides on the vantages' results; its ``store_url`` may name
    a read-only replica); otherwise it probes every pool itself."""
    username: str | None = None
    password_file: str | None = None
    instance_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    key_prefix: str = Field(default="lbdns", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    sync_interval: float = Field(default=0.5, gt=0, le=60)
    timeout: float = Field(default=1.0, gt=0, le=60)
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @field_validator("store_url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"not a store URL: {value!r} (redis://host:port/db, rediss://… for TLS, "
                             "or unix:///path/to/redis.sock)")
        return value

    @field_validator("password_file", "tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file: {value!r}")
        return value


class ServerSettings(_Settings):
    """Everything in ``lbdns.yaml`` (SPEC.md §2.1)."""

    zones_dir: str = "zones"
    listen: list[Listener] = Field(default_factory=lambda: [Listener()])
    pop: str = "IAD"
    plan: Literal["enterprise", "non_enterprise"] = "enterprise"
    ip_src_uses_ecs: bool = True
    geo_region_source: Literal["pop", "location"] = "pop"
    geoip_city_db: str | None = None
    geoip_asn_db: str | None = None
    pops_file: str | None = None
    upstream_resolvers: list[str] = Field(default_factory=list)
    hostname_cache_max_ttl: int = Field(default=5, ge=0, le=3600)
    edns_udp_payload: int = Field(default=1232, ge=512, le=4096)
    allow_proxied_as_dns_only: bool = False
    strict_public_endpoints: bool = False
    rtt_ewma_alpha: float = Field(default=0.3, gt=0, le=1)
    rtt_scope: Literal["global", "region"] = "global"
    """``region``: with ``cluster:``, ``dynamic_latency`` orders pools by the RTT measured from
    the querying PoP's region (Cloudflare docs: Load Balancing › Global traffic steering ›
    Dynamic), falling back to the pool's RTT when that region has no current data."""
    udp_rcvbuf: int = Field(default=4 * 1024 * 1024, ge=0, le=1 << 30)
    """UDP socket receive buffer in bytes (0 = the kernel default): absorbs query bursts."""
    udp_batch: int = Field(default=16, ge=0, le=1024)
    """Most UDP queries read with one recvmmsg(2) and answered with one sendmmsg(2) (Linux);
    0 = one datagram per system call through the asyncio transport. A batch's answers leave
    together after its last handler call, so a larger batch delays the first answers of a
    backlog (after a stall) by up to that many handler calls."""
    tcp_idle_timeout: float = Field(default=10.0, gt=0, le=3600)
    tcp_message_timeout: float = Field(default=2.0, gt=0, le=3600)
    """Seconds a TCP client has to complete a message once its first octet arrived (RFC 7766
    §6.2.3 and §10: connections that do not deliver whole messages are closed)."""
    tcp_max_connections: int = Field(default=1024, ge=1, le=1_000_000)
    """TCP connections at once; a new one over the cap closes the least recently active."""
    rrl: RateLimit = Field(default_factory=RateLimit)
    admin: AdminListener = Field(default_factory=AdminListener)
    health_overrides: list[HealthOverride] = Field(default_factory=list)
    probes_enabled: bool = True
    warm_start: bool = True
    probe_concurrency: int = Field(default=256, ge=1, le=100_000)
    probe_isolation: Literal["process", "inline"] = "process"
    """``process``: health checks run in a worker process (off the query loop and its GIL);
    ``inline``: in the server's own event loop."""
    probe_cpus: list[Annotated[int, Field(ge=0, le=4095)]] | None = Field(default=None, min_length=1)
    """CPU ids the probe worker may run on (None: those of the server)."""
    probe_source_address: str | None = None
    """Local IP address that TCP, HTTP(S) and SMTP probes connect from (None: the kernel's
    choice): the vantage's own source address, e.g. one loopback address per instance."""
    cluster: ClusterSettings | None = None
    probe_nice: int = Field(default=0, ge=0, le=19)
    """Added to the probe worker's nice value: > 0 lets queries win a shared CPU."""
    monitor_interval_min: int | None = Field(default=None, ge=1, le=3600)
    """Lower bound for monitor ``interval`` in seconds; None = the plan's (10 enterprise, 15
    non_enterprise, SPEC.md R-CFG-01). Lower it only for labs and tests."""
    operator_state_file: str | None = None
    """JSON file keeping operator states (force_up, force_down, drain) across restarts; default
    ``$STATE_DIRECTORY/operator-state.json``, else ``./operator-state.json``."""
    notification_webhook: NotificationWebhook | None = None
    """Where health and pool-enablement events are POSTed (a URL, or the object form)."""
    query_log: str | None = None
    log_format: Literal["text", "json"] = "text"
    """``text``: one readable line per event; ``json``: one JSON object per line (health changes
    carry the webhook's event body under ``event``). ``--log-format`` overrides it."""
    nsid: str | None = Field(default=None, min_length=1, max_length=128)
    """Server identity returned to queries that ask for it with the EDNS NSID option (RFC 5001),
    e.g. the host or PoP name; sent as its UTF-8 octets. None (the default): no NSID."""

    workers: int | Literal["auto"] = 1
    """Answering processes: 1 (the default) answers in this process; N > 1 runs N worker
    processes on SO_REUSEPORT sockets while this process loads the configuration, probes and
    serves the admin API (docs/operations.md "Workers"); ``auto``: one per CPU this process may
    run on (``os.sched_getaffinity``)."""

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a number of worker processes 1–{MAX_WORKERS} or 'auto', got {value!r}")
        if not 1 <= value <= MAX_WORKERS:
            raise ValueError(f"expected 1–{MAX_WORKERS} worker processes or 'auto', got {value}")
        return value

    @property
    def worker_count(self) -> int:
        """:attr:`workers` as a number: ``auto`` is the CPUs available to this process (its
        affinity mask, so ``taskset`` and cgroup cpusets count), at most :data:`MAX_WORKERS`."""
        if self.workers != "auto":
            return self.workers
        import os

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(MAX_WORKERS, cpus))

    @field_validator("probe_source_address")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        from ipaddress import ip_address

        if value is not None:
            try:
                ip_address(value)
            except ValueError:
                raise ValueError(f"not an IP address: {value!r}") from None
        return value

    @field_validator("notification_webhook", mode="before")
    @classmethod
    def _webhook(cls, v: Any) -> Any:
        return _webhook_from_url(v)

    @property
    def nsid_wire(self) -> bytes | None:
        """:attr:`nsid` as the NSID option data (UTF-8 octets), or None when not configured."""
        return None if self.nsid is None else self.nsid.encode("utf-8")
