"""The ``workers`` server setting: a number 1–256 or ``auto`` (the CPUs this process may run on);
anything else is a located ``E-SETTINGS`` error."""

from __future__ import annotations

import os

import pytest

from lbdns.config.read_settings import load_settings
from lbdns.config.settings import MAX_WORKERS, ServerSettings
from lbdns.errors import ConfigError


def test_default_is_one_worker():
    assert ServerSettings().workers == 1 and ServerSettings().worker_count == 1


@pytest.mark.parametrize("text, count", [("3", 3), ("1", 1), ("auto", None)])
def test_accepted(tmp_path, text, count):
    p = tmp_path / "lbdns.yaml"
    p.write_text(f"pop: IAD\nworkers: {text}\n")
    s = load_settings(p)
    expected = count if count is not None else min(MAX_WORKERS, len(os.sched_getaffinity(0)))
    assert s.worker_count == expected


@pytest.mark.parametrize("text, message", [
    ("0", "expected 1–256 worker processes or 'auto', got 0"),
    ("257", "expected 1–256 worker processes or 'auto', got 257"),
    ("many", "expected a number of worker processes 1–256 or 'auto', got 'many'"),
    ("true", "got True"),
    ("2.5", "got 2.5"),
])
def test_rejected_with_location(tmp_path, text, message):
    p = tmp_path / "lbdns.yaml"
    p.write_text(f"pop: IAD\nworkers: {text}\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    text_out = str(exc.value)
    assert "lbdns.yaml:2:10: workers: E-SETTINGS" in text_out and message in text_out
