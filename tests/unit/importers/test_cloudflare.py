"""``lbdns import-cloudflare`` (lbdns/importers/cloudflare.py).

Fixtures in tests/fixtures/cloudflare/ are the Cloudflare documentation examples from
shared/seeds, wrapped into list responses: monitors.json holds the "Create monitor" response
(003, its placeholder id ``:monitor-id`` replaced by the id the pool example refers to) plus a
TCP monitor as the API returns it (empty HTTP-only fields); pools.json the "Create pool"
response (003) plus the other pools the load balancer examples refer to; load_balancers.json
the "Create load balancer" response and the "Load Balancer Details" response (003, given its
own id) and the region-steering example (003 › Geo, renamed geo.example.com); dns_records.json
a DNS records list in the API's shape.
"""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from lbdns.cli import main
from lbdns.config.validate import load_config
from lbdns.importers import ImportFailed
from lbdns.importers.cloudflare import (
    SoaOptions,
    convert,
    convert_dns_records,
    default_serial,
    load_export,
    parse_export,
    render_account,
    render_zone,
    slug,
    write_files,
)
from tests.integration.harness import Server, addresses

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cloudflare"
PRIMARY, SECONDARY, TERTIARY, EU = ("17b5962d775c646f3f9725cbc7a53df4", "9290f38c5d07c2e2f4df57b1f61d4196",
                                    "00920f38ce07c2e2f4df50b1f61d4194", "ff02c959d17f7bb2b1184a202e3c0af7")


def _load(name: str) -> list[dict[str, Any]]:
    return load_export(FIXTURES / f"{name}.json")


@pytest.fixture
def exports() -> dict[str, list[dict[str, Any]]]:
    return {n: _load(n) for n in ("monitors", "pools", "load_balancers", "dns_records")}


def _convert(exports: dict[str, list[dict[str, Any]]], **kw: Any) -> Any:
    kw.setdefault("zone", "example.com")
    return convert(exports["monitors"], exports["pools"], exports["load_balancers"], exports.get("dns_records"), **kw)


def _lb(result: Any, key: str) -> dict[str, Any]:
    lbs: dict[str, dict[str, Any]] = result.zone["load_balancers"]
    return lbs[key]


# ---------------------------------------------------------------------------------------------
# the seed examples end to end
# ---------------------------------------------------------------------------------------------

def test_seed_examples_pass_load_config(exports: dict[str, Any], tmp_path: Path) -> None:
    result = _convert(exports, ns=["ns1.example.com", "ns2.example.com."])
    write_files(result, tmp_path / "zones")
    loaded = load_config(tmp_path / "zones")
    cfg = loaded.config
    assert set(cfg.pools) == {"primary-dc-1", "secondary-dc", "tertiary-dc", "dc-eu"}
    assert set(cfg.monitors) == {"login-page-monitor", "m-0f7f1c5b"}
    assert cfg.pools["primary-dc-1"].monitor == "login-page-monitor"
    assert cfg.pools["secondary-dc"].monitor == "m-0f7f1c5b"
    assert cfg.pools["secondary-dc"].check_regions is None  # "All Data Centers"
    assert cfg.pools["tertiary-dc"].monitor is None
    (zone,) = cfg.zones
    lbs = {name.to_text(): lb for name, lb in zone.load_balancers.items()}
    assert set(lbs) == {"lb.example.com.", "www.example.com.", "geo.example.com."}
    lb = lbs["lb.example.com."]
    assert lb.proxied is False and lb.steering_policy == "random"
    assert lb.default_pools == ["primary-dc-1", "secondary-dc", "tertiary-dc"]
    assert lb.fallback_pool == "primary-dc-1"
    assert lb.random_steering.pool_weights == {"secondary-dc": 0.5} and lb.random_steering.default_weight == 0.2
    assert lb.session_affinity == "cookie"  # kept (ignored by lbdns, with a warning)
    www = lbs["www.example.com."]
    assert www.region_pools == {"ENAM": ["tertiary-dc"], "WNAM": ["secondary-dc"]}
    assert www.country_pools == {"US": ["tertiary-dc"]}
    assert www.pop_pools == {"LAX": ["secondary-dc"], "SJC": ["tertiary-dc"]}
    assert www.fallback_pool == "tertiary-dc"  # 'fallback_pool' is no known id: lbdns' default applies
    (rule,) = www.rules
    assert rule.overrides.default_pools == ["primary-dc-1", "secondary-dc", "tertiary-dc"]
    assert rule.overrides.region_pools == {"ENAM": ["tertiary-dc"], "WNAM": ["secondary-dc"]}
    assert rule.overrides.random_steering is not None
    assert rule.overrides.random_steering.pool_weights == {"secondary-dc": 0.5}
    assert rule.disabled and rule.terminates
    geo = lbs["geo.example.com."]
    assert geo.region_pools["EEU"] == ["dc-eu", "primary-dc-1"] and geo.fallback_pool == "dc-eu"
    codes = {w.code for w in cfg.warnings}
    assert "W-SA" in codes and "W-PROXIED-FIELD" in codes


