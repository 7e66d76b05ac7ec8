"""dnsperf benchmark of lbdns, side by side with gdnsd (run through ``scripts/bench``).

Starts ``lbdns serve`` on the example zones (``zones/``) and, when it is installed, gdnsd on an
equivalent zone (the same addresses; the failover LB as a ``metafo`` resource, the weighted LB
as a ``weighted`` resource, the proximity LB as a ``geoip`` resource reading the same GeoIP
database). Both servers are pinned to one core (``taskset -c SERVER_CPU``) and ``dnsperf`` to
the other. For each workload, every server in turn (the order reversed each round, so the
servers share the machine's noise):

* warm-up (generated files only, ``--no-warmup`` skips it): one unmeasured pass through the
  file, so that every round sees servers that have met each name, cookie and network once;
* capacity: ``dnsperf -c 10 -q 100 -l 10`` (``--rounds`` runs, median): queries/second,
  average latency, lost queries, and the server's CPU time per query it processed (from
  ``/proc/PID/stat`` of the server process over the run, divided by the server's own query
  counter: ``lbdns_queries_total``, gdnsd's ``udp.reqs + tcp.reqs``) — CPU per query moves far
  less than qps when other processes share the machine;
* latency: p50/p99 of the answered queries at a light fixed load (``--light-qps``, 2,000) and at
  a fixed 20,000 qps (``--fixed-qps``), from dnsperf's per-query output (``-v``). A ``*`` after
  the p99 means dnsperf could not send the fixed rate (the server fell behind). Each latency run
  lasts ``--latency-duration`` (2) seconds and is repeated ``--latency-repeats`` (10) times, the
  servers alternating; the table shows the median of the repeats and, in brackets, the middle
  half (first to third quartile) of the p99s at the fixed load. The answers of the first
  ``--latency-skip`` (0.5) second of each run are not counted: ``dnsperf -Q`` starts below the
  rate and then sends the shortfall at once, bursts of 500–1,500 queries within ~15 ms in the
  first 150 ms (seen with the kernel's receive timestamps on the server's socket) — enough to set
  the p99 of a short run alone (1,400 queries at 10 µs each are a 14 ms queue). Many short runs,
  not a few long ones: on a virtual machine, the slowest 1 % of the answers at 20,000 qps sit in
  a few 50 ms stretches of a run (in 4–25 of a 2-second run's 40, for lbdns and gdnsd alike),
  where the hypervisor kept the server's core for milliseconds — at 1 % steal, 20 ms a run is
  enough. A run's p99 is then mostly whether such a stall fell in it; the median of many short
  runs, the servers alternating, compares the servers under the same conditions, and the
  quartiles show how much the runs spread. After it, as shares of those runs (median): ``busy``, the server's CPU
  time; ``wait``, the time its threads were runnable but waiting for their core
  (``/proc/PID/task/*/schedstat``); ``steal``
  the share the hypervisor took that core away (``/proc/stat``, a virtual machine's neighbours):
  well above a few per cent, the p99 measures them more than the server. They hit a server that
  needs more CPU per query harder: the busier its core at the fixed rate, the longer the queue a
  few milliseconds taken away leave behind, and the slower it drains.

A ``ratio`` row under each workload divides every lbdns figure by gdnsd's (for qps higher is
better, for µs and ms lower is better).

Workloads (fixed case: the same bytes every time; the others are shaped like resolver traffic,
written as binary query files for ``dnsperf -B``, deterministic for ``--seed``; see
``scripts/bench_queries.py``):

{workloads}

Response rate limiting of lbdns (``--rrl``, a comma list, one lbdns server per mode, same run):
dnsperf sends every query from 127.0.0.1, far above any per-client limit, so

* ``exempt`` (default) — RRL on with 127.0.0.1/32 in ``rrl.exempt``: what the check costs,
  and no query of the benchmark is ever limited;
* ``off`` — ``rrl.enabled: false``: the baseline for ``exempt``;
* ``on`` — RRL at its defaults: what a flooding client sees. Most responses are dropped, so
  dnsperf runs with 50,000 queries outstanding (``-t 1``) to keep flooding, its qps counts the
  answers and slips that came back, and ``handled`` (queries the server processed per second,
  from its own counter) is the server's capacity under that flood. No latency runs.

A full run (8 workloads, lbdns and gdnsd, ``--rounds 2``) takes about 19 minutes, 13 of them latency
runs; with ``--light-qps 0`` (no 2,000 qps runs) 12.4 minutes.
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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dns.message
import yaml
from bench_queries import WORKLOADS, write_stream  # scripts/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parent.parent
ZONES = ROOT / "zones"


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now (lbdns listens on both)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t.bind(("127.0.0.1", port))
        return int(port)


RRL_MODES = {
    "off": {"enabled": False},
    "exempt": {"exempt": ["127.0.0.1/32"]},
    "on": {},
}
"""``rrl:`` settings of each ``--rrl`` mode."""


def run_dnsperf(port: int, datafile: Path, *, binary: bool, cpu: str, duration: float, clients: int,
                outstanding: int, qps_limit: int | None = None, verbose: bool = False, runs: int = 0) -> str:
    """dnsperf's output for ``datafile`` sent to 127.0.0.1:``port`` for ``duration`` seconds (or
    until it went ``runs`` times through the file), pinned to ``cpu``."""
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile), "-c", str(clients),
           "-q", str(outstanding), "-l", str(duration), "-t", "1"]
    if runs:
        cmd += ["-n", str(runs)]
    if binary:
        cmd.append("-B")
    if qps_limit:
        cmd += ["-Q", str(qps_limit)]
    if verbose:
        cmd.append("-v")
    if cpu and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60).stdout


def parse_summary(text: str) -> dict[str, float]:
    """qps, average latency (ms) and lost queries (%) from dnsperf's summary (NaN when absent)."""
    def grab(pattern: str) -> float:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else float("nan")

    return {
        "qps": grab(r"Queries per second:\s+([\d.]+)"),
        "avg_ms": grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        "lost_pct": grab(r"Queries lost:\s+\d+ \(([\d.]+)%\)"),
    }


