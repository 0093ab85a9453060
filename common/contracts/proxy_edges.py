"""The proxy contract, edges of HTTP: what a client (or an attacker) can send a gateway.

Imported by common/contracts/proxy.py (run the contract through that module), with the
`proxy_backend` fixture defined there. Raw sockets throughout: an HTTP library would
refuse to send most of these requests, or fix them on the way.

- the request head has limits: a request line over 8 KiB is a 414, a header line over it,
  a 129th header or more than `max_header_bytes` of them all is a 431, and none of these
  reach the upstream;
- a parse error is answered HTTP/1.1, `Connection: close`, naming the path it received;
- a fragment (`#`) in the request-target is a 400, never resolved across;
- absolute-form (`GET http://host/path`) is accepted: routed on its path, with its host;
- slow clients: a request head that does not arrive within `header_timeout` is answered
  408 and the connection closed; a silent new connection is closed; a connection idle
  between requests, or a slow request *body*, is not cut by that clock.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.contracts.wire import PROBLEM_KEYS, Reply, assert_problem, echoed, send, send_raw
from common.testing.gateway import Render, start_gateway
from common.testing.processes import HOST, Proc
from common.testing.specs import GatewaySpec, RouteSpec

HEADER_TIMEOUT = 0.5  # seconds: short, so a test waits for it in well under a second
MAX_HEADER_BYTES = 16 * 1024  # below the default, so a test need not send 32 KiB


@pytest.fixture(scope="module")
def edges_gateway(
    stage_dir: Path,
    render: Render,
    proxy_backend: Proc,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    url = proxy_backend.url
    spec = GatewaySpec(
        [RouteSpec("/echo", url), RouteSpec("/kept", url, strip_prefix=True, preserve_host=True)],
        header_timeout=HEADER_TIMEOUT,
        max_header_bytes=MAX_HEADER_BYTES,
    )
    proc = start_gateway(stage_dir, render(spec), tmp_path_factory.mktemp("edges"))
    yield proc
    proc.stop()


def head_of(reply_bytes: bytes) -> list[bytes]:
    return reply_bytes.partition(b"\r\n\r\n")[0].split(b"\r\n")


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, read until the gateway closes the connection; everything it said."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


# --- the request head has limits ----------------------------------------------------------


def test_a_request_line_over_the_limit_is_a_414(edges_gateway: Proc) -> None:
    data = b"GET /echo/" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    problem = assert_problem(send_raw(edges_gateway.port, data), 414)
    assert problem["type"].endswith("/uri-too-long")
    assert echoed(send(edges_gateway.port, "GET", "/echo/after"))["path"] == "/echo/after"


@pytest.mark.parametrize(
    "headers",
    [
        # One line over every stage's per-line limit: aiohttp's 8190 bytes, 16 KiB from
        # stage 06 on (a long bearer token gets auth's 401 there, not the parser's 431).
        b"X-Long: " + b"a" * 20_000 + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % i for i in range(200)),  # over its 128 lines
        # Short lines, each allowed, 120 x 500 bytes together: over max_header_bytes.
        b"".join(b"X-H%d: " % i + b"v" * 500 + b"\r\n" for i in range(120)),
    ],
    ids=["one-long-line", "too-many", "too-much-together"],
)
def test_too_large_header_fields_are_a_431_and_never_forwarded(
    edges_gateway: Proc, headers: bytes
) -> None:
    data = b"GET /echo/big HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    reply = send_raw(edges_gateway.port, data)
    problem = assert_problem(reply, 431)
    assert problem["type"].endswith("/header-fields-too-large")
    assert "path" not in problem  # a problem of the gateway's, not an echo of the upstream


def test_a_parse_error_never_quotes_the_clients_bytes(edges_gateway: Proc) -> None:
    """aiohttp's parser messages quote the offending line; that line may carry a token
    (a too-long Authorization header), and the detail goes into the body and the log."""
    secret = "Bearer " + "s3cr3t" * 3000  # one line over every stage's per-line limit (16 KiB)
    data = b"GET /echo/x HTTP/1.1\r\nHost: x\r\nAuthorization: " + secret.encode() + b"\r\n\r\n"
    reply = send_raw(edges_gateway.port, data)
    problem = assert_problem(reply, 431)
    assert "s3cr3t" not in problem["detail"] and b"s3cr3t" not in reply.body, problem
    assert "bytes" in problem["detail"]  # still says what was wrong
    bad = b"GET /echo/x HTTP/1.1\r\nHost: x\r\nX-Token: tok\x01en-s3cr3t\r\n\r\n"
    assert b"s3cr3t" not in send_raw(edges_gateway.port, bad).body
    assert "s3cr3t" not in edges_gateway.log_tail(50)


def test_header_fields_just_under_the_limit_are_forwarded(edges_gateway: Proc) -> None:
    headers = [(f"X-H{i}", "v" * 400) for i in range(MAX_HEADER_BYTES // 450)]
    echo = echoed(send(edges_gateway.port, "GET", "/echo/fits", headers))
    assert sum(1 for name, _ in echo["headers"] if name.startswith("x-h")) == len(headers)


def test_a_parse_error_is_answered_in_http_1_1_naming_the_path(edges_gateway: Proc) -> None:
    data = b"GET /echo/named?token=secret HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n"
    received = exchange(edges_gateway.port, data)
    status_line, *fields = head_of(received)
    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert b"connection: close" in [f.lower() for f in fields]
    reply = send_raw(edges_gateway.port, data)
    problem = assert_problem(reply, 400)
    assert problem["instance"] == "/echo/named"  # the path it received, not the query


# --- the request-target ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", [b"/echo/x#/../../admin/x", b"/echo/x?q=1#frag", b"/echo/#"], ids=str
)
def test_a_fragment_in_the_request_target_is_a_400(edges_gateway: Proc, target: bytes) -> None:
    reply = send_raw(edges_gateway.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    problem = assert_problem(reply, 400)
    assert "fragment" in problem["detail"]


def test_absolute_form_is_routed_on_its_path_with_its_host(edges_gateway: Proc) -> None:
    data = b"GET http://api.example:8081/echo/abs%20x?q=a+b HTTP/1.1\r\nHost: other\r\n\r\n"
    echo = echoed(send_raw(edges_gateway.port, data))
    assert (echo["path"], echo["query"]) == ("/echo/abs%20x", "q=a+b")
    forwarded_host = [v for n, v in echo["headers"] if n == "x-forwarded-host"]
    assert forwarded_host == ["api.example:8081"]  # RFC 9112 §3.2.2: not the Host header


def test_absolute_form_with_preserve_host_sends_its_host_upstream(edges_gateway: Proc) -> None:
    data = b"GET http://shop.example/kept/echo/h HTTP/1.1\r\nHost: other\r\n\r\n"
    echo = echoed(send_raw(edges_gateway.port, data))
    assert echo["path"] == "/echo/h"
    assert [v for n, v in echo["headers"] if n == "host"] == ["shop.example"]


@pytest.mark.parametrize(
    "target",
    [b"*", b"ftp://host/echo/x", b"http://user@host/echo/x", b"http:///echo/x"],
    ids=["asterisk", "not-http", "userinfo", "no-host"],
)
def test_other_request_target_forms_are_a_400(edges_gateway: Proc, target: bytes) -> None:
    reply = send_raw(edges_gateway.port, b"OPTIONS " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_problem(reply, 400)


# --- slow clients ---------------------------------------------------------------------------


def test_a_request_head_that_stalls_is_answered_408_and_closed(edges_gateway: Proc) -> None:
    started = time.monotonic()
    received = exchange(edges_gateway.port, b"GET /echo/slow HTT", timeout=10)
    waited = time.monotonic() - started
    assert head_of(received)[0] == b"HTTP/1.1 408 Request Timeout"
    body = received.partition(b"\r\n\r\n")[2]
    problem = Reply(408, [], body).json()
    assert PROBLEM_KEYS <= problem.keys() and problem["type"].endswith("/request-timeout")
    assert HEADER_TIMEOUT * 0.9 <= waited < HEADER_TIMEOUT + 3, waited


def test_many_stalled_heads_are_all_closed(edges_gateway: Proc) -> None:
    """The slowloris shape: many connections, each a few bytes into its request line."""
    sockets = []
    try:
        for i in range(100):
            sock = socket.create_connection((HOST, edges_gateway.port), timeout=10)
            sock.sendall(b"GET /echo/%d" % i)
            sockets.append(sock)
        for sock in sockets:
            received = b""
            while chunk := sock.recv(65536):  # until the gateway closes it
                received += chunk
            assert received.startswith(b"HTTP/1.1 408 "), received[:80]
    finally:
        for sock in sockets:
            sock.close()
    # ...and the gateway serves as before.
    assert echoed(send(edges_gateway.port, "GET", "/echo/after"))["path"] == "/echo/after"


def test_a_silent_new_connection_is_closed_without_an_answer(edges_gateway: Proc) -> None:
    assert exchange(edges_gateway.port, b"", timeout=10) == b""


def test_an_idle_keep_alive_connection_outlives_the_header_timeout(edges_gateway: Proc) -> None:
    with socket.create_connection((HOST, edges_gateway.port), timeout=10) as sock:
        request = b"GET /echo/idle HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request)
        first = read_one_response(sock)
        assert first.startswith(b"HTTP/1.1 200 ")
        sock.settimeout(HEADER_TIMEOUT * 3)
        with pytest.raises(TimeoutError):  # idle well past the header timeout: still open
            sock.recv(1)
        sock.settimeout(10)
        sock.sendall(request)
        assert read_one_response(sock).startswith(b"HTTP/1.1 200 ")


def test_a_slow_request_body_is_not_cut_by_the_header_timeout(edges_gateway: Proc) -> None:
    """The header timeout is for the head: a slow upload is the upstream's business."""
    with socket.create_connection((HOST, edges_gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /echo/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab")
        sock.settimeout(HEADER_TIMEOUT * 3)
        with pytest.raises(TimeoutError):  # nothing comes back while the body trickles in
            sock.recv(1)
        sock.settimeout(10)
        sock.sendall(b"cdef")
        response = read_one_response(sock)
    assert response.startswith(b"HTTP/1.1 200 "), response[:100]
    assert b'"body":"abcdef"' in response.replace(b" ", b"")


def read_one_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, from a socket that stays open."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body
