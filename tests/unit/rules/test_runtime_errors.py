"""Run-time rule errors are counted into a counter the caller owns (docs/architecture.md ›
Failure containment: a condition that fails at run time counts as not matching, and is counted):
whether the condition was compiled by ``load_config`` or assembled from the snapshot builder's
frames, it counts into the counter handed in, never into one shared by the whole process."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

from lbdns.builder import Assembly, snapshot_frames
from lbdns.config.settings import ServerSettings
from lbdns.config.validate import load_config
from lbdns.ipc import FRAME
from lbdns.rules import RuleFields, compile_counted
from lbdns.snapshot import build_snapshot
from tests.integration.harness import Fixture

FAILS = "dns.qry.name.len > 3"
"""Fails at run time on the junk fields below (no query name)."""
JUNK = RuleFields(None, None, None, None, None, None, None, None)  # type: ignore[arg-type]


def test_each_counter_counts_only_the_conditions_compiled_into_it() -> None:
    mine: Counter[str] = Counter()
    theirs: Counter[str] = Counter()
    a = compile_counted(FAILS, mine)
    b = compile_counted('lower(dns.qry.name) == "a."', theirs)
    assert a.evaluate(JUNK) is False and a.evaluate(JUNK) is False
    assert b.evaluate(JUNK) is False
    assert mine == {FAILS: 2}
    assert theirs == {'lower(dns.qry.name) == "a."': 1}
    assert compile_counted(FAILS, None).evaluate(JUNK) is False  # not counted anywhere
    assert mine == {FAILS: 2}


def _zones(tmp_path: Path) -> Path:
    fx = Fixture()
    fx.lb["rules"] = [{"name": "long", "condition": FAILS, "overrides": {"ttl": 5}}]
    return fx.write(tmp_path)


def test_load_config_compiles_conditions_counting_into_rule_errors(tmp_path: Path) -> None:
    errors: Counter[str] = Counter()
    loaded = load_config(_zones(tmp_path), ServerSettings(), rule_errors=errors)
    (conditions,) = loaded.rules.values()
    assert conditions[0].evaluate(JUNK) is False
    assert errors == {FAILS: 1}


def test_assembled_conditions_count_into_the_assemblys_counter(tmp_path: Path) -> None:
    settings = ServerSettings()
    snap = build_snapshot(load_config(_zones(tmp_path), settings), settings, 1)
    errors: Counter[str] = Counter()
    asm = Assembly(errors)
    for f in snapshot_frames(snap):
        asm.take(pickle.loads(f[FRAME.size:]))
    (plan,) = asm.snapshot(settings).plans.values()
    assert plan.rules[0].condition.evaluate(JUNK) is False
    assert errors == {FAILS: 1}
    other: Counter[str] = Counter()  # a second process's assembly: its own counter
    asm = Assembly(other)
    for f in snapshot_frames(snap):
        asm.take(pickle.loads(f[FRAME.size:]))
    asm.snapshot(settings).plans[plan.name].rules[0].condition.evaluate(JUNK)
    assert errors == {FAILS: 1} and other == {FAILS: 1}
