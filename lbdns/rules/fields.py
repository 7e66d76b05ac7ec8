"""The fields a custom rule can read (Cloudflare docs: Load Balancing › Supported fields and
operators; lbdns's additions and absent-field semantics in docs/rules.md › Fields).

:class:`RuleFields` carries the per-query values; :data:`FIELDS` is the field table the type
checker and the compiler use (name → type, how to read it from :class:`RuleFields`, whether it
can be absent, whether it is a proxied-only field).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from lbdns.errors import RuleError

__all__ = [
    "ECS_DEPENDENT_FIELDS",
    "FIELDS",
    "FieldSpec",
    "FieldType",
    "RuleFields",
    "lookup_field",
]


@dataclass(slots=True)
class RuleFields:
    """Per-query values a rule can read (Cloudflare docs: Load Balancing › Supported fields and
    operators › Fields supported regardless of proxy; › Unproxied-only fields). Built by the
    answer path only for LBs with rules.

    Attributes:
        lb_name: ``cf.load_balancer.name`` — LB name, lower case, no trailing dot
            (``"*.example.com"`` for wildcards).
        region: ``cf.load_balancer.region`` — region code of the PoP, e.g. ``"ENAM"``.
        ip_src: ``ip.src`` — ECS address or resolver IP (decided by the caller from
            ``ip_src_uses_ecs``);
            ``None`` = absent.
        asnum: ``ip.src.asnum`` — ASN of ``ip_src``; ``None`` = absent.
        qname: ``dns.qry.name`` — lower-case presentation form with trailing dot;
            ``dns.qry.name.len`` is ``len(qname)``.
        qtype: ``dns.qry.type`` — numeric QTYPE.
        ecs_present: ``dns.rr.opt.client`` — a valid ECS option with source prefix > 0.
        ecs_addr: ``dns.rr.opt.client.addr`` — ECS address text, e.g. ``"1.2.3.0"``;
            ``None`` = absent.
        country: ``lbdns.client.country`` (lbdns extension) — ISO 3166-1 alpha-2 code of the
            GeoIP location of ``ip_src``, upper case; ``None`` = absent.

    ``dns.qry.qu`` is always true (every message answered is a query).
    """

    lb_name: str
    region: str
    ip_src: IPv4Address | IPv6Address | None
    asnum: int | None
    qname: str
    qtype: int
    ecs_present: bool
    ecs_addr: str | None
    country: str | None = None


class FieldType(Enum):
    """Value types of the rules language. ``value`` is the name used in error messages."""

    STRING = "string"
    INT = "integer"
    IP = "IP"
    BOOL = "Boolean"
    MAP = "map"
    """``Map<Array<String>>`` (proxied-only ``http.request.headers`` and ``…uri.args``)."""
    ARRAY = "array"
    """``Array<String>`` (proxied-only ``http.request.uri.args.names`` / ``.values``)."""


Getter = Callable[[RuleFields], Any]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of the rules language.

    ``getter`` reads the value from :class:`RuleFields`; it is ``None`` for proxied-only
    fields, which are always absent for DNS-only queries (Cloudflare docs: Load Balancing ›
    Supported fields and operators › Proxied-only fields). ``nullable`` says whether the getter
    may return ``None`` (= field absent, docs/rules.md › Fields). ``alternative`` names the
    DNS-only field to use instead of a proxied-only one, where one exists.
    """

    name: str
    type: FieldType
    getter: Getter | None
    nullable: bool = False
    proxied_only: bool = False
    alternative: str | None = None
    extension: bool = False


def _always_true(_f: RuleFields) -> bool:
    return True


def _qname_len(f: RuleFields) -> int:
    return len(f.qname)


