"""Pure parts of the probes: HTTP request plan (EX-43), targets (R-MON-01, R-MON-21) and
notification filters (R-NOT-03) and events (R-LOG-01)."""

from __future__ import annotations

from typing import Any

import pytest

from lbdns.config.model import (
    Monitor,
    MonitorGroup,
    NotificationFilter,
    NotificationFilterEntry,
    Origin,
    Pool,
)
from lbdns.health.view import OriginHealth, OriginState
from lbdns.probes.http import plan_request, probe_port, user_agent
from lbdns.probes.notify import HealthEvent, WebhookNotifier, build_event, filter_allows
from lbdns.probes.targets import build_targets

POOL_ID = "17b5962d775c646f3f9725cbc7a53df4"
UA = ("Mozilla/5.0 (compatible; Cloudflare-Traffic-Manager/1.0; "
      "+https://www.cloudflare.com/traffic-manager/; pool-id: 17b5962d775c646f)")
A = Origin.model_validate(
    {"name": "A", "address": "192.0.2.30", "header": {"Host": ["lb-app-a.example.com"]}}
)
B = Origin.model_validate({"name": "B", "address": "192.0.2.31"})


def mon(**kw: Any) -> Monitor:
    return Monitor.model_validate({"id": "m", **kw})


def test_user_agent_exact() -> None:
    assert user_agent(POOL_ID) == UA
    assert user_agent("short") == UA.replace("17b5962d775c646f", "short")


def test_ex43_host_sni_headers() -> None:
    m = mon(type="https", header={"Host": ["www.example.com"], "X-App-ID": ["abc123"]})
    pa = plan_request(m, A, POOL_ID)
    assert pa.host == "lb-app-a.example.com" and pa.server_hostname == "lb-app-a.example.com"
    assert ("X-App-ID", "abc123") in pa.headers and ("User-Agent", UA) in pa.headers
    assert (pa.url.host, pa.url.port, pa.url.path) == ("192.0.2.30", 443, "/")
    pb = plan_request(m, B, POOL_ID)
    assert pb.host == "www.example.com" and pb.server_hostname == "www.example.com"
    assert ("User-Agent", UA) in pb.headers


def test_ex43_no_header_means_address_host_and_no_sni() -> None:
    pb = plan_request(mon(type="https"), B, POOL_ID)
    assert pb.host == "192.0.2.31" and pb.server_hostname is None
    assert pb.verify is True


def test_ex43_user_agent_not_overridable_and_multi_values() -> None:
    m = mon(type="http", header={"User-Agent": ["x"], "user-agent": ["y"], "X-Multi": ["1", "2"]})
    p = plan_request(m, B, POOL_ID)
    uas = [v for k, v in p.headers if k.lower() == "user-agent"]
    assert uas == [UA]
    assert [v for k, v in p.headers if k == "X-Multi"] == ["1", "2"]
    assert p.server_hostname is None  # http never has SNI


def test_ports_and_paths_r_mon_04() -> None:
    with_port = Origin.model_validate({"name": "o", "address": "2001:db8::1", "port": 8080})
    assert probe_port(mon(type="http"), B) == 80
    assert probe_port(mon(type="https"), B) == 443
    assert probe_port(mon(type="https"), with_port) == 8080
    assert probe_port(mon(type="https", port=9443), with_port) == 9443
    p = plan_request(mon(type="http", path="/health?x=1", method="HEAD", allow_insecure=True), with_port, "p")
    assert str(p.url) == "http://[2001:db8::1]:8080/health?x=1"
    assert p.method == "HEAD" and p.verify is False
    assert p.host == "[2001:db8::1]"


def _pool(**kw: Any) -> Pool:
    return Pool.model_validate({
        "name": "p", "origins": [
            {"name": "a", "address": "192.0.2.1"},
            {"name": "b", "address": "192.0.2.2", "enabled": False},
            {"name": "c", "address": "192.0.2.3"},
        ], **kw,
    })


def test_build_targets_single_monitor_and_disabled() -> None:
    monitors = {"m": mon(type="http", expected_codes="2xx"), "t": mon(id="t", type="tcp", port=1)}
    pools = {
        "p": _pool(monitor="m"),
        "q": Pool.model_validate({"name": "q", "enabled": False, "monitor": "t",
                                  "origins": [{"name": "x", "address": "192.0.2.9"}]}),
        "plain": Pool.model_validate({"name": "plain", "origins": [{"name": "y", "address": "192.0.2.8"}]}),
    }
    ts = build_targets(pools, monitors)
    assert [t.key for t in ts] == [("p", "a", "m"), ("p", "c", "m"), ("q", "x", "t")]
    assert ts[0].expected is not None and ts[0].expected.matches(204)
    assert ts[2].expected is None and ts[2].group is None and ts[2].votes


