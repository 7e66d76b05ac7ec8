"""Resource limits of the YAML reader (``lbdns/config/source.py``): alias bombs, recursive
aliases, deep nesting, oversized files and unconstructible scalars give one located
``E-YAML`` error, quickly and in little memory, for zone files and ``lbdns.yaml`` alike."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lbdns.config.read_settings import load_settings
from lbdns.config.source import ALIAS_BUDGET, MAX_DEPTH, MAX_FILE_BYTES, load_yaml
from lbdns.config.validate import load_config
from lbdns.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def billion_laughs(levels: int) -> str:
    """The classic document: level n is a list of nine aliases of level n-1 (9**levels leaves)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def errors_of(path: Path) -> list[str]:
    src, issues = load_yaml(path, path.name)
    assert src is None
    return [str(i) for i in issues]


_MEASURE = textwrap.dedent("""\
    import json, resource, sys, time
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))   # the old reader dies here, not the box
    from lbdns.config.read_settings import load_settings
    from lbdns.config.validate import load_config
    from lbdns.errors import ConfigError
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        if sys.argv[1] == "zones":
            load_config(Path(sys.argv[2]))
        else:
            load_settings(Path(sys.argv[2]))
        issues = []
    except ConfigError as exc:
        issues = [str(i) for i in exc.issues]
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": took, "rss_kb": after - before, "issues": issues}))
    """)


def _measure(kind: str, path: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _MEASURE, kind, str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("kind", ["zones", "settings"])
def test_billion_laughs_is_refused_fast_and_small(tmp_path: Path, kind: str) -> None:
    """9 levels = 387 million leaves from 450 bytes: refused within a second, in a few MB,
    at the alias that crosses the budget — through the zones loader and through lbdns.yaml."""
    zones = tmp_path / "zones"
    zones.mkdir()
    target = zones / "bomb.yaml" if kind == "zones" else tmp_path / "lbdns.yaml"
    target.write_text(billion_laughs(9))
    got = _measure(kind, zones if kind == "zones" else target)
    shown = str(target)  # paths are printed as given
    assert got["issues"] == [
        f"{shown}:6:10: a5[0]: E-YAML: alias *a4: aliases expand the document by more than "
        f"{ALIAS_BUDGET:,} nodes (a recursive-expansion or 'billion laughs' document?)"]
    assert isinstance(got["seconds"], float) and got["seconds"] < 1.0
    assert isinstance(got["rss_kb"], int) and got["rss_kb"] < 20_000


def test_recursive_alias_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "rec.yaml"
    path.write_text("zone: example.com\nrec: &r [*r]\n")
    assert errors_of(path) == [
        "rec.yaml:2:10: rec[0]: E-YAML: alias *r: recursive alias: it refers to a collection that contains it"]


def test_recursive_merge_key_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "rec.yaml"
    path.write_text("zone: example.com\nm: &r {a: 1, <<: *r}\n")
    assert errors_of(path) == [
        "rec.yaml:2:18: m.<<: E-YAML: alias *r: recursive alias: it refers to a collection that contains it"]


def test_nesting_deeper_than_the_limit_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    depth = MAX_DEPTH + 1
    path.write_text("x: " + "[" * depth + "1" + "]" * depth + "\n")
    (err,) = errors_of(path)
    assert err.startswith(f"deep.yaml:1:{3 + MAX_DEPTH}: x" + "[0]" * (MAX_DEPTH - 1) + ": E-YAML: ")
    assert err.endswith(f"nesting is deeper than {MAX_DEPTH} levels")
    path.write_text("x: " + "[" * 5000 + "]" * 5000 + "\n")
    (err,) = errors_of(path)
    assert err.startswith("deep.yaml:1:") and "E-YAML: invalid YAML: " in err


def test_aliases_that_nest_too_deep_are_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    inner = MAX_DEPTH - 2
    path.write_text(f"d: &d {'[' * inner}1{']' * inner}\nx: {{a: {{b: [*d]}}}}\n")
    assert errors_of(path) == [
        f"deep.yaml:2:13: x.a.b[0]: E-YAML: alias *d: alias expands to nesting deeper than {MAX_DEPTH} levels"]


def test_anchors_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    """A real configuration with shared defaults: one anchor merged into many pools."""
    pools = "\n".join(f"  - {{<<: *defaults, name: p{i}, origins: [{{name: o, address: 192.0.2.{i + 1}}}]}}"
                      for i in range(200))
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "_pools.yaml").write_text(textwrap.dedent("""\
        monitors:
          - &mon {id: m1, type: http, path: /health, expected_codes: 2xx}
          - {<<: *mon, id: m2}
        pools:
          - &defaults {name: base, monitor: m1, latitude: 1.5, longitude: 2.5,
                       origins: [{name: o, address: 192.0.2.99}]}
        """) + pools + "\n")
    (zones / "example.com.yaml").write_text(textwrap.dedent("""\
        zone: example.com
        soa: {mname: ns1.example.com., rname: h.example.com.}
        ns: [ns1.example.com.]
        records:
          ns1: &rec {type: A, ttl: 300, value: 192.0.2.1}
          ns2: *rec
        load_balancers:
          www: {default_pools: &list [p0, p1, base], fallback_pool: base, steering_policy: proximity}
          api: {default_pools: *list, fallback_pool: p2}
        """))
    loaded = load_config(zones)
    cfg = loaded.config
    assert len(cfg.pools) == 201 and cfg.pools["p7"].monitor == "m1" and cfg.pools["p7"].latitude == 1.5
    assert cfg.monitors["m2"].path == "/health"
    lbs = {n.to_text(): lb for n, lb in cfg.zones[0].load_balancers.items()}
    assert lbs["api.example.com."].default_pools == ["p0", "p1", "base"]


