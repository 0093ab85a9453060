"""Active health checks: thresholds, timeouts, the background task, the HTTP probe."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from gateway.balancing import (
    ActiveHealthChecker,
    ActivePolicy,
    HealthConfig,
    RoundRobin,
    Target,
    UpstreamConfig,
    UpstreamPool,
    Upstreams,
    http_probe,
)
from lbhelpers import make_targets

POLICY = ActivePolicy(healthy_threshold=2, unhealthy_threshold=3)


class FakeProbe:
    """Answers from a table the test edits: url -> None (passes) or a reason (fails)."""

    def __init__(self, targets: list[Target]) -> None:
        self.verdicts: dict[str, str | None] = {t.url: None for t in targets}
        self.calls = 0

    async def __call__(self, target: Target) -> str | None:
        self.calls += 1
        return self.verdicts[target.url]


def checker_for(
    targets: list[Target], policy: ActivePolicy = POLICY
) -> tuple[ActiveHealthChecker, FakeProbe]:
    probe = FakeProbe(targets)
    return ActiveHealthChecker("users", targets, probe, policy), probe


async def test_a_target_goes_down_only_after_unhealthy_threshold_failures() -> None:
    targets = make_targets(3)
    checker, probe = checker_for(targets)
    probe.verdicts[targets[1].url] = "HTTP 503"
    for _ in range(2):
        await checker.check_once()
        assert targets[1].health.active_ok  # two failures: not yet
    await checker.check_once()
    assert not targets[1].health.active_ok
    assert targets[1].health.last_probe_error == "HTTP 503"
    assert targets[0].health.active_ok and targets[2].health.active_ok


async def test_a_target_comes_back_only_after_healthy_threshold_passes() -> None:
    targets = make_targets(2)
    checker, probe = checker_for(targets)
    probe.verdicts[targets[0].url] = "connection refused or unreachable"
    for _ in range(3):
        await checker.check_once()
    probe.verdicts[targets[0].url] = None
    await checker.check_once()
    assert not targets[0].health.active_ok  # one pass is not enough
    await checker.check_once()
    assert targets[0].health.active_ok


async def test_a_flapping_target_never_reaches_a_threshold() -> None:
    targets = make_targets(1)
    checker, probe = checker_for(targets)
    for verdict in ["HTTP 500", "HTTP 500", None] * 4:  # never three failures in a row
        probe.verdicts[targets[0].url] = verdict
        await checker.check_once()
        assert targets[0].health.active_ok


async def test_a_pool_skips_a_target_its_checks_marked_down() -> None:
    targets = make_targets(3)
    pool = UpstreamPool("users", targets, RoundRobin(targets))
    checker, probe = checker_for(targets, ActivePolicy(unhealthy_threshold=1))
    probe.verdicts[targets[0].url] = "HTTP 503"
    await checker.check_once()
    assert {pool.pick() for _ in range(6)} == {targets[1], targets[2]}


async def test_a_probe_that_hangs_fails_after_the_timeout() -> None:
    targets = make_targets(1)

    async def hangs(target: Target) -> str | None:
        await asyncio.Event().wait()  # never answers
        return None

    checker = ActiveHealthChecker(
        "users", targets, hangs, ActivePolicy(timeout=0.01, unhealthy_threshold=1)
    )
    await checker.check_once()
    assert not targets[0].health.active_ok
    assert targets[0].health.last_probe_error == "no answer within 0.01 s"


async def test_the_background_task_probes_every_interval_until_stopped() -> None:
    targets = make_targets(2)
    probe = FakeProbe(targets)
    waits: list[float] = []
    three_rounds = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            three_rounds.set()
            await asyncio.Event().wait()  # park here until stop() cancels the task

    checker = ActiveHealthChecker(
        "users", targets, probe, ActivePolicy(interval=2.5), sleep=fake_sleep
    )
    checker.start()
    await asyncio.wait_for(three_rounds.wait(), timeout=5)
    await checker.stop()
    assert waits == [2.5, 2.5, 2.5]
    assert probe.calls == 6  # three rounds of two targets
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("health-check")]


@pytest.fixture
async def health_server() -> AsyncIterator[TestServer]:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def sick(request: web.Request) -> web.Response:
        return web.json_response({"status": "down"}, status=503)

    app = web.Application()
    app.router.add_get("/health", ok)
    app.router.add_get("/sick", sick)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield server
    await server.close()


def closed_port_url() -> str:
    """An address where nothing listens: bind a port, then let it go."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_the_http_probe_passes_2xx_and_names_what_failed(health_server: TestServer) -> None:
    up = Target(f"http://127.0.0.1:{health_server.port}")
    down = Target(closed_port_url())
    async with ClientSession() as session:
        assert await http_probe(session, "/health")(up) is None
        assert await http_probe(session, "/sick")(up) == "HTTP 503"
        assert await http_probe(session, "/health")(down) == "connection refused or unreachable"


async def test_upstreams_run_real_checks_and_stop_cleanly(health_server: TestServer) -> None:
    health = HealthConfig(interval=0.05, timeout=0.05, unhealthy_threshold=1)
    config = UpstreamConfig(
        # the type ignore below: a plain URL where the config model coerces strings
        targets=[f"http://127.0.0.1:{health_server.port}", closed_port_url()],  # type: ignore[list-item]
        health=health,
    )
    upstreams = Upstreams.from_config({"users": config})
    up, down = upstreams["users"].targets
    async with ClientSession() as session:
        upstreams.start_health_checks(session)
        try:
            async with asyncio.timeout(5):
                while down.health.active_ok:  # the observable event: the verdict
                    await asyncio.sleep(0.01)
        finally:
            await upstreams.stop_health_checks()
    assert up.health.active_ok
    assert down.health.last_probe_error == "connection refused or unreachable"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("health-check")]
