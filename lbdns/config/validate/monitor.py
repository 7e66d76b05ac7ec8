"""Health monitors and monitor groups: reading the account-level lists and checking each
monitor's fields against its type.

Sources (Cloudflare docs, Load Balancing): Monitors (types http, https, tcp, udp_icmp,
icmp_ping, smtp; method, path, expected_codes, header only for HTTP(S); port for tcp,
udp_icmp and smtp; interval, timeout, retries), Monitor Groups, Load Balancer Details [API].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from lbdns.config.model import Monitor, MonitorGroup
from lbdns.config.monitor_types import MONITOR_KINDS
from lbdns.config.settings import ServerSettings
from lbdns.config.source import SourceFile
from lbdns.config.validate import plan
from lbdns.config.validate.issues import Collector, Placed

MONITOR_TIMEOUT_MAX = 3600
"""Upper bound of a monitor ``timeout`` in seconds (the longest ``interval``); lbdns's own bound."""
MONITOR_RETRIES_MAX = 100
"""Upper bound of a monitor ``retries`` (lbdns's own bound; the default is 2)."""
INTERVAL_MAX = 3600
"""Longest monitor interval in seconds (Cloudflare docs: Load Balancing › Limitations)."""

_HTTP_ONLY = ("header", "expected_body", "follow_redirects", "allow_insecure")


def read_monitors(col: Collector, src: SourceFile, monitors: dict[str, Placed], groups: dict[str, Placed]) -> None:
    """Add the ``monitors`` and ``monitor_groups`` of one file to the tables (by id).

    An object that failed validation but has a string ``id`` is entered as ``Placed(obj=None)``
    so references to it are not reported as unknown; a duplicate id is E-REF.
    """
    sections: tuple[tuple[str, type[BaseModel], dict[str, Placed]], ...] = (
        ("monitors", Monitor, monitors), ("monitor_groups", MonitorGroup, groups))
    for section, cls, table in sections:
        items = src.data.get(section) or []
        if not isinstance(items, list):
            col.add(src, (section,), "E-TYPE", f"{section} must be a list")
            continue
        for i, raw in enumerate(items):
            obj: Any = col.model(cls, src, (section, i), raw, partial=True)
            if obj is None:
                if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                    table.setdefault(raw["id"], Placed(src, (section, i), None))
                continue
            if obj.id in table:
                other = table[obj.id]
                col.add(src, (section, i, "id"), "E-REF",
                        f"duplicate {section[:-1].replace('_', ' ')} id {obj.id!r} "
                        f"(also {other.src.location(other.path)})")
                continue
            table[obj.id] = Placed(src, (section, i), obj)


def check_monitors(col: Collector, monitors: dict[str, Placed], groups: dict[str, Placed],
                   settings: ServerSettings) -> None:
    """Check every valid monitor, then every group's member references (E-REF)."""
    from lbdns.health.expected_codes import parse_expected_codes

    for placed in monitors.values():
        if placed.obj is not None:
            check_monitor(col, placed, settings, parse_expected_codes)
    for gid, placed in groups.items():
        if placed.obj is None:
            continue
        for j, member in enumerate(placed.obj.members):
            if member.monitor_id not in monitors:
                col.add(placed.src, (*placed.path, "members", j, "monitor_id"), "E-REF",
                        f"unknown monitor {member.monitor_id!r} in monitor group {gid!r}")


def check_monitor(col: Collector, p: Placed, settings: ServerSettings,
                  parse_codes: Callable[[str], object]) -> None:
    """E-MON / E-PLAN / W-UA / W-INTERVAL-TIMEOUT for one valid monitor ``p.obj``;
    ``parse_codes`` parses ``expected_codes`` (raises ValueError)."""
    m: Monitor = p.obj
    kind = MONITOR_KINDS.get(m.type)
    if kind is None:
        extra = " (LDAP monitors are not supported)" if m.type.lower() == "ldap" else ""
        col.add(p.src, (*p.path, "type"), "E-MON",
                f"unknown monitor type {m.type!r}{extra} (allowed: {', '.join(MONITOR_KINDS)})")
        return
    plan.check_monitor_type(col, p, settings)
    if kind.http:
        _check_http(col, p, parse_codes)
    else:
        _check_not_http(col, p)
    if kind.needs_port and not (1 <= m.port <= 65535):
        col.add(p.src, (*p.path, "port"), "E-MON", f"a {m.type} monitor needs a port (1–65535)")
    _check_timing(col, p, settings)


