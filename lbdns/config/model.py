"""The validated configuration model: frozen pydantic models with the Cloudflare API field
names and defaults (Cloudflare API docs: Load Balancer Details; Cloudflare docs: Load Balancing ›
Manage pools, Manage monitors, Monitor Groups; docs/configuration.md).

These classes describe the *shape* of the YAML and its per-field constraints; pydantic does
the structural validation (unknown keys, types, ranges). Cross-object checks (references,
duplicates, plan limits…) live in :mod:`lbdns.config.validate`, which also turns every
error into a located :class:`lbdns.errors.Issue`.

Custom errors raised here use the lbdns error code (docs/configuration.md › Error and warning
codes) as the pydantic error type, so the validator can report it verbatim.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

REGION_CODES: tuple[str, ...] = (
    "EEU", "ENAM", "ME", "NAF", "NEAS", "NSAM", "OC", "SAF", "SAS", "SEAS", "SSAM", "WEU", "WNAM",
)
"""The 13 Load Balancer region codes (Cloudflare docs: Load Balancing › Regions API)."""

STEERING_POLICIES: tuple[str, ...] = (
    "off", "geo", "random", "dynamic_latency", "proximity",
    "least_outstanding_requests", "least_connections", "",
)
"""Allowed ``steering_policy`` values (Cloudflare API docs: Load Balancer Details ›
``steering_policy``)."""

ORIGIN_STEERING_POLICIES: tuple[str, ...] = (
    "random", "hash", "least_outstanding_requests", "least_connections",
)

IGNORED_METADATA: frozenset[str] = frozenset(
    {"created_on", "modified_on", "zone_name", "disabled_at", "healthy"}
)
"""Read-only Cloudflare metadata accepted and ignored everywhere; any other unknown key is
``E-FIELD``."""


class _Model(BaseModel):
    """Base: frozen, unknown keys rejected, metadata keys tolerated."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    _ignored_metadata: ClassVar[frozenset[str]] = IGNORED_METADATA

    @model_validator(mode="before")
    @classmethod
    def _drop_metadata(cls, data: Any) -> Any:
        ignored = cls._ignored_metadata
        if isinstance(data, dict) and ignored & data.keys():
            return {k: v for k, v in data.items() if k not in ignored}
        return data


Ttl = Annotated[int, Field(ge=0, le=2147483647)]


# ---------------------------------------------------------------------------------------------
# Origins, pools, monitors (account level)
# ---------------------------------------------------------------------------------------------

class OriginHeader(_Model):
    """Per-origin header override: only ``Host`` exists (Cloudflare docs: Load Balancing ›
    Override HTTP Host headers; ``E-HEADER``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)
    Host: list[str] = Field(default_factory=list, min_length=1, max_length=1)


class Origin(_Model):
    """An endpoint of a pool (Cloudflare docs: Load Balancing › Manage pools). ``address`` is an IP
    literal or a hostname; ``ip`` is derived from it (``None`` for hostnames)."""

    name: str = Field(min_length=1)
    address: str = Field(min_length=1)
    enabled: bool = True
    weight: float = 1.0
    header: OriginHeader | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    virtual_network_id: str | None = None
    flatten_cname: bool = True
    mx_preference: int = Field(default=10, ge=0, le=65535)
    srv_priority: int = Field(default=10, ge=0, le=65535)
    srv_weight: int = Field(default=10, ge=0, le=65535)

    @field_validator("weight")
    @classmethod
    def _weight(cls, v: float) -> float:
        if not (0.0 <= v <= 1.0) or not math.isclose(round(v * 100), v * 100, abs_tol=1e-6):
            raise PydanticCustomError(
                "E-WEIGHT", "weight {weight} is invalid (0.00–1.00 in steps of 0.01)", {"weight": v}
            )
        return float(v)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
            return v
        except ValueError:
            pass
        name = v.rstrip(".")
        labels = name.split(".")
        ok = (
            0 < len(name) <= 253
            and len(labels) >= 2
            and all(0 < len(lb) <= 63 for lb in labels)
            and all(c.isalnum() or c in "-_" for lb in labels for c in lb)
            and not labels[-1].isdigit()
        )
        if not ok:
            raise PydanticCustomError(
                "E-ADDRESS",
                "address '{address}' is neither an IP address nor a valid hostname "
                "(IPv4, IPv6 or a fully qualified hostname)",
                {"address": v},
            )
        return v

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The address as an IP, or None when it is a hostname."""
        try:
            return ipaddress.ip_address(self.address)
        except ValueError:
            return None

    @property
    def hostname(self) -> str | None:
        """The address as a lower-case FQDN with trailing dot, or None for IP literals."""
        if self.ip is not None:
            return None
        return self.address.lower().rstrip(".") + "."


