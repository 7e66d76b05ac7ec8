"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import pytest

from tests.integration.harness import Fixture


@pytest.fixture
def fx() -> Fixture:
    """A fresh SPEC-EXAMPLES base fixture (B) to modify."""
    return Fixture()
