"""Log lines written off the event loop (edge): ``lbdns serve`` logs through a bounded queue
that a writer thread drains to stderr (stdlib :class:`logging.handlers.QueueHandler` /
:class:`~logging.handlers.QueueListener`).

Writing to stderr can block: a full pipe nobody reads, a stalled terminal, a slow journal. A
blocked ``write`` inside the event loop would stop DNS answering altogether (seen in the
health scale run, whose harness stopped reading the server's output). Here the loop only
appends to a queue; when the queue is full the line is dropped and counted
(``lbdns_log_lines_dropped_total``), never waited for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import queue
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

QUEUE_LINES = 10_000
"""Log records buffered before new ones are dropped."""
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STOP_TIMEOUT_S = 2.0
"""Seconds :meth:`LogPipe.stop` waits for queued lines to be written."""
LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``event`` when the record carries one (health changes: the webhook's JSON body), and
    ``exception`` (the formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            doc["event"] = event
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"), default=str)


def formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter of a ``log_format``: ``text`` (:data:`FORMAT`) or ``json`` (:class:`JsonFormatter`)."""
    return JsonFormatter() if fmt == "json" else logging.Formatter(FORMAT)


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """A QueueHandler that drops (and counts) records when the queue is full."""

    def __init__(self, q: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__(q)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _StreamWriter:
    """Writes formatted records to a stream for the listener thread. Deliberately not a
    :class:`logging.Handler`: handlers are flushed under their lock by ``logging.shutdown`` at
    exit, which would wait forever for a writer stuck on a blocked stream."""

    level = logging.NOTSET

    def __init__(self, stream: TextIO, fmt: LogFormat = "text") -> None:
        self.stream = stream
        self.formatter = formatter(fmt)

    def handle(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.formatter.format(record) + "\n")
            self.stream.flush()
        except Exception:  # a closed or broken stream: the line is lost, the thread lives on
            pass


class _Listener(logging.handlers.QueueListener):
    """A QueueListener whose stop is bounded: a writer stuck on a blocked stream is abandoned
    (it is a daemon thread) after ``STOP_TIMEOUT_S``."""

    def __init__(self, q: queue.Queue[logging.LogRecord | None], writer: _StreamWriter) -> None:
        super().__init__(q, writer, respect_handler_level=False)  # type: ignore[arg-type]
        self._records = q

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._records.put(None, timeout=STOP_TIMEOUT_S)  # QueueListener's sentinel
        thread.join(STOP_TIMEOUT_S)
        self._thread = None


class LogPipe:
    """The installed logging pipeline: ``dropped`` counts records lost to a full queue."""

    def __init__(self, handler: _DroppingQueueHandler, listener: _Listener) -> None:
        self._handler = handler
        self._listener = listener

    @property
    def dropped(self) -> int:
        """Records dropped because the writer thread was behind (≥ 0)."""
        return self._handler.dropped

    def stop(self) -> None:
        """Write out what is queued and stop the writer thread (waiting at most
        :data:`STOP_TIMEOUT_S` seconds per step)."""
        self._listener.stop()
        logging.getLogger().removeHandler(self._handler)


_current: LogPipe | None = None


def install(level: int, stream: TextIO | None = None, *, lines: int = QUEUE_LINES,
            fmt: LogFormat = "text") -> LogPipe:
    """Route the root logger at ``level`` through a queue of ``lines`` records to ``stream``
    (default stderr), replacing its handlers, formatted as ``fmt`` (``text`` or ``json``).
    Returns the pipeline (also kept for :func:`dropped`)."""
    global _current
    q: queue.Queue[logging.LogRecord | None] = queue.Queue(maxsize=lines)
    out = _StreamWriter(stream if stream is not None else sys.stderr, fmt)
    handler = _DroppingQueueHandler(q)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    listener = _Listener(q, out)
    listener.start()
    _current = LogPipe(handler, listener)
    return _current


def dropped() -> int:
    """Records dropped by the installed pipeline (0 when none is installed)."""
    return _current.dropped if _current is not None else 0
