"""The proxy contract, failure half: what a gateway answers when things go wrong.

Imported by common/contracts/proxy.py (run the contract through that module); the
`proxy_gateway` and `proxy_backend` fixtures used here are defined there.

- no route -> 404; upstream refused or broken before its answer -> 502; connect or read
  timeout -> 504; all as application/problem+json with the request id;
- an upstream that dies or stalls mid-body -> the client connection is closed, never a
  body that looks complete;
- a malformed request -> 400, and the gateway goes on serving;
- keep-alive on both sides; SIGTERM drains requests in flight within the deadline.
"""

from __future__ import annotations

import http.client
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.contracts.upstreams import unresponsive_port
from common.contracts.wire import (
    assert_cut_off,
    assert_problem,
    echoed,
    open_stream,
    read_reply,
    send,
    send_raw,
)
from common.testing.gateway import Render, start_gateway
from common.testing.processes import HOST, Proc
from common.testing.specs import GatewaySpec, RouteSpec


@pytest.fixture(scope="module")
def timeout_gateway(
    stage_dir: Path,
    render: Render,
    proxy_backend: Proc,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    """A gateway with short upstream timeouts (0.5 s connect, 1 s read)."""
    with unresponsive_port() as port:
        routes = [
            RouteSpec("/delay", proxy_backend.url),
            RouteSpec("/stream", proxy_backend.url),
            RouteSpec("/unresponsive", f"http://{HOST}:{port}"),
        ]
        config = render(GatewaySpec(routes, connect_timeout=0.5, read_timeout=1.0))
        proc = start_gateway(stage_dir, config, tmp_path_factory.mktemp("timeouts"))
        yield proc
        proc.stop()


# --- failures ----------------------------------------------------------------------------


def test_no_route_is_a_404_problem(proxy_gateway: Proc) -> None:
    problem = assert_problem(send(proxy_gateway.port, "GET", "/no/such/route?x=1"), 404)
    assert problem["instance"] == "/no/such/route"


def test_refused_upstream_is_a_502_problem(proxy_gateway: Proc) -> None:
    assert_problem(send(proxy_gateway.port, "GET", "/refused/anything"), 502)


@pytest.mark.parametrize("path", ["/broken/no-answer", "/broken/garbage"])
def test_upstream_failing_before_its_answer_is_a_502_problem(
    proxy_gateway: Proc, path: str
) -> None:
    assert_problem(send(proxy_gateway.port, "GET", path), 502)


def test_upstream_read_timeout_is_a_504_problem(timeout_gateway: Proc) -> None:
    started = time.monotonic()
    assert_problem(send(timeout_gateway.port, "GET", "/delay/5000"), 504)
    assert time.monotonic() - started < 4, "the 1 s read timeout did not apply"


def test_upstream_connect_timeout_is_a_504_problem(timeout_gateway: Proc) -> None:
    started = time.monotonic()
    assert_problem(send(timeout_gateway.port, "GET", "/unresponsive/x"), 504)
    assert time.monotonic() - started < 4, "the 0.5 s connect timeout did not apply"


@pytest.mark.parametrize("path", ["/broken/short-body", "/broken/short-chunked"])
def test_upstream_dying_mid_body_closes_the_client_connection(
    proxy_gateway: Proc, path: str
) -> None:
    assert_cut_off(proxy_gateway.port, path)


def test_upstream_stalling_mid_body_closes_the_client_connection(timeout_gateway: Proc) -> None:
    assert_cut_off(timeout_gateway.port, "/stream?chunks=2&interval_ms=5000")


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
        # Both framings at once: the classic request-smuggling opener (RFC 9112 §6.3).
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
    ids=["request-line", "header-name", "content-length", "chunk-size", "cl-and-te"],
)
def test_a_malformed_request_is_a_400_and_serving_goes_on(proxy_gateway: Proc, data: bytes) -> None:
    assert_problem(send_raw(proxy_gateway.port, data), 400)
    assert echoed(send(proxy_gateway.port, "GET", "/echo/after"))["path"] == "/echo/after"


# --- connections -------------------------------------------------------------------------


def test_client_connection_is_kept_alive(proxy_gateway: Proc) -> None:
    conn = http.client.HTTPConnection(HOST, proxy_gateway.port, timeout=10)
    sockets = []
    try:
        for method, target in [("GET", "/echo/1"), ("HEAD", "/bytes/1000"), ("GET", "/echo/2")]:
            conn.request(method, target)
            reply = read_reply(conn.getresponse())
            assert reply.status == 200
            sockets.append(conn.sock)  # http.client drops it when the server closes
    finally:
        conn.close()
    assert sockets[0] is not None and all(s is sockets[0] for s in sockets)


def test_upstream_connections_are_reused(proxy_gateway: Proc) -> None:
    # The echo reports the TCP peer it sees: the gateway's side of its pooled connection.
    # Sequential requests must share connections; how many idle ones the pool holds (and
    # whether it hands them out in turn) is the pool's business, so allow a few.
    ports = [echoed(send(proxy_gateway.port, "GET", "/echo/pool"))["client"][1] for _ in range(6)]
    assert len(set(ports)) <= 3, f"6 sequential requests used {len(set(ports))} connections"


def test_sigterm_drains_requests_in_flight_within_the_deadline(
    stage_dir: Path, render: Render, proxy_backend: Proc, tmp_path: Path
) -> None:
    deadline = 2.0
    spec = GatewaySpec([RouteSpec("/stream", proxy_backend.url)], shutdown_timeout=deadline)
    config = render(spec)
    gateway = start_gateway(stage_dir, config, tmp_path)
    streams = []
    try:
        # One request finishes inside the deadline, one would need 8 s and is cut off.
        quick = open_stream(gateway.port, "/stream?chunks=2&interval_ms=700")
        slow = open_stream(gateway.port, "/stream?chunks=2&interval_ms=8000")
        streams = [quick[0], slow[0]]
        started = time.monotonic()
        gateway.popen.send_signal(signal.SIGTERM)
        rest = quick[1].read()
        assert (quick[2] + rest).decode().count("\n") == 2, "the request in flight was cut"
        with pytest.raises(ConnectionRefusedError):  # no longer accepting
            socket.create_connection((HOST, gateway.port), timeout=5).close()
        with pytest.raises(http.client.IncompleteRead):
            slow[1].read()
        assert gateway.popen.wait(timeout=10) == 0
        assert time.monotonic() - started < deadline + 1.5, "the shutdown deadline was ignored"
    finally:
        for conn in streams:
            conn.close()
        gateway.stop()
