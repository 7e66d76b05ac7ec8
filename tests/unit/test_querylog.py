"""The query log (lbdns/querylog.py; SPEC.md R-LOG-03): line content through a real server,
non-blocking ``record()`` with a deliberately slow writer, drop-and-count on overflow,
flush on stop, reopen after rotation."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dns.message
import pytest

from lbdns.answer import Answer
from lbdns.geo.pops import Pop
from lbdns.health.view import OriginState
from lbdns.querylog import QueryLog, QueryRecord, decision_reason, format_time, open_query_log, qname_text
from lbdns.wire.codec import parse_query
from tests.integration.harness import Fixture, Server


class SlowStream(io.StringIO):
    """A text stream whose every write sleeps ``delay`` seconds (a stuck disk)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.calls = 0

    def write(self, s: str) -> int:
        self.calls += 1
        time.sleep(self.delay)
        return super().write(s)


_UNHEALTHY = OriginState.UNHEALTHY


def _rec(i: int = 0, **kw: Any) -> QueryRecord:
    base: dict[str, Any] = dict(time=1767225600.5 + i, transport="udp", pop="IAD", client="192.0.2.53",
                                ecs=None, qname=b"\x03www\x07example\x03com\x00", qtype=1, rcode=0, answers=1)
    base.update(kw)
    return QueryRecord(**base)


# ---------------------------------------------------------------------------------------------
# lines written by a real server
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path: Path):
    fx = Fixture()
    fx.zone["load_balancers"] = {
        "geo": {"default_pools": ["p-us-east", "p-us-west", "p-eu", "p-asia"], "fallback_pool": "p-fallback",
                "steering_policy": "proximity",
                "location_strategy": {"prefer_ecs": "always", "mode": "resolver_ip"}},
        "rl": {"default_pools": ["p-us-east"], "fallback_pool": "p-fallback",
               "rules": [{"name": "to-west", "condition": "",
                          "overrides": {"default_pools": ["p-us-west"]}}]},
    }
    srv = Server(fx.write(tmp_path), tmp_path)
    yield srv
    srv.stop()