_DNS_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("cf.load_balancer.name", FieldType.STRING, attrgetter("lb_name")),
    FieldSpec("cf.load_balancer.region", FieldType.STRING, attrgetter("region")),
    FieldSpec("ip.src", FieldType.IP, attrgetter("ip_src"), nullable=True),
    FieldSpec("ip.src.asnum", FieldType.INT, attrgetter("asnum"), nullable=True),
    FieldSpec("dns.qry.name", FieldType.STRING, attrgetter("qname")),
    FieldSpec("dns.qry.name.len", FieldType.INT, _qname_len),
    FieldSpec("dns.qry.qu", FieldType.BOOL, _always_true),
    FieldSpec("dns.qry.type", FieldType.INT, attrgetter("qtype")),
    FieldSpec("dns.rr.opt.client", FieldType.BOOL, attrgetter("ecs_present")),
    FieldSpec("dns.rr.opt.client.addr", FieldType.STRING, attrgetter("ecs_addr"), nullable=True),
    FieldSpec(
        "lbdns.client.country", FieldType.STRING, attrgetter("country"), nullable=True,
        extension=True,
    ),
)


def _proxied(name: str, type_: FieldType, alternative: str | None = None) -> FieldSpec:
    return FieldSpec(name, type_, None, nullable=True, proxied_only=True, alternative=alternative)


_PROXIED_FIELDS: tuple[FieldSpec, ...] = (
    _proxied("http.cookie", FieldType.STRING),
    _proxied("http.host", FieldType.STRING, "dns.qry.name"),
    _proxied("http.referer", FieldType.STRING),
    _proxied("http.request.headers", FieldType.MAP),
    _proxied("http.request.method", FieldType.STRING),
    _proxied("http.request.timestamp.sec", FieldType.INT),
    _proxied("http.request.uri", FieldType.STRING),
    _proxied("http.request.uri.args", FieldType.MAP),
    _proxied("http.request.uri.args.names", FieldType.ARRAY),
    _proxied("http.request.uri.args.values", FieldType.ARRAY),
    _proxied("http.request.uri.path", FieldType.STRING),
    _proxied("http.request.uri.query", FieldType.STRING),
    _proxied("http.request.version", FieldType.STRING),
)

FIELDS: Mapping[str, FieldSpec] = MappingProxyType(
    {spec.name: spec for spec in _DNS_FIELDS + _PROXIED_FIELDS}
)
"""Every field a condition may name: the DNS-only fields and the proxied-only fields of
Cloudflare docs: Load Balancing › Supported fields and operators, and the lbdns extension
``lbdns.client.country``."""

ECS_DEPENDENT_FIELDS: frozenset[str] = frozenset(
    {"ip.src", "ip.src.asnum", "lbdns.client.country", "dns.rr.opt.client",
     "dns.rr.opt.client.addr"}
)
"""Fields whose value may depend on every bit of the ECS address: when a condition reads one of
them (see ``CompiledCondition.fields``) and the query carried ECS, the response's ECS scope must
be the SOURCE PREFIX-LENGTH (RFC 7871 §7.2.1; docs/decisions.md › DNS protocol). ``ip.src.asnum``
and ``lbdns.client.country`` are looked up from ``ip.src``, so they follow it (for ``ip.src`` and
its derivatives this matters only while ``ip.src`` holds the ECS address)."""

_NOT_FOR_LB_RULES: Mapping[str, str] = MappingProxyType(
    {
        "ip.geoip.country": "lbdns.client.country",
        "ip.src.country": "lbdns.client.country",
        "ip.geoip.asnum": "ip.src.asnum",
        "cf.load_balancer.pop": "cf.load_balancer.region",
        "dns.qry.class": "dns.qry.type",
    }
)
"""Cloudflare fields of other products that users try in LB rules, with the LB-rule field to
use instead (checked before the fuzzy match)."""


def lookup_field(name: str, column: int) -> FieldSpec:
    """Return the :class:`FieldSpec` for ``name``.

    Raises:
        RuleError: unknown field, with a "did you mean" hint (difflib over the known field
            names, plus a table of well-known Cloudflare fields that LB rules lack), located
            at ``column`` (``E-RULE-EXPR``).
    """
    spec = FIELDS.get(name)
    if spec is not None:
        return spec
    suggestion = _NOT_FOR_LB_RULES.get(name)
    if suggestion is None:
        close = difflib.get_close_matches(name, list(FIELDS), n=1, cutoff=0.6)
        suggestion = close[0] if close else None
    if suggestion is not None:
        raise RuleError(f"unknown field '{name}' (did you mean '{suggestion}'?)", column)
    raise RuleError(f"unknown field '{name}'", column)
