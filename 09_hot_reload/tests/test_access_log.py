"""One access log line per request, and the request id on every log line."""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway.auth.apikeys import key_hash
from stage_config import render

from common.contracts.upstreams import refused_port
from common.testing.gateway import start_gateway
from common.testing.processes import HOST, Proc, start_backend
from common.testing.specs import AuthSpec, ConsumerSpec, GatewaySpec, RouteAuthSpec, RouteSpec

STAGE = Path(__file__).resolve().parents[1]
ACCESS = re.compile(
    r"\[(?P<id>\S+)\] gateway\.access: (?P<method>\S+) (?P<path>\S+) (?P<status>\d{3})"
    r" upstream=(?P<upstream>\S+) (?P<ms>\d+\.\d\d)ms$"
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("access-log")
    backend = start_backend("users", log_dir=tmp)
    try:
        with refused_port() as port:
            routes = [RouteSpec("/users", backend.url), RouteSpec("/down", f"http://{HOST}:{port}")]
            proc = start_gateway(STAGE, render(GatewaySpec(routes, access_log=True)), tmp)
            try:
                yield proc
            finally:
                proc.stop()
    finally:
        backend.stop()


def get(proc: Proc, method: str, target: str, request_id: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(HOST, proc.port, timeout=10)
    conn.request(method, target, headers={"X-Request-ID": request_id})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def lines_with(proc: Proc, request_id: str, count: int, timeout: float = 5.0) -> list[str]:
    """The log lines carrying `request_id`, once there are `count` of them.

    The access line is written after the last byte went to the socket, so the client can
    be a moment ahead of the log file: wait for the lines, with a deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in proc.log_tail(10_000).splitlines() if f"[{request_id}]" in line]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_a_proxied_request_logs_method_path_status_upstream_duration_and_id(
    gateway: Proc,
) -> None:
    response = get(gateway, "GET", "/users/1?fields=name", "log-test-1")
    assert response.status == 200
    [line] = lines_with(gateway, "log-test-1", 1)
    access = ACCESS.search(line)
    assert access, line
    assert access["method"] == "GET" and access["path"] == "/users/1?fields=name"
    assert access["status"] == "200"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", access["upstream"])
    assert float(access["ms"]) > 0


def test_every_line_of_a_failing_request_carries_its_id(gateway: Proc) -> None:
    assert get(gateway, "GET", "/down/x", "log-test-2").status == 502
    lines = lines_with(gateway, "log-test-2", 2)
    assert len(lines) == 2, lines
    assert "gateway.proxy" in lines[0] and "refused" in lines[0].lower()
    access = ACCESS.search(lines[1])
    assert access and access["status"] == "502", lines[1]


def test_a_request_without_a_route_logs_no_upstream(gateway: Proc) -> None:
    response = get(gateway, "DELETE", "/usersX", "log-test-3")
    assert response.status == 404
    [line] = lines_with(gateway, "log-test-3", 1)
    access = ACCESS.search(line)
    assert access and (access["method"], access["status"], access["upstream"]) == (
        "DELETE",
        "404",
        "-",
    )


def test_the_health_endpoint_reports_this_process(gateway: Proc) -> None:
    assert gateway.admin_port is not None  # from this stage on, health is on the admin port
    conn = http.client.HTTPConnection(HOST, gateway.admin_port, timeout=10)
    try:
        conn.request("GET", gateway.health_path)
        assert json.loads(conn.getresponse().read()) == {"status": "ok", "pid": gateway.pid}
        conn.request("POST", gateway.health_path, body=b"")
        response = conn.getresponse()
        assert response.status == 405
        assert response.getheader("Content-Type") == "application/problem+json"
        assert response.getheader("Allow") == "GET, HEAD"
        response.read()
    finally:
        conn.close()


# --- stage 06: authenticated routes -------------------------------------------------------

KEY = "gwk_logtest1_" + "L" * 43


@pytest.fixture(scope="module")
def auth_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("access-log-auth")
    backend = start_backend("users", log_dir=tmp)
    consumer = ConsumerSpec("logger", api_keys=(("logtest1", key_hash(KEY)),))
    route = RouteSpec("/r", backend.url, strip_prefix=True,
                      auth=RouteAuthSpec(mode="key", key_query="api_key"))  # fmt: skip
    spec = GatewaySpec([route], access_log=True, auth=AuthSpec(consumers=(consumer,)))
    proc = start_gateway(STAGE, render(spec), tmp)
    try:
        yield proc
    finally:
        proc.stop()
        backend.stop()


def test_a_key_in_the_query_is_never_logged_and_the_upstream_is(auth_gateway: Proc) -> None:
    assert get(auth_gateway, "GET", f"/r/echo?x=1&api_key={KEY}", "log-auth-1").status == 200
    [line] = lines_with(auth_gateway, "log-auth-1", 1)
    assert KEY not in line
    entry = ACCESS.search(line)
    assert entry is not None, line
    assert entry["path"] == "/r/echo?x=1&api_key=REDACTED"
    assert entry["upstream"].startswith("http://127.0.0.1:"), "the clone's upstream was lost"


def test_a_refusal_logs_its_reason_under_the_request_id(auth_gateway: Proc) -> None:
    assert (
        get(auth_gateway, "GET", "/r/echo?api_key=gwk_logtest1_short", "log-auth-2").status == 401
    )
    lines = lines_with(auth_gateway, "log-auth-2", 2)
    assert any("gateway.auth: 401 invalid credential" in line for line in lines), lines
    assert not any("gwk_logtest1_short" in line.partition("gateway.auth")[2] for line in lines)
