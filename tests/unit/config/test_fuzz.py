"""Mutation fuzzing of the configuration loaders: a malformed zone file or ``lbdns.yaml`` gives
located issues (``file:line:col: key.path: CODE: message``), never a traceback.

The corpus is the example ``zones/`` directory and a rich variant of the test fixture (every
steering policy, geo maps, rules, monitor groups). Each case mutates one file with a seeded
rng (a scalar replaced by another type, a huge integer, a bad address, a deleted or duplicated
key, a swapped reference, deep nesting, an alias, broken YAML…) and loads the directory.
"""

from __future__ import annotations

import copy
import functools
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbdns.config.read_settings import load_settings
from lbdns.config.settings import ServerSettings
from lbdns.config.validate import load_config
from lbdns.errors import ConfigError, Issue
from lbdns.snapshot import build_snapshot
from tests.fixtures.cli import run_cli
from tests.integration.harness import Fixture

ROOT = Path(__file__).resolve().parents[3]
SEED = 20261111
CASES = 300
SETTINGS_CASES = 200

LOCATED = re.compile(r"^[^\n:]+:[1-9]\d*:[1-9]\d*: (?:[^\n]+?: )?(?:warning: )?[EW]-[A-Z0-9-]+: \S[^\n]*$", re.S)
"""``file:line:col: [key.path: ][warning: ]CODE: message`` (the key path is empty for a whole file)."""

# Raw YAML spliced in place of a marker after dumping (a dumper would quote or refuse them).
RAW: tuple[str, ...] = (
    "1" + "0" * 4300,                       # 4,301 digits: over Python's int-to-str limit
    "-" + "9" * 5000,
    "9" * 4000,                             # under the limit, but its products are not
    "0x" + "f" * 4000,
    "2001-02-30",                           # a timestamp that is not a date
    "1e999", ".nan", "-.inf",
    "&rec [*rec]",                          # a recursive alias
    "&recm {<<: *recm}",
    "!!binary not-base64",
    "!!python/name:os.system",
    "[" * 300 + "]" * 300,                  # deep nesting
    "{a: " * 200 + "1" + "}" * 200,
    "&lol [x, x, x, x, x, x, x, x, x]",
    "'unterminated",
    "{a: 1, a: 2}",                         # duplicate key
    "? [1, 2]\n  : 3",                      # a collection as a key
    "*undefined_anchor",
    "\t- tab",
)

SCALARS: tuple[Any, ...] = (
    None, "", " ", ".", "@", "*", True, False, 0, -1, 1, 65536, 2**31, 2**32, 2**63, 2**64, -(2**63),
    0.5, 1.005, -0.0, float("inf"), float("-inf"), float("nan"),
    "999.1.1.1", "192.0.2.300", "::g", "2001:db8::1", "10.0.0.1", "not an ip!", "a" * 300, "ü-ñ.example",
    "example.com.", "-bad-.example.com", "x" * 64 + ".example.com", "2xx", "GET", "POST", "/health",
    "geo", "proximity", "random", "dynamic_latency", "off", "hash", "WNAM", "US", "LHR", "ALL_REGIONS",
    "ip.src in {0.0.0.0/1}", "ip.src in {", "http.request.method", "A", "AAAA", "CNAME", "SOA", "BOGUS",
)


def _zones_corpus() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "zones").glob("*.yaml"))}