def _check_http(col: Collector, p: Placed, parse_codes: Callable[[str], object]) -> None:
    m: Monitor = p.obj
    src, path = p.src, p.path
    allowed = MONITOR_KINDS[m.type].methods
    if m.method and m.method not in allowed:
        col.add(src, (*path, "method"), "E-MON",
                f"method {m.method!r} is invalid for {m.type} ({' or '.join(allowed)})")
    if not m.path.startswith("/"):
        col.add(src, (*path, "path"), "E-MON", f"path {m.path!r} must start with '/'")
    try:
        parse_codes(m.expected_codes)
    except ValueError as exc:
        col.add(src, (*path, "expected_codes"), "E-MON", str(exc))
    for name in m.header:
        if name.lower() == "user-agent":
            col.add(src, (*path, "header", name), "W-UA",
                    "the User-Agent header cannot be overridden; this entry is ignored", warning=True)


def _check_not_http(col: Collector, p: Placed) -> None:
    m: Monitor = p.obj
    src, path = p.src, p.path
    allowed = MONITOR_KINDS[m.type].methods
    if m.method and m.method not in allowed:
        col.add(src, (*path, "method"), "E-MON",
                f"method {m.method!r} is invalid for {m.type} "
                + (f"({' or '.join(allowed)})" if allowed else "(leave it empty)"))
    given = m.model_fields_set
    for fld in _HTTP_ONLY:
        if fld in given and getattr(m, fld):
            col.add(src, (*path, fld), "E-MON", f"{fld} applies to http/https monitors only")
    if "expected_codes" in given:
        col.add(src, (*path, "expected_codes"), "E-MON", "expected_codes applies to http/https monitors only")


def _check_timing(col: Collector, p: Placed, settings: ServerSettings) -> None:
    m: Monitor = p.obj
    src, path = p.src, p.path
    lo = plan.interval_min(settings)
    if not lo <= m.interval <= INTERVAL_MAX:
        col.add(src, (*path, "interval"), "E-MON",
                f"interval {m.interval} s is out of range ({lo}–3600 s for plan {settings.plan})")
    if m.timeout < 1:
        col.add(src, (*path, "timeout"), "E-MON", f"timeout {m.timeout} s must be at least 1 s")
    elif m.timeout > MONITOR_TIMEOUT_MAX:  # a probe's deadline must stay a usable float
        col.add(src, (*path, "timeout"), "E-MON", f"timeout {m.timeout} s is out of range (1–{MONITOR_TIMEOUT_MAX} s)")
    for fld in ("retries", "consecutive_up", "consecutive_down"):
        if getattr(m, fld) < 0:
            col.add(src, (*path, fld), "E-MON", f"{fld} must not be negative")
    if m.retries > MONITOR_RETRIES_MAX:  # retries run back to back inside one probe
        col.add(src, (*path, "retries"), "E-MON", f"retries {m.retries} is out of range (0–{MONITOR_RETRIES_MAX})")
    if 1 <= m.timeout <= MONITOR_TIMEOUT_MAX and 0 <= m.retries <= MONITOR_RETRIES_MAX \
            and m.timeout * (m.retries + 1) >= m.interval:
        col.add(src, (*path, "timeout"), "W-INTERVAL-TIMEOUT",
                f"timeout × (retries + 1) = {m.timeout * (m.retries + 1)} s ≥ interval {m.interval} s",
                warning=True)
