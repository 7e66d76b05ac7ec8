"""Reload under load: a large configuration reloaded again and again while dnsperf sends a
steady query rate (issue #11 "Must show"; docs/operations.md "Reloading").

Starts ``lbdns serve`` on a zone of ``--records`` A records (``hN.big.test``) plus a TXT
``canary.big.test`` whose value changes at every edit (``gen-1``, ``gen-2``, …). While
``dnsperf -Q QPS`` queries random records, the script edits the zone ``--reloads`` times and
triggers each reload differently — SIGHUP, ``POST /reload``, the file watch alone, and all three
at once — the last three edits in a burst 0.4 s apart, so that reloads overlap and must be
coalesced. A checker thread asks for the canary and for random records every 5 ms and checks
every answer (a canary older than one already seen, or a record with another address, is a
wrong answer).

Reports: queries sent and lost (dnsperf's summary and the checker's timeouts), wrong answers,
latency percentiles over the whole run from dnsperf's per-query output (``-v``), the checker's
latency percentiles inside reload windows (from the server's ``reloading``/``reloaded`` log
lines), reload durations, and the server's RSS after the first and after the last reload.

Run it alone on the machine (``flock /work/notes/bench.lock python scripts/bench_reload.py``):
timing numbers are only meaningful without other load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import dns.message
import dns.rdatatype

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench import free_port  # noqa: E402

ZONE_HEAD = ["zone: big.test", "soa: {mname: ns1.big.test., rname: h.big.test., serial: 1, minimum: 300, ttl: 3600}",
             "ns: [ns1.big.test.]", "records:", "  ns1: {type: A, ttl: 3600, value: 192.0.2.1}"]


def address(i: int) -> str:
    """The address of record ``h{i}``."""
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def write_zone(zones: Path, records: int, canary: str) -> None:
    """Write ``big.test`` atomically (a reload never reads half a file)."""
    zones.mkdir(parents=True, exist_ok=True)
    lines = [*ZONE_HEAD, f"  canary: {{type: TXT, ttl: 60, value: '{canary}'}}"]
    lines += [f"  h{i}: {{type: A, ttl: 300, value: {address(i)}}}" for i in range(records)]
    tmp = zones / ".big.test.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.rename(zones / "big.test.yaml")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1)))]


class Checker(threading.Thread):
    """Queries the canary and random records every ``period`` s; checks every answer."""

    def __init__(self, port: int, records: int, period: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.port, self.records, self.period = port, records, period
        self.samples: list[tuple[float, float]] = []  # (wall time sent, latency s)
        self.lost = 0
        self.wrong: list[str] = []
        self.canary = -1  # highest generation seen
        self.written = 0  # highest generation written (set by the driver)
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        rng = random.Random(11)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            n = 0
            while not self._halt.is_set():
                n += 1
                i = rng.randrange(self.records)
                name, rdtype = ("canary.big.test", "TXT") if n % 2 else (f"h{i}.big.test", "A")
                q = dns.message.make_query(name, rdtype)
                wall, t0 = time.time(), time.perf_counter()
                sock.sendto(q.to_wire(), ("127.0.0.1", self.port))
                try:
                    while True:
                        data = sock.recv(2048)
                        if data[:2] == q.to_wire()[:2]:
                            break
                except TimeoutError:
                    self.lost += 1
                    continue
                self.samples.append((wall, time.perf_counter() - t0))
                self._check(dns.message.from_wire(data), rdtype, i)
                time.sleep(self.period)

    def _check(self, r: dns.message.Message, rdtype: str, i: int) -> None:
        values = [rd for rrset in r.answer for rd in rrset]
        if rdtype == "A":
            got = {rd.to_text() for rd in values}
            if got != {address(i)}:
                self.wrong.append(f"h{i} A {got or r.rcode()}")
            return
        texts = [b"".join(rd.strings).decode() for rd in values if rd.rdtype == dns.rdatatype.TXT]
        m = re.fullmatch(r"gen-(\d+)", texts[0]) if len(texts) == 1 else None
        if m is None:
            self.wrong.append(f"canary {texts or r.rcode()}")
            return
        gen = int(m.group(1))
        if gen < self.canary or gen > self.written:
            self.wrong.append(f"canary gen-{gen} after gen-{self.canary} (written up to gen-{self.written})")
        self.canary = max(self.canary, gen)


class Server:
    """``lbdns serve`` on ``workdir/zones``, its log lines collected with their arrival time."""

    def __init__(self, workdir: Path, cpu: str, root: Path = ROOT, nice: int = 0) -> None:
        self.port, self.admin_port = free_port(), free_port()
        if (root / "lbdns/server/rrl.py").exists():  # dnsperf and the checker query from loopback far
            (workdir / "lbdns.yaml").write_text("rrl: {exempt: [127.0.0.0/8]}\n")  # above the rate limit
        cmd = [sys.executable, "-m", "lbdns.cli", "serve", "--zones", str(workdir / "zones"), "--listen",
               f"127.0.0.1:{self.port}", "--admin", f"127.0.0.1:{self.admin_port}", "--no-probes",
               "--log-level", "info"]
        if cpu and shutil.which("taskset"):
            cmd = ["taskset", "-c", cpu, *cmd]
        if nice:
            cmd = ["nice", "-n", str(nice), *cmd]
        self.proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONPATH": str(root)})
        self.workdir = workdir
        self.lines: list[str] = []
        self.posted: list[dict[str, Any]] = []
        self._posts: list[threading.Thread] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, text: str, limit: float) -> None:
        t0 = time.monotonic()
        while not any(text in x for x in list(self.lines)):
            if time.monotonic() - t0 > limit or self.proc.poll() is not None:
                raise SystemExit(f"server: no {text!r}:\n" + "\n".join(self.lines[-20:]))
            time.sleep(0.1)

    def post_reload(self) -> None:
        """``POST /reload`` in a thread; :meth:`wait_posts` waits for the answers."""
        path = self.workdir / "admin.token"  # absent with --lbdns-root of a version without tokens
        headers = {"Content-Type": "application/json"}
        if path.exists():
            headers["Authorization"] = f"Bearer {path.read_text().strip()}"
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/reload", method="POST", data=b"",
                                     headers=headers)

        def post() -> None:
            with urllib.request.urlopen(req, timeout=600) as resp:
                self.posted.append(json.loads(resp.read()))

        t = threading.Thread(target=post, daemon=True)
        t.start()
        self._posts.append(t)

    def wait_posts(self) -> None:
        for t in self._posts:
            t.join(600)

    def windows(self) -> list[tuple[float, float]]:
        """(start, end) wall times of each reload, from the log."""
        def at(line: str) -> float:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()

        out: list[tuple[float, float]] = []
        start = None
        for line in self.lines:
            if "reloading the configuration" in line and start is None:
                start = at(line)
            elif ("reloaded configuration" in line or "reload failed" in line or "reload rejected" in line) \
                    and start is not None:
                out.append((start, at(line)))
                start = None
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=30000)
    ap.add_argument("--reloads", type=int, default=10, help="edits (0: a baseline run without reloads)")
    ap.add_argument("--baseline-seconds", type=float, default=60.0, help="length of the --reloads 0 run")
    ap.add_argument("--qps", type=int, default=10000, help="dnsperf -Q")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds between a reload being served and the next edit")
    ap.add_argument("--server-cpu", default="", help="taskset CPU list for the server ('' = any)")
    ap.add_argument("--client-cpu", default="", help="taskset CPU list for dnsperf ('' = any)")
    ap.add_argument("--server-nice", type=int, default=0,
                    help="nice increment of the server (e.g. -5 on a machine busy with other work; needs root)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--server-log", help="write the server's log to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (zones, dnsperf output)")
    ap.add_argument("--lbdns-root", type=Path, default=ROOT,
                    help="checkout whose lbdns to benchmark (default: this one), e.g. a copy of main to compare")
    args = ap.parse_args()
    if not shutil.which("dnsperf"):
        print("dnsperf is not installed (apt-get install dnsperf)", file=sys.stderr)
        return 1

    tmp = Path(tempfile.mkdtemp(prefix="lbdns-bench-reload-"))
    zones = tmp / "zones"
    write_zone(zones, args.records, "gen-0")
    srv = Server(tmp, args.server_cpu, args.lbdns_root, args.server_nice)
    dnsperf = checker = None
    try:
        srv.wait_line("listening on http", 600)
        pid = srv.proc.pid  # nice and taskset exec the server: same process
        rss_start = rss_mb(pid)
        rng = random.Random(7)
        qfile = tmp / "queries.txt"
        qfile.write_text("".join(f"h{rng.randrange(args.records)}.big.test A\n" for _ in range(100_000)))
        cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(srv.port), "-d", str(qfile), "-l", "3600", "-Q",
               str(args.qps), "-c", "8", "-q", "1000", "-v"]
        if args.client_cpu and shutil.which("taskset"):
            cmd = ["taskset", "-c", args.client_cpu, *cmd]
        perf_out = (tmp / "dnsperf.txt").open("w")
        dnsperf = subprocess.Popen(cmd, stdout=perf_out, stderr=subprocess.STDOUT)
        t_perf = time.time()
        checker = Checker(srv.port, args.records)
        checker.start()
        time.sleep(2.0)
        rss_after: list[float] = []
        burst = min(3, args.reloads)
        t_first = time.time()
        if not args.reloads:  # the baseline: the same load, no reload
            time.sleep(args.baseline_seconds)
            rss_after.append(rss_mb(pid))
        for i in range(1, args.reloads + 1):
            write_zone(zones, args.records, f"gen-{i}")
            checker.written = i
            how = ("sighup", "post", "watch", "all")[(i - 1) % 4] if i <= args.reloads - burst else \
                ("sighup", "post", "watch")[(i - 1 - (args.reloads - burst)) % 3]
            if how in ("sighup", "all"):
                srv.proc.send_signal(signal.SIGHUP)
            if how in ("post", "all"):
                srv.post_reload()
            print(f"edit {i:2}: gen-{i}, trigger {how}", flush=True)
            if i <= args.reloads - burst:
                t0 = time.monotonic()
                while checker.canary < i:
                    if time.monotonic() - t0 > 600:
                        raise SystemExit(f"gen-{i} never served")
                    time.sleep(0.05)
                time.sleep(args.settle)
                rss_after.append(rss_mb(pid))
            else:
                time.sleep(0.4)
        t0 = time.monotonic()
        while checker.canary < args.reloads:
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"gen-{args.reloads} never served")
            time.sleep(0.05)
        srv.wait_posts()  # a POST that came during a reload waits for the one after it
        time.sleep(3.0)  # the last replaced snapshot is released
        rss_after.append(rss_mb(pid))
        t_last = time.time()
    finally:
        if checker is not None:
            checker.stop()
        if dnsperf is not None:
            dnsperf.send_signal(signal.SIGINT)
            dnsperf.wait(30)
        srv.proc.send_signal(signal.SIGTERM)
        try:
            srv.proc.wait(30)
        except subprocess.TimeoutExpired:
            srv.proc.kill()

    text = (tmp / "dnsperf.txt").read_text()
    lat = [float(m.group(2)) * 1000 for m in re.finditer(r"^> (\S+) \S+ \S+ ([\d.]+)$", text, re.M)]
    rcodes = {m.group(1): 0 for m in re.finditer(r"^> (\S+) \S+ \S+ [\d.]+$", text, re.M)}
    for m in re.finditer(r"^> (\S+) \S+ \S+ [\d.]+$", text, re.M):
        rcodes[m.group(1)] += 1

    def grab(pattern: str) -> float:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else float("nan")

    windows = srv.windows()
    inside = [lt * 1000 for (t, lt) in checker.samples if any(a <= t <= b for a, b in windows)]
    took = re.compile(r"reloaded configuration .* in ([\d.]+) s")
    durations = [float(m.group(1)) for line in srv.lines if (m := took.search(line))]
    figures: dict[str, Any] = {
        "load_average": os.getloadavg(), "server_nice": args.server_nice,
        "records": args.records, "edits": args.reloads, "qps_target": args.qps,
        "published_reloads": sum(1 for line in srv.lines if "reloaded configuration" in line),
        "reload_seconds": durations,
        "run_seconds": round(t_last - t_first, 1),
        "dnsperf_sent": grab(r"Queries sent:\s+(\d+)"), "dnsperf_lost": grab(r"Queries lost:\s+(\d+)"),
        "dnsperf_qps": grab(r"Queries per second:\s+([\d.]+)"), "dnsperf_rcodes": rcodes,
        "dnsperf_p50_ms": pct(lat, 0.5), "dnsperf_p99_ms": pct(lat, 0.99), "dnsperf_p999_ms": pct(lat, 0.999),
        "dnsperf_max_ms": max(lat) if lat else float("nan"),
        "dnsperf_started": t_perf, "reload_windows": windows,
        "checker_answers": len(checker.samples), "checker_lost": checker.lost, "wrong_answers": len(checker.wrong),
        "wrong_examples": checker.wrong[:5],
        "checker_in_reload_n": len(inside), "checker_in_reload_p99_ms": pct(inside, 0.99),
        "checker_in_reload_max_ms": max(inside) if inside else float("nan"),
        "posts_answered": [p.get("ok") for p in srv.posted],
        "rss_start_mb": round(rss_start, 1), "rss_after_mb": [round(x, 1) for x in rss_after],
        "rss_ratio_last_first": round(rss_after[-1] / rss_after[0], 2),
        "reload_fraction_of_run": round(sum(b - a for a, b in windows) / max(t_last - t_first, 1e-9), 2),
    }
    print(json.dumps(figures, indent=2))
    ok = (figures["dnsperf_lost"] == 0 and checker.lost == 0 and not checker.wrong
          and set(rcodes) <= {"NOERROR"} and figures["rss_ratio_last_first"] <= 1.5)
    print(f"lost {int(figures['dnsperf_lost'])} + {checker.lost}, wrong {len(checker.wrong)}, "
          f"p99 {figures['dnsperf_p99_ms']:.2f} ms (in reloads: {figures['checker_in_reload_p99_ms']:.2f} ms), "
          f"RSS {rss_after[0]:.0f} → {rss_after[-1]:.0f} MB: {'PASS' if ok else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if args.server_log:
        Path(args.server_log).write_text("\n".join(srv.lines) + "\n")
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