def _rich_corpus() -> dict[str, str]:
    fx = Fixture()
    fx.account["monitor_groups"] = [{"id": "g1", "members": [{"monitor_id": "m-http"}, {"monitor_id": "m-smtp"}]}]
    fx.pool("p-asia")["monitor"] = None
    fx.pool("p-asia")["monitor_group"] = "g1"
    fx.pool("p-eu")["load_shedding"] = {"default_percent": 10, "default_policy": "hash"}
    fx.pool("p-eu")["origin_steering"] = {"policy": "hash"}
    fx.pool("p-mixed")["origins"][0]["header"] = {"Host": ["lb.example.com"]}
    fx.zone["records"]["www"] = [{"type": "A", "ttl": 300, "values": ["192.0.2.7", "192.0.2.8"]},
                                 {"type": "TXT", "ttl": 300, "value": "hello"}]
    fx.zone["records"]["mx"] = {"type": "MX", "value": {"preference": 10, "exchange": "mx.example.com."}}
    fx.zone["records"]["_s._tcp"] = {"type": "SRV", "value": "10 5 443 www.example.com."}
    fx.zone["records"]["sub"] = {"type": "NS", "values": ["ns1.sub.example.com."]}
    lbs = fx.zone["load_balancers"]
    lbs["prox"] = {"steering_policy": "proximity", "default_pools": ["p-us-east", "p-eu", "p-asia"],
                   "fallback_pool": "p-fallback", "location_strategy": {"prefer_ecs": "always", "mode": "pop"}}
    lbs["geo"] = {"steering_policy": "geo", "default_pools": ["p-us-east"], "fallback_pool": "p-fallback",
                  "region_pools": {"WNAM": ["p-us-west"], "WEU": ["p-eu"]},
                  "country_pools": {"JP": ["p-asia"]}, "pop_pools": {"LHR": ["p-eu"]}}
    lbs["dyn"] = {"steering_policy": "dynamic_latency", "default_pools": ["p-us-east", "p-eu"],
                  "fallback_pool": "p-fallback"}
    lbs["rand"] = {"steering_policy": "random", "default_pools": ["p-weighted", "p-mixed"],
                   "fallback_pool": "p-fallback", "random_steering": {"default_weight": 0.5,
                                                                      "pool_weights": {"p-mixed": 0.2}}}
    lbs["ruled"] = {"default_pools": ["p-us-east"], "fallback_pool": "p-fallback", "rules": [
        {"name": "r1", "condition": 'ip.src in {10.0.0.0/8} and dns.qry.type == 1',
         "overrides": {"default_pools": ["p-eu"], "steering_policy": "proximity", "ttl": 60,
                       "region_pools": {"WEU": ["p-eu"]}}},
        {"name": "r2", "condition": "", "terminates": True, "overrides": {"fallback_pool": "p-asia"}}]}
    dump = lambda d: yaml.safe_dump(d, sort_keys=False)  # noqa: E731
    return {"_account.yaml": dump(fx.account), "example.com.yaml": dump(fx.zone)}


