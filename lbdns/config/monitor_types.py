"""The monitor types lbdns probes with — one table.

Adding a type is one :class:`MonitorKind` entry in :data:`MONITOR_KINDS` plus its check in
:data:`lbdns.probes.scheduler.CHECKS` (a test fails when the two disagree): validation
(allowed types, which fields apply, whether a port is needed, the plan) reads this table.
Source: Cloudflare docs, Load Balancing › Monitors (monitor types; HTTP/HTTPS, TCP, UDP-ICMP,
ICMP Ping, SMTP) and Load Balancing › Plans (types available without Enterprise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class MonitorKind:
    """One monitor ``type``.

    ``http``: an HTTP(S) request — ``path``, ``header``, ``expected_codes``,
    ``expected_body``, ``follow_redirects``, ``allow_insecure`` apply and ``method`` is GET or
    HEAD. ``methods``: the other ``method`` values allowed besides empty (non-HTTP types).
    ``needs_port``: the monitor (or the origin) must name a port 1–65535. ``enterprise_only``:
    refused under ``plan: non_enterprise``. ``probed``: False for a type whose results are
    pushed to the admin API (``POST /report``) instead of probed; it has no check.
    """

    name: str
    http: bool = False
    methods: tuple[str, ...] = ()
    needs_port: bool = False
    enterprise_only: bool = True
    probed: bool = True


_KINDS = (
    MonitorKind("http", http=True, methods=("GET", "HEAD"), enterprise_only=False),
    MonitorKind("https", http=True, methods=("GET", "HEAD"), enterprise_only=False),
    MonitorKind("tcp", methods=("connection_established",), needs_port=True, enterprise_only=False),
    MonitorKind("udp_icmp", needs_port=True),
    MonitorKind("icmp_ping"),
    MonitorKind("smtp", needs_port=True),
    # lbdns addition: health pushed by an external system (docs/operations.md › Pushed health)
    MonitorKind("external", enterprise_only=False, probed=False),
)

MONITOR_KINDS: Mapping[str, MonitorKind] = MappingProxyType({k.name: k for k in _KINDS})
"""Every monitor ``type`` by name, in the order error messages list them."""
