"""Webhook sequence numbers, signatures and pool-enablement detection
(:mod:`lbdns.probes.notify`; docs/operations.md › Notification webhook)."""

from __future__ import annotations

import hashlib
import hmac
import json

from lbdns.config.model import Pool
from lbdns.probes.notify import SequenceStore, enablement_body, enablement_changes, sign


def test_sequence_continues_after_a_clean_stop_and_skips_ahead_after_a_crash(tmp_path):
    path = tmp_path / "webhook.seq"
    a = SequenceStore(path, block=10)
    assert [a.take() for _ in range(3)] == [1, 2, 3]
    assert json.loads(path.read_text())["next"] == 11  # a block reserved, not a write per event
    a.close()
    b = SequenceStore(path, block=10)
    assert b.stream == a.stream and b.take() == 4  # clean stop: no gap
    for _ in range(12):
        b.take()  # up to 16; blocks reserved through 24
    # b "crashes" (no close): the next run skips the reserved rest, a gap shows possible loss
    c = SequenceStore(path, block=10)
    assert c.stream == a.stream and c.take() == 24


def test_sequence_without_a_file_or_with_a_broken_one(tmp_path):
    mem = SequenceStore(None)
    assert [mem.take() for _ in range(3)] == [1, 2, 3]
    broken = tmp_path / "webhook.seq"
    broken.write_text("garbage")
    s = SequenceStore(broken)
    assert s.take() == 1 and s.stream  # a new stream: receivers see the restart by the stream id
    s.close()
    assert json.loads(broken.read_text()) == {"stream": s.stream, "next": 2}


def test_signature_is_hmac_sha256_of_the_exact_body():
    body = b'{"seq":1,"x":"\\u00e9"}'
    assert sign(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(b"k", body) != sign(b"k", body + b" ")


def _pool(name: str, enabled: bool = True) -> Pool:
    return Pool.model_validate({"name": name, "enabled": enabled, "origins": [{"name": "a", "address": "192.0.2.1"}]})


def test_enablement_changes_only_for_pools_in_both():
    old = {"a": _pool("a"), "b": _pool("b"), "gone": _pool("gone")}
    new = {"a": _pool("a", False), "b": _pool("b"), "added": _pool("added", False)}
    assert [p.name for p in enablement_changes(old, new)] == ["a"]
    assert [p.name for p in enablement_changes(new, old)] == ["a"]
    body = enablement_body(new["a"], at=0.0, generation=7, event_id="x")
    assert body == {"id": "x", "timestamp": "1970-01-01T00:00:00Z", "source": "reload", "generation": 7,
                    "pool": {"id": "a", "name": "a", "enabled": False, "changed": True}}


def test_webhook_settings_errors_are_located_and_never_echo_the_url(tmp_path):
    import pytest

    from lbdns.config.read_settings import load_settings
    from lbdns.errors import ConfigError

    f = tmp_path / "lbdns.yaml"
    f.write_text("notification_webhook: https://hooks.example/x?token=abc\n")
    hook = load_settings(f).notification_webhook
    assert hook is not None and hook.url.endswith("token=abc") and hook.retry_for == 300
    f.write_text("notification_webhook:\n  url: ftp://u:pw@h/x?token=abc\n"
                 f"  secret_file: {tmp_path}/missing\n  retry_for: -1\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(f)
    lines = [str(i) for i in exc.value.issues]
    assert lines == [
        f"{f}:2:8: notification_webhook.url: E-SETTINGS: Value error, must be an http:// or https:// URL with a host",
        f"{f}:3:16: notification_webhook.secret_file: E-SETTINGS: Value error, cannot read secret_file "
        f"{tmp_path}/missing: No such file or directory",
        f"{f}:4:14: notification_webhook.retry_for: E-SETTINGS: Input should be greater than or equal to 0",
    ]
    assert "token=abc" not in "\n".join(lines) and "u:pw" not in "\n".join(lines)
