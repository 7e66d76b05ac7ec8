"""``lbdns check``: exact located error text for broken zone files (issue #2 "Must show"),
and SPEC-EXAMPLES EX-47 (every §12 code on the base fixture)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from lbdns.cli import main
from lbdns.config.settings import ServerSettings
from lbdns.config.validate import load_config
from lbdns.errors import ConfigError
from lbdns.geo.data import default_regions
from lbdns.geo.regions import RegionMap
from tests.integration.harness import Fixture

BROKEN = textwrap.dedent("""\
    zone: example.org
    soa: {mname: ns1.example.org., rname: hostmaster.example.org., serial: 1}
    ns: [ns1.example.org.]
    records:
      www: {type: A, ttl: 300, value: 192.0.2.300}
      mail: {type: AAAA, ttl: -5, value: "2001:db8::1"}
      alias:
        - {type: CNAME, ttl: 300, value: www.example.org.}
        - {type: TXT, ttl: 300, value: hello}
      out.example.net.: {type: A, ttl: 300, value: 192.0.2.1}
      x: {type: A, tll: 300, value: 192.0.2.1}
      y: {type: BOGUS, ttl: 300, value: abc}
    load_balancers:
      lb:
        default_pools: [p1, nope]
        fallback_pool: p1
        steering_policy: random_steering
        regions_pool: {WEU: [p1]}
        region_pools: {US: [p1]}
        ttl: 0
    pools:
      - name: p1
        origins:
          - {name: a, address: 192.0.2.10, weight: 1.5}
          - {name: b, address: not_an_ip!}
    """)

EXPECTED = [
    "zones/bad.yaml:5:35: records.www.value: E-RECORD: invalid A value '192.0.2.300': "
    "Octet 300 (> 255) not permitted in '192.0.2.300' (an IPv4 address)",
    "zones/bad.yaml:6:27: records.mail.ttl: E-TTL: Input should be greater than or equal to 0 (got -5)",
    "zones/bad.yaml:7:3: records.alias: E-CNAME: CNAME cannot coexist with other data at alias.example.org. "
    "(found TXT)",
    "zones/bad.yaml:10:3: records[\"out.example.net.\"]: E-NAME: owner out.example.net. is outside the zone "
    "example.org. (names relative to the apex, '' for the apex, or absolute names ending in the zone)",
    "zones/bad.yaml:11:21: records.x.tll: E-FIELD: unknown field 'tll' (did you mean 'ttl'?)",
    "zones/bad.yaml:12:13: records.y.type: E-RECORD: unsupported record type 'BOGUS' "
    "(allowed: A, AAAA, CAA, CNAME, DNAME, DS, HINFO, HTTPS, LOC, MX, NAPTR, NS, PTR, SRV, SSHFP, SVCB, TLSA, TXT, "
    "URI)",
    "zones/bad.yaml:15:25: load_balancers.lb.default_pools[1]: E-REF: unknown pool 'nope'",
    "zones/bad.yaml:17:22: load_balancers.lb.steering_policy: E-STEERING: unknown steering_policy "
    "'random_steering' (did you mean 'random'?) (allowed: 'off', 'geo', 'random', 'dynamic_latency', "
    "'proximity', 'least_outstanding_requests', 'least_connections', '')",
    "zones/bad.yaml:18:5: load_balancers.lb.regions_pool: E-FIELD: unknown field 'regions_pool' "
    "(did you mean 'region_pools'?)",
    "zones/bad.yaml:19:20: load_balancers.lb.region_pools.US: E-REGION: unknown region 'US' "
    "(use country_pools for countries) (allowed: EEU, ENAM, ME, NAF, NEAS, NSAM, OC, SAF, SAS, SEAS, SSAM, WEU, WNAM)",
    "zones/bad.yaml:20:10: load_balancers.lb.ttl: E-TTL: ttl 0 is out of range (integer 1–86400 seconds)",
    "zones/bad.yaml:24:48: pools[0].origins[0].weight: E-WEIGHT: weight 1.5 is invalid (0.00–1.00 in steps of 0.01)",
    "zones/bad.yaml:25:28: pools[0].origins[1].address: E-ADDRESS: address 'not_an_ip!' is neither an IP address "
    "nor a valid hostname (IPv4, IPv6 or a fully qualified hostname)",
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    zones = tmp_path / "zones"
    zones.mkdir(exist_ok=True)
    (zones / name).write_text(text)
    return zones


def test_check_reports_every_error_with_file_line_column(tmp_path, capsys, monkeypatch):
    write(tmp_path, "bad.yaml", BROKEN)
    monkeypatch.chdir(tmp_path)  # file names are printed as the directory was given
    assert main(["check", "zones"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:-1] == EXPECTED
    assert err[-1] == f"{len(EXPECTED)} error(s), 0 warning(s)"


def test_check_unreadable_yaml_located(tmp_path, capsys):
    zones = write(tmp_path, "broken.yaml", "zone: example.com\nsoa: {mname: ns1, rname: hostmaster\n")
    assert main(["check", str(zones)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{zones}/broken.yaml:3:1: E-YAML: invalid YAML: did not find expected ',' or '}}'"


def test_check_missing_soa_duplicate_zone_and_key(tmp_path, capsys):
    write(tmp_path, "a.yaml", "zone: example.org\nns: [ns1.example.org.]\n")
    zones = write(tmp_path, "b.yaml", textwrap.dedent("""\
        zone: example.org
        soa: {mname: ns1.example.org., rname: h.example.org.}
        soa: {mname: ns1.example.org., rname: h.example.org.}
        ns: [ns1.example.org.]
        """))
    assert main(["check", "--zones", str(zones)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert f"{zones}/a.yaml:1:7: zone: E-ZONE: missing SOA (add an 'soa:' mapping with mname and rname)" in err
    assert f"{zones}/b.yaml:3:1: soa: E-YAML: duplicate key 'soa'" in err
    assert f"{zones}/b.yaml:1:7: zone: E-ZONE: duplicate zone example.org. (also in {zones}/a.yaml)" in err


def test_check_clean_exits_zero(capsys):
    assert main(["check", "zones"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 3 zone(s), 5 load balancer(s)")


# --- EX-47: errors and warnings on the base fixture ----------------------------------------

def load(tmp_path: Path, fx: Fixture, **settings):
    zones = fx.write(tmp_path)
    return load_config(zones, ServerSettings(**settings))


def codes_of(tmp_path, fx, **settings) -> tuple[set[str], list[str]]:
    try:
        loaded = load(tmp_path, fx, **settings)
    except ConfigError as exc:
        return {i.code for i in exc.issues if i.is_error}, [str(i) for i in exc.issues]
    return set(), [str(w) for w in loaded.config.warnings]


def mod_lb(**kw):
    def f(fx: Fixture) -> None:
        fx.lb.update(kw)
    return f


def mod_pool(pool, **kw):
    def f(fx: Fixture) -> None:
        fx.pool(pool).update(kw)
    return f


def mod_monitor(**kw):
    def f(fx: Fixture) -> None:
        fx.account["monitors"].append({"id": "m-new", **kw})
    return f


def mod_rule(**rule):
    def f(fx: Fixture) -> None:
        fx.lb["rules"] = [rule]
    return f


def mod_origin(**kw):
    def f(fx: Fixture) -> None:
        fx.origin("p-us-east", "e1").update(kw)
    return f


def mod_group(fx: Fixture) -> None:
    fx.account["monitor_groups"] = [{"id": "g1", "members": [{"monitor_id": "m-http"}]}]
    fx.pool("p-us-east")["monitor_group"] = "g1"


ERRORS = [
    (mod_lb(proxied=True), "E-PROXIED", "proxied load balancers are not supported"),
    (mod_lb(steering_policy="random_steering"), "E-STEERING", "did you mean 'random'?"),
    (mod_lb(region_pools={"US": ["p-us-east"]}), "E-REGION", "use country_pools"),
    (mod_lb(regions_pool={"WEU": ["p-eu"]}), "E-FIELD", "did you mean 'region_pools'?"),
    (mod_origin(weight=1.5), "E-WEIGHT", "weight 1.5"),
    (mod_lb(default_pools=["p-nope"]), "E-REF", "unknown pool 'p-nope'"),
    (mod_lb(default_pools=[]), "E-POOLS", "must not be empty"),
    (mod_group, "E-MON-BOTH", "either a monitor or a monitor_group"),
    (mod_monitor(type="tcp"), "E-MON", "a tcp monitor needs a port"),
    (mod_monitor(type="ldap"), "E-MON", "LDAP monitors are not supported"),
    (mod_monitor(expected_codes="2x"), "E-MON", "expected_codes"),
    (mod_monitor(interval=5), "E-MON", "interval 5 s is out of range (10–3600 s"),
    (mod_rule(condition="ip.src in $office"), "E-RULE-EXPR", "IP lists"),
    (mod_origin(header={"Host": ["evil.invalid"]}), "E-VALIDATION", "evil.invalid"),
    (mod_lb(country_pools={"XX": ["p-eu"]}), "E-COUNTRY", "'XX' is not an ISO-3166-1 alpha-2"),
    (mod_lb(pop_pools={"lhr1": ["p-eu"]}), "E-POP", "'lhr1' is not a PoP code"),
    (mod_lb(ttl=0), "E-TTL", "ttl 0 is out of range"),
    (mod_pool("p-us-east", minimum_origins=0), "E-THRESH", "minimum_origins must be at least 1"),
    (mod_pool("p-fallback", latitude=10), "E-COORD", "both latitude and longitude"),
    (mod_pool("p-us-east", load_shedding={"default_percent": 150}), "E-SHED", "less than or equal to 100"),
    (mod_lb(session_affinity="sticky"), "E-SA", "unknown session_affinity 'sticky'"),
    (mod_pool("p-us-east", persistence_key="resolver_net"), "E-PERSIST",
     "pools[0].persistence_key: E-PERSIST: Input should be 'resolver_ip', 'resolver_network' or 'ecs'"),
    (mod_origin(header={"X-Other": ["a"]}), "E-HEADER", "unknown field 'X-Other'"),
]


@pytest.mark.parametrize(("modify", "code", "text"), ERRORS, ids=[e[1] + "-" + str(i) for i, e in enumerate(ERRORS)])
def test_ex47_errors(tmp_path, fx, modify, code, text):
    modify(fx)
    codes, lines = codes_of(tmp_path, fx)
    assert code in codes, lines
    assert any(code in ln and text in ln for ln in lines), lines


def test_ex47_duplicate_pool_and_origin(tmp_path, fx):
    fx.account["pools"].append(dict(fx.pool("p-eu")))
    fx.pool("p-us-west")["origins"].append({"name": "w1", "address": "192.0.2.20"})
    codes, lines = codes_of(tmp_path, fx)
    assert codes == {"E-DUP"}
    assert sum("E-DUP" in ln for ln in lines) == 3  # pool name, origin name, origin address


WARNINGS = [
    (mod_rule(condition='http.request.uri.path contains "/x"'), "W-PROXIED-FIELD"),
    (mod_rule(condition="", fixed_response={"status_code": 503}, overrides={"ttl": 10}), "W-FIXED-RESPONSE"),
    (mod_lb(session_affinity="cookie"), "W-SA"),
    (mod_pool("p-us-east", minimum_origins=3), "W-THRESH"),
    (mod_lb(fallback_pool=None), "W-FALLBACK-DEFAULT"),
    (mod_monitor(header={"User-Agent": ["x"]}), "W-UA"),
    (mod_lb(steering_policy="least_connections"), "W-LOR-DNS"),
    (mod_lb(steering_policy="proximity", default_pools=["p-us-east", "p-fallback"]), "W-NOCOORD"),
    (mod_lb(steering_policy="geo", region_pools={"WEU": ["p-eu"]}, rules=[{"condition": ""}]), "W-RULES-GEO"),
    (mod_lb(steering_policy="off", region_pools={"WEU": ["p-eu"]}), "W-UNUSED"),
    (mod_monitor(timeout=10, retries=5, interval=30), "W-INTERVAL-TIMEOUT"),
    (mod_pool("p-us-east", persistence_key="ecs"), "W-PERSIST"),
]


@pytest.mark.parametrize(("modify", "code"), WARNINGS, ids=[w[1] for w in WARNINGS])
def test_ex47_warnings_load(tmp_path, fx, modify, code):
    modify(fx)
    if fx.lb.get("fallback_pool", "") is None:
        del fx.lb["fallback_pool"]
    loaded = load(tmp_path, fx)
    assert code in {w.code for w in loaded.config.warnings}


def test_ex47_fallback_default_is_last_default_pool(tmp_path, fx):
    del fx.lb["fallback_pool"]
    loaded = load(tmp_path, fx)
    lb = next(iter(loaded.config.zones[0].load_balancers.values()))
    assert lb.fallback_pool == "p-eu"


def test_ex47_plan_non_enterprise_quota_and_plan_both_reported(tmp_path, fx):
    fx.lb["rules"] = [{"condition": ""}, {"condition": ""}]
    codes, lines = codes_of(tmp_path, fx, plan="non_enterprise")
    assert {"E-QUOTA", "E-PLAN"} <= codes
    assert any("E-PLAN" in ln and "smtp" in ln for ln in lines)


def test_proxied_allowed_as_dns_only_with_warning(tmp_path, fx):
    fx.lb["proxied"] = True
    loaded = load(tmp_path, fx, allow_proxied_as_dns_only=True)
    assert "W-PROXIED" in {w.code for w in loaded.config.warnings}


def test_settings_file_errors_are_located(tmp_path):
    from lbdns.config.read_settings import load_settings

    p = tmp_path / "lbdns.yaml"
    p.write_text(yaml.safe_dump({"listen": [{"address": "127.0.0.1", "port": 99999}], "popp": "IAD"}))
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    text = str(exc.value)
    assert "lbdns.yaml:3:9: listen[0].port: E-SETTINGS" in text
    assert "lbdns.yaml:4:7: popp: E-SETTINGS: Extra inputs are not permitted" in text


@pytest.mark.parametrize(("address", "setup"), [
    ("lb.example.com", None),  # the LB's own name
    ("www.example.com", {"www": {"type": "CNAME", "value": "lb.example.com."}}),  # through a CNAME
    ("any.wild.example.com", "wildcard"),  # through a wildcard LB that uses the pool
    ("lb.example.com", "rule-only"),  # the pool is used by the LB only through a rule override
])
def test_origin_hostname_leading_back_to_its_load_balancer(tmp_path, address, setup):
    """E-HOST-LOOP at the origin's address when its hostname leads back to a load balancer that
    uses its pool (docs/steering.md › Hostname origins); a pool beside it with a static in-zone
    name and a name outside the served zones is not reported."""
    fx = Fixture()
    fx.account["pools"].append({"name": "p-h", "origins": [{"name": "h", "address": address}]})
    fx.account["pools"].append({"name": "p-ok", "origins": [{"name": "s", "address": "ns1.example.com"},
                                                            {"name": "o", "address": "other.example.net"}]})
    fx.lb["default_pools"] = ["p-ok", *fx.lb["default_pools"]]
    if setup == "wildcard":
        fx.zone["load_balancers"]["*.wild"] = {"default_pools": ["p-h"], "fallback_pool": "p-fallback"}
    elif setup == "rule-only":
        fx.lb["rules"] = [{"name": "r", "condition": "true", "overrides": {"default_pools": ["p-h"]}}]
    else:
        fx.lb["default_pools"] = ["p-h", *fx.lb["default_pools"]]
        if isinstance(setup, dict):
            fx.zone["records"].update(setup)
    _, lines = codes_of(tmp_path, fx)
    loops = [x for x in lines if "E-HOST-LOOP" in x]
    assert len(loops) == 1, lines
    assert "pools[7].origins[0].address: E-HOST-LOOP: origin address" in loops[0], loops[0]


def test_country_pools_keys_are_checked_against_the_region_table_passed_in(tmp_path, fx):
    # the region table is handed to load_config, not read behind a global: a table without DE
    # makes the same configuration invalid (E-COUNTRY), the shipped one accepts it
    fx.lb.update(country_pools={"DE": ["p-eu"]})
    zones = fx.write(tmp_path)
    assert load_config(zones, ServerSettings(), regions=default_regions()).config.zones
    only_fr = RegionMap.from_rows([{"code": "FR", "region": "WEU"}])
    with pytest.raises(ConfigError) as exc:
        load_config(zones, ServerSettings(), regions=only_fr)
    assert any(i.code == "E-COUNTRY" and "'DE' is not an ISO-3166-1 alpha-2" in str(i) for i in exc.value.issues)