def test_server_answers_from_the_imported_config(exports: dict[str, Any], tmp_path: Path) -> None:
    result = _convert(exports, ns=["ns1.example.com"])
    zones = tmp_path / "zones"
    write_files(result, zones)
    srv = Server(zones, tmp_path, geoip=False)
    try:
        # geo: ENAM (PoP IAD) → [primary-dc-1 (disabled), dc-eu]
        r = srv.query("geo.example.com", pop="IAD")
        assert addresses(r) == {"203.0.113.30"} and r.answer[0].ttl == 30
        r = srv.query("example.com", "MX")
        assert {rd.to_text() for rd in r.answer[0]} == {"10 mx1.example.com.", "20 mx2.example.com."}
        r = srv.query("_dmarc.example.com", "TXT")
        assert r.answer[0].ttl == 300  # Cloudflare "automatic"
    finally:
        srv.stop()


def test_ids_are_kept_as_comments(exports: dict[str, Any]) -> None:
    result = _convert(exports)
    account = render_account(result, ["monitors.json"])
    assert "  # cloudflare pool id 17b5962d775c646f3f9725cbc7a53df4\n  - name: primary-dc-1\n" in account
    assert "  # cloudflare monitor id f1aba936b94213e5b8dca0c0dbf1f9cc\n  - id: login-page-monitor\n" in account
    zone = render_zone(result)
    assert "  # cloudflare load balancer id 699d98642c564d2e855e9661899b7252\n  lb:\n" in zone
    assert "created_on" not in account + zone and "modified_on" not in account + zone
    assert "zone_name" not in zone and "healthy: true" not in account
    assert "17b5962d" not in zone  # every pool reference is a name
    assert "YYYYMMDD" in zone and "synthesised" in zone


def test_proxied_becomes_dns_only_with_warnings(exports: dict[str, Any]) -> None:
    result = _convert(exports)
    w = "\n".join(result.warnings)
    assert all(lb["proxied"] is False for lb in result.zone["load_balancers"].values())
    assert "load balancer lb.example.com: proxied: true imported as proxied: false" in w
    assert "session_affinity 'cookie': session affinity needs an HTTP proxy" in w and "'hash'" in w
    assert "drain_duration: endpoint drain is proxied-only" in w and "weight to 0" in w
    assert "adaptive_routing.failover_across_pools" in w and "health monitors only" in w
    assert "pool tertiary-dc: origin_steering least_outstanding_requests" in w and "weighted random" in w
    assert "load_shedding.session_percent" in w
    assert "rules[0]: fixed_response cannot be sent in DNS" in w
    assert "rules[0].condition: column 1: field 'http.request.uri.path' is only available to proxied" in w
    assert "steering_policy 'random_steering' is not a policy name: imported as 'random'" in w
    assert "www.example.com: fallback_pool: unknown pool 'fallback_pool'" in w
    assert "proxied DNS records are served DNS-only" in w and "example.com. A" in w
    assert not any("created_on" in x or "modified_on" in x for x in result.warnings)