def percentiles(text: str, skip: int = 0) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, answered queries counted) from ``dnsperf -v`` output (one ``> RCODE ...
    latency`` line per answer, in the order the answers came), leaving out the first ``skip``
    answers; NaNs when nothing is left."""
    lat = [float(m.group(1)) * 1000 for m in re.finditer(r"^> \S+ .* ([\d.]+)$", text, re.M)][skip:]
    if not lat:
        return float("nan"), float("nan"), 0
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    return p50, p99, len(lat)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and all its threads so far (``utime`` and
    ``stime`` of ``/proc/PID/stat``, proc(5)); NaN when it cannot be read (not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 (state) is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue_wait_seconds(pid: int) -> float:
    """Seconds the threads of process ``pid`` have spent runnable but waiting for a CPU so far (the
    second field of ``/proc/PID/task/TID/schedstat``, summed; sched-stats.rst of the Linux docs);
    NaN when it cannot be read (not Linux, no schedstats)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return total / 1e9


def cpu_steal_seconds(cpu: str) -> float:
    """Seconds the hypervisor has kept CPU ``cpu`` (a number, as ``--server-cpu``) from this
    machine so far: the ``steal`` field of its line in ``/proc/stat`` (proc(5)); NaN when ``cpu``
    is not one CPU or the field cannot be read."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                fields = line.split()
                if fields[0] == f"cpu{int(cpu)}":
                    return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


class Server:
    """A DNS server under test on 127.0.0.1:``port``; ``proc`` is None for one the bench did not
    start (``--port``), whose counters are then unknown."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen[str] | None) -> None:
        self.name = name
        self.port = port
        self.proc = proc

    def queries(self) -> float:
        """Queries the server has processed so far, by its own counter (NaN: unknown)."""
        return float("nan")

    def counts(self) -> tuple[float, float]:
        """(queries processed so far, CPU seconds used so far). The CPU time is read before the
        query counter, whose reading costs the server some CPU: of two ``counts()`` around a run,
        the CPU delta excludes both readings and the query delta includes every query of the run."""
        cpu = process_cpu_seconds(self.proc.pid) if self.proc else float("nan")
        return self.queries(), cpu

    def waited(self) -> float:
        """Seconds the server has waited for a CPU so far (NaN: unknown)."""
        return run_queue_wait_seconds(self.proc.pid) if self.proc else float("nan")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s, to a server the bench started."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Lbdns(Server):
    """An ``lbdns serve`` the bench started; ``admin`` is its admin listener's port."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen[str], admin: int) -> None:
        super().__init__(name, port, proc)
        self.admin = admin

    def queries(self) -> float:
        """The sum of ``lbdns_queries_total`` from the admin listener's ``/metrics``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(float(m.group(1)) for m in re.finditer(r"^lbdns_queries_total\{[^}]*\} ([\d.e+]+)$", text, re.M))


