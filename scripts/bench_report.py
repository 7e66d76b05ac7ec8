"""What a pushed health report (``POST /report``) costs the server, in CPU time.

Starts ``lbdns serve`` (the tree on PYTHONPATH, probes off) with one pool of ``--origins``
origins monitored by an ``external`` monitor, then sends ``--reports`` reports over one
keep-alive HTTP connection (alternating healthy/unhealthy every ``--flip`` reports, with an
``rtt_ms``) and reads the server's user+system CPU time from /proc before and after. The same
number of ``GET /healthz`` requests is timed too, so the figure can be split into "an
authenticated admin request" and "the report itself". Prints µs of server CPU per request,
median of ``--runs`` runs.

    PYTHONPATH=. .venv/bin/python scripts/bench_report.py --reports 1000 --runs 5
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench import free_port, wait_answering  # scripts/ is on sys.path when this file runs as a script

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, default=1000)
    ap.add_argument("--origins", type=int, default=10)
    ap.add_argument("--flip", type=int, default=0, help="alternate healthy/unhealthy every N reports (0: never)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        zones = d / "zones"
        zones.mkdir()
        origins = [{"name": f"o{i}", "address": f"192.0.2.{i + 1}"} for i in range(args.origins)]
        (zones / "_account.yaml").write_text(yaml.safe_dump({
            "monitors": [{"id": "ext", "type": "external", "interval": 60}],
            "pools": [{"name": "p", "monitor": "ext", "origins": origins}]}))
        (zones / "example.com.yaml").write_text(yaml.safe_dump({
            "zone": "example.com", "ns": ["ns1.example.com."],
            "soa": {"mname": "ns1.example.com.", "rname": "h.example.com.", "serial": 1, "refresh": 7200,
                    "retry": 3600, "expire": 1209600, "minimum": 300, "ttl": 3600},
            "load_balancers": {"lb": {"default_pools": ["p"], "fallback_pool": "p"}}}))
        port, admin = free_port(), free_port()
        (d / "admin.token").write_text("b" * 40)
        (d / "lbdns.yaml").write_text(yaml.safe_dump({
            "admin": {"enabled": True, "address": "127.0.0.1", "port": admin, "token_file": str(d / "admin.token")},
            "operator_state_file": str(d / "state.json")}))
        proc = subprocess.Popen([sys.executable, "-m", "lbdns.cli", "serve", "--config", str(d / "lbdns.yaml"),
                                 "--zones", str(zones), "--listen", f"127.0.0.1:{port}", "--no-probes",
                                 "--log-level", "warning"], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                text=True)
        try:
            wait_answering(port, proc, 60)
            conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
            headers = {"Authorization": "Bearer " + "b" * 40, "Content-Type": "application/json"}

            def healthz() -> None:
                conn.request("GET", "/healthz")
                conn.getresponse().read()

            def report(i: int) -> None:
                healthy = not args.flip or (i // args.flip) % 2 == 0
                body = {"pool": "p", "origin": f"o{i % args.origins}", "healthy": healthy, "rtt_ms": 10.0 + i % 7,
                        "expires_in": 600}
                conn.request("POST", "/report", body=json.dumps(body), headers=headers)
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200, resp.status

            per: dict[str, list[float]] = {"healthz": [], "report": []}
            for _ in range(args.runs):
                for name, fn in (("healthz", lambda i: healthz()), ("report", report)):
                    time.sleep(0.3)  # let a coalesced publish settle
                    c0 = cpu_seconds(proc.pid)
                    for i in range(args.reports):
                        fn(i)
                    time.sleep(0.3)
                    per[name].append((cpu_seconds(proc.pid) - c0) / args.reports * 1e6)
            for name, vals in per.items():
                print(f"{name}: median {statistics.median(vals):.0f} µs server CPU per request "
                      f"(runs: {', '.join(f'{v:.0f}' for v in vals)})")
            extra = statistics.median(per["report"]) - statistics.median(per["healthz"])
            print(f"report beyond a plain admin request: {extra:.0f} µs")
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