def test_build_targets_monitor_group() -> None:
    monitors = {i: mon(id=i, type="tcp", port=1) for i in "ABCD"}
    grp = MonitorGroup.model_validate({"id": "g", "members": [
        {"monitor_id": "A", "must_be_healthy": True}, {"monitor_id": "B"},
        {"monitor_id": "C", "enabled": False}, {"monitor_id": "D", "monitoring_only": True},
    ]})
    ts = build_targets({"p": _pool(monitor_group="g")}, monitors, {"g": grp})
    assert sorted(t.key for t in ts) == sorted(
        ("p", o, m) for o in "ac" for m in "ABD"
    )
    assert all(t.group is not None and len(t.group) == 4 for t in ts)
    assert {t.monitor.id: t.votes for t in ts} == {"A": True, "B": True, "D": False}


def _filter(flt: dict[str, Any]) -> NotificationFilter:
    # model_construct: lbdns.config.model currently drops a "healthy" key everywhere as
    # read-only metadata (IGNORED_METADATA), including inside notification_filter entries.
    entries: dict[str, Any] = {
        k: NotificationFilterEntry.model_construct(**{"disable": False, "healthy": None, **v})
        for k, v in flt.items()
    }
    return NotificationFilter.model_construct(None, **entries)


@pytest.mark.parametrize(
    ("flt", "source", "healthy", "ok"),
    [
        (None, "origin", True, True),
        ({"origin": {"disable": True}}, "origin", False, False),
        ({"origin": {"disable": True}}, "pool", False, True),
        ({"pool": {"healthy": None}}, "pool", True, True),
        ({"pool": {"healthy": True}}, "pool", False, False),
        ({"pool": {"healthy": True}}, "pool", True, True),
        ({"origin": {"healthy": False}}, "origin", False, True),
        ({"origin": {"healthy": False}}, "origin", True, False),
    ],
)
def test_notification_filter_r_not_03(
    flt: dict[str, Any] | None, source: str, healthy: bool, ok: bool
) -> None:
    model = None if flt is None else _filter(flt)
    assert filter_allows(model, source, healthy) is ok  # type: ignore[arg-type]


def _event(pool: Pool, new: OriginState, pool_changed: bool, pool_ok: bool) -> HealthEvent:
    return build_event(pool, pool.origins[0], OriginState.HEALTHY, OriginHealth(new, "TCP connection failed",
                       1.0, None, None), pool_healthy=pool_ok, pool_changed=pool_changed, at=0.0,
                       event_id="ev1")


def test_build_event_shape_r_log_01() -> None:
    ev = _event(_pool(monitor="m"), OriginState.UNHEALTHY, True, False)
    assert ev.body == {
        "id": "ev1", "timestamp": "1970-01-01T00:00:00Z",
        "pool": {"id": "p", "name": "p", "healthy": False, "changed": True, "minimum_origins": 1},
        "origins": [{"name": "a", "ip": "192.0.2.1", "enabled": True, "healthy": False,
                     "failure_reason": "TCP connection failed", "response_code": None, "changed": True}],
    }
    assert ev.changes() == [("origin", False), ("pool", False)]


def test_webhook_wants_filters() -> None:
    p = _pool(monitor="m").model_copy(
        update={"notification_filter": _filter({"origin": {"disable": True}, "pool": {"healthy": False}})}
    )
    hook = WebhookNotifier("http://127.0.0.1:9/")
    assert not hook.wants(_event(p, OriginState.UNHEALTHY, False, True))  # origin-only: disabled
    assert hook.wants(_event(p, OriginState.UNHEALTHY, True, False))  # pool became unhealthy
    assert not hook.wants(_event(p, OriginState.HEALTHY, True, True))  # pool healthy: filtered
    plain = _pool(monitor="m")
    origin_down = _event(plain, OriginState.UNHEALTHY, False, True)
    assert not WebhookNotifier("u", event_source=["pool"]).wants(origin_down)
    assert WebhookNotifier("u", new_health=["Unhealthy"]).wants(origin_down)
    assert not WebhookNotifier("u", new_health=["Healthy"]).wants(origin_down)
    assert not WebhookNotifier("u", pool_ids=["other"]).wants(origin_down)
    assert WebhookNotifier("u", pool_ids=["p"]).wants(origin_down)
