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