class Gdnsd(Server):
    """A gdnsd the bench started from the configuration directory ``confdir``; ``ctl`` is the
    path of ``gdnsdctl``."""

    def __init__(self, name: str, port: int, proc: subprocess.Popen[str], confdir: Path, ctl: str) -> None:
        super().__init__(name, port, proc)
        self.confdir = confdir
        self.ctl = ctl

    def queries(self) -> float:
        """``udp.reqs + tcp.reqs`` of ``gdnsdctl stats`` (gdnsdctl(8))."""
        out = subprocess.run([self.ctl, "-c", str(self.confdir), "stats"], capture_output=True, text=True,
                             check=True, timeout=10).stdout
        stats = json.loads(out)
        return float(stats["udp"]["reqs"] + stats["tcp"]["reqs"])


def start_lbdns(tmp: Path, mode: str, cpu: str, geoip_db: str, name: str,
                extra: dict[str, Any] | None = None) -> Lbdns:
    """``lbdns serve`` on the example zones with the ``rrl`` settings of ``mode``, the further
    settings ``extra`` (lbdns.yaml keys) and the GeoIP City database ``geoip_db``; returns it
    once it answers."""
    port, admin = free_port(), free_port()
    config = tmp / f"lbdns-{name.replace(':', '-')}.yaml"
    config.write_text(yaml.safe_dump({"rrl": RRL_MODES[mode], **(extra or {})}))
    cmd = [sys.executable, "-m", "lbdns.cli", "serve", "--config", str(config), "--zones", str(ZONES),
           "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--no-probes", "--no-watch",
           "--geoip-db", geoip_db, "--log-level", "warning"]
    if cpu and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    # the working directory is the scratch directory: files the server creates there (the admin
    # token) stay out of the checkout
    logfile = tmp / f"lbdns-{mode}.log"
    with logfile.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=tmp,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    server = Lbdns(name, port, proc, admin)
    try:
        wait_answering(port, proc, 30, "lbdns serve", logfile)
        deadline = time.monotonic() + 30
        while True:  # the admin listener may come up after the DNS one
            try:
                server.queries()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"lbdns serve: no admin listener on port {admin}") from None
                time.sleep(0.1)
    except SystemExit:
        server.stop()
        raise
    return server