CORPORA: dict[str, dict[str, str]] = {"zones": _zones_corpus(), "rich": _rich_corpus()}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a plain YAML value (the root excluded)."""
    out: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        data = data[k]
    return data


def _strings(data: Any) -> list[str]:
    return [v for p in _paths(data) if isinstance(v := _get(data, p), str)]


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _mutate(rng: random.Random, text: str) -> tuple[str, str]:
    """One random mutation of a YAML text; returns (new text, description)."""
    data = yaml.load(text, Loader=_Loader)
    paths = _paths(data)
    path = rng.choice(paths)
    parent, key = _get(data, path[:-1]), path[-1]
    op = rng.choice(("scalar", "scalar", "scalar", "raw", "raw", "collection", "delete", "swap", "swap",
                     "rename", "unknown", "text"))
    raw: str | None = None
    if op == "scalar":
        parent[key] = rng.choice(SCALARS)
    elif op == "raw":
        raw = rng.choice(RAW)
        parent[key] = "__RAW__"
    elif op == "collection":
        value = _get(data, path)
        parent[key] = rng.choice(([], {}, [value], {"x": value}, [value, value], [[[[value]]]], {"": None},
                                  {"id": value}))
    elif op == "delete":
        del parent[key]
    elif op == "swap":  # a reference (or any scalar) replaced by another string of the file
        parent[key] = rng.choice(_strings(data) or [""])
    elif op == "rename" and isinstance(parent, dict):
        parent[rng.choice(_strings(data) or ["k"])] = parent.pop(key)
    elif op == "unknown" and isinstance(parent, dict):
        parent[rng.choice(("tll", "regions_pool", "pools", "records", "zone", "type", "<<"))] = rng.choice(SCALARS)
    else:
        return _mutate_text(rng, text), f"text {path!r}"
    out = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 16)
    if raw is not None:
        out = out.replace("'__RAW__'", raw).replace("__RAW__", raw)
    return out, f"{op} {path!r} {raw[:30] if raw else ''}"


def _mutate_text(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    i = rng.randrange(len(lines))
    how = rng.randrange(4)
    if how == 0:          # duplicate a line (duplicate keys, duplicate list items)
        lines.insert(i, lines[i])
    elif how == 1:        # cut the file
        lines = lines[:i]
    elif how == 2:        # break the indentation
        lines[i] = " " + lines[i]
    else:                 # an anchor on one value and an alias for another
        j = rng.randrange(len(lines))
        if ": " in lines[i] and ": " in lines[j]:
            a, _, b = lines[i].partition(": ")
            lines[i] = f"{a}: &anc {b}"
            c, _, _ = lines[j].partition(": ")
            lines[j] = f"{c}: *anc"
    return "\n".join(lines) + "\n"


def _check_issues(exc: ConfigError) -> list[str]:
    return [str(i) for i in exc.issues if not LOCATED.match(str(i))]


def _run(load: Callable[..., object], *args: Any) -> str | None:
    """None when ``load(*args)`` succeeded or raised a ConfigError of located issues; else what went wrong."""
    try:
        load(*args)
    except ConfigError as exc:
        bad = _check_issues(exc)
        return f"unlocated issue: {bad[0][:300]}" if bad else None
    except BaseException as exc:  # the point: every crash, whatever its type
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def _load_and_build(zones: Path, settings: ServerSettings) -> None:
    """What a reload does with a directory: validate it, then compile the snapshot."""
    build_snapshot(load_config(zones, settings), settings)


@functools.cache
def _cases() -> list[tuple[str, str, str, str]]:
    """(corpus, file, mutated text, description) for every case, from one seeded rng."""
    rng = random.Random(SEED)
    cases = []
    for _ in range(CASES):
        corpus = rng.choice(sorted(CORPORA))
        name = rng.choice(sorted(CORPORA[corpus]))
        text, what = _mutate(rng, CORPORA[corpus][name])
        if rng.random() < 0.3 and not what.startswith("raw") and _safe_load(text):  # a second one on top
            text, what2 = _mutate(rng, text)
            what = f"{what}; {what2}"
        cases.append((corpus, name, text, what))
    return cases


def _safe_load(text: str) -> bool:
    try:
        data = yaml.load(text, Loader=_Loader)
    except (yaml.YAMLError, ValueError, RecursionError):
        return False
    return isinstance(data, dict | list) and bool(_paths(data))


def _write(directory: Path, corpus: str, name: str, text: str) -> Path:
    zones = directory / corpus
    zones.mkdir(parents=True, exist_ok=True)
    for old in zones.glob("*.yaml"):
        old.unlink()
    for other, body in CORPORA[corpus].items():
        (zones / other).write_text(text if other == name else body, encoding="utf-8")
    return zones


def test_the_corpus_is_valid(tmp_path: Path) -> None:
    for corpus in CORPORA:
        load_config(_write(tmp_path, corpus, "", ""), ServerSettings(monitor_interval_min=1))


def test_mutated_zone_files_give_located_errors_never_a_crash(tmp_path: Path) -> None:
    crashes: list[str] = []
    plans = (ServerSettings(), ServerSettings(plan="non_enterprise"))
    for n, (corpus, name, text, what) in enumerate(_cases()):
        zones = _write(tmp_path, corpus, name, text)
        problem = _run(_load_and_build, zones, plans[n % 2])
        if problem:
            crashes.append(f"case {n} {corpus}/{name} {what}: {problem}")
    assert not crashes, f"{len(crashes)} of {CASES} cases crashed:\n" + "\n".join(crashes)


SETTINGS = {
    "zones_dir": "zones", "pop": "FRA", "plan": "enterprise",
    "listen": [{"address": "127.0.0.1", "port": 5353, "transport": "both", "pop": "LHR"}],
    "admin": {"enabled": True, "address": "127.0.0.1", "port": 8053},
    "geoip_city_db": "/nonexistent.mmdb", "upstream_resolvers": ["192.0.2.53"],
    "health_overrides": [{"pool": "p", "origin": "o", "state": "healthy"}],
    "probe_cpus": [0, 1], "probe_nice": 5, "edns_udp_payload": 1232, "rtt_ewma_alpha": 0.3,
    "tcp_idle_timeout": 10.0, "monitor_interval_min": 5, "notification_webhook": "https://x.example/h",
}


def test_mutated_settings_give_located_errors_never_a_crash(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    base = yaml.safe_dump(SETTINGS, sort_keys=False)
    path = tmp_path / "lbdns.yaml"
    crashes: list[str] = []
    for n in range(SETTINGS_CASES):
        text, what = _mutate(rng, base)
        path.write_text(text, encoding="utf-8")
        problem = _run(load_settings, path)
        if problem:
            crashes.append(f"case {n} {what}: {problem}")
    assert not crashes, f"{len(crashes)} of {SETTINGS_CASES} cases crashed:\n" + "\n".join(crashes)


def test_check_command_prints_no_traceback(tmp_path: Path) -> None:
    """``lbdns check`` as a separate process on a few mutated directories: exit 0/1, no traceback."""
    picked = [c for c in _cases() if any(r[:12] in c[2] for r in RAW[:3] + RAW[8:9] + RAW[12:13])][:4]
    picked.append(("rich", "_account.yaml", CORPORA["rich"]["_account.yaml"].replace(
        "192.0.2.30", "192.0.2.300"), "bad origin address in a pool of a proximity LB"))
    assert len(picked) >= 3
    for i, (corpus, name, text, what) in enumerate(picked):
        zones = _write(tmp_path / str(i), corpus, name, text)
        done = run_cli("check", str(zones), cwd=tmp_path)
        assert "Traceback" not in done.stderr, f"{what}:\n{done.stderr[-2000:]}"
        assert done.returncode in (0, 1), (what, done.returncode, done.stderr[-500:])
        if done.returncode == 1:
            lines = [ln for ln in done.stderr.splitlines() if ln and not ln.endswith("warning(s)")]
            assert lines and all(LOCATED.match(ln) for ln in lines), (what, lines[:5])


def test_bad_origin_in_a_pool_of_a_proximity_lb_is_located(tmp_path: Path) -> None:
    """The pool fails validation; the proximity check of the LB that lists it must not crash."""
    zones = _write(tmp_path, "rich", "_account.yaml",
                   CORPORA["rich"]["_account.yaml"].replace("192.0.2.30", "192.0.2.300"))
    with pytest.raises(ConfigError) as info:
        load_config(zones)
    errors = [str(i) for i in info.value.issues if i.is_error]
    assert len(errors) == 1 and errors[0].startswith(f"{zones}/_account.yaml:32:") and "E-ADDRESS" in errors[0]


def test_huge_monitor_timeout_and_retries_are_located(tmp_path: Path) -> None:
    """4,000-digit timeout and retries: their product has no decimal text; both are E-MON."""
    text = CORPORA["rich"]["_account.yaml"].replace("expected_codes: 2xx", "expected_codes: 2xx\n"
                                                    f"  timeout: {'9' * 4000}\n  retries: {'9' * 4000}", 1)
    zones = _write(tmp_path, "rich", "_account.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(zones)
    errors = [str(i) for i in info.value.issues if i.is_error]
    assert [e.split(": ", 2)[1] for e in errors] == ["monitors[0].timeout", "monitors[0].retries"]
    assert errors[0].endswith("s is out of range (1–3600 s)") and errors[1].endswith("is out of range (0–100)")


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=_json, where=st.integers(min_value=0), corpus=st.sampled_from(sorted(CORPORA)))
def test_any_value_anywhere_gives_located_errors(tmp_path: Path, value: Any, where: int, corpus: str) -> None:
    """Hypothesis: any JSON-like value put at any path of a corpus file loads or gives located issues."""
    name = sorted(CORPORA[corpus])[where % len(CORPORA[corpus])]
    data = yaml.safe_load(CORPORA[corpus][name])
    paths = _paths(data)
    path = paths[where % len(paths)]
    data = copy.deepcopy(data)
    _get(data, path[:-1])[path[-1]] = value
    zones = _write(tmp_path, corpus, name, yaml.safe_dump(data, sort_keys=False))
    assert _run(_load_and_build, zones, ServerSettings()) is None


def test_issue_format_regex_rejects_unlocated_issues() -> None:
    """The located-issue pattern itself: a file-only or code-less issue does not match."""
    from lbdns.errors import Location

    assert LOCATED.match(str(Issue(Location("z.yaml", 3, 7), "records.www", "E-TTL", "bad")))
    assert LOCATED.match(str(Issue(Location("z.yaml", 1, 1), "", "E-YAML", "bad")))
    assert not LOCATED.match(str(Issue(Location("z.yaml"), "records.www", "E-TTL", "bad")))
    assert not LOCATED.match("Traceback (most recent call last):")


if __name__ == "__main__":  # pragma: no cover - a quick look at one case
    for c in _cases()[: int(sys.argv[1]) if len(sys.argv) > 1 else 5]:
        print(c[3])
    pytest.main([__file__, "-q"])


@pytest.mark.parametrize("mname", ["", "   ", "ns1 .example.com."])
def test_empty_or_spaced_soa_names_are_located_not_a_build_crash(tmp_path: Path, mname: str) -> None:
    """Found by the hypothesis fuzz under xdist: an empty SOA mname passed validation and then
    crashed the snapshot build (dnspython's text parser)."""
    text = CORPORA["zones"]["example.com.yaml"]
    assert "mname: ns1.example.com." in text
    zones = _write(tmp_path, "zones", "example.com.yaml",
                   text.replace("mname: ns1.example.com.", f"mname: {mname!r}", 1))
    with pytest.raises(ConfigError) as info:
        _load_and_build(zones, ServerSettings())
    errors = [str(i) for i in info.value.issues if i.is_error]
    assert len(errors) == 1 and "soa.mname: E-RECORD: invalid domain name" in errors[0], errors
