"""--workers N: N processes serve one port; SIGTERM to the parent stops them all cleanly."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stage_config import render

from common.testing.gateway import start_gateway
from common.testing.processes import HOST, Proc, child_env, reserved_port, wait_healthy
from common.testing.specs import GatewaySpec, RouteSpec

STAGE = Path(__file__).resolve().parents[1]
# No request goes upstream: these tests only ask the gateway itself.
CONFIG = render(GatewaySpec([RouteSpec("/users", "http://127.0.0.1:9")]))


def serving_pids(proc: Proc, want: int = 2, timeout: float = 20.0) -> set[int]:
    """Ask the health endpoint on fresh connections until `want` different pids answered.

    Which worker accepts a connection is the kernel's choice, not ours: keep asking
    (each request is a new connection) rather than expecting a strict alternation. The
    gateway is healthy as soon as its first worker serves; on a busy machine the second
    may still be importing, so the budget is a deadline, not a number of requests.
    """
    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < want and time.monotonic() < deadline:
        with urllib.request.urlopen(proc.health_url, timeout=5) as response:
            pids.add(json.load(response)["pid"])
    return pids


def assert_stops_cleanly(proc: Proc, workers: set[int]) -> None:
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=15) == 0
    # The parent waited for (and reaped) its workers before exiting.
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_two_workers_share_an_inherited_socket(tmp_path: Path) -> None:
    proc = start_gateway(STAGE, CONFIG, tmp_path, "--workers", "2")
    try:
        pids = serving_pids(proc)
        assert len(pids) == 2, f"only {pids} answered"
        assert proc.pid not in pids  # the parent supervises, it does not serve
        assert_stops_cleanly(proc, pids)
    finally:
        proc.stop()


def free_port() -> int:
    # A port the kernel just handed out: not one of the fixed ports a reader may be using.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def reserve() -> Iterator[Callable[[], int]]:
    """Free ports held until the test ends, for gateways that bind them with SO_REUSEPORT
    (`--workers N --port P`): a port picked and let go may be taken by any connect() on
    the machine before the gateway binds it (see reserved_port)."""
    with contextlib.ExitStack() as held:
        yield lambda: held.enter_context(reserved_port())


def with_admin_port(config: str, port: int) -> str:
    """`config` with an [admin] section on `port`: without --admin-fd every worker binds
    the admin listener itself (SO_REUSEPORT, as the public one), never :8081 here."""
    return f"{config}\n[admin]\nport = {port}\n"


def test_two_workers_bind_one_port_with_so_reuseport(
    tmp_path: Path, reserve: Callable[[], int]
) -> None:
    config = tmp_path / "gateway.toml"
    admin_port = reserve()
    config.write_text(with_admin_port(CONFIG, admin_port), encoding="utf-8")
    port = reserve()
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config)]
            + ["--port", str(port), "--workers", "2"],
            cwd=STAGE,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proc = Proc("gateway-reuseport", port, popen, log, "/health", admin_port=admin_port)
    try:
        wait_healthy(proc)
        pids = serving_pids(proc)
        assert len(pids) == 2, f"only {pids} answered"
        assert_stops_cleanly(proc, pids)
    finally:
        proc.stop()


def test_a_busy_port_is_an_error_not_a_silent_share(tmp_path: Path) -> None:
    """Without --workers no SO_REUSEPORT: a second gateway on a taken port fails loudly."""
    config = tmp_path / "gateway.toml"
    # Without --workers nothing binds with SO_REUSEPORT: the admin port is picked, not held.
    config.write_text(with_admin_port(CONFIG, free_port()), encoding="utf-8")
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(config), "--port", str(port)],
            cwd=STAGE,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr


def test_the_gateway_is_ready_only_once_every_worker_serves(
    tmp_path: Path, reserve: Callable[[], int]
) -> None:
    """The first health check answered is answered by a gateway whose workers all serve:
    the parent releases them together, after the last one has set itself up. With
    SO_REUSEPORT every worker has its own accept queue, so requests spread over them at
    once; a worker still starting would leave the connections hashed to it waiting."""
    config = tmp_path / "gateway.toml"
    admin_port = reserve()
    config.write_text(with_admin_port(CONFIG, admin_port), encoding="utf-8")
    log = tmp_path / "gateway.log"
    port = reserve()
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(config)]
            + ["--port", str(port), "--workers", "3"],
            cwd=STAGE,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proc = Proc("gateway-ready", port, popen, log, "/health", admin_port=admin_port)
    try:
        wait_healthy(proc)
        # Written by the parent before it let any worker accept: it precedes every answer.
        assert "all 3 workers are ready: serving" in log.read_text()
        pids = serving_pids(proc, want=3, timeout=3.0)
        assert len(pids) == 3, f"only {pids} answered"
        assert_stops_cleanly(proc, pids)
    finally:
        proc.stop()
