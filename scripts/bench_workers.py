"""qps and server CPU per query of ``lbdns serve`` with ``workers: 1`` against ``workers: N``
(docs/operations.md "Workers").

For each worker count it starts ``lbdns serve`` on the example zones (response rate limiting on,
127.0.0.1 exempt, as ``scripts/bench``'s default), then for each workload and round runs
``scripts/bench.py --port PORT`` (its unmeasured warm-up pass, then dnsperf's capacity run
against the running server; unpinned unless told)
and measures, around that run, the CPU time of the whole server process tree — the control
process, every worker, the snapshot builder — with psutil, and the queries the server counted
(``lbdns_queries_total``, summed over the workers by the control process). scripts/bench.py
reads CPU from one process's ``process_cpu_seconds_total``, which with workers is the control
process only; hence this wrapper. ``control %`` is the control process's share of that CPU
(with ``workers: 1`` the one process that answers).

Usage: ``.venv/bin/python scripts/bench_workers.py --workers 1,2 --rounds 3``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench import RRL_MODES, Server, free_port, wait_answering  # noqa: E402


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``pid`` and each of its descendants, by pid."""
    out: dict[int, float] = {}
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def counted(admin: int) -> float:
    """The server's ``lbdns_queries_total``, summed over its labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r"^lbdns_queries_total\{[^}]*\} ([\d.e+]+)$", text, re.M))


def start(tmp: Path, workers: int, cpu: str) -> tuple[subprocess.Popen[str], int, int]:
    port, admin = free_port(), free_port()
    config = tmp / f"lbdns-w{workers}.yaml"
    config.write_text(yaml.safe_dump({"rrl": RRL_MODES["exempt"], "workers": workers}))
    cmd = [sys.executable, "-m", "lbdns.cli", "serve", "--config", str(config), "--zones", str(ROOT / "zones"),
           "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--no-probes", "--no-watch",
           "--log-level", "warning"]
    if cpu:
        cmd = ["taskset", "-c", cpu, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True, cwd=tmp,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    wait_answering(port, proc, 60)
    deadline = time.monotonic() + 60
    while True:  # the admin listener opens after the workers answer
        try:
            counted(admin)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the admin listener did not open") from None
            time.sleep(0.2)
    return proc, port, admin


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2", help="comma list of worker counts")
    ap.add_argument("--workloads", default="static,lb,ecs,mix", help="scripts/bench workloads, comma list")
    ap.add_argument("--rounds", type=int, default=3, help="runs per workload and worker count (median reported)")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--outstanding", type=int, default=100)
    ap.add_argument("--server-cpu", default="", help="taskset list for the server ('' = unpinned)")
    ap.add_argument("--client-cpu", default="", help="taskset list for dnsperf ('' = unpinned)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lbdns-bench-workers-"))
    print(f"{'workers':>7} {'workload':8} {'qps':>9} {'cpu µs/q':>9} {'control %':>9}  rounds (qps; cpu µs/q)")
    for n in [int(x) for x in args.workers.split(",")]:
        proc, port, admin = start(tmp, n, args.server_cpu)
        try:
            for w in args.workloads.split(","):
                qps, cpu_us, control = [], [], []
                for _ in range(args.rounds):
                    c0, q0 = tree_cpu(proc.pid), counted(admin)
                    out = subprocess.run(
                        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--port", str(port), "--workloads", w,
                         "--duration", str(args.duration), "--clients", str(args.clients),
                         "--outstanding", str(args.outstanding), "--light-qps", "0", "--fixed-qps", "0",
                         "--rounds", "1", "--server-cpu", "", "--client-cpu", args.client_cpu],
                        capture_output=True, text=True, check=True, timeout=args.duration + 120).stdout
                    c1, q1 = tree_cpu(proc.pid), counted(admin)
                    row = next(line for line in out.splitlines() if line.split()[1:2] == ["(running)"])
                    qps.append(float(row.split()[2]))
                    used = sum(c1.get(p, 0.0) - c0.get(p, 0.0) for p in c1)
                    cpu_us.append(used / (q1 - q0) * 1e6 if q1 > q0 else float("nan"))
                    control.append((c1[proc.pid] - c0[proc.pid]) / used * 100 if used else 0.0)
                print(f"{n:7d} {w:8} {statistics.median(qps):9.0f} {statistics.median(cpu_us):9.2f} "
                      f"{statistics.median(control):9.1f}  {' '.join(f'{x:.0f}' for x in qps)}; "
                      f"{' '.join(f'{x:.2f}' for x in cpu_us)}", flush=True)
        finally:
            Server("lbdns", port, proc).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
