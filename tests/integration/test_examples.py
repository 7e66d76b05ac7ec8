"""examples/: one directory per steering policy and feature, each ``lbdns.yaml`` + ``zones/`` +
``README.md``. Every example passes ``lbdns check``; served by a real ``lbdns serve`` process,
the first ``dig`` line of its README gets an authoritative NOERROR answer whose records are the
ones the line's comment names.

The examples are written for ports 5300 (DNS) and 8053 (admin); the test copies an example and
replaces exactly these two numbers in its YAML files by free ports, as the examples' lbdns.yaml
says.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from lbdns.cli import main
from tests.fixtures.cli import start_cli
from tests.integration.test_reload import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_dir())
FEATURES = {"failover", "random", "geo", "proximity", "dynamic-latency", "rules", "hostname-origins", "mx-srv",
            "load-shedding", "monitor-groups"}
DIG = re.compile(r"^dig @127\.0\.0\.1 -p 5300 (?P<name>\S+) (?P<type>[A-Z]+)(?P<opts>[^#]*)#(?P<comment>.*)$", re.M)


def test_one_example_per_feature() -> None:
    assert {p.name for p in EXAMPLES} == FEATURES
    for ex in EXAMPLES:
        assert {p.name for p in ex.iterdir()} == {"lbdns.yaml", "zones", "README.md"}, ex.name
        assert DIG.search((ex / "README.md").read_text()), f"{ex.name}/README.md has no dig line with a comment"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_checks(example: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(example)  # as the README says: `lbdns check` in the example's directory
    assert main(["check"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[-1].startswith("ok: 1 zone(s)"), out
    assert all("W-PRIVATE" in line for line in out.out.splitlines()[:-1]), out.out  # loopback probe targets only


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_serves_its_first_dig_line(example: Path, tmp_path: Path) -> None:
    work = tmp_path / example.name
    shutil.copytree(example, work)
    port, admin = free_port(), free_port()  # the DNS port must be free for UDP and for TCP
    for f in work.rglob("*.yaml"):
        f.write_text(re.sub(r"\b5300\b", str(port), re.sub(r"\b8053\b", str(admin), f.read_text())))
    m = DIG.search((work / "README.md").read_text())
    assert m is not None
    options = []
    for opt in m["opts"].split():
        if opt.startswith("+subnet="):
            addr, _, plen = opt.removeprefix("+subnet=").partition("/")
            options.append(dns.edns.ECSOption(addr, int(plen)))
    expected_in = m["comment"].split(":")[0]  # "198.51.100.20: primary is down" → the answer data
    proc = start_cli("serve", cwd=work, output=tmp_path / "serve.log")
    try:
        deadline = time.monotonic() + 20  # probe-driven examples need a probe round or two
        datas: list[str] = []
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                q = dns.message.make_query(m["name"], m["type"], use_edns=0, options=options)
                q.flags &= ~dns.flags.RD
                r = dns.query.udp(q, "127.0.0.1", port=port, timeout=1)
                assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA, r
                datas = [rd.to_text() for rrset in r.answer for rd in rrset]
                if datas and all(d in expected_in for d in datas):
                    break
            except (dns.exception.Timeout, ConnectionRefusedError):
                pass
            assert time.monotonic() < deadline, f"{m[0]!r} answered {datas}"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(10)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()