def test_expansion_below_the_budget_loads(tmp_path: Path) -> None:
    """Aliases may add up to ALIAS_BUDGET nodes: 5 levels (74,718 added nodes) still load."""
    path = tmp_path / "ok.yaml"
    path.write_text(billion_laughs(5))
    src, issues = load_yaml(path)
    assert src is not None and not issues
    assert len(src.data["a4"]) == 9 and src.data["a4"][8][8][8][8] == ["lol"] * 9


def test_oversized_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as fh:
        fh.write(b"# " + b"x" * (MAX_FILE_BYTES - 2) + b"\n")
    assert errors_of(path) == [f"big.yaml:1:1: E-YAML: file is larger than {MAX_FILE_BYTES >> 20} MiB"]


@pytest.mark.parametrize(("value", "expected"), [
    ("1" + "0" * 4300, "ttl: E-YAML: invalid value '1000000000000000000000000000000000000000'… (4301 characters): "
                       "integer is too large (more than 4,300 digits)"),
    ("0x" + "f" * 3600, "ttl: E-YAML: invalid value '0xffffffffffffffffffffffffffffffffffffff'… (3602 characters): "
                        "integer is too large (more than 4,300 digits)"),
    ("2001-02-30", "ttl: E-YAML: invalid value '2001-02-30': day is out of range for month"),
    ("!!binary not-base64", "ttl: E-YAML: invalid value: failed to decode base64 data: Invalid base64-encoded "
                            "string: number of data characters (9) cannot be 1 more than a multiple of 4"),
    ("!!python/name:os.system", "ttl: E-YAML: invalid value: could not determine a constructor for the tag "
                                "'tag:yaml.org,2002:python/name:os.system'"),
])
def test_unconstructible_scalars_are_located_errors(tmp_path: Path, value: str, expected: str) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(f"zone: example.com\nttl: {value}\n")
    assert errors_of(path) == [f"v.yaml:2:6: {expected}"]


def test_non_utf8_file_is_located(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"zone: example.com\nx: caf\xe9\n")
    assert errors_of(path) == ["bin.yaml:2:7: E-YAML: not UTF-8 text: invalid continuation byte"]


def test_key_paths_with_control_characters_stay_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "k.yaml"
    path.write_text('a: {"x\\ny": 1, "x\\ny": 2}\n')
    src, issues = load_yaml(path, "k.yaml")
    assert src is not None
    assert [str(i) for i in issues] == ["k.yaml:1:16: a[\"x\\ny\"]: E-YAML: duplicate key 'x\\ny'"]


def test_settings_with_a_recursive_alias_raise_config_error(tmp_path: Path) -> None:
    path = tmp_path / "lbdns.yaml"
    path.write_text("listen: &l [*l]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert [str(i) for i in info.value.issues] == [
        f"{path}:1:13: listen[0]: E-YAML: alias *l: recursive alias: it refers to a collection that contains it"]


@pytest.mark.parametrize("text", ["[" * 100_000, '[{"id": 1' + "0" * 4400 + "}]"])
def test_import_cloudflare_rejects_deep_or_huge_json(tmp_path: Path, text: str) -> None:
    from lbdns.importers import ImportFailed
    from lbdns.importers.cloudflare import load_export

    path = tmp_path / "pools.json"
    path.write_text(text)
    with pytest.raises(ImportFailed, match=r"pools\.json: invalid JSON: "):
        load_export(path)