def test_least_outstanding_requests_lb(exports: dict[str, Any]) -> None:
    lbs = copy.deepcopy(exports["load_balancers"][:1])
    lbs[0]["steering_policy"] = "least_outstanding_requests"
    result = convert(exports["monitors"], exports["pools"], lbs, zone="example.com")
    assert _lb(result, "lb")["steering_policy"] == "least_outstanding_requests"
    assert any("steering_policy least_outstanding_requests has no request or connection counts" in w
               for w in result.warnings)


# ---------------------------------------------------------------------------------------------
# input shapes
# ---------------------------------------------------------------------------------------------

def test_envelope_bare_array_and_single_object(tmp_path: Path) -> None:
    obj = {"id": "x", "name": "p"}
    assert parse_export({"success": True, "errors": [], "result": [obj]}, "t") == [obj]
    assert parse_export([obj], "t") == [obj]
    assert parse_export(obj, "t") == [obj]
    assert parse_export({"success": True, "result": obj}, "t") == [obj]
    assert parse_export({"success": True, "result": None}, "t") == []
    with pytest.raises(ImportFailed, match="reports failure: Authentication error"):
        parse_export({"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}, "t")
    with pytest.raises(ImportFailed, match="expected a JSON object"):
        parse_export([1, 2], "t")
    bare = tmp_path / "pools.json"
    bare.write_text(json.dumps(json.loads((FIXTURES / "pools.json").read_text())["result"]))
    assert [p["name"] for p in load_export(bare)] == ["primary-dc-1", "secondary-dc", "tertiary-dc", "dc-eu"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"result": [\n  {"id": }\n]}')
    with pytest.raises(ImportFailed, match=r"bad.json:2:\d+: invalid JSON"):
        load_export(bad)
    with pytest.raises(ImportFailed, match="cannot read"):
        load_export(tmp_path / "missing.json")


def test_single_objects_import(exports: dict[str, Any]) -> None:
    mon = exports["monitors"][0]
    pool = {**exports["pools"][1], "monitor": mon["id"]}
    lb = {"id": "1", "name": "example.com", "default_pools": [SECONDARY]}
    result = convert(parse_export(mon, "m"), parse_export(pool, "p"), parse_export(lb, "l"), zone="example.com")
    assert list(result.zone["load_balancers"]) == ["@"]  # the apex
    assert result.pools[0]["monitor"] == "login-page-monitor"


# ---------------------------------------------------------------------------------------------
# naming and references
# ---------------------------------------------------------------------------------------------

def test_monitor_names() -> None:
    mons = [{"id": "aaaaaaaa11111111", "description": "Login page monitor", "type": "http"},
            {"id": "bbbbbbbb22222222", "description": "Login page monitor!", "type": "http"},
            {"id": "cccccccc33333333", "type": "http"},
            {"id": "dddddddd44444444", "description": "  ~~~ ", "type": "http"}]
    pools = [{"id": f"p{i}", "name": f"p{i}", "monitor": m["id"], "origins": [{"name": "o", "address": "192.0.2.1"}]}
             for i, m in enumerate(mons)]
    lbs = [{"name": "lb.example.com", "default_pools": ["p0", "p1", "p2", "p3"]}]
    result = convert(mons, pools, lbs, zone="example.com")
    assert [m["id"] for m in result.monitors] == ["login-page-monitor", "login-page-monitor-2", "m-cccccccc",
                                                  "m-dddddddd"]
    assert [p["monitor"] for p in result.pools] == [m["id"] for m in result.monitors]
    assert slug("Ünïcode & HTTPS  check") == "n-code-https-check"


def test_duplicate_pool_names_and_names_as_references() -> None:
    origins = [{"name": "o", "address": "192.0.2.1"}]
    pools = [{"id": "a1", "name": "web", "origins": origins}, {"id": "b2", "name": "web", "origins": origins}]
    lbs = [{"name": "lb.example.com", "default_pools": ["a1", "b2"], "fallback_pool": "web"}]
    result = convert([], pools, lbs, zone="example.com")
    assert [p["name"] for p in result.pools] == ["web", "web-2"]
    assert _lb(result, "lb")["default_pools"] == ["web", "web-2"]
    assert _lb(result, "lb")["fallback_pool"] == "web"  # already a name
    assert any("name 'web' is used twice: imported as 'web-2'" in w for w in result.warnings)


def test_unknown_references_and_fields(exports: dict[str, Any]) -> None:
    mons = copy.deepcopy(exports["monitors"])
    mons[0]["surprise"] = 1
    pools = copy.deepcopy(exports["pools"])
    pools[3]["monitor"] = "0000000000000000"
    pools[3]["monitor_group"] = "g1"
    pools[3]["origins"][0]["weight"] = 0.333
    result = convert(mons, pools, exports["load_balancers"], zone="example.com")
    w = "\n".join(result.warnings)
    assert "monitor login-page-monitor: field 'surprise' is not used by lbdns: dropped" in w
    assert "pool dc-eu: monitor '0000000000000000' is not in the monitors export" in w
    assert "pool dc-eu: monitor_group 'g1' cannot be imported" in w
    assert "pool dc-eu: origins[0]: weight 0.333 rounded to 0.33" in w
    eu = result.pools[3]
    assert "monitor" not in eu and "monitor_group" not in eu and eu["origins"][0]["weight"] == 0.33


def test_rules_that_do_not_compile_are_dropped(exports: dict[str, Any], tmp_path: Path) -> None:
    lbs = [{"name": "lb.example.com", "default_pools": [SECONDARY, TERTIARY], "rules": [
        {"name": "bad", "condition": "no.such.field == 1", "overrides": {"default_pools": [TERTIARY]}},
        {"name": "good", "condition": "dns.qry.type eq 1", "priority": 1,
         "overrides": {"default_pools": [TERTIARY], "fallback_pool": SECONDARY, "ttl": 60}}]}]
    pools = copy.deepcopy(exports["pools"])
    pools[1]["origins"][0]["port"] = 0
    result = convert(exports["monitors"], pools, lbs, zone="example.com")
    (rule,) = _lb(result, "lb")["rules"]
    assert rule["name"] == "good"
    assert rule["overrides"] == {"default_pools": ["tertiary-dc"], "fallback_pool": "secondary-dc", "ttl": 60}
    assert any("rules[0]: condition 'no.such.field == 1' is not valid in lbdns" in w and "rule dropped" in w
               for w in result.warnings)
    assert "port" not in result.pools[1]["origins"][0]
    write_files(result, tmp_path)
    load_config(tmp_path)


def test_load_balancer_without_known_pools_fails(exports: dict[str, Any]) -> None:
    lbs = [{"name": "lb.example.com", "default_pools": ["nope"]}]
    with pytest.raises(ImportFailed, match="none of its default_pools is in the pools export"):
        convert(exports["monitors"], exports["pools"], lbs, zone="example.com")


def test_load_balancers_outside_the_zone_are_skipped(exports: dict[str, Any]) -> None:
    lbs = copy.deepcopy(exports["load_balancers"])
    lbs[0]["name"] = "lb.example.net"
    lbs[2]["zone_name"] = "other.com"
    result = convert(exports["monitors"], exports["pools"], lbs, zone="example.com")
    assert list(result.zone["load_balancers"]) == ["www"]
    assert "load balancer lb.example.net: not in zone example.com: skipped" in result.warnings


def test_non_http_monitor_drops_http_fields() -> None:
    mons = [{"id": "t1", "type": "tcp", "method": "GET", "path": "/x", "header": {"Host": ["a"]},
             "expected_codes": "", "port": 443},
            {"id": "s1", "type": "smtp", "method": "", "port": 25, "follow_redirects": False},
            {"id": "h1", "type": "http", "method": "", "expected_codes": "", "header": {}}]
    result = convert(mons, [], [], zone="example.com")
    assert result.monitors == [{"id": "m-t1", "type": "tcp", "port": 443}, {"id": "m-s1", "type": "smtp", "port": 25},
                               {"id": "m-h1", "type": "http"}]
    w = "\n".join(result.warnings)
    assert "path applies to http/https monitors only" in w and "header applies to http/https" in w
    assert "method 'GET' does not apply to a tcp monitor" in w
    assert "follow_redirects" not in w and "expected_codes" not in w


def test_origin_host_header_outside_served_zones_is_dropped() -> None:
    pools = [{"id": "p", "name": "p", "origins": [
        {"name": "a", "address": "192.0.2.1", "header": {"Host": ["app.example.com"]}},
        {"name": "b", "address": "b.example.net", "header": {"Host": ["b.example.net"]}},
        {"name": "c", "address": "192.0.2.3", "header": {"Host": ["elsewhere.example.org"]}}]}]
    result = convert([], pools, [], zone="example.com")
    hosts = [o.get("header") for o in result.pools[0]["origins"]]
    assert hosts == [{"Host": ["app.example.com"]}, {"Host": ["b.example.net"]}, None]
    assert any("Host header 'elsewhere.example.org' dropped" in w for w in result.warnings)


# ---------------------------------------------------------------------------------------------
# zone apex, SOA and DNS records
# ---------------------------------------------------------------------------------------------

def test_soa_synthesis_defaults_and_overrides(exports: dict[str, Any]) -> None:
    result = convert(exports["monitors"], exports["pools"], exports["load_balancers"], zone="Example.COM.")
    z = result.zone
    assert z["zone"] == "example.com"
    assert z["ns"] == {"ttl": 3600, "values": ["ns1.example.com.", "ns2.example.com."]}
    assert any("no name servers given" in w and "--ns" in w for w in result.warnings)
    assert z["soa"] == {"mname": "ns1.example.com.", "rname": "hostmaster.example.com.",
                        "serial": default_serial(), "refresh": 7200, "retry": 3600, "expire": 1209600,
                        "minimum": 300, "ttl": 3600}
    assert default_serial(datetime.date(2026, 3, 4)) == 2026030401
    soa = SoaOptions(mname="a.example.net", rname="dns.example.net.", serial=7, refresh=1, retry=2, expire=3,
                     minimum=4, ttl=5)
    result = convert(exports["monitors"], exports["pools"], exports["load_balancers"], zone="example.com",
                     ns=["x.example.net"], soa=soa)
    assert result.zone["soa"] == {"mname": "a.example.net.", "rname": "dns.example.net.", "serial": 7, "refresh": 1,
                                  "retry": 2, "expire": 3, "minimum": 4, "ttl": 5}
    assert result.zone["ns"]["values"] == ["x.example.net."]


def test_dns_records(exports: dict[str, Any]) -> None:
    result = _convert(exports, ns=["ns1.example.com"])
    rec = result.zone["records"]
    apex = {e["type"]: e for e in rec["@"]}
    assert apex["A"] == {"type": "A", "ttl": 300, "value": "192.0.2.1"}
    assert apex["MX"]["values"] == [{"preference": 10, "exchange": "mx1.example.com."},
                                    {"preference": 20, "exchange": "mx2.example.com."}]
    assert apex["TXT"]["value"] == "v=spf1 mx -all"
    assert apex["CAA"]["value"] == '0 issue "letsencrypt.org"'
    assert apex["HTTPS"] == {"type": "HTTPS", "ttl": 300, "value": '1 . alpn="h2"'}
    assert rec["_sip._udp"]["value"] == {"priority": 10, "weight": 60, "port": 5060, "target": "sip.example.com."}
    assert rec["lab"] == {"type": "NS", "ttl": 3600, "value": "ns1.lab.example.com."}
    assert rec["docs"] == {"type": "CNAME", "ttl": 120, "value": "docs.example.net."}
    assert rec["office"] == {"type": "LOC", "ttl": 3600,
                             "value": "51 30 12.748 N 0 7 39.611 W 0.00m 0.00m 0.00m 0.00m"}
    assert "unsupported" not in "\n".join(result.warnings)


NEW_TYPES = [
    # (Cloudflare API record, rdata text the import must produce), data form and content form
    ({"type": "HTTPS", "content": "ignored", "data": {"priority": 1, "target": ".", "value": 'alpn="h2,h3" port=443'}},
     '1 . alpn="h2,h3" port=443'),
    ({"type": "SVCB", "content": '2 svc.example.com. alpn="h2"'}, '2 svc.example.com. alpn="h2"'),
    ({"type": "TLSA", "data": {"usage": 3, "selector": 1, "matching_type": 1, "certificate": "ab" * 32}},
     "3 1 1 " + "ab" * 32),
    ({"type": "SSHFP", "data": {"algorithm": 4, "type": 2, "fingerprint": "cd" * 32}}, "4 2 " + "cd" * 32),
    ({"type": "NAPTR", "data": {"order": 100, "preference": 10, "flags": "S", "service": "SIP+D2U", "regex": "",
                                "replacement": "_sip._udp.example.com"}},
     '100 10 "S" "SIP+D2U" "" _sip._udp.example.com.'),
    ({"type": "DS", "data": {"key_tag": 2371, "algorithm": 13, "digest_type": 2, "digest": "1F" * 32}},
     "2371 13 2 " + "1f" * 32),
    ({"type": "LOC", "data": {"lat_degrees": 37, "lat_minutes": 46, "lat_seconds": 46, "lat_direction": "N",
                              "long_degrees": 122, "long_minutes": 23, "long_seconds": 35, "long_direction": "W",
                              "altitude": 0, "size": 100, "precision_horz": 0, "precision_vert": 0}},
     "37 46 46.000 N 122 23 35.000 W 0.00m 100.00m 0.00m 0.00m"),
    ({"type": "URI", "priority": 10, "data": {"weight": 20, "target": "https://example.com/a"}},
     '10 20 "https://example.com/a"'),
    ({"type": "URI", "priority": 10, "content": '20 "https://example.com/b"'}, '10 20 "https://example.com/b"'),
    ({"type": "HINFO", "content": '"PC" "Linux"'}, '"PC" "Linux"'),
    ({"type": "DNAME", "content": "example.net"}, "example.net."),
]


@pytest.mark.parametrize("record,text", NEW_TYPES)
def test_new_record_types_imported(record: dict[str, Any], text: str) -> None:
    import dns.name
    import dns.rdata

    zone = dns.name.from_text("example.com.")
    warnings: list[str] = []
    owner = "x" if record["type"] != "DS" else "lab"
    recs = [{"name": f"{owner}.example.com", "ttl": 600, **record}]
    if record["type"] == "DS":
        recs.append({"name": "lab.example.com", "type": "NS", "content": "ns1.example.net", "ttl": 600})
    records, _, _ = convert_dns_records(recs, zone, warnings)
    assert warnings == []
    entry = records[owner] if record["type"] != "DS" else records[owner][1]
    assert entry["type"] == record["type"] and entry["ttl"] == 600
    got = dns.rdata.from_text("IN", record["type"], entry["value"], origin=zone)
    assert got == dns.rdata.from_text("IN", record["type"], text, origin=zone)


def test_dns_record_edge_cases() -> None:
    import dns.name

    zone = dns.name.from_text("example.com.")
    warnings: list[str] = []
    recs = [
        {"name": "example.com", "type": "CNAME", "content": "target.example.net", "ttl": 1},
        {"name": "example.com", "type": "NS", "content": "ns1.example.net", "ttl": 86400},
        {"name": "example.com", "type": "NS", "content": "ns2.example.net", "ttl": 86400},
        {"name": "a.example.com", "type": "A", "content": "192.0.2.1", "ttl": 300},
        {"name": "a.example.com", "type": "A", "content": "192.0.2.2", "ttl": 120},
        {"name": "b.example.com", "type": "A", "content": "not-an-ip", "ttl": 300},
        {"name": "c.example.org", "type": "A", "content": "192.0.2.3", "ttl": 300},
        {"name": "srv.example.com", "type": "SRV", "content": "5 5060 sip.example.com", "priority": 1, "ttl": 60},
        {"name": "t.example.com", "type": "TXT", "content": "x" * 300, "ttl": 60},
        {"name": "caa.example.com", "type": "CAA", "content": '0 issuewild ";"', "ttl": 60},
    ]
    records, ns, ns_ttl = convert_dns_records(recs, zone, warnings)
    assert ns == ["ns1.example.net.", "ns2.example.net."] and ns_ttl == 86400
    assert "@" not in records
    assert records["a"] == {"type": "A", "ttl": 120, "values": ["192.0.2.1", "192.0.2.2"]}
    assert "b" not in records and "c" not in records
    assert records["srv"]["value"] == {"priority": 1, "weight": 5, "port": 5060, "target": "sip.example.com."}
    assert records["t"]["value"] == '"' + "x" * 255 + '" "' + "x" * 45 + '"'
    assert records["caa"]["value"] == '0 issuewild ";"'
    w = "\n".join(warnings)
    assert "a CNAME at the zone apex" in w
    assert "TTL 120 differs from the other records of the RRset: using 120" in w
    assert "dns record b.example.com A: content 'not-an-ip' cannot be parsed" in w
    assert "outside the zone example.com." in w


def test_apex_ns_from_dns_records_used_without_ns_flag(exports: dict[str, Any]) -> None:
    records = [*exports["dns_records"],
               {"name": "example.com", "type": "NS", "content": "ns.example.net", "ttl": 7200}]
    result = convert(exports["monitors"], exports["pools"], exports["load_balancers"], records, zone="example.com")
    assert result.zone["ns"] == {"ttl": 7200, "values": ["ns.example.net."]}
    assert result.zone["soa"]["mname"] == "ns.example.net."


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------

def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "zones"
    argv = ["import-cloudflare", "--monitors", str(FIXTURES / "monitors.json"), "--pools", str(FIXTURES / "pools.json"),
            "--load-balancers", str(FIXTURES / "load_balancers.json"), "--dns-records",
            str(FIXTURES / "dns_records.json"), "--zone", "example.com", "--out", str(out), "--ns", "ns1.example.com",
            "--soa-serial", "42", "--soa-rname", "dns.example.com"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("lbdns import-cloudflare: warning: load balancer lb.example.com: proxied: true imported as "
            "proxied: false") in err
    assert "check: ok" in err
    assert sorted(p.name for p in out.iterdir()) == ["_account.yaml", "example.com.yaml"]
    zone_text = (out / "example.com.yaml").read_text()
    assert "serial: 42" in zone_text and "rname: dns.example.com." in zone_text
    assert main(["check", str(out)]) == 0
    assert main(argv) == 2  # files exist
    assert "exists (use --force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    bad = [*argv[:-4], "--force"]
    lbs = tmp_path / "lbs.json"
    lbs.write_text(json.dumps({"name": "x.example.com", "default_pools": ["unknown-id"]}))
    bad[bad.index("--load-balancers") + 1] = str(lbs)
    assert main(bad) == 2
    assert "none of its default_pools" in capsys.readouterr().err
