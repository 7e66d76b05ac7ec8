"""The optional query log: one JSON line per answered query (docs/operations.md › Query log), off
by default.

The query path must never wait for the disk. :meth:`QueryLog.on_answer` (the hook the
:class:`~lbdns.server.handler.Handler` calls after each answer) only copies a few references
into a :class:`QueryRecord` and appends it to a bounded in-memory deque; when the deque is
full the record is dropped and counted in :attr:`QueryLog.dropped`. A writer thread wakes up
every ``flush_interval`` seconds (or when a batch is ready), turns the records into JSON
(names and type mnemonics are only rendered there) and writes them in one ``write`` per
batch. A thread is used rather than an asyncio task because a slow disk (or a stuck NFS
mount) blocks in ``write()``, which must not stall the event loop that answers queries.

Each line holds::

    {"time": "2026-01-01T12:00:00.123Z", "transport": "udp", "pop": "IAD",
     "client": "192.0.2.53", "ecs": "198.51.100.0/24", "qname": "www.example.com.",
     "qtype": "A", "rcode": "NOERROR", "answers": 2, "lb": "www.example.com.",
     "pool": "us-east", "fallback": false, "rules": [], "reason": "proximity by ecs"}

``client`` is the resolver (packet source) address, ``ecs`` the EDNS Client Subnet as
``address/source-prefix`` (``null`` without one), ``lb``/``pool`` are ``null`` for ordinary
zone data, ``rules`` the names of the custom rules that matched, and ``reason`` a short
decision reason (:func:`decision_reason`).

Usage: ``log = QueryLog("/var/log/lbdns/queries.jsonl"); log.start()``, pass
``log.on_answer`` to the handler, ``log.reopen()`` after log rotation, ``log.stop()`` at
shutdown (writes everything still queued).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype

if TYPE_CHECKING:
    from lbdns.answer import Answer
    from lbdns.geo.pops import Pop
    from lbdns.wire.codec import Query

log = logging.getLogger("lbdns.querylog")

DEFAULT_MAX_QUEUE = 65_536
"""Records held in memory at most before new ones are dropped (about 30 MB at worst)."""


@dataclass(slots=True)
class QueryRecord:
    """One answered query as captured on the query path (cheap: no formatting here).

    ``time`` is seconds since the epoch; ``transport`` ``"udp"``/``"tcp"``; ``pop`` the PoP
    code; ``client`` the resolver IP; ``ecs`` ``"addr/prefix"`` or None; ``qname`` the
    question name in wire form (bytes) or text; ``qtype``/``rcode`` integers; ``answers``
    the answer-section RR count; ``lb`` the LB name or None; ``pool`` the chosen pool or
    None; ``fallback`` True when the fallback pool answered; ``rules`` matched rule names;
    ``reason`` a short decision reason.
    """

    time: float
    transport: str
    pop: str
    client: str
    ecs: str | None
    qname: bytes | str
    qtype: int
    rcode: int
    answers: int
    lb: str | None = None
    pool: str | None = None
    fallback: bool = False
    rules: list[str] = field(default_factory=list)
    reason: str = ""

    def to_json(self) -> str:
        """The record as one JSON line (without the newline); see :class:`LineFormatter`."""
        return LineFormatter().format(self)


class LineFormatter:
    """Turns :class:`QueryRecord` values into JSON lines, with small caches (question names,
    type and rcode mnemonics, the time up to the second) so the writer thread keeps up with a
    busy server. Names are rendered in presentation form with a trailing dot, ``qtype`` /
    ``rcode`` as mnemonics (``"A"``, ``"NXDOMAIN"``; ``"TYPE65280"`` for unknown types) and
    ``time`` as ISO 8601 UTC with milliseconds. Not thread-safe: one per writer."""

    MAX_NAMES = 16_384

    def __init__(self) -> None:
        self._names: dict[bytes | str, str] = {}
        self._types: dict[int, str] = {}
        self._rcodes: dict[int, str] = {}
        self._second = -1
        self._second_text = ""

    def format(self, rec: QueryRecord) -> str:
        """One JSON line for ``rec`` (no trailing newline)."""
        qname = self._names.get(rec.qname)
        if qname is None:
            if len(self._names) >= self.MAX_NAMES:
                self._names.clear()
            qname = self._names[rec.qname] = qname_text(rec.qname)
        qtype = self._types.get(rec.qtype)
        if qtype is None:
            qtype = self._types[rec.qtype] = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rec.qtype))
        rcode = self._rcodes.get(rec.rcode)
        if rcode is None:
            rcode = self._rcodes[rec.rcode] = _rcode_text(rec.rcode)
        whole = int(rec.time)
        if whole != self._second:
            self._second, self._second_text = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        stamp = f"{self._second_text}.{int((rec.time - whole) * 1000):03d}Z"
        return json.dumps({
            "time": stamp,
            "transport": rec.transport,
            "pop": rec.pop,
            "client": rec.client,
            "ecs": rec.ecs,
            "qname": qname,
            "qtype": qtype,
            "rcode": rcode,
            "answers": rec.answers,
            "lb": rec.lb,
            "pool": rec.pool,
            "fallback": rec.fallback,
            "rules": rec.rules,
            "reason": rec.reason,
        }, ensure_ascii=False, separators=(", ", ": "))


def format_time(ts: float) -> str:
    """``ts`` (seconds since the epoch) as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC)."""
    whole = int(ts)
    ms = int((ts - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def qname_text(qname: bytes | str) -> str:
    """A question name (uncompressed wire form, as :class:`~lbdns.wire.codec.Query` holds it,
    or text) in presentation form with a trailing dot; undecodable bytes are shown as hex."""
    if isinstance(qname, str):
        return qname
    try:
        name, _ = dns.name.from_wire(qname, 0)
        return str(name.to_text())
    except (dns.exception.DNSException, IndexError):
        return qname.hex()


def _rcode_text(rcode: int) -> str:
    try:
        return str(dns.rcode.to_text(dns.rcode.Rcode.make(rcode)))
    except ValueError:
        return str(rcode)


_RCODE_REASON = {0: "zone data", 1: "formerr", 2: "servfail", 3: "nxdomain", 4: "notimp", 5: "refused"}


def decision_reason(ans: Answer) -> str:
    """A short reason for an answer (the ``reason`` field).

    For load-balanced answers: ``"fallback: no usable pool"``, ``"no eligible endpoint"``
    (no pool could answer: NODATA with the SOA, RFC 2308), ``"<policy>"`` or
    ``"<policy> by <location source>"`` (e.g. ``"proximity by ecs"``, ``"geo by pop"``),
    with ``"; no data of this type"`` appended when the chosen pool has no address of the
    asked type (NODATA too). For ordinary data: ``"zone data"`` / ``"nodata"`` /
    ``"nxdomain"`` / ``"refused"``…
    """
    d = ans.decision
    if ans.lb is None or d is None:
        if ans.rcode == 0 and ans.ancount == 0:
            return "nodata"
        return _RCODE_REASON.get(ans.rcode, f"rcode {ans.rcode}")
    if d.pool is None:
        return "no eligible endpoint"
    if d.fallback:
        text = "fallback: no usable pool"
    else:
        policy = d.policy or "off"
        loc = d.location
        text = f"{policy} by {loc.source}" if loc is not None and loc.source else policy
    if ans.ancount == 0:
        text += "; no data of this type"
    return text


class QueryLog:
    """A non-blocking JSON-lines query log.

    Takes ``path`` (a file appended to; ``"-"`` for standard error) or ``stream`` (any text
    file object, used instead of opening ``path``; tests pass slow fakes), ``max_queue`` (records
    buffered in memory at most; beyond that :meth:`record` drops and counts), ``batch``
    (records per ``write`` call), ``flush_interval`` (seconds the writer sleeps when idle)
    and ``clock`` (seconds since the epoch, injected for tests).

    Counters: ``dropped`` (records lost because the queue was full), ``written`` (lines
    written), ``errors`` (failed writes; their records are lost). Producers may be several
    threads (``deque.append`` is atomic; only the counters may then miss an increment); the
    server calls it from its event loop thread. One writer thread.
    """

    def __init__(self, path: str | Path | None = None, *, stream: IO[str] | None = None,
                 max_queue: int = DEFAULT_MAX_QUEUE, batch: int = 1024, flush_interval: float = 0.2,
                 clock: Callable[[], float] = time.time) -> None:
        if path is None and stream is None:
            raise ValueError("QueryLog needs a path or a stream")
        if max_queue < 1 or batch < 1:
            raise ValueError("max_queue and batch must be at least 1")
        self.path = Path(path) if path is not None and str(path) != "-" else None
        self._stderr = path is not None and str(path) == "-"
        self._stream = stream
        self._own_stream = False
        self.max_queue = max_queue
        self.batch = batch
        self.flush_interval = flush_interval
        self.clock = clock
        self.dropped = 0
        self.written = 0
        self.errors = 0
        self._queue: deque[QueryRecord] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._reopen = False
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._fmt = LineFormatter()

    # -- producer side (query path) ----------------------------------------------------------
    def record(self, rec: QueryRecord) -> bool:
        """Queue one record; never blocks. Returns False (and counts it in ``dropped``) when
        the queue is full or the log is stopped."""
        q = self._queue
        if len(q) >= self.max_queue or self._stopping:
            self.dropped += 1
            return False
        q.append(rec)
        if len(q) == self.batch:
            self._wake.set()
        return True

    def on_answer(self, q: Query, peer_ip: str, tcp: bool, pop: Pop, ans: Answer) -> None:
        """The handler hook (``Handler(on_answer=…)``): log the answer ``ans`` to query ``q``
        from ``peer_ip`` received over TCP (``tcp``) or UDP at PoP ``pop``. Never raises."""
        try:
            edns = q.edns
            ecs_opt = edns.ecs if edns is not None else None
            ecs = f"{ecs_opt.ip}/{ecs_opt.source_prefix}" if ecs_opt is not None else None
            plan = ans.lb
            if plan is not None:
                d = ans.decision
                rec = QueryRecord(self.clock(), "tcp" if tcp else "udp", pop.code, peer_ip, ecs, q.qname,
                                  q.qtype, ans.rcode, ans.ancount, plan.name,
                                  d.pool.name if d is not None and d.pool is not None else None,
                                  bool(d is not None and d.fallback), list(ans.matched_rules),
                                  decision_reason(ans))
            else:
                rec = QueryRecord(self.clock(), "tcp" if tcp else "udp", pop.code, peer_ip, ecs, q.qname,
                                  q.qtype, ans.rcode, ans.ancount, reason=decision_reason(ans))
        except Exception:  # a log must never break an answer
            self.errors += 1
            return
        self.record(rec)

    @property
    def pending(self) -> int:
        """Records queued and not yet written."""
        return len(self._queue)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Open the file (errors surface here, as OSError) and start the writer thread.
        Idempotent."""
        if self._thread is not None:
            return
        self._open()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lbdns-querylog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting records, write everything queued, close the file (if opened here)
        and join the writer thread (at most ``timeout`` seconds). Idempotent."""
        self._stopping = True
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        else:
            self._drain()
        self._close()

    def reopen(self) -> None:
        """Ask the writer to reopen ``path`` before its next write (after log rotation)."""
        self._reopen = True
        self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wake the writer and wait until the queue is empty (tests, admin). Returns False on
        timeout or when no writer is running and records remain."""
        if self._thread is None:
            return not self._queue
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.001)
        # the last batch may be popped but not yet written: give the writer its turn
        with self._write_lock:
            pass
        return not self._queue

    # -- writer side -------------------------------------------------------------------------
    def _open(self) -> None:
        if self._stream is not None and not self._own_stream:
            return
        if self._stderr:
            import sys

            self._stream = sys.stderr
            return
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open by design
        self._own_stream = True

    def _close(self) -> None:
        if self._own_stream and self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._stream = None
            self._own_stream = False

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._reopen:
                self._reopen = False
                if self._own_stream:
                    self._close()
                    try:
                        self._open()
                    except OSError as exc:
                        self.errors += 1
                        log.error("query log: cannot reopen %s: %s", self.path, exc)
            self._drain()
            if self._stopping:
                self._drain()
                return

    def _drain(self) -> None:
        """Write everything queued, ``batch`` records per write call."""
        q = self._queue
        fmt = self._fmt
        while q:
            with self._write_lock:
                lines: list[str] = []
                try:
                    for _ in range(self.batch):
                        lines.append(fmt.format(q.popleft()))
                except IndexError:
                    pass
                if lines:
                    self._write("\n".join(lines) + "\n", len(lines))

    def _write(self, text: str, count: int) -> None:
        stream = self._stream
        if stream is None:
            self.errors += 1
            return
        try:
            stream.write(text)
            stream.flush()
            self.written += count
        except (OSError, ValueError) as exc:
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                log.error("query log: write failed (%d failures so far): %s", self.errors, exc)


def open_query_log(setting: str | None, **kwargs: Any) -> QueryLog | None:
    """A started :class:`QueryLog` for the ``query_log`` server setting (a file path, or
    ``"-"`` for standard error), or None when the setting is empty (the default: off).
    Raises OSError when the file cannot be opened."""
    if not setting:
        return None
    qlog = QueryLog(setting, **kwargs)
    qlog.start()
    return qlog