class OriginSteering(_Model):
    """``origin_steering`` (Cloudflare docs: Load Balancing › Endpoint steering)."""

    policy: Literal["random", "hash", "least_outstanding_requests", "least_connections"] = "random"


class LoadShedding(_Model):
    """``load_shedding`` (Cloudflare docs: Load Balancing › Load shedding); percentages 0–100
    (``E-SHED``)."""

    default_percent: float = Field(default=0.0, ge=0, le=100)
    default_policy: Literal["random", "hash"] = "random"
    session_percent: float = Field(default=0.0, ge=0, le=100)
    session_policy: Literal["hash"] = "hash"


class NotificationFilterEntry(_Model):
    """One source of ``notification_filter``; ``healthy`` is a real field here."""

    _ignored_metadata: ClassVar[frozenset[str]] = IGNORED_METADATA - {"healthy"}
    disable: bool = False
    healthy: bool | None = None


class NotificationFilter(_Model):
    """``notification_filter``: which health changes of this pool are notified (a Cloudflare API
    pool field; docs/configuration.md › pools)."""

    origin: NotificationFilterEntry | None = None
    pool: NotificationFilterEntry | None = None


class Pool(_Model):
    """A pool of origins, account level (Cloudflare docs: Load Balancing › Manage pools). ``id``
    defaults to ``name``."""

    id: str = ""
    name: str = Field(min_length=1)
    description: str = ""
    enabled: bool = True
    minimum_origins: int = 1
    monitor: str | None = None
    monitor_group: str | None = None
    check_regions: list[str] | None = Field(default_factory=lambda: list(REGION_CODES))
    origins: list[Origin] = Field(min_length=1)
    origin_steering: OriginSteering = Field(default_factory=OriginSteering)
    load_shedding: LoadShedding | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    notification_filter: NotificationFilter | None = None
    notification_email: str = ""
    networks: list[str] | None = None
    max_answers: int | None = Field(default=None, ge=1, le=64)
    """lbdns extension: in multi-answer mode, answer with at most this many addresses, chosen
    per resolver network by weighted rendezvous hashing (None: all eligible origins)."""
    persistence_key: Literal["resolver_ip", "resolver_network", "ecs"] = "resolver_ip"
    """lbdns extension: what ``hash`` endpoint steering and ``hash`` load shedding key on —
    the resolver address (Cloudflare's behaviour), its /24 (/56) network, or the ECS prefix
    when the query carries one (docs/steering.md › Persistence key)."""

    @model_validator(mode="after")
    def _defaults(self) -> Pool:
        if not self.id:
            object.__setattr__(self, "id", self.name)
        return self

    @property
    def monitored(self) -> bool:
        """True when health is considered for this pool (Cloudflare docs: Load Balancing › How
        endpoints and pools become unhealthy)."""
        return self.monitor is not None or self.monitor_group is not None


class Monitor(_Model):
    """A health monitor, account level (Cloudflare docs: Load Balancing › Manage monitors). Fields
    validated per type in :mod:`lbdns.config.validate` (``E-MON``)."""

    id: str = Field(min_length=1)
    description: str = ""
    type: str = "http"
    method: str = ""
    path: str = "/"
    port: int = Field(default=0, ge=0, le=65535)
    header: dict[str, list[str]] = Field(default_factory=dict)
    timeout: int = 5
    retries: int = 2
    interval: int = 60
    expected_codes: str = "200"
    expected_body: str = ""
    follow_redirects: bool = False
    allow_insecure: bool = False
    consecutive_up: int = 0
    consecutive_down: int = 0
    probe_zone: str = ""

    @property
    def effective_method(self) -> str:
        """``method`` with the per-type default (GET for http/https, connection_established for tcp)."""
        if self.method:
            return self.method
        return "connection_established" if self.type == "tcp" else "GET"


