"""How a worker gets its snapshot (docs/architecture.md "Workers"): streamed builder frames
against forking the control process, on a zone of ``--records`` A records.

Prints, in one process holding the built snapshot:

* ``frames``: pickling the snapshot into builder frames (what the control process does once at
  start; reloads arrive as frames already), their size;
* ``assemble``: unpickling them all into a snapshot (a worker's CPU to install a generation;
  it is paced in slices, so answering continues);
* ``fork``: ``os.fork()`` of this process as the parent sees it (its pause), and the RSS;

then, end to end with ``lbdns serve`` and ``workers: 2``: start until both workers answer, a
killed worker's restart until it answers again, and a reload until every worker serves it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench import Server, free_port  # noqa: E402
from bench_reload import rss_mb, write_zone  # noqa: E402


def in_process(zones: Path, rounds: int) -> None:
    from lbdns.builder import Assembly, lean_config, snapshot_frames
    from lbdns.config.settings import ServerSettings
    from lbdns.config.validate import load_config
    from lbdns.ipc import FRAME
    from lbdns.snapshot import build_snapshot

    settings = ServerSettings()
    snap = build_snapshot(load_config(zones, settings), settings, 1)
    snap = snap.__class__(snap.zones, snap.pools, snap.plans, lean_config(snap.config), settings, 1)
    gc.collect()
    gc.freeze()
    t_frames, t_asm, t_fork = [], [], []
    frames: list[bytes] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        frames = list(snapshot_frames(snap))
        t_frames.append(time.perf_counter() - t0)
        import pickle

        msgs = [pickle.loads(f[FRAME.size:]) for f in frames]
        t0 = time.perf_counter()
        asm = Assembly()
        for m in msgs:
            asm.take(m)
        asm.snapshot(settings)
        t_asm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        t_fork.append(time.perf_counter() - t0)
        os.waitpid(pid, 0)
    size = sum(len(f) for f in frames)
    print(f"frames: {statistics.median(t_frames) * 1000:.0f} ms to pickle, {len(frames)} frames, "
          f"{size / 1e6:.1f} MB")
    print(f"assemble: {statistics.median(t_asm) * 1000:.0f} ms to unpickle (unpaced)")
    print(f"fork: {statistics.median(t_fork) * 1000:.1f} ms in the parent, RSS {rss_mb(os.getpid()):.0f} MB")


def status(admin: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=30) as r:
        return dict(json.loads(r.read()))


def wait(cond: object, limit: float = 300.0) -> float:
    t0 = time.monotonic()
    while not cond():  # type: ignore[operator]
        if time.monotonic() - t0 > limit:
            raise SystemExit("timed out")
        time.sleep(0.05)
    return time.monotonic() - t0


def reload_once(tmp: Path, zones: Path, admin: int, records: int) -> float:
    """Seconds from ``POST /reload`` of an edited zone of the same size until it is answered
    (with workers: until every worker serves the new generation)."""
    write_zone(zones, records, f"c{time.monotonic_ns()}")  # the same size, another canary
    token = (tmp / "admin.token").read_text().strip()
    req = urllib.request.Request(f"http://127.0.0.1:{admin}/reload", method="POST", data=b"{}",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=300) as r:
        assert json.loads(r.read())["ok"]
    return time.monotonic() - t0


def single_start(tmp: Path, zones: Path, records: int) -> None:
    """The baseline: ``workers: 1`` from start until it answers (its admin listener opens last)."""
    port, admin = free_port(), free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lbdns.cli", "serve", "--zones", str(zones), "--listen", f"127.0.0.1:{port}",
         "--admin", f"127.0.0.1:{admin}", "--no-probes", "--no-watch", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def up() -> bool:
        try:
            return bool(status(admin))
        except OSError:
            return False

    try:
        wait(up)
        print(f"start, workers: 1: {time.monotonic() - t0:.1f} s until it answers; RSS {rss_mb(proc.pid):.0f} MB")
        print(f"reload, workers: 1: {reload_once(tmp, zones, admin, records):.2f} s")
    finally:
        Server("lbdns", 0, proc).stop()


def end_to_end(tmp: Path, zones: Path, records: int) -> None:
    port, admin = free_port(), free_port()
    config = tmp / "lbdns.yaml"
    config.write_text(yaml.safe_dump({"workers": 2}))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lbdns.cli", "serve", "--config", str(config), "--zones", str(zones),
         "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--no-probes", "--no-watch",
         "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp,
        env={**os.environ, "PYTHONPATH": str(ROOT)})

    def up() -> bool:
        try:
            ws = status(admin).get("workers")
        except OSError:
            return False
        return bool(ws) and all(w["running"] for w in ws)  # type: ignore[union-attr, index]

    try:
        wait(up)
        print(f"start, workers: 2: {time.monotonic() - t0:.1f} s until both workers answer; "
              f"RSS control {rss_mb(proc.pid):.0f} MB, workers "
              + ", ".join(f"{rss_mb(w['pid']):.0f} MB" for w in status(admin)["workers"]))  # type: ignore[index, union-attr]
        victim = status(admin)["workers"][0]["pid"]  # type: ignore[index]
        os.kill(victim, signal.SIGKILL)
        took = wait(lambda: (w := status(admin)["workers"][0])["running"] and w["pid"] != victim)  # type: ignore[index]
        print(f"restart: {took:.2f} s from SIGKILL until the new worker answers")
        print(f"reload, workers: 2: {reload_once(tmp, zones, admin, records):.2f} s until every worker serves it")
    finally:
        Server("lbdns", 0, proc).stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-in-process", action="store_true", help="only the end-to-end figures")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lbdns-worker-start-"))
    zones = tmp / "zones"
    write_zone(zones, args.records, "c0")
    print(f"{args.records} records")
    if not args.skip_in_process:
        in_process(zones, args.rounds)
    single_start(tmp, zones, args.records)
    end_to_end(tmp, zones, args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
