"""The backend's command line and process life cycle (common/backends/__main__.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp

from common.testing.fixtures import BackendFactory
from common.testing.processes import REPO_ROOT, Proc, backend_argv, child_env, wait_healthy


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "common.backends", *args],  # no --fd: the CLI as a user runs it
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_an_unknown_service_is_a_usage_error_that_lists_the_valid_ones() -> None:
    result = run_cli("--service", "billing")
    assert result.returncode == 2
    assert "invalid choice: 'billing'" in result.stderr
    for service in ("users", "orders", "products"):
        assert service in result.stderr
    assert "Traceback" not in result.stderr


def test_an_fd_that_is_not_an_open_listening_socket_is_a_usage_error() -> None:
    result = run_cli("--service", "users", "--fd", "987")
    assert result.returncode == 2
    assert "--fd 987" in result.stderr
    assert "Traceback" not in result.stderr


async def test_health_names_the_service_instance_and_inherited_port(
    backend_factory: BackendFactory, client_session: aiohttp.ClientSession
) -> None:
    backend = backend_factory("products", "b")
    async with client_session.get(backend.url + "/health") as resp:
        assert resp.status == 200
        assert await resp.json() == {
            "status": "ok",
            "service": "products",
            "instance": "b",
            "port": backend.port,  # the port of the socket the test bound and handed over
        }
        assert resp.headers["X-Served-By"] == f"products/b@{backend.port}"


def test_sigterm_stops_the_backend_with_exit_status_0(backend_factory: BackendFactory) -> None:
    backend = backend_factory("users", "a")
    assert backend.stop() == 0, backend.log_tail()
    assert "Traceback" not in backend.log_tail()


def test_without_fd_it_binds_host_and_port_itself_and_prints_the_port() -> None:
    popen = subprocess.Popen(
        [*backend_argv("orders", "z"), "--port", "0"],
        cwd=REPO_ROOT,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc = Proc("orders-z", 0, popen, Path(os.devnull))
    try:
        assert popen.stdout is not None
        line = popen.stdout.readline()  # "orders/z listening on http://127.0.0.1:PORT"
        assert "listening on http://127.0.0.1:" in line, line
        proc.port = int(line.rsplit(":", 1)[1])
        wait_healthy(proc)
        with urllib.request.urlopen(proc.url + "/health", timeout=5) as resp:
            assert json.load(resp)["port"] == proc.port
            assert resp.headers["X-Served-By"] == f"orders/z@{proc.port}"
    finally:
        proc.stop()
        if popen.stdout is not None:
            popen.stdout.close()
    assert popen.returncode == 0


async def test_a_stop_cuts_a_long_stream_short_and_still_exits_0(
    backend_factory: BackendFactory, client_session: aiohttp.ClientSession
) -> None:
    backend = backend_factory("users", "a")
    url = backend.url + "/stream?chunks=100&interval_ms=1000"  # 100 s if left alone
    async with client_session.get(url) as resp:
        assert (await resp.content.readline()).startswith(b"chunk 1 of 100")  # in flight
        # Proc.stop sends SIGTERM and SIGKILLs after 5 s: exit status 0 means the
        # backend stopped by itself, after its 3 s grace period, not by the kill.
        assert await asyncio.to_thread(backend.stop) == 0
    assert "Traceback" not in backend.log_tail()
