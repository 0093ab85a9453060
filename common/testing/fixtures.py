"""Pytest fixtures shared by common/ and every stage (`pytest_plugins` in a conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.redisserver import RedisServer, start_redis
from common.testing.processes import Proc, start_backend

# backend_factory("users", "a"): a started backend (service, instance, start_backend's options)
BackendFactory = Callable[..., Proc]


@pytest.fixture
def backend_factory(tmp_path: Path) -> Iterator[BackendFactory]:
    """Start dummy backends on ephemeral ports; every one is stopped after the test."""
    started: list[Proc] = []

    def factory(service: str = "users", instance: str = "a") -> Proc:
        proc = start_backend(service, instance, log_dir=tmp_path)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()


# the type ignore below: a pytest fixture: pytest types its argument
@pytest.fixture(scope="module")
def users_backend(tmp_path_factory) -> Iterator[Proc]:  # type: ignore[no-untyped-def]
    """One users backend shared by a test module (read-mostly tests)."""
    proc = start_backend("users", "a", log_dir=tmp_path_factory.mktemp("users"))
    yield proc
    proc.stop()


# the type ignore below: a pytest fixture: pytest types its argument
@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:  # type: ignore[no-untyped-def]
    """A private Redis (or Valkey) server for a test module (common/redisserver.py)."""
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server
