"""Monitor types: the configuration table (lbdns.config.monitor_types) and the probes' check
table (lbdns.probes.scheduler.CHECKS) name the same types."""

from __future__ import annotations

from lbdns.config.monitor_types import MONITOR_KINDS
from lbdns.probes.scheduler import CHECKS


def test_every_monitor_type_has_a_check_and_every_check_a_type() -> None:
    assert set(CHECKS) == {name for name, kind in MONITOR_KINDS.items() if kind.probed}
    assert [name for name, kind in MONITOR_KINDS.items() if not kind.probed] == ["external"]  # pushed


def test_http_kinds_accept_get_and_head_only() -> None:
    for kind in MONITOR_KINDS.values():
        assert kind.http == (kind.methods == ("GET", "HEAD"))
        assert not (kind.http and kind.needs_port)


def test_non_enterprise_types_are_cloudflares() -> None:
    """Cloudflare docs, Load Balancing › Plans: HTTP, HTTPS and TCP monitors on every plan."""
    assert [k.name for k in MONITOR_KINDS.values() if not k.enterprise_only and k.probed] == ["http", "https", "tcp"]
