"""Pools: reading the account-level list and checking each pool and its endpoints (origins).

Sources (Cloudflare docs, Load Balancing): Pools (monitor or monitor group, minimum_origins,
latitude/longitude, check_regions, endpoint steering, notification_email deprecated);
Endpoints (unique names and addresses, public endpoints only for DNS-only load balancing);
Override HTTP Host headers (the Host must be a subdomain of a zone on the account or equal to
the endpoint address); Monitor Groups › Availability.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import dns.exception
import dns.name

from lbdns.config.model import REGION_CODES, Origin, Pool
from lbdns.config.settings import ServerSettings
from lbdns.config.source import PathKey, SourceFile
from lbdns.config.validate import plan
from lbdns.config.validate.issues import Collector, Placed, hint

PRIVATE_NETS = (
    ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("fc00::/7"), ipaddress.ip_network("fe80::/10"), ipaddress.ip_network("::1/128"),
)
"""Private, loopback, link-local and shared address space (RFC 1918, RFC 6598, RFC 4193, RFC 4291)."""


def read_pools(col: Collector, src: SourceFile, pools: dict[str, Placed], by_name: dict[str, Placed],
               raw_names: set[str]) -> None:
    """Add the ``pools`` of one file to ``pools`` (by id) and ``by_name``.

    ``raw_names`` collects the string ``name``/``id`` of every pool entry, valid or not, so
    references to a pool that failed validation are not reported as unknown. A pool whose
    name or id is taken is E-DUP.
    """
    items = src.data.get("pools") or []
    if not isinstance(items, list):
        col.add(src, ("pools",), "E-TYPE", "pools must be a list")
        return
    for i, raw in enumerate(items):
        if isinstance(raw, dict):
            for k in ("name", "id"):
                if isinstance(raw.get(k), str):
                    raw_names.add(raw[k])
        obj = col.model(Pool, src, ("pools", i), raw, partial=True)
        if obj is None:
            continue
        if obj.name in by_name or obj.id in pools:
            other = by_name.get(obj.name) or pools[obj.id]
            col.add(src, ("pools", i, "name"), "E-DUP",
                    f"duplicate pool name {obj.name!r} (also {other.src.location(other.path)})")
            continue
        pools[obj.id] = Placed(src, ("pools", i), obj)
        by_name[obj.name] = pools[obj.id]


def check_pool(col: Collector, p: Placed, settings: ServerSettings, monitors: Mapping[str, Any],
               groups: Mapping[str, Any], zones: list[dns.name.Name]) -> None:
    """Check one valid pool ``p.obj``: its monitor references, thresholds, coordinates,
    regions, and every origin; ``zones`` are the apexes served here (for Host headers)."""
    _check_monitoring(col, p, settings, monitors, groups)
    _check_fields(col, p)
    names: dict[str, int] = {}
    addrs: dict[str, int] = {}
    for i, o in enumerate(p.obj.origins):
        opath: PathKey = (*p.path, "origins", i)
        _check_unique(col, p.src, opath, i, o, names, addrs)
        _check_origin(col, p.src, opath, o, settings, zones)


def _check_monitoring(col: Collector, p: Placed, settings: ServerSettings, monitors: Mapping[str, Any],
                      groups: Mapping[str, Any]) -> None:
    pool: Pool = p.obj
    src, path = p.src, p.path
    if pool.monitor and pool.monitor_group:
        col.add(src, path, "E-MON-BOTH", "a pool has either a monitor or a monitor_group, not both")
    if pool.monitor and pool.monitor not in monitors:
        col.add(src, (*path, "monitor"), "E-REF", f"unknown monitor {pool.monitor!r}{hint(pool.monitor, monitors)}")
    if pool.monitor_group:
        plan.check_monitor_group(col, src, path, settings)
        if pool.monitor_group not in groups:
            col.add(src, (*path, "monitor_group"), "E-REF", f"unknown monitor group {pool.monitor_group!r}")


def _check_fields(col: Collector, p: Placed) -> None:
    pool: Pool = p.obj
    src, path = p.src, p.path
    if pool.minimum_origins < 1:
        col.add(src, (*path, "minimum_origins"), "E-THRESH", "minimum_origins must be at least 1")
    enabled = sum(1 for o in pool.origins if o.enabled)
    if pool.minimum_origins > enabled >= 0 and pool.minimum_origins >= 1:
        col.add(src, (*path, "minimum_origins"), "W-THRESH",
                f"minimum_origins {pool.minimum_origins} > {enabled} enabled origin(s): the pool can never be healthy",
                warning=True)
    if (pool.latitude is None) != (pool.longitude is None):
        col.add(src, path, "E-COORD", "set both latitude and longitude, or neither")
    for i, r in enumerate(pool.check_regions or ()):
        if r not in REGION_CODES and r != "ALL_REGIONS":
            col.add(src, (*path, "check_regions", i), "E-REGION",
                    f"unknown region {r!r} (allowed: {', '.join(REGION_CODES)}, ALL_REGIONS)")
    if pool.origin_steering.policy in ("least_outstanding_requests", "least_connections"):
        col.add(src, (*path, "origin_steering", "policy"), "W-LOR-DNS",
                f"{pool.origin_steering.policy} has no request counts in DNS-only mode: "
                "origins are chosen by weight (random)", warning=True)
    _check_persistence(col, p)
    if pool.notification_email:
        col.add(src, (*path, "notification_email"), "W-DEPRECATED",
                "notification_email is deprecated; use notification_webhook in lbdns.yaml", warning=True)


def _check_persistence(col: Collector, p: Placed) -> None:
    """W-PERSIST when ``persistence_key`` is set to a non-default value on a pool where nothing
    hashes: neither ``hash`` endpoint steering nor ``hash`` load shedding (docs/steering.md ›
    Persistence key)."""
    pool: Pool = p.obj
    shed = pool.load_shedding
    hashes = pool.origin_steering.policy == "hash" or (
        shed is not None and shed.default_policy == "hash" and shed.default_percent > 0)
    if pool.persistence_key != "resolver_ip" and not hashes:
        col.add(p.src, (*p.path, "persistence_key"), "W-PERSIST",
                f"persistence_key {pool.persistence_key} has no effect: the pool uses neither "
                "origin_steering.policy hash nor load_shedding.default_policy hash", warning=True)


def _check_unique(col: Collector, src: SourceFile, opath: PathKey, i: int, o: Origin,
                  names: dict[str, int], addrs: dict[str, int]) -> None:
    """E-DUP for an origin name or address seen earlier in the pool (``names``/``addrs``
    map each to its first index and are updated)."""
    if o.name in names:
        col.add(src, (*opath, "name"), "E-DUP", f"duplicate origin name {o.name!r} (also origins[{names[o.name]}])")
    names.setdefault(o.name, i)
    key = o.address.lower().rstrip(".")
    if key in addrs:
        col.add(src, (*opath, "address"), "E-DUP",
                f"duplicate origin address {o.address!r} (also origins[{addrs[key]}])")
    addrs.setdefault(key, i)


def _check_origin(col: Collector, src: SourceFile, opath: PathKey, o: Origin, settings: ServerSettings,
                  zones: list[dns.name.Name]) -> None:
    ip = o.ip
    if (ip is not None and _is_private(ip)) or o.virtual_network_id:
        what = "virtual_network_id (private endpoints)" if o.virtual_network_id else f"private address {o.address}"
        col.add(src, (*opath, "address"), "W-PRIVATE",
                f"{what}: DNS-only load balancing supports public endpoints only",
                warning=not settings.strict_public_endpoints)
    if ip is not None and "flatten_cname" in o.model_fields_set:
        col.add(src, (*opath, "flatten_cname"), "E-ADDRESS", "flatten_cname applies to hostname origins only")
    if o.header is not None and o.header.Host and not _host_ok(o.header.Host[0], o.address, zones):
        col.add(src, (*opath, "header", "Host"), "E-VALIDATION",
                f"Host {o.header.Host[0]!r} must be a fully qualified name inside a zone served here "
                "or equal to the origin address")


def _host_ok(value: str, address: str, zones: list[dns.name.Name]) -> bool:
    """Whether a Host header is a FQDN (3+ labels) inside a served zone or the origin address."""
    host = value.rstrip(".").lower()
    try:
        hname = dns.name.from_text(host)
    except dns.exception.DNSException:
        return False
    if len(hname.labels) < 3:
        return False
    return any(hname.is_subdomain(z) for z in zones) or host == address.rstrip(".").lower()


def _is_private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip in net for net in PRIVATE_NETS if net.version == ip.version)