class MonitorGroupMember(_Model):
    monitor_id: str
    enabled: bool = True
    monitoring_only: bool = False
    must_be_healthy: bool = False


class MonitorGroup(_Model):
    """A monitor group (Cloudflare docs: Load Balancing › Monitor Groups)."""

    id: str = Field(min_length=1)
    description: str = ""
    members: list[MonitorGroupMember] = Field(min_length=1)


# ---------------------------------------------------------------------------------------------
# Load balancers and rules (zone level)
# ---------------------------------------------------------------------------------------------

class RandomSteering(_Model):
    """``random_steering`` (Cloudflare API docs: Load Balancer Details › ``random_steering``);
    weights 0–1 (``E-WEIGHT``)."""

    default_weight: float = Field(default=1.0, ge=0, le=1)
    pool_weights: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)


class LocationStrategy(_Model):
    """``location_strategy`` (Cloudflare API docs: Load Balancer Details › ``location_strategy``);
    defaults ``proximity`` / ``pop``, Cloudflare's API defaults."""

    prefer_ecs: Literal["always", "never", "proximity", "geo"] = "proximity"
    mode: Literal["pop", "resolver_ip"] = "pop"


class PartialRandomSteering(_Model):
    default_weight: float | None = Field(default=None, ge=0, le=1)
    pool_weights: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None


class PartialLocationStrategy(_Model):
    prefer_ecs: Literal["always", "never", "proximity", "geo"] | None = None
    mode: Literal["pop", "resolver_ip"] | None = None


class RuleOverrides(_Model):
    """``rules[].overrides`` (Cloudflare API docs: Load Balancer Details › ``rules``). ``None`` =
    not overridden."""

    default_pools: list[str] | None = None
    fallback_pool: str | None = None
    region_pools: dict[str, list[str]] | None = None
    country_pools: dict[str, list[str]] | None = None
    pop_pools: dict[str, list[str]] | None = None
    steering_policy: str | None = None
    random_steering: PartialRandomSteering | None = None
    location_strategy: PartialLocationStrategy | None = None
    ttl: int | None = None
    session_affinity: str | None = None
    session_affinity_ttl: int | None = None
    session_affinity_attributes: dict[str, Any] | None = None
    adaptive_routing: dict[str, Any] | None = None


class FixedResponse(_Model):
    content_type: str | None = None
    location: str | None = None
    message_body: str | None = None
    status_code: int | None = None


class Rule(_Model):
    """A custom rule (Cloudflare API docs: Load Balancer Details › ``rules``; Cloudflare docs: Load
    Balancing › Create custom rules)."""

    name: str = Field(default="", max_length=200)
    condition: str = Field(default="", max_length=4096)
    disabled: bool = False
    priority: int = Field(default=0, ge=0)
    terminates: bool = False
    overrides: RuleOverrides = Field(default_factory=RuleOverrides)
    fixed_response: FixedResponse | None = None


class AdaptiveRouting(_Model):
    failover_across_pools: bool = False


