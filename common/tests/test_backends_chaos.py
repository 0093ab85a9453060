"""/_chaos: per-backend failure injection and latency, and its validation."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from common.testing.processes import Proc, start_backend

DEFAULTS = {
    "failure_rate": 0.0,
    "latency_ms": 0,
    "failure_status": 503,
    "include_health": False,
    "slow_rate": 0.0,
    "slow_ms": 0,
    "retry_after": None,
}


# the type ignore below: a pytest fixture: pytest types its argument
@pytest.fixture(scope="module")
def chaos_backend(tmp_path_factory) -> Iterator[Proc]:  # type: ignore[no-untyped-def]
    """A backend of its own: chaos settings are per process and these tests change them."""
    proc = start_backend("orders", "c", log_dir=tmp_path_factory.mktemp("chaos"))
    yield proc
    proc.stop()


@pytest.fixture
def backend(chaos_backend: Proc) -> Iterator[Proc]:
    """The chaos backend, its settings reset before and after each test."""
    reset = urllib.request.Request(chaos_backend.url + "/_chaos", method="DELETE")
    urllib.request.urlopen(reset, timeout=5).close()
    yield chaos_backend
    urllib.request.urlopen(reset, timeout=5).close()


async def set_chaos(
    session: aiohttp.ClientSession, backend: Proc, **settings: Any
) -> dict[str, Any]:
    async with session.post(backend.url + "/_chaos", json=settings) as resp:
        assert resp.status == 200, await resp.text()
        state: dict[str, Any] = await resp.json()
        return state


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as resp:
        await resp.read()
        return resp.status


async def test_failure_rate_1_fails_every_request_with_the_chosen_status(
    backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    async with client_session.get(backend.url + "/_chaos") as resp:
        assert await resp.json() == DEFAULTS

    settings = await set_chaos(client_session, backend, failure_rate=1, failure_status=502)
    assert settings == DEFAULTS | {"failure_rate": 1.0, "failure_status": 502}

    async with client_session.get(backend.url + "/orders") as resp:
        assert resp.status == 502
        assert resp.headers["X-Served-By"] == f"orders/c@{backend.port}"
        assert (await resp.json())["error"] == "chaos"
    assert await status_of(client_session, backend.url + "/echo") == 502
    # /health is spared by default, and /_chaos always is (or chaos could not be undone).
    assert await status_of(client_session, backend.url + "/health") == 200
    assert await status_of(client_session, backend.url + "/_chaos") == 200

    await set_chaos(client_session, backend, include_health=True)  # partial update
    assert await status_of(client_session, backend.url + "/health") == 502

    async with client_session.delete(backend.url + "/_chaos") as resp:
        assert await resp.json() == DEFAULTS
    assert await status_of(client_session, backend.url + "/orders") == 200
    assert await status_of(client_session, backend.url + "/health") == 200


async def test_latency_delays_every_response(
    backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    await set_chaos(client_session, backend, latency_ms=300)
    start = time.monotonic()
    assert await status_of(client_session, backend.url + "/orders/1") == 200
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    assert await status_of(client_session, backend.url + "/health") == 200
    assert time.monotonic() - start < 0.3  # health is spared unless include_health


async def test_a_failure_rate_fails_about_that_share_of_requests(
    backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    await set_chaos(client_session, backend, failure_rate=0.5)
    statuses = [await status_of(client_session, backend.url + "/orders/1") for _ in range(200)]
    assert set(statuses) == {200, 503}
    # Binomial(200, 0.5) lands outside 60..140 with probability about 1e-8.
    assert 60 <= statuses.count(503) <= 140


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_rate": 1.5},
        {"failure_rate": "0.5"},
        {"latency_ms": -1},
        {"latency_ms": 60_001},
        {"failure_status": 404},
        {"failure_status": 600},
        {"include_health": 1},
        {"failur_rate": 0.5},  # a typo must not be silently ignored
    ],
)
async def test_invalid_settings_are_a_422_and_change_nothing(
    backend: Proc, client_session: aiohttp.ClientSession, bad: dict[str, Any]
) -> None:
    await set_chaos(client_session, backend, latency_ms=5)
    async with client_session.post(
        backend.url + "/_chaos", json={"failure_rate": 1, **bad}
    ) as resp:
        assert resp.status == 422
        errors = (await resp.json())["detail"]
    assert errors[0]["loc"] == ["body", next(iter(bad))]
    async with client_session.get(backend.url + "/_chaos") as resp:
        assert await resp.json() == DEFAULTS | {"latency_ms": 5}


async def test_a_slow_rate_delays_that_share_of_requests(
    backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    await set_chaos(client_session, backend, slow_rate=1.0, slow_ms=300)
    started = time.monotonic()
    assert await status_of(client_session, backend.url + "/echo/slow") == 200
    assert time.monotonic() - started >= 0.3
    await set_chaos(client_session, backend, slow_rate=0.0)
    started = time.monotonic()
    assert await status_of(client_session, backend.url + "/echo/fast") == 200
    assert time.monotonic() - started < 0.3


async def test_a_failure_can_say_when_to_retry(
    backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    await set_chaos(client_session, backend, failure_rate=1.0, retry_after=2)
    async with client_session.get(backend.url + "/echo/x") as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "2"


async def test_stats_count_the_requests_answered_by_method(
    backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    async with client_session.delete(backend.url + "/_stats") as resp:
        assert resp.status == 200
    await set_chaos(client_session, backend, failure_rate=1.0)  # failures count too
    for method in ("GET", "GET", "POST"):
        async with client_session.request(method, backend.url + "/echo/n") as resp:
            await resp.read()
    await status_of(client_session, backend.url + "/health")  # not counted
    async with client_session.get(backend.url + "/_stats") as resp:
        assert await resp.json() == {"requests": 3, "by_method": {"GET": 2, "POST": 1}}
