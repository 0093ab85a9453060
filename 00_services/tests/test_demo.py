"""Stage 00 as a reader meets it: three backends, no gateway, demo.http true as written.

The backends run on ephemeral ports here (never 9001-9003, which a reader's `make
services` may hold); the demo's base-URL variables are pointed at them.
"""

from __future__ import annotations

import json
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.demo import assert_demo, load_demo
from common.testing.processes import Proc, start_backend, wait_healthy

STAGE = Path(__file__).resolve().parents[1]
DEMO = STAGE / "demo.http"
SERVICES = ("users", "orders", "products")


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proc]]:
    """The three services, started side by side (each FastAPI import takes a while)."""
    log_dir = tmp_path_factory.mktemp("backends")
    started: dict[str, Proc] = {}
    try:
        for service in SERVICES:
            started[service] = start_backend(service, "a", log_dir=log_dir, wait=False)
        for proc in started.values():
            wait_healthy(proc)
        yield started
    finally:
        for proc in started.values():
            proc.stop()


def served_by(service: str, proc: Proc) -> str:
    return f"{service}/a@{proc.port}"


def test_every_demo_request_answers_its_expected_status(backends: dict[str, Proc]) -> None:
    urls = {service: proc.url for service, proc in backends.items()}
    assert_demo(DEMO, urls)  # a first pass, then the one checked below: a reader clicks again
    results = assert_demo(DEMO, urls)
    # Without a gateway each client talks to each service: every answer names the
    # service (and port) that produced it.
    for result in results:
        service = next(s for s in SERVICES if result.request.url.startswith("{{" + s + "}}"))
        expected = served_by(service, backends[service])
        assert result.header("X-Served-By") == expected, result.request.label


def test_every_service_answers_health_with_its_own_name(backends: dict[str, Proc]) -> None:
    for service, proc in backends.items():
        with urllib.request.urlopen(proc.url + "/health", timeout=5) as response:
            assert response.status == 200
            assert response.headers["X-Served-By"] == served_by(service, proc)
            assert json.load(response)["service"] == service


def test_demo_and_services_toml_agree_on_the_ports() -> None:
    """`make services` starts what demo.http calls: users 9001, orders 9002, products 9003."""
    config = tomllib.loads((STAGE / "services.toml").read_text())
    assert "gateway" not in config  # the point of this stage
    started = {b["service"]: f"http://127.0.0.1:{b['port']}" for b in config["backends"]}
    assert started == load_demo(DEMO).variables
