"""Fixtures the shared contract tests (common/contracts) expect from every stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import stage_config
from lbhelpers import FakeClock

from common.testing.gateway import Render

pytest_plugins = ["common.testing.fixtures"]

STAGE_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def stage_dir() -> Path:
    """The stage folder: the gateway runs from here (`python -m gateway`)."""
    return STAGE_DIR


@pytest.fixture(scope="session")
def render() -> Render:
    """This stage's gateway.toml for a GatewaySpec (tests/stage_config.py)."""
    return stage_config.render


@pytest.fixture
def clock() -> FakeClock:
    """A clock for the balancing tests that moves only when the test advances it."""
    return FakeClock()
