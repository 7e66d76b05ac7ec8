"""The ``lbdns`` command as an operator meets it, run as a real process (what ``python -m lbdns.cli``
runs, forked from a process that has imported lbdns: tests/fixtures/cli.py) from a directory
without ``lbdns.yaml``: every command given bad input ends with one line on
stderr naming the problem and a non-zero exit status, never a traceback; ``lbdns status`` reads
a running server's admin API; ``explain`` agrees with a query sent from loopback.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import dns.message
import dns.query
import pytest

from tests.fixtures.cli import run_cli, start_cli
from tests.integration.test_reload import free_port

ROOT = Path(__file__).resolve().parents[2]
ZONES = ROOT / "zones"


def lbdns(*args: str, cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m lbdns.cli *args`` as a separate process (forked from a process that has imported
    lbdns: :func:`tests.fixtures.cli.run_cli`)."""
    return run_cli(*args, cwd=cwd, env=env, timeout=timeout)


def assert_one_line_error(r: subprocess.CompletedProcess[str], status: int, pattern: str) -> None:
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert re.fullmatch(pattern, lines[0]), lines[0]
    assert r.returncode == status, (r.returncode, r.stderr)


@pytest.fixture
def empty_zones(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    (d / "README.md").write_text("no zones here\n")
    return d


BAD_INPUT = [
    # explain: unknown qtype, malformed --ecs, bad --client, unknown PoP, a name not served, missing files
    (["explain", "geo.example.net", "BOGUS", "--zones", str(ZONES)], 2,
     r"lbdns explain: unknown query type 'BOGUS' \(.*\)"),
    (["explain", "geo.example.net", "A", "--ecs", "1.2.3", "--zones", str(ZONES)], 2,
     r"lbdns explain: --ecs '1\.2\.3': '1\.2\.3' is not an IPv4 or IPv6 address \(.*\)"),
    (["explain", "geo.example.net", "A", "--ecs", "1.2.3.0/33", "--zones", str(ZONES)], 2,
     r"lbdns explain: --ecs '1\.2\.3\.0/33': prefix length /33 is longer than an IPv4 address \(at most /32\)"),
    (["explain", "geo.example.net", "A", "--ecs", "1.2.3.4/24", "--zones", str(ZONES)], 2,
     r"lbdns explain: --ecs '1\.2\.3\.4/24': address bits are set beyond /24 \(use 1\.2\.3\.0/24\)"),
    (["explain", "geo.example.net", "A", "--ecs", "2001:db8::/129", "--zones", str(ZONES)], 2,
     r"lbdns explain: --ecs '2001:db8::/129': prefix length /129 is longer than an IPv6 address \(at most /128\)"),
    (["explain", "geo.example.net", "A", "--client", "resolver", "--zones", str(ZONES)], 2,
     r"lbdns explain: --client 'resolver' is not an IPv4 or IPv6 address"),
    (["explain", "www.example.com", "A", "--pop", "XYZ", "--zones", str(ZONES)], 2,
     r"lbdns explain: unknown PoP 'XYZ' \(--pop\): .*"),
    (["explain", "nothere.invalid", "A", "--zones", str(ZONES)], 2,
     r"lbdns explain: nothere\.invalid\. is in no zone served from .*zones \(zones: 2\.0\.192\.in-addr\.arpa\., "
     r"example\.com\., example\.net\.\); the server answers REFUSED"),
    (["explain", "a..b", "A", "--zones", str(ZONES)], 2, r"lbdns explain: invalid domain name 'a\.\.b': .*"),
    (["explain", "www.example.com", "--zones", "no-such-dir"], 1,
     r"no-such-dir: E-ZONE: zones directory does not exist"),
    (["explain", "www.example.com", "--zones", str(ZONES), "--geoip-db", "missing.mmdb"], 1,
     r"lbdns explain: missing\.mmdb: cannot open GeoIP database \(No such file or directory\)"),
    (["explain", "www.example.com", "--config", "missing.yaml"], 2,
     r"lbdns explain: --config missing\.yaml: no such file"),
    # check: missing directory, two different directories, missing settings file
    (["check", "no-such-dir"], 1, r"no-such-dir: E-ZONE: zones directory does not exist"),
    (["check", "a", "--zones", "b"], 2,
     r"lbdns check: two zones directories given: DIR 'a' and --zones 'b' \(give one\)"),
    (["check", "--config", "missing.yaml"], 2, r"lbdns check: --config missing\.yaml: no such file"),
    # serve: unknown PoP (blamed on --pop, not on a settings file that does not exist), bad listeners,
    # missing GeoIP database, missing settings file
    (["serve", "--zones", str(ZONES), "--pop", "XYZ", "--admin", "off"], 2,
     r"lbdns serve: --pop XYZ: unknown PoP, not in the PoP catalogue .*"),
    (["serve", "--zones", str(ZONES), "--listen", "localhost"], 2,
     r"lbdns serve: --listen 'localhost': expected ADDRESS:PORT with a port 0–65535 \(.*\)"),
    (["serve", "--zones", str(ZONES), "--listen", "localhost:5300"], 2,
     r"lbdns serve: --listen 'localhost:5300': 'localhost' is not an IP address \(.*\)"),
    (["serve", "--zones", str(ZONES), "--admin", "127.0.0.1:70000"], 2,
     r"lbdns serve: --admin '127\.0\.0\.1:70000': expected ADDRESS:PORT .*"),
    (["serve", "--zones", str(ZONES), "--listen", "127.0.0.1:0", "--admin", "off", "--geoip-db", "missing.mmdb"], 1,
     r"lbdns serve: missing\.mmdb: cannot open GeoIP database \(No such file or directory\)"),
    (["serve", "--config", "missing.yaml"], 2, r"lbdns serve: --config missing\.yaml: no such file"),
    (["serve", "--zones", "no-such-dir", "--listen", "127.0.0.1:0", "--admin", "off"], 1,
     r"no-such-dir: E-ZONE: zones directory does not exist"),
    # importers: missing input files
    (["import-zone", "missing.zone"], 2, r"lbdns import-zone: .*missing\.zone.*"),
    (["import-cloudflare", "--monitors", "m.json", "--pools", "p.json", "--load-balancers", "l.json", "--zone",
      "example.com", "--out", "out"], 2, r"lbdns import-cloudflare: .*m\.json.*"),
    # status: nothing listening, missing token file
    (["status", "--admin", "http://127.0.0.1:{closed}"], 3,
     r"lbdns status: cannot reach the admin listener at http://127\.0\.0\.1:\d+: Connection refused \(.*\)"),
    (["status", "--admin", "127.0.0.1:{closed}", "--token-file", "missing-token"], 2,
     r"lbdns status: --token-file missing-token: No such file or directory"),
]


def _case_id(args: list[str]) -> str:
    return " ".join(x for x in args if x not in (str(ZONES), "--zones"))


@pytest.mark.parametrize(("args", "status", "pattern"), BAD_INPUT, ids=[_case_id(a) for a, _, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_non_zero(tmp_path: Path, args: list[str], status: int, pattern: str) -> None:
    closed = str(free_port())
    assert_one_line_error(lbdns(*(a.replace("{closed}", closed) for a in args), cwd=tmp_path), status, pattern)


def test_check_an_empty_directory_fails_unless_allowed(tmp_path: Path, empty_zones: Path) -> None:
    r = lbdns("check", str(empty_zones), cwd=tmp_path)
    assert_one_line_error(r, 1, rf"lbdns check: {re.escape(str(empty_zones))}: no zones .*--allow-empty accepts this\)")
    r = lbdns("check", str(empty_zones), "--allow-empty", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("ok: 0 zone(s)")


def test_check_prints_paths_as_given(tmp_path: Path) -> None:
    zones = tmp_path / "conf" / "zones"
    zones.mkdir(parents=True)
    (zones / "bad.yaml").write_text("zone: example.org\nns: [ns1.example.org.]\n")
    for given, cwd in [(str(zones), ROOT), ("conf/zones", tmp_path), ("zones", tmp_path / "conf")]:
        r = lbdns("check", given, cwd=cwd)
        assert r.returncode == 1
        assert r.stderr.splitlines()[0].startswith(f"{given}/bad.yaml:1:7: zone: E-ZONE: missing SOA"), r.stderr


def test_serve_names_the_busy_address_and_errno(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        r = lbdns("serve", "--zones", str(ZONES), "--listen", f"127.0.0.1:{port}", "--admin", "off", cwd=tmp_path)
    assert_one_line_error(r, 1, rf"lbdns serve: cannot listen on udp 127\.0\.0\.1:{port}: "
                                r"\[Errno 98\] Address already in use")


def test_serve_names_a_busy_ipv6_address_in_brackets(tmp_path: Path) -> None:
    try:
        busy = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        busy.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    with busy:
        port = busy.getsockname()[1]
        r = lbdns("serve", "--zones", str(ZONES), "--listen", f"[::1]:{port}", "--admin", "off", cwd=tmp_path)
    assert_one_line_error(r, 1, rf"lbdns serve: cannot listen on udp \[::1\]:{port}: "
                                r"\[Errno 98\] Address already in use")


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    r = lbdns("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"lbdns {version('lbdns')}"


def test_every_option_has_help(tmp_path: Path) -> None:
    from lbdns.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in ("serve", "check", "explain", "status"):
        p = sub.choices[name]  # type: ignore[attr-defined]
        assert p.description and p.epilog and "examples:" in p.epilog, name
        for action in p._actions:
            assert action.help, f"lbdns {name} {action.option_strings or action.dest} has no help"
    text = " ".join(sub.choices["explain"].format_help().split())  # type: ignore[attr-defined]
    assert "--client IP address of the resolver sending the query (default 127.0.0.1)" in text


# -- a running server ------------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """``lbdns serve`` on zones/ with free DNS and admin ports; yields (dns port, admin port, log lines)."""
    port, admin = free_port(), free_port()
    log = tmp_path / "serve.log"
    log.write_text("")
    proc = start_cli("serve", "--zones", str(ZONES), "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
                     "--no-watch", cwd=tmp_path, output=log)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            text = log.read_text()
            if " INFO lbdns: admin: " in text:  # the last line of the start-up summary
                lines = text[: text.index("\n", text.index(" INFO lbdns: admin: "))].splitlines()
                break
            time.sleep(0.05)
        assert any(" INFO lbdns: admin: http://" in x for x in lines), log.read_text()
        yield port, admin, lines
    finally:
        proc.terminate()
        proc.wait(10)


def test_startup_log_lines_once_each(server: tuple[int, int, list[str]]) -> None:
    port, admin, lines = server
    messages = [x.split(" ", 2)[2] for x in lines]  # without the time stamp
    for transport in ("udp", "tcp"):
        assert messages.count(f"INFO lbdns: listening on {transport} 127.0.0.1:{port} (PoP IAD)") == 1
    assert any(re.fullmatch(r"INFO lbdns: lbdns \S+ started: PoP IAD \(ENAM\), plan enterprise, "
                            r"configuration generation 1", m) for m in messages), messages
    assert any(m.startswith("INFO lbdns: configuration: 3 zone(s) from ") and "5 load balancer(s), 6 pool(s)" in m
               for m in messages), messages
    assert any(re.fullmatch(r"INFO lbdns: GeoIP: .*GeoLite2-City\.mmdb \(GeoLite2-City, built 2018-07-03\) .*", m)
               for m in messages), messages
    assert f"INFO lbdns: admin: http://127.0.0.1:{admin} (/status, /metrics)" in messages


def test_status_reads_the_admin_api(server: tuple[int, int, list[str]], tmp_path: Path) -> None:
    _, admin, _ = server
    r = lbdns("status", "--admin", f"127.0.0.1:{admin}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "generation 1, health version 0"
    assert any(re.fullmatch(r"www\.example\.com\.\s+yes\s+off\s+\S+\s+us-east, us-west, eu\s+maintenance\s+30", x)
               for x in out), r.stdout
    # HEALTH, OPERATOR, RTT, REASON
    assert any(re.fullmatch(r"us-east/use1\s+192\.0\.2\.10\s+yes\s+1\.0\s+not monitored\s+-\s+-\s+-", x)
               for x in out)
    doc = json.loads(lbdns("status", "--admin", f"http://127.0.0.1:{admin}", "--json", cwd=tmp_path).stdout)
    assert doc["generation"] == 1 and {p["name"] for p in doc["pools"]} >= {"us-east", "maintenance"}


def test_explain_agrees_with_a_query_from_loopback(server: tuple[int, int, list[str]], tmp_path: Path) -> None:
    """rules-demo's rule reads ip.src; explain's default client is where `dig @127.0.0.1` comes from."""
    port, admin, _ = server
    reply = dns.query.udp(dns.message.make_query("rules-demo.example.com", "A"), "127.0.0.1", port=port, timeout=2)
    served = sorted(rd.address for rrset in reply.answer for rd in rrset)
    r = lbdns("explain", "rules-demo.example.com", "--zones", str(ZONES), "--health-from",
              f"http://127.0.0.1:{admin}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    explained = sorted(x.split()[-1] for x in r.stdout.splitlines() if x.startswith("  rules-demo.example.com. "))
    assert explained == served and "from 127.0.0.1 " in r.stdout.splitlines()[0]


class _TokenCheck(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        type(self).seen.append(auth)
        ok = auth == "Bearer s3cret"
        body = json.dumps({"generation": 4, "health_version": 2, "load_balancers": [], "pools": []} if ok
                          else {"error": "unauthorized"}).encode()
        self.send_response(200 if ok else 401, "OK" if ok else "Unauthorized")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_status_sends_the_admin_token(tmp_path: Path) -> None:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _TokenCheck)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        assert_one_line_error(lbdns("status", "--admin", url, cwd=tmp_path), 3,
                              rf"lbdns status: {re.escape(url)}/status: HTTP 401 Unauthorized \(give the admin token: "
                              r"\$LBDNS_ADMIN_TOKEN or --token-file\)")
        r = lbdns("status", "--admin", url, cwd=tmp_path, env={"LBDNS_ADMIN_TOKEN": "s3cret"})
        assert r.returncode == 0 and r.stdout.startswith("generation 4, health version 2"), r.stderr
        (tmp_path / "token").write_text("s3cret\n")
        r = lbdns("status", "--admin", url, "--token-file", str(tmp_path / "token"), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert _TokenCheck.seen[-3:] == [None, "Bearer s3cret", "Bearer s3cret"]
    finally:
        httpd.shutdown()
        httpd.server_close()
