"""One ``dig`` at a load balancer whose hostname origin leads back into lbdns: how many queries
lbdns then sends itself, and how long other queries wait meanwhile.

Starts a small upstream DNS server (``tests/integration/upstream_dns.py``) that answers
``alias.other.test`` the way a recursive resolver would when that name is a CNAME to
``lb-loop.example.com``: it asks lbdns for ``lb-loop.example.com`` and returns the CNAME plus
lbdns's answer. Then starts ``lbdns serve`` (the tree on PYTHONPATH) with that server as
``upstream_resolvers`` and ``lb-loop``'s only origin ``alias.other.test``, sends one ``dig``
for the LB while another thread queries a static name every 10 ms, and prints the dig's query
time, the queries the upstream sent on to lbdns within ``--seconds`` after it (the
self-queries), and the static queries' median and maximum latency.

    PYTHONPATH=. .venv/bin/python scripts/bench_hostname_loop.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
from bench import free_port, wait_answering  # scripts/ is on sys.path when this file runs as a script

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for tests.integration
from tests.integration.harness import Fixture
from tests.integration.upstream_dns import UpstreamDns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="how long to count after the dig (default 3)")
    args = ap.parse_args()
    up = UpstreamDns()
    work = Path(tempfile.mkdtemp(prefix="lbdns-loop-"))
    fx = Fixture()
    fx.account["pools"].append({"name": "p-loop", "origins": [{"name": "h", "address": "alias.other.test"}]})
    fx.zone["load_balancers"]["lb-loop"] = {"default_pools": ["p-loop"], "fallback_pool": "p-fallback"}
    zones = fx.write(work)
    port = free_port()
    (work / "lbdns.yaml").write_text(f"upstream_resolvers: ['127.0.0.1:{up.port}']\nhostname_cache_max_ttl: 5\n"
                                     "rrl: {enabled: false}\n")
    up.forward["alias.other.test."] = ("127.0.0.1", port, "lb-loop.example.com.")
    proc = subprocess.Popen([sys.executable, "-m", "lbdns.cli", "serve", "--config", str(work / "lbdns.yaml"),
                             "--zones", str(zones), "--listen", f"127.0.0.1:{port}", "--admin", "off", "--no-probes",
                             "--no-watch", "--log-level", "error"], cwd=work, env=dict(os.environ))
    try:
        wait_answering(port, proc, 30.0)
        time.sleep(1.0)

        def ask(name: str) -> None:
            dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3.0)

        latencies: list[float] = []
        stop = threading.Event()

        def other() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                with contextlib.suppress(dns.exception.Timeout):
                    ask("ns1.example.com")
                latencies.append(time.monotonic() - t0)
                time.sleep(0.01)

        thread = threading.Thread(target=other)
        thread.start()
        before = up.forwarded
        out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "lb-loop.example.com", "A", "+tries=1",
                              "+time=5", "+noall", "+answer", "+stats"], capture_output=True, text=True, check=False)
        time.sleep(args.seconds)
        stop.set()
        thread.join()
        answer = [line for line in out.stdout.splitlines() if line and not line.startswith(";")]
        qtime = next((line.strip("; ") for line in out.stdout.splitlines() if "Query time" in line), "no answer")
        print(f"dig lb-loop.example.com A: {qtime}; answer {answer}")
        print(f"self-queries within {args.seconds:g} s: {up.forwarded - before}")
        print(f"static queries meanwhile: n={len(latencies)} median {statistics.median(latencies) * 1000:.1f} ms "
              f"max {max(latencies) * 1000:.1f} ms")
    finally:
        proc.terminate()
        proc.wait(10)
        up.stop()


if __name__ == "__main__":
    main()