class ServiceBinding(_Model):
    """``https:`` / ``svcb:`` of a load balancer (lbdns extension; RFC 9460): the LB answers
    HTTPS (resp. SVCB) queries with one ServiceMode record — ``priority``, target ``.`` (the
    LB name itself), these SvcParams and ``ipv4hint``/``ipv6hint`` set to the addresses the A
    and AAAA answers would carry for the same query. ``alpn`` protocol ids (1–255 octets each,
    e.g. ``h2``, ``h3``); ``no_default_alpn`` needs ``alpn``; ``port`` 1–65535; ``ech`` an
    ECHConfigList in base64, passed through unexamined beyond its length prefix."""

    priority: int = Field(default=1, ge=1, le=65535)
    alpn: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(default_factory=list)
    no_default_alpn: bool = False
    port: int | None = Field(default=None, ge=1, le=65535)
    ech: str | None = None

    @field_validator("alpn")
    @classmethod
    def _alpn(cls, v: list[str]) -> list[str]:
        for item in v:
            if not item.isascii() or len(item.encode()) > 255:
                raise PydanticCustomError("E-SVCB", "alpn id {id!r} must be 1–255 ASCII characters", {"id": item})
        return v

    @field_validator("ech")
    @classmethod
    def _ech(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError("E-SVCB", "ech must be an ECHConfigList in base64", {}) from None
        if len(raw) < 2 or int.from_bytes(raw[:2], "big") != len(raw) - 2:
            raise PydanticCustomError(
                "E-SVCB", "ech is not an ECHConfigList (its 2-octet length prefix does not match)", {})
        return v

    @model_validator(mode="after")
    def _needs_alpn(self) -> ServiceBinding:
        if self.no_default_alpn and not self.alpn:
            raise PydanticCustomError("E-SVCB", "no_default_alpn needs alpn (RFC 9460 §7.1.1)", {})
        return self


class LoadBalancer(_Model):
    """A load balancer of a zone (Cloudflare API docs: Load Balancer Details). The YAML key is the
    hostname; ``name`` is filled in from it by the validator as a lower-case FQDN with trailing
    dot."""

    id: str = ""
    name: str = ""
    description: str = ""
    enabled: bool = True
    proxied: bool = False
    ttl: int = 30
    default_pools: list[str]
    fallback_pool: str | None = None
    region_pools: dict[str, list[str]] = Field(default_factory=dict)
    country_pools: dict[str, list[str]] = Field(default_factory=dict)
    pop_pools: dict[str, list[str]] = Field(default_factory=dict)
    steering_policy: str = ""
    random_steering: RandomSteering = Field(default_factory=RandomSteering)
    location_strategy: LocationStrategy = Field(default_factory=LocationStrategy)
    rules: list[Rule] = Field(default_factory=list)
    adaptive_routing: AdaptiveRouting | None = None
    session_affinity: str = ""
    session_affinity_ttl: int | None = None
    session_affinity_attributes: dict[str, Any] | None = None
    networks: list[str] | None = None
    https: ServiceBinding | None = None
    """lbdns extension: answer HTTPS queries with a health-aware ServiceMode record."""
    svcb: ServiceBinding | None = None
    """lbdns extension: answer SVCB queries the same way."""
    max_answers: int | None = Field(default=None, ge=1, le=64)
    """lbdns extension: at most this many addresses in multi-answer mode, for every pool of
    this LB (a pool's own ``max_answers`` applies when smaller)."""


# ---------------------------------------------------------------------------------------------
# Zones and ordinary records
# ---------------------------------------------------------------------------------------------

class Soa(_Model):
    """SOA fields of a zone (RFC 1035 §3.3.13). ``ttl`` is the SOA RR's own TTL."""

    mname: str
    rname: str
    serial: int = Field(default=1, ge=0, le=4294967295)
    refresh: Ttl = 7200
    retry: Ttl = 3600
    expire: Ttl = 1209600
    minimum: Ttl = 300
    ttl: Ttl = 3600


class RecordSpec(_Model):
    """One octoDNS-style record: ``type``, ``ttl`` and ``value`` or ``values``. Values are
    rdata text (``"10 mail.example.com."``) or the octoDNS structured form for MX, SRV and
    CAA. Semantic checks (addresses, names) are done by the validator with dnspython."""

    type: str
    ttl: Ttl = 3600
    value: Any = None
    values: list[Any] | None = None


class NsSpec(_Model):
    ttl: Ttl = 3600
    values: list[str] = Field(min_length=1)


class ZoneFile(_Model):
    """The top level of one YAML file under ``zones/``: a zone (``zone``, ``soa``, ``ns``,
    ``records``, ``load_balancers``) and/or account-level ``monitors``, ``monitor_groups``
    and ``pools``."""

    zone: str | None = None
    soa: Soa | None = None
    ns: list[str] | NsSpec | None = None
    records: dict[str, RecordSpec | list[RecordSpec]] = Field(default_factory=dict)
    load_balancers: dict[str, LoadBalancer] = Field(default_factory=dict)
    monitors: list[Monitor] = Field(default_factory=list)
    monitor_groups: list[MonitorGroup] = Field(default_factory=list)
    pools: list[Pool] = Field(default_factory=list)
