"""Reloads that cannot hurt answering (issue #11 items 1, 2, 3, 11 and the reload log lines),
on a real ``lbdns serve`` process queried over real sockets:

* a SIGHUP during start-up is queued, not fatal;
* overlapping reloads (a slow one started before a fast one, SIGHUP or the file watch) end
  with what is on disk, and concurrent requests are coalesced;
* a 15,000-record reload does not stall answering;
* a rejected reload is logged once, warnings at WARNING, errors at ERROR, and counted.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype

from tests.fixtures.cli import CliProcess, start_cli
from tests.integration.test_reload import ROOT, free_port, stop_process

SOA = "{mname: ns1.big.test., rname: h.big.test., serial: 1, minimum: 300, ttl: 3600}"


def write_zone(zones: Path, records: int, canary: str, *, extra: str = "") -> None:
    """``big.test`` with ``records`` A records ``h0``…, a TXT ``canary`` and ``extra`` lines."""
    zones.mkdir(parents=True, exist_ok=True)
    lines = ["zone: big.test", f"soa: {SOA}", "ns: [ns1.big.test.]", "records:",
             "  ns1: {type: A, ttl: 3600, value: 192.0.2.1}", f"  canary: {{type: TXT, ttl: 60, value: '{canary}'}}"]
    lines += [f"  h{i}: {{type: A, ttl: 300, value: 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}}}"
              for i in range(records)]
    tmp = zones / ".big.test.tmp"
    tmp.write_text("\n".join(lines) + "\n" + extra)
    tmp.rename(zones / "big.test.yaml")  # atomic: a reload never reads half a file


def canary(port: int, timeout: float = 1.0) -> str | None:
    q = dns.message.make_query("canary.big.test", "TXT")
    try:
        r = dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout)
    except Exception:
        return None
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            return b"".join(next(iter(rrset)).strings).decode()
    return None


class Serve:
    """``lbdns serve`` on the zones in ``workdir/zones`` with its output collected in ``lines``:
    forked from the fork server (:func:`tests.fixtures.cli.start_cli`), or with ``fresh`` a new
    interpreter (to test what happens while lbdns is being imported)."""

    def __init__(self, workdir: Path, *args: str, admin: bool = False, env: dict[str, str] | None = None,
                 fresh: bool = False) -> None:
        self.port = free_port()
        self.admin_port = free_port() if admin else 0
        settings = workdir / "lbdns.yaml"  # read from the working directory
        if not settings.exists():  # the probes below query far above the default rate limit
            settings.write_text("rrl: {exempt: [127.0.0.0/8]}\n")
        cmd = ["serve", "--zones", str(workdir / "zones"), "--listen", f"127.0.0.1:{self.port}", "--no-probes",
               "--admin", f"127.0.0.1:{self.admin_port}" if admin else "off", *args]
        self.output = workdir / "serve.log"
        self.output.write_text("")
        self.proc: subprocess.Popen[str] | CliProcess
        if fresh:
            with self.output.open("w") as out:
                self.proc = subprocess.Popen([sys.executable, "-m", "lbdns.cli", *cmd], cwd=workdir, stdout=out,
                                             stderr=subprocess.STDOUT, text=True,
                                             env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
        else:
            self.proc = start_cli(*cmd, cwd=workdir, output=self.output, env=env)
        self.workdir = workdir
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Append each complete line of the output file to ``lines`` as it is written, until the
        process has exited and everything it wrote is read."""
        with self.output.open() as f:
            rest = ""
            while True:
                exited = self.proc.poll() is not None
                chunk = f.read()
                *done, rest = (rest + chunk).split("\n")
                self.lines.extend(done)
                if exited and not chunk:
                    if rest:
                        self.lines.append(rest)
                    return
                if not chunk:
                    time.sleep(0.02)

    def count(self, text: str) -> int:
        return sum(1 for x in list(self.lines) if text in x)

    def wait_line(self, text: str, limit: float, n: int = 1) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if self.count(text) >= n:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.05)
        raise AssertionError(f"no {n}× {text!r} within {limit} s:\n" + "\n".join(self.lines[-30:]))

    def wait_canary(self, want: str, limit: float) -> None:
        t0 = time.monotonic()
        got = None
        while time.monotonic() - t0 < limit:
            got = canary(self.port)
            if got == want:
                return
            time.sleep(0.1)
        raise AssertionError(f"canary is {got!r}, not {want!r}, after {limit} s:\n" + "\n".join(self.lines[-30:]))

    def token(self) -> str:
        path = self.workdir / "admin.token"
        return path.read_text().strip() if path.exists() else ""

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=120)
        try:
            data = b"" if body is None else json.dumps(body).encode()
            conn.request("POST", path, body=data, headers={"Authorization": f"Bearer {self.token()}",
                                                           "Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def stop(self) -> int | None:
        status = stop_process(self.proc, 20)
        self._reader.join(5)
        return status


def test_sighup_during_startup_is_queued_not_fatal(tmp_path):
    """``lbdns serve … & sleep 0.3; kill -HUP $!``: the server must survive SIGHUPs at every
    moment of its start-up (here: every 0.1 s until it listens) and reload once it is up."""
    write_zone(tmp_path / "zones", 3000, "v0")
    s = Serve(tmp_path, fresh=True)  # signals while lbdns is being imported, too
    try:
        time.sleep(0.3)
        sent = 0
        while not s.count("listening on") and s.proc.poll() is None and sent < 600:
            s.proc.send_signal(signal.SIGHUP)
            sent += 1
            time.sleep(0.1)
        assert s.proc.poll() is None, f"killed by SIGHUP during start-up (status {s.proc.returncode})"
        assert sent >= 2
        write_zone(tmp_path / "zones", 3000, "v1")
        s.proc.send_signal(signal.SIGHUP)
        s.wait_canary("v1", 60)
        assert s.count("SIGHUP during start-up") == 1
    finally:
        assert s.stop() == 0


# A "slow" reload below is one of SLOW_RECORDS records: what matters is only that the second
# change lands while it still builds, which each test asserts (the first reload has not ended
# when the change is made) instead of hoping a big enough size makes it so. 8,000 records
# build in ~1 s on an idle machine; the change is made as soon as the build has started.
SLOW_RECORDS = 8000


def start_slow_reload(s: Serve, zones: Path) -> None:
    """Write ``v1`` with :data:`SLOW_RECORDS` records, SIGHUP, and return once the reload has
    read the zone directory's state (its "reloading the configuration" line)."""
    before = s.count("reloading the configuration (SIGHUP)")
    write_zone(zones, SLOW_RECORDS, "v1")
    s.proc.send_signal(signal.SIGHUP)
    s.wait_line("reloading the configuration (SIGHUP)", 30, n=before + 1)


def test_overlapping_sighup_reloads_end_with_the_files_on_disk(tmp_path):
    """A slow reload started before a fast one must not publish its older files last: reloads
    are serialised, and what is served converges to the disk."""
    zones = tmp_path / "zones"
    write_zone(zones, 10, "v0")
    s = Serve(tmp_path, "--no-watch")
    try:
        s.wait_canary("v0", 60)
        start_slow_reload(s, zones)
        write_zone(zones, 10, "v2")
        s.proc.send_signal(signal.SIGHUP)
        s.wait_line("reloaded configuration", 120, n=2)
        assert s.count("SIGHUP during a reload") == 1  # the second SIGHUP came while the slow one ran
        time.sleep(1.0)
        assert canary(s.port) == "v2"
        assert s.count("reloaded configuration") == 2
    finally:
        assert s.stop() == 0


def test_file_watch_notices_a_change_made_during_a_reload(tmp_path):
    """A file written while a slow reload runs is picked up by the watch afterwards."""
    zones = tmp_path / "zones"
    write_zone(zones, 10, "v0")
    s = Serve(tmp_path)
    try:
        s.wait_canary("v0", 60)
        start_slow_reload(s, zones)
        write_zone(zones, 10, "v2")  # no signal: the 2 s file watch must see it
        assert s.count("reloaded configuration") == 0  # written during the slow reload
        s.wait_line("reloaded configuration", 120, n=2)
        s.wait_canary("v2", 30)
        n = s.count("reloaded configuration")
        time.sleep(2.5)  # and it stays for a watch period (2 s): nothing older is published later
        assert canary(s.port) == "v2"
        assert s.count("reloaded configuration") == n
    finally:
        assert s.stop() == 0


def test_concurrent_post_reloads_are_coalesced(tmp_path):
    """12 concurrent ``POST /reload``: every one answers 200 after a reload that began after it
    arrived; at most two builds run (one in progress, one more for everything queued)."""
    zones = tmp_path / "zones"
    # 2,000 records: the 12 requests are sent within milliseconds, well inside one build
    write_zone(zones, 2000, "v0")
    s = Serve(tmp_path, "--no-watch", admin=True)
    try:
        s.wait_line("admin listening", 60)
        write_zone(zones, 2000, "v1")
        results: list[tuple[int, Any]] = []
        threads = [threading.Thread(target=lambda: results.append(s.post("/reload"))) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert [r[0] for r in results] == [200] * 12, results
        assert canary(s.port) == "v1"
        assert 1 <= s.count("reloaded configuration") <= 2
    finally:
        assert s.stop() == 0


# 15,000 records, not the 30,000 of the original report: a build inside the server stalled
# answering 1.2 s at 30,000 records, mostly one full garbage collection of up to 1.6 s that
# scans a heap proportional to the records (docs/architecture.md, "Where the time went"), so
# ~0.6–0.8 s at 15,000 — still over twice the 250 ms bound below — while start-up and reload
# take half as long. The old configuration is as big as the new one, so the collector has a
# big live heap to scan during the reload as well.
BIG_RECORDS = 15000


def test_reload_of_a_big_configuration_does_not_stall_answering(tmp_path):
    """While a 15,000-record configuration is rebuilt, a query every 2 ms keeps being answered
    quickly (old code: stalls up to ~1 s, the GIL and garbage collection of the build)."""
    zones = tmp_path / "zones"
    write_zone(zones, BIG_RECORDS, "v0")
    s = Serve(tmp_path, "--no-watch", "--log-level", "info")
    try:
        s.wait_canary("v0", 120)
        write_zone(zones, BIG_RECORDS, "v1")
        lat: list[float] = []
        lost = 0
        q = dns.message.make_query("h7.big.test", "A").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            time.sleep(0.2)
            s.proc.send_signal(signal.SIGHUP)
            t_end = time.monotonic() + 120
            while time.monotonic() < t_end and not s.count("reloaded configuration"):
                t = time.perf_counter()
                sock.sendto(q, ("127.0.0.1", s.port))
                try:
                    sock.recv(512)
                    lat.append(time.perf_counter() - t)
                except TimeoutError:
                    lost += 1
                time.sleep(0.002)
        assert s.count("reloaded configuration") == 1
        lat.sort()
        worst, p99 = lat[-1] * 1000, lat[int(0.99 * (len(lat) - 1))] * 1000
        assert lost == 0
        assert worst < 250, f"answering stalled {worst:.0f} ms during the reload (p99 {p99:.1f} ms, n={len(lat)})"
        assert canary(s.port) == "v1"
    finally:
        assert s.stop() == 0


BAD = "  bad: {type: A, value: 300.1.1.1}\n  bad2: {type: AAAA, value: 1.2.3.4}\n"
UNUSED_POOL = "pools:\n  - name: spare\n    origins: [{name: a, address: 192.0.2.5}]\n"  # W-UNUSED


def test_rejected_reload_logged_once_warnings_as_warnings_and_counted(tmp_path):
    """The same bad configuration seen by the file watch, SIGHUP and ``POST /reload`` is logged
    once: its errors at ERROR in ``file:line:col`` form, its warnings at WARNING, and a line
    saying which generation is still served; failures are counted in /metrics."""
    zones = tmp_path / "zones"
    write_zone(zones, 10, "v0")
    (zones / "_pools.yaml").write_text(UNUSED_POOL)
    s = Serve(tmp_path, "--log-level", "info", admin=True)
    try:
        s.wait_line("admin listening", 60)
        started = len(s.lines)
        write_zone(zones, 10, "v1", extra=BAD)
        s.wait_line("still serving generation 1", 30)  # the file watch
        s.proc.send_signal(signal.SIGHUP)
        s.wait_line("the same 2 error(s) as before", 30)
        status, body = s.post("/reload")
        assert status == 409 and body["ok"] is False
        time.sleep(2.5)  # one more watch period: nothing new on disk, nothing logged
        after = s.lines[started:]
        errors = [x for x in after if "big.test.yaml:" in x]
        assert len(errors) == 2, "\n".join(after)  # two errors, each logged once for three triggers
        assert all(" ERROR " in x and ": E-" in x for x in errors)
        assert all(x.split("big.test.yaml:")[1].split(":")[0].isdigit() for x in errors)  # file:line:col
        warnings = [x for x in after if "W-UNUSED" in x]
        assert len(warnings) == 1 and " WARNING " in warnings[0], "\n".join(after)
        assert not [x for x in after if " ERROR " in x and "W-UNUSED" in x]
        assert s.count("still serving generation 1") >= 1
        assert canary(s.port) == "v0"
        conn = http.client.HTTPConnection("127.0.0.1", s.admin_port, timeout=10)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        conn.close()
        failures = [x for x in metrics.splitlines() if x.startswith('lbdns_reload_failures_total{reason="config"}')]
        assert failures and float(failures[0].split()[-1]) >= 2
    finally:
        assert s.stop() == 0
