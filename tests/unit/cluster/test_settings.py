"""The ``cluster:`` settings section and ``probe_source_address``: located errors, never a
traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from lbdns.config.read_settings import load_settings
from lbdns.errors import ConfigError


def errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "lbdns.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(path)
    return str(exc.value).splitlines()


def test_a_valid_cluster_section(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    path = tmp_path / "lbdns.yaml"
    path.write_text(f"pop: FRA\nprobe_source_address: 127.0.0.12\nrtt_scope: region\n"
                    f"cluster: {{store_url: 'rediss://store.example:6380/2', username: lbdns, password_file: {pw},"
                    f" instance_id: fra-1, key_prefix: 'prod:eu'}}\n")
    s = load_settings(path)
    assert s.cluster is not None and s.cluster.instance_id == "fra-1" and s.cluster.key_prefix == "prod:eu"
    assert s.cluster.sync_interval == 0.5 and s.probe_source_address == "127.0.0.12" and s.rtt_scope == "region"


def test_cluster_errors_are_located(tmp_path):
    lines = errors(tmp_path, "cluster:\n  store_url: http://store:6379\n  password_file: /nonexistent/pw\n"
                             "  instance_id: 'a b'\n  sync_interval: 0\nprobe_source_address: 127.0.0.300\n")
    text = "\n".join(lines)
    assert "lbdns.yaml:2:14: cluster.store_url: E-SETTINGS:" in text and "redis://" in text
    assert "lbdns.yaml:3:18: cluster.password_file: E-SETTINGS:" in text and "no such file" in text
    assert "lbdns.yaml:4:16: cluster.instance_id: E-SETTINGS:" in text
    assert "lbdns.yaml:5:18: cluster.sync_interval: E-SETTINGS:" in text
    assert "lbdns.yaml:6:23: probe_source_address: E-SETTINGS:" in text and "not an IP address" in text
    assert "Traceback" not in text


def test_cluster_needs_a_store_url(tmp_path):
    assert any("cluster.store_url: E-SETTINGS:" in line for line in errors(tmp_path, "cluster: {key_prefix: x}\n"))
