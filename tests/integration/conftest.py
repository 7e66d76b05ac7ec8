"""Fixtures for black-box tests: a SPEC-EXAMPLES base fixture and a server factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Fixture, Server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``serve(fixture, **settings)`` writes the fixture and starts a server; all servers
    started are stopped at teardown."""
    started: list[Server] = []

    def start(fixture: Fixture, **settings: Any) -> Server:
        zones = fixture.write(tmp_path)
        srv = Server(zones, tmp_path, **settings)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