def test_lines_from_a_real_server(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "log" / "queries.jsonl"
    qlog = QueryLog(path, flush_interval=0.01)
    qlog.start()
    assert server.app.handler is not None
    server.app.handler.on_answer = qlog.on_answer
    server.query("GEO.example.com", ecs="203.0.113.0/24")
    server.query("geo.example.com", "AAAA", tcp=True, pop="LHR")
    server.query("ns1.example.com")
    server.query("missing.example.com")
    server.query("rl.example.com", source="127.0.0.7")
    server.set_health({("p-us-east", "e1"): _UNHEALTHY, ("p-us-east", "e2"): _UNHEALTHY,
                       ("p-us-west", "w1"): _UNHEALTHY, ("p-us-west", "w2"): _UNHEALTHY,
                       ("p-eu", "eu1"): _UNHEALTHY, ("p-eu", "eu2"): _UNHEALTHY,
                       ("p-asia", "as1"): _UNHEALTHY})
    server.query("geo.example.com")
    qlog.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 6
    keys = {"time", "transport", "pop", "client", "ecs", "qname", "qtype", "rcode", "answers", "lb", "pool",
            "fallback", "rules", "reason"}
    assert all(set(line) == keys for line in lines)
    geo, aaaa, static, missing, rl, fb = lines
    assert geo["transport"] == "udp" and geo["pop"] == "IAD" and geo["client"] == "127.0.0.1"
    assert geo["ecs"] == "203.0.113.0/24"
    assert geo["qname"] == "GEO.example.com."  # as received
    assert (geo["qtype"], geo["rcode"], geo["answers"]) == ("A", "NOERROR", 2)
    assert (geo["lb"], geo["pool"], geo["fallback"], geo["rules"]) == ("geo.example.com.", "p-eu", False, [])
    assert geo["reason"] == "proximity by ecs"
    assert geo["time"].endswith("Z") and abs(time.time() - _parse_time(geo["time"])) < 60
    assert (aaaa["transport"], aaaa["pop"], aaaa["qtype"], aaaa["answers"], aaaa["ecs"]) == \
        ("tcp", "LHR", "AAAA", 0, None)
    assert aaaa["pool"] == "p-eu" and aaaa["reason"] == "proximity by pop; no data of this type"
    assert (static["lb"], static["pool"], static["answers"], static["reason"]) == (None, None, 1, "zone data")
    assert (missing["rcode"], missing["answers"], missing["reason"]) == ("NXDOMAIN", 0, "nxdomain")
    assert rl["client"] == "127.0.0.7" and rl["rules"] == ["to-west"] and rl["pool"] == "p-us-west"
    assert rl["reason"] == "off"
    assert fb["fallback"] is True and fb["pool"] == "p-fallback" and fb["reason"] == "fallback: no usable pool"
    assert qlog.written == 6 and qlog.dropped == 0 and qlog.errors == 0


def _parse_time(text: str) -> float:
    import calendar

    whole, _, ms = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + int(ms) / 1000


# ---------------------------------------------------------------------------------------------
# never blocking the query path
# ---------------------------------------------------------------------------------------------

def test_slow_writer_never_stalls_record_and_overflow_is_counted() -> None:
    slow = SlowStream(0.05)
    qlog = QueryLog(stream=slow, max_queue=1000, batch=100, flush_interval=0.01)
    qlog.start()
    recs = [_rec(i) for i in range(10_000)]
    t0, c0 = time.perf_counter(), time.thread_time()
    accepted = sum(qlog.record(r) for r in recs)
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
    # cheap (CPU time, immune to other processes) and never waiting on the stuck writer, which
    # would take 0.05 s per write (wall time, with room for a busy machine)
    assert cpu < 0.1, f"10,000 record() calls took {cpu * 1000:.1f} ms of CPU"
    assert elapsed < 1.0, f"10,000 record() calls took {elapsed * 1000:.1f} ms"
    # the writer is stuck in write(): at most the queue plus the batch it is writing got in
    assert 1000 <= accepted <= 1000 + 100
    assert qlog.dropped == 10_000 - accepted
    qlog.stop()
    assert qlog.written == accepted
    assert len(slow.getvalue().splitlines()) == accepted
    assert qlog.record(_rec()) is False and qlog.dropped == 10_001 - accepted  # stopped: dropped


def test_on_answer_is_cheap() -> None:
    wire = dns.message.make_query("www.example.com", "A", use_edns=0).to_wire()
    q = parse_query(wire)
    pop = Pop("IAD", "ENAM", "US", 38.94, -77.46)
    ans = Answer(0, True, ancount=1)
    qlog = QueryLog(stream=SlowStream(1.0), max_queue=20_000)  # not started: nothing is written
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(10_000):
        qlog.on_answer(q, "192.0.2.53", False, pop, ans)
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
    assert cpu < 0.1, f"10,000 on_answer() calls took {cpu * 1000:.1f} ms of CPU"
    assert elapsed < 1.0, f"10,000 on_answer() calls took {elapsed * 1000:.1f} ms"
    assert qlog.pending == 10_000 and qlog.errors == 0


def test_record_from_many_threads_while_writing(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    qlog = QueryLog(path, batch=64, flush_interval=0.001)
    qlog.start()

    def produce(k: int) -> None:
        for i in range(2000):
            qlog.record(_rec(i, client=f"127.0.0.{k}"))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    qlog.stop()
    lines = path.read_text().splitlines()
    assert len(lines) == 8000 == qlog.written and qlog.dropped == 0
    assert all(json.loads(line)["qname"] == "www.example.com." for line in lines)


# ---------------------------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------------------------

def test_stop_flushes_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"old": true}\n')
    qlog = QueryLog(path, flush_interval=60)  # the writer would sleep a minute: stop() must flush
    qlog.start()
    for i in range(5):
        qlog.record(_rec(i))
    t0 = time.perf_counter()
    qlog.stop()
    assert time.perf_counter() - t0 < 2
    lines = path.read_text().splitlines()
    assert lines[0] == '{"old": true}' and len(lines) == 6
    qlog.stop()  # idempotent


def test_flush_and_reopen_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    qlog = QueryLog(path, flush_interval=0.01)
    qlog.start()
    qlog.record(_rec(1))
    assert qlog.flush()
    rotated = tmp_path / "q.jsonl.1"
    path.rename(rotated)
    qlog.reopen()
    time.sleep(0.05)
    qlog.record(_rec(2))
    qlog.stop()
    assert len(rotated.read_text().splitlines()) == 1
    assert len(path.read_text().splitlines()) == 1


def test_write_errors_are_counted_not_raised() -> None:
    class Broken(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError("disk full")

    qlog = QueryLog(stream=Broken(), flush_interval=0.01)
    qlog.start()
    qlog.record(_rec())
    qlog.stop()
    assert qlog.errors == 1 and qlog.written == 0


def test_off_by_default_and_bad_arguments(tmp_path: Path) -> None:
    assert open_query_log(None) is None
    assert open_query_log("") is None
    qlog = open_query_log(str(tmp_path / "a" / "b.jsonl"), flush_interval=0.01)
    assert qlog is not None
    qlog.record(_rec())
    qlog.stop()
    assert (tmp_path / "a" / "b.jsonl").read_text().count("\n") == 1
    with pytest.raises(ValueError):
        QueryLog()
    with pytest.raises(ValueError):
        QueryLog(stream=io.StringIO(), max_queue=0)
    with pytest.raises(OSError):
        QueryLog(tmp_path).start()  # a directory


# ---------------------------------------------------------------------------------------------
# formatting helpers
# ---------------------------------------------------------------------------------------------

def test_record_json_fields() -> None:
    line = json.loads(_rec(ecs="198.51.100.0/24", qtype=65280, rcode=3, answers=0, lb="www.example.com.",
                           pool="eu", fallback=True, rules=["r1"], reason="x").to_json())
    assert line == {"time": "2026-01-01T00:00:00.500Z", "transport": "udp", "pop": "IAD", "client": "192.0.2.53",
                    "ecs": "198.51.100.0/24", "qname": "www.example.com.", "qtype": "TYPE65280",
                    "rcode": "NXDOMAIN", "answers": 0, "lb": "www.example.com.", "pool": "eu", "fallback": True,
                    "rules": ["r1"], "reason": "x"}


def test_helpers() -> None:
    assert format_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert format_time(1.2345) == "1970-01-01T00:00:01.234Z"
    assert qname_text(b"\x00") == "."
    assert qname_text("a.b.") == "a.b."
    assert qname_text(b"\x05ab") == "056162"  # truncated wire name: hex, never an exception


def _ans(**kw: Any) -> Any:
    base: dict[str, Any] = dict(rcode=0, ancount=1, lb=None, decision=None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_decision_reason() -> None:
    lb = SimpleNamespace(name="www.example.com.")
    pool = SimpleNamespace(name="p")
    loc = SimpleNamespace(source="resolver")
    assert decision_reason(_ans()) == "zone data"
    assert decision_reason(_ans(ancount=0)) == "nodata"
    assert decision_reason(_ans(rcode=5, ancount=0)) == "refused"
    assert decision_reason(_ans(rcode=9, ancount=0)) == "rcode 9"
    d = SimpleNamespace(pool=pool, fallback=False, policy="geo", location=loc)
    assert decision_reason(_ans(lb=lb, decision=d)) == "geo by resolver"
    d = SimpleNamespace(pool=pool, fallback=False, policy="", location=None)
    assert decision_reason(_ans(lb=lb, decision=d)) == "off"
    d = SimpleNamespace(pool=None, fallback=False, policy="off", location=None)
    assert decision_reason(_ans(lb=lb, decision=d, ancount=0)) == "no eligible endpoint"