def gdnsd_binary(name: str) -> str | None:
    """The path of gdnsd's ``name`` (``gdnsd`` is in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/bin"):
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    return None


def _pool_addresses(pool: dict[str, Any]) -> list[str]:
    return [o["address"] for o in pool["origins"] if ":" not in str(o["address"])]


def gdnsd_zone_data(zones: Path) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The gdnsd equivalent of the example zones in ``zones`` (lbdns YAML): (zone file lines by
    zone name, the ``plugins`` configuration). Translated: SOA, NS, every A and NS record (so a
    delegation and its glue stay what they are), and the load balancers without rules whose policy
    has a gdnsd counterpart — failover (``steering_policy: off``) as a
    ``metafo`` resource over the pools' IPv4 origins, ``random`` over one pool with weighted
    origins as a ``weighted`` resource, ``proximity`` as a ``geoip`` resource in City auto mode
    with the pools' coordinates (gdnsd-plugin-metafo(8), -weighted(8), -geoip(8)). Other record
    types and load balancers are left out: the workloads do not ask for them."""
    pools = {p["name"]: p for p in yaml.safe_load((zones / "_pools.yaml").read_text())["pools"]}
    files: dict[str, list[str]] = {}
    metafo: dict[str, Any] = {}
    weighted: dict[str, Any] = {}
    geoip_maps: dict[str, Any] = {}
    geoip_res: dict[str, Any] = {}
    for path in sorted(zones.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if "zone" not in doc:
            continue
        zone, soa = doc["zone"], doc["soa"]
        neg = int(soa.get("minimum", 300))
        lines = [f"$TTL {int(soa.get('ttl', 3600))}",
                 f"@ {neg} SOA {soa['mname']} {soa['rname']} {soa['serial']} {soa.get('refresh', 7200)} "
                 f"{soa.get('retry', 3600)} {soa.get('expire', 1209600)} {neg}"]
        lines += [f"@ NS {ns}" for ns in doc["ns"]]
        lbs = doc.get("load_balancers") or {}
        for label, recs in (doc.get("records") or {}).items():
            if label in lbs:
                continue
            for rec in recs if isinstance(recs, list) else [recs]:
                if rec["type"] in ("A", "NS"):
                    for value in rec.get("values") or [rec["value"]]:
                        lines.append(f"{label or '@'} {rec['ttl']} {rec['type']} {value}")
        for label, lb in lbs.items():
            key = f"{label}.{zone}".replace(".", "_")
            policy = "rules" if lb.get("rules") else lb.get("steering_policy", "off")
            names = lb["default_pools"]
            dcmap = {n: _pool_addresses(pools[n]) for n in names}
            if policy == "off":
                metafo[key] = {"datacenters": names, "dcmap": dcmap}
                plugin = "metafo"
            elif policy == "random" and len(names) == 1:
                weighted[key] = {o["name"]: [o["address"], max(1, round(1000 * float(o.get("weight", 1))))]
                                 for o in pools[names[0]]["origins"] if ":" not in str(o["address"])}
                plugin = "weighted"
            elif policy == "proximity":
                geoip_maps[key] = {"datacenters": names,
                                   "auto_dc_coords": {n: [pools[n]["latitude"], pools[n]["longitude"]] for n in names}}
                geoip_res[key] = {"map": key, "dcmap": dcmap}
                plugin = "geoip"
            else:
                continue
            lines.append(f"{label} {lb.get('ttl', 30)} DYNA {plugin}!{key}")
        files[zone] = lines
    plugins: dict[str, Any] = {"metafo": {"resources": metafo}, "weighted": weighted,
                               "geoip": {"maps": geoip_maps, "resources": geoip_res}}
    return files, plugins


def _vscf(value: Any, indent: str = "") -> str:
    """``value`` in gdnsd's configuration syntax (vscf: ``key => value`` hashes, ``[ ]`` arrays)."""
    if isinstance(value, dict):
        inner = "".join(f"{indent}  {k} => {_vscf(v, indent + '  ')}\n" for k, v in value.items())
        return "{\n" + inner + indent + "}"
    if isinstance(value, list):
        return "[ " + ", ".join(_vscf(v, indent) for v in value) + " ]"
    return str(value)


def start_gdnsd(tmp: Path, cpu: str, geoip_db: str, gdnsd: str, ctl: str) -> Gdnsd:
    """gdnsd (one UDP and one TCP thread) on the zone of :func:`gdnsd_zone_data` with
    ``geoip_db`` as every geoip map's database; returns it once it answers."""
    confdir = tmp / "gdnsd"
    (confdir / "zones").mkdir(parents=True)
    files, plugins = gdnsd_zone_data(ZONES)
    for zone, lines in files.items():
        (confdir / "zones" / zone).write_text("\n".join(lines) + "\n")
    for m in plugins["geoip"]["maps"].values():
        m["geoip2_db"] = geoip_db
    port = free_port()
    options = {"listen": [f"127.0.0.1:{port}"], "udp_threads": 1, "tcp_threads": 1,
               "run_dir": str(confdir / "run"), "state_dir": str(confdir / "state")}
    (confdir / "config").write_text(f"options => {_vscf(options)}\nplugins => {_vscf(plugins)}\n")
    cmd = [gdnsd, "-c", str(confdir), "start"]
    if cpu and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu, *cmd]
    logfile = confdir / "log"
    with logfile.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=tmp)
    server = Gdnsd("gdnsd", port, proc, confdir, ctl)
    try:
        wait_answering(port, proc, 60, "gdnsd", logfile)
    except SystemExit:
        server.stop()
        raise
    return server


