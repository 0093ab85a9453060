"""Fixtures the shared contract tests (common/contracts) expect from every stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import stage_config
from lbhelpers import FakeClock

pytest_plugins = ["common.testing.fixtures"]

STAGE_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def stage_dir() -> Path:
    """The stage folder: the gateway runs from here (`python -m gateway`)."""
    return STAGE_DIR


@pytest.fixture(scope="session")
def render_config() -> Callable[..., str]:
    """This stage's gateway.toml renderer (tests/stage_config.py)."""
    return stage_config.render


@pytest.fixture(scope="session")
def render_routes() -> Callable[..., str]:
    """Prefix and pattern routes in this stage's gateway.toml (the routing contract)."""
    return stage_config.render_routes


@pytest.fixture(scope="session")
def render_pools() -> Callable[..., str]:
    """Routes with upstream pools in this stage's gateway.toml (the LB contract)."""
    return stage_config.render_pools


@pytest.fixture
def clock() -> FakeClock:
    """A clock for the balancing tests that moves only when the test advances it."""
    return FakeClock()
