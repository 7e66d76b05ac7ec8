"""Logging off the event loop (lbdns/logpipe.py): a stderr nobody reads never blocks the
caller; lines beyond the queue are dropped and counted; queued lines are written in order."""

from __future__ import annotations

import io
import logging
import os
import threading
import time

from lbdns import logpipe


def test_blocked_stream_never_blocks_the_logger() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, True)
    stream = io.TextIOWrapper(io.FileIO(write_fd, "w"), write_through=True)
    pipe = logpipe.install(logging.INFO, stream, lines=100)
    try:
        log = logging.getLogger("lbdns.test")
        line = "x" * 1000
        t0 = time.monotonic()
        for i in range(5_000):  # ~5 MB: far more than a pipe buffer (64 KiB) holds
            log.info("%d %s", i, line)
        took = time.monotonic() - t0
        assert took < 2.0, f"logging blocked for {took:.2f} s"
        assert pipe.dropped > 0 and logpipe.dropped() == pipe.dropped
        first = os.read(read_fd, 200).decode()
        assert " INFO lbdns.test: 0 xxx" in first  # format kept, oldest line first
    finally:
        drain = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(read_fd, 65536), b"")],
                                 daemon=True)
        drain.start()
        pipe.stop()
        stream.close()
        drain.join(5)
        os.close(read_fd)
        logging.basicConfig(force=True)


def test_everything_written_when_the_stream_keeps_up() -> None:
    buf = io.StringIO()
    pipe = logpipe.install(logging.WARNING, buf)
    try:
        log = logging.getLogger("lbdns.test2")
        log.info("hidden")
        for i in range(50):
            log.warning("w%d", i)
    finally:
        pipe.stop()
        logging.basicConfig(force=True)
    lines = buf.getvalue().splitlines()
    assert [ln.rsplit(" ", 1)[1] for ln in lines] == [f"w{i}" for i in range(50)]
    assert pipe.dropped == 0


def test_process_exits_even_when_the_writer_is_stuck(tmp_path) -> None:
    """stop() gives up on a writer blocked on a full pipe, and the interpreter still exits
    (logging.shutdown must not wait for that writer)."""
    import subprocess
    import sys

    script = tmp_path / "stuck.py"
    script.write_text(
        "import logging, os\n"
        "from lbdns import logpipe\n"
        "r, w = os.pipe()\n"
        "pipe = logpipe.install(logging.INFO, os.fdopen(w, 'w'))\n"
        "for i in range(3000):\n"
        "    logging.getLogger('x').info('line %d %s', i, 'x' * 100)\n"
        "logpipe.STOP_TIMEOUT_S = 0.2\n"  # the bound's length (2 s) is not what is tested: that stop() has one
        "pipe.stop()\n")
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], timeout=30, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - t0 < 10


def test_json_format_one_object_per_line_with_the_event() -> None:
    import json

    stream = io.StringIO()
    pipe = logpipe.install(logging.INFO, stream, fmt="json")
    try:
        log = logging.getLogger("lbdns.health")
        log.warning("%s", "web/p1 192.0.2.10 healthy -> unhealthy: TCP connection failed",
                    extra={"event": {"pool": {"id": "web"}, "origins": [{"name": "p1", "healthy": False}]}})
        logging.getLogger("lbdns").info("plain line\nwith a newline")
    finally:
        pipe.stop()
        logging.basicConfig(force=True)
    first, second = (json.loads(x) for x in stream.getvalue().splitlines())
    assert first["level"] == "WARNING" and first["logger"] == "lbdns.health"
    assert first["message"] == "web/p1 192.0.2.10 healthy -> unhealthy: TCP connection failed"
    assert first["event"]["origins"][0] == {"name": "p1", "healthy": False}
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["message"] == "plain line\nwith a newline" and "event" not in second