def wait_answering(port: int, proc: subprocess.Popen[str], limit: float, what: str = "lbdns serve",
                   logfile: Path | None = None) -> None:
    """Wait until the server on 127.0.0.1:``port`` answers a UDP query (any answer). Raises
    SystemExit naming ``what`` (with the end of its ``logfile``) when ``proc`` exits or ``limit``
    seconds pass."""
    def fail(why: str) -> SystemExit:
        tail = logfile.read_text(errors="replace")[-2000:] if logfile and logfile.exists() else ""
        return SystemExit(f"{what} {why}" + (f"; its log ends:\n{tail}" if tail else ""))

    query = dns.message.make_query("lbdns-bench-ready.invalid", "A").to_wire()
    deadline = time.monotonic() + limit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while True:
            if proc.poll() is not None:
                raise fail(f"exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise fail(f"did not answer on port {port} within {limit:g} s")
            s.sendto(query, ("127.0.0.1", port))
            try:
                s.recv(4096)
                return
            except OSError:
                time.sleep(0.1)


def default_geoip_db() -> str:
    """The GeoLite2-City database embedded in the ``maxminddb-geolite2`` package (lbdns's
    default)."""
    from geolite2 import geolite2  # type: ignore[import-untyped]

    return str(geolite2.filename)


NUMBERS = ("qps", "avg_ms", "lost_pct", "handled", "cpu_us", "p50_light", "p99_light", "p50_fixed", "p99_fixed")
HEADER = (f"{'workload':10} {'server':12} {'qps':>8} {'avg ms':>7} {'lost %':>6} {'handled':>8} {'cpu µs/q':>8} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'p50 ms':>7} {'p99 ms':>8}")


def row(workload: str, server: str, r: dict[str, Any]) -> str:
    """One table line of a server's figures (the keys of :data:`NUMBERS`)."""
    star = "*" if r.get("fixed_short") else " "
    lo, hi = r.get("p99_fixed_quartiles", (float("nan"), float("nan")))
    spread = f" [{lo:.3f}–{hi:.3f}]" if lo == lo and lo != hi else ""
    for share in ("busy", "wait", "steal"):
        x = r.get(f"fixed_{share}", float("nan"))
        spread += f" {share} {x:.0%}" if x == x else ""
    return (f"{workload:10} {server:12} {_num(r['qps'], 8, 0)} {_num(r['avg_ms'], 7, 3)} {_num(r['lost_pct'], 6, 2)} "
            f"{_num(r['handled'], 8, 0)} {_num(r['cpu_us'], 8, 2)} {_num(r['p50_light'], 7, 3)} "
            f"{_num(r['p99_light'], 7, 3)} {_num(r['p50_fixed'], 7, 3)} {_num(r['p99_fixed'], 7, 3)}{star}{spread}")


def _num(x: float, width: int, digits: int) -> str:
    """``x`` in ``width`` columns with ``digits`` decimals, or "-" when not measured (NaN)."""
    return f"{x:{width}.{digits}f}" if x == x else f"{'-':>{width}}"


def ratio_row(workload: str, name: str, a: dict[str, Any], b: dict[str, Any]) -> str:
    """One table line of ``a``'s figures divided by ``b``'s ("-" where undefined)."""
    def q(k: str) -> str:
        x, y = a[k], b[k]
        return f"{x / y:.2f}×" if y and y == y and x == x else "-"

    return (f"{workload:10} {name:12} {q('qps'):>8} {q('avg_ms'):>7} {'':>6} {q('handled'):>8} {q('cpu_us'):>8} "
            f"{q('p50_light'):>7} {q('p99_light'):>7} {q('p50_fixed'):>7} {q('p99_fixed'):>7}")


def capacity(server: Server, datafile: Path, binary: bool, args: argparse.Namespace, outstanding: int
             ) -> tuple[dict[str, float], float, float]:
    """One throughput run: (dnsperf summary, queries/s the server processed, server CPU µs per
    processed query)."""
    q0, c0 = server.counts()
    t0 = time.monotonic()
    summary = parse_summary(run_dnsperf(server.port, datafile, binary=binary, cpu=args.client_cpu,
                                        duration=args.duration, clients=args.clients, outstanding=outstanding))
    t1 = time.monotonic()  # before reading the counters, which can be slow on a busy machine
    q1, c1 = server.counts()
    handled = (q1 - q0) / (t1 - t0)
    return summary, handled, (c1 - c0) / (q1 - q0) * 1e6 if q1 > q0 else float("nan")


def latency(server: Server, datafile: Path, binary: bool, args: argparse.Namespace, qps: int, clients: int
            ) -> tuple[float, float, bool, float, float, float]:
    """p50 and p99 ms at a fixed ``qps`` (``dnsperf -Q``) over the answers after the first
    ``args.latency_skip`` seconds' worth, whether dnsperf sent less than 95 % of that rate, then
    three shares of the run (0–1): the server's CPU time (user + system, all threads), the time
    its threads spent waiting for their core, and the time the hypervisor stole from that core
    (NaNs when ``qps`` is 0 or unknown)."""
    nan = float("nan")
    if not qps:
        return nan, nan, False, nan, nan, nan
    c0 = process_cpu_seconds(server.proc.pid) if server.proc else nan
    w0, s0, t0 = server.waited(), cpu_steal_seconds(args.server_cpu), time.monotonic()
    text = run_dnsperf(server.port, datafile, binary=binary, cpu=args.client_cpu,
                       duration=args.latency_duration + args.latency_skip, clients=clients,
                       outstanding=max(100, qps // 20), qps_limit=qps, verbose=True)
    took = time.monotonic() - t0
    waited, stolen = (server.waited() - w0) / took, (cpu_steal_seconds(args.server_cpu) - s0) / took
    busy = (process_cpu_seconds(server.proc.pid) - c0) / took if server.proc else nan
    p50, p99, _ = percentiles(text, skip=int(qps * args.latency_skip))
    return p50, p99, parse_summary(text)["qps"] < 0.95 * qps, busy, waited, stolen


def quartiles(xs: list[float]) -> tuple[float, float]:
    """(first, third) quartile of ``xs`` (statistics.quantiles, inclusive method: within the
    range of ``xs``); both the one value for a single run, NaNs for none."""
    if len(xs) < 2:
        x = xs[0] if xs else float("nan")
        return x, x
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def alternate(servers: list[Server], i: int) -> Iterable[Server]:
    """The servers in order for even ``i``, reversed for odd (ABBA: drift hits every server alike)."""
    return servers if i % 2 == 0 else list(reversed(servers))


def bench_workload(w: str, datafile: Path, binary: bool, servers: list[Server], modes: dict[str, str],
                   args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every measurement of workload ``w`` on every server (rounds alternate the server order)."""
    runs: dict[str, list[tuple[dict[str, float], float, float]]] = {s.name: [] for s in servers}
    if args.warmup and binary:
        for s in servers:  # one pass through the file, not measured: every round then sees the same state
            run_dnsperf(s.port, datafile, binary=binary, cpu=args.client_cpu, duration=60, clients=args.clients,
                        outstanding=args.outstanding, runs=1)
    for i in range(args.rounds):
        for s in alternate(servers, i):
            # limited queries are never answered: keep enough outstanding to go on flooding
            outstanding = max(args.outstanding, 50_000) if modes.get(s.name) == "on" else args.outstanding
            runs[s.name].append(capacity(s, datafile, binary, args, outstanding))
    nan = float("nan")
    results: dict[str, dict[str, Any]] = {}
    for s in servers:
        rs = runs[s.name] or [({"qps": nan, "avg_ms": nan, "lost_pct": nan}, nan, nan)]  # --rounds 0
        results[s.name] = {
            "qps": statistics.median(r[0]["qps"] for r in rs),
            "avg_ms": statistics.median(r[0]["avg_ms"] for r in rs),
            "lost_pct": max(r[0]["lost_pct"] for r in rs),
            "handled": statistics.median(r[1] for r in rs),
            "cpu_us": statistics.median(r[2] for r in rs),
        }
    for i, (load, key) in enumerate(((args.light_qps, "light"), (args.fixed_qps, "fixed"))):
        lat: dict[str, list[tuple[float, float, bool, float, float, float]]] = {s.name: [] for s in servers}
        for rep in range(max(1, args.latency_repeats)):
            for s in alternate(servers, i + rep):
                qps = 0 if modes.get(s.name) == "on" else load  # RRL drops: the latencies would mean nothing
                lat[s.name].append(latency(s, datafile, binary, args, qps, 1 if key == "light" else args.clients))
        for s in servers:
            ls = lat[s.name]
            results[s.name][f"p50_{key}"] = statistics.median(x[0] for x in ls)
            results[s.name][f"p99_{key}"] = statistics.median(x[1] for x in ls)
            if key == "fixed":
                results[s.name]["fixed_short"] = any(x[2] for x in ls)
                results[s.name]["p99_fixed_quartiles"] = quartiles([x[1] for x in ls])
                for n, share in enumerate(("busy", "wait", "steal")):
                    results[s.name][f"fixed_{share}"] = statistics.median(x[3 + n] for x in ls)
    return results


def workload_help() -> str:
    """The workload list of ``--help``."""
    return "\n".join(f"* ``{w.name}`` — {w.doc};" for w in WORKLOADS.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").format(workloads=workload_help()),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)}")
    ap.add_argument("--servers", default="lbdns,gdnsd",
                    help="comma list of lbdns, gdnsd (gdnsd is skipped with a note when not installed)")
    ap.add_argument("--rrl", default="exempt", help="comma list of off, exempt, on (one lbdns server each)")
    ap.add_argument("--port", type=int, default=0, help="benchmark a server already on this port (no start)")
    ap.add_argument("--server-cpu", default="1", help="core for the servers (taskset); '' = no pinning")
    ap.add_argument("--client-cpu", default="0", help="core for dnsperf (taskset); '' = no pinning")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per throughput run (dnsperf -l)")
    ap.add_argument("--clients", type=int, default=10, help="dnsperf -c")
    ap.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    ap.add_argument("--rounds", type=int, default=1,
                    help="throughput runs per workload and server (median; 0 = latency runs only)")
    ap.add_argument("--light-qps", type=int, default=2000, help="light fixed load for a p50/p99 run (0 = skip)")
    ap.add_argument("--fixed-qps", type=int, default=20000, help="fixed load for a second p50/p99 run (0 = skip)")
    ap.add_argument("--latency-duration", type=float, default=2.0,
                    help="seconds per p50/p99 run, counted after --latency-skip")
    ap.add_argument("--latency-skip", type=float, default=0.5,
                    help="seconds at the start of each p50/p99 run whose answers are not counted (dnsperf's "
                         "catch-up bursts)")
    ap.add_argument("--latency-repeats", type=int, default=10,
                    help="p50/p99 runs per load, workload and server (median; the p99 quartiles are shown)")
    ap.add_argument("--queries", type=int, default=50_000,
                    help="messages per generated query file (different names, cookies, ECS networks); "
                         "dnsperf cycles through the file")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="measure from the first query (by default each server first gets one unmeasured pass "
                         "through a generated file: its first sight of each name, cookie and network)")
    ap.add_argument("--seed", type=int, default=13, help="seed of the generated query files")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                    help="one more lbdns server, named lbdns:NAME, with these lbdns.yaml settings (values "
                         "read as YAML), e.g. --variant nobatch:udp_batch=0; repeatable")
    ap.add_argument("--geoip-db", default="", help="GeoIP City MMDB for both servers (default: lbdns's embedded "
                                                   "GeoLite2-City)")
    args = ap.parse_args()

    workloads = [x.strip() for x in args.workloads.split(",") if x.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"--workloads: unknown workload {w!r} ({', '.join(WORKLOADS)})")
    modes = [m.strip() for m in args.rrl.split(",") if m.strip()]
    for m in modes:
        if m not in RRL_MODES:
            ap.error(f"--rrl: unknown mode {m!r} (off, exempt, on)")
    wanted = {x.strip() for x in args.servers.split(",") if x.strip()}
    if wanted - {"lbdns", "gdnsd"}:
        ap.error(f"--servers: unknown server(s) {', '.join(sorted(wanted - {'lbdns', 'gdnsd'}))} (lbdns, gdnsd)")
    gdnsd, ctl = gdnsd_binary("gdnsd"), gdnsd_binary("gdnsdctl")
    if "gdnsd" in wanted and not args.port and not (gdnsd and ctl):
        print("note: gdnsd is not installed (apt-get install gdnsd): lbdns only", flush=True)
        wanted.discard("gdnsd")
    geoip_db = args.geoip_db or default_geoip_db()
    variants: list[tuple[str, dict[str, Any]]] = [("", {})]
    for v in args.variant:
        vname, _, pairs = v.partition(":")
        try:
            variants.append((vname, {k.strip(): yaml.safe_load(val) for k, _, val in
                                     (p.partition("=") for p in pairs.split(",") if p.strip())}))
        except yaml.YAMLError as exc:
            ap.error(f"--variant {v!r}: {exc}")

    tmp = Path(tempfile.mkdtemp(prefix="lbdns-bench-"))
    started = time.monotonic()
    servers: list[Server] = []
    mode_of: dict[str, str] = {}
    try:
        files: dict[str, tuple[Path, bool]] = {}
        for w in workloads:
            spec = WORKLOADS[w]
            if spec.build is None:
                (tmp / f"{w}.txt").write_text("\n".join(spec.text) + "\n")
                files[w] = (tmp / f"{w}.txt", False)
            else:
                files[w] = (write_stream(tmp / f"{w}.bin", spec.build(random.Random(args.seed), args.queries)), True)
        if args.port:
            servers.append(Server("(running)", args.port, None))
        else:
            if "lbdns" in wanted:
                for m in modes:
                    for vname, extra in variants:
                        name = "lbdns" if len(modes) == 1 else f"lbdns:{m}"
                        name += f":{vname}" if vname else ""
                        servers.append(start_lbdns(tmp, m, args.server_cpu, geoip_db, name, extra))
                        mode_of[name] = m
            if "gdnsd" in wanted and gdnsd and ctl:
                servers.append(start_gdnsd(tmp, args.server_cpu, geoip_db, gdnsd, ctl))
        load = os.getloadavg()
        print(f"dnsperf -c {args.clients} -q {args.outstanding} -l {args.duration:g} -t 1, median of {args.rounds}; "
              f"servers on cpu {args.server_cpu or 'any'}, dnsperf on cpu {args.client_cpu or 'any'}; "
              f"GeoIP {geoip_db}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"latency: dnsperf -Q, {args.latency_duration:g} s counted after {args.latency_skip:g} s, median of "
              f"{max(1, args.latency_repeats)} (first–third quartile of the p99s at the fixed load in brackets; "
              "busy: the server's CPU time, wait: its wait for its core, steal: the hypervisor's take of that core, "
              "as shares of those runs)")
        light, fixed = (f"at {q:,} qps" if q else "not run" for q in (args.light_qps, args.fixed_qps))
        print(f"{'':76}{light:^15} {fixed:^16}")
        print(HEADER, flush=True)
        gd = next((s for s in servers if s.name == "gdnsd"), None)
        for w in workloads:
            datafile, binary = files[w]
            results = bench_workload(w, datafile, binary, servers, mode_of, args)
            for s in servers:
                print(row(w, s.name, results[s.name]))
            if gd is not None:
                for s in servers:
                    if s is not gd:
                        label = "ratio" if len(servers) == 2 else f"ratio:{s.name.partition(':')[2]}"
                        print(ratio_row(w, label, results[s.name], results[gd.name]))
            sys.stdout.flush()
        print("handled: queries/s the server processed (its own counter); cpu µs/q: server CPU time per processed "
              "query; ratio: lbdns / gdnsd; * the server fell behind the fixed rate")
        print(f"took {time.monotonic() - started:.0f} s; load average now "
              + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
