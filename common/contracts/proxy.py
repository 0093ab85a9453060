"""The proxy contract: what every stage's gateway does with a request it forwards.

Written once, run by stage 01 and every stage after it (a later stage adds concerns; it
never gets to break these). A stage runs it from `tests/test_proxy_contract.py`:

    from common.contracts.proxy import *  # noqa: F403

and its conftest.py provides two fixtures:

- `stage_dir`: the stage folder (the gateway runs `python -m gateway` from there);
- `render`: `tests/stage_config.render(spec) -> str`, the stage's gateway.toml for a
  `GatewaySpec` (common/testing/specs.py: routes, timeouts, ...).

The gateway is started once per module (module-scoped fixtures) and every test talks to
it with http.client or a raw socket (wire.py): aiohttp's or requests' client would
normalise the very things under test (header case and order, percent-encoding, framing).

This module holds the data path: every method and status, bodies streaming both ways,
headers, path and query, forwarding headers, the request id. proxy_failures.py holds the
failures (errors, timeouts, broken upstreams, keep-alive, graceful shutdown) and
proxy_edges.py the edges of HTTP (head limits, fragments, absolute-form, slow clients);
both are imported at the bottom, so one star import runs the whole contract.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.backends.payload import pattern, pattern_sha256
from common.contracts.upstreams import BrokenUpstream, broken_upstream, refused_port
from common.contracts.wire import (
    SANE_ID,
    echoed,
    echoed_header,
    forwarded_elements,
    send,
    send_raw,
)
from common.testing.gateway import Render, start_gateway
from common.testing.processes import HOST, Proc, peak_rss_kib, start_backend
from common.testing.specs import GatewaySpec, RouteSpec

MiB = 1024 * 1024
BIG = 100 * MiB  # the contract's "big body", both ways
MEMORY_BUDGET_KIB = 20 * 1024  # how much the gateway's peak RSS may grow while moving it
HOP_BY_HOP = (
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
)


# --- fixtures: one backend, one broken upstream, one gateway per module -----------------


@pytest.fixture(scope="module")
def proxy_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_backend("users", "a", log_dir=tmp_path_factory.mktemp("backend"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def broken() -> Iterator[BrokenUpstream]:
    with broken_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def proxy_gateway(
    stage_dir: Path,
    render: Render,
    proxy_backend: Proc,
    broken: BrokenUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    """The gateway under test, routing the backend's endpoints and the broken upstream."""
    url = proxy_backend.url
    routes = [
        RouteSpec(prefix, url) for prefix in ("/echo", "/status", "/stream", "/bytes", "/upload")
    ]
    routes += [
        RouteSpec("/api", url, strip_prefix=True),
        RouteSpec("/preserved", url, strip_prefix=True, preserve_host=True),
        RouteSpec("/broken", broken.url),
    ]
    with refused_port() as port:
        routes.append(RouteSpec("/refused", f"http://{HOST}:{port}"))
        tmp = tmp_path_factory.mktemp("gateway")
        proc = start_gateway(stage_dir, render(GatewaySpec(routes)), tmp)
        yield proc
        proc.stop()


# --- methods and statuses ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"])
def test_every_method_reaches_the_upstream(proxy_gateway: Proc, method: str) -> None:
    body = b'{"hello": "world"}' if method in ("POST", "PUT", "PATCH") else None
    echo = echoed(send(proxy_gateway.port, method, "/echo/method", body=body))
    assert echo["method"] == method
    assert echo["body"] == (body or b"").decode()


def test_head_answers_the_headers_of_get_without_a_body(proxy_gateway: Proc) -> None:
    # HEAD and a GET pipelined on one connection: if a single body byte followed the
    # HEAD's headers, the second response would not start right after them.
    pipelined = (
        b"HEAD /bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /echo/after-head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((HOST, proxy_gateway.port), timeout=10) as sock:
        sock.sendall(pipelined)
        received = b""
        while data := sock.recv(65536):
            received += data
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\ncontent-length: 1000\r\n" in head.lower() + b"\r\n"
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:100]
    assert b'"path":"/echo/after-head"' in rest


@pytest.mark.parametrize("status", [200, 201, 204, 299, 304, 400, 404, 418, 500, 503, 599])
def test_every_status_passes_through(proxy_gateway: Proc, status: int) -> None:
    reply = send(proxy_gateway.port, "GET", f"/status/{status}")
    assert reply.status == status
    if status in (204, 304):
        assert reply.body == b""
    else:
        assert json.loads(reply.body) == {"status": status}  # the upstream's, not an error


# --- bodies stream both ways -------------------------------------------------------------


@pytest.mark.slow
def test_big_download_arrives_intact_in_bounded_memory(proxy_gateway: Proc) -> None:
    before = peak_rss_kib(proxy_gateway.pid)
    conn = http.client.HTTPConnection(HOST, proxy_gateway.port, timeout=60)
    try:
        conn.request("GET", f"/bytes/{BIG}?seed=7")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") == str(BIG)
        digest, size = hashlib.sha256(), 0
        while chunk := response.read(256 * 1024):
            digest.update(chunk)
            size += len(chunk)
    finally:
        conn.close()
    assert size == BIG
    assert digest.hexdigest() == pattern_sha256(BIG, seed=7)
    growth = peak_rss_kib(proxy_gateway.pid) - before
    assert growth < MEMORY_BUDGET_KIB, f"gateway peak RSS grew by {growth} KiB"


@pytest.mark.slow
def test_big_upload_arrives_intact_in_bounded_memory(proxy_gateway: Proc) -> None:
    before = peak_rss_kib(proxy_gateway.pid)
    reply = send(
        proxy_gateway.port,
        "POST",
        "/upload",
        [("Content-Length", str(BIG)), ("Content-Type", "application/octet-stream")],
        pattern(BIG, seed=3),
        timeout=60,
    )
    result = echoed(reply)
    assert result["bytes"] == BIG
    assert result["sha256"] == pattern_sha256(BIG, seed=3)
    # The client said how long the body is: the upstream hears the same, not chunks.
    assert result["content_length"] == BIG and result["chunked"] is False
    growth = peak_rss_kib(proxy_gateway.pid) - before
    assert growth < MEMORY_BUDGET_KIB, f"gateway peak RSS grew by {growth} KiB"


def test_chunked_upload_stays_chunked(proxy_gateway: Proc) -> None:
    pieces = [bytes([i]) * 10_000 for i in range(50)]
    result = echoed(send(proxy_gateway.port, "POST", "/upload", body=iter(pieces), chunked=True))
    assert result["bytes"] == 500_000
    assert result["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert result["chunked"] is True and result["content_length"] is None


def test_chunked_response_arrives_chunk_by_chunk(proxy_gateway: Proc) -> None:
    """The first chunk reaches the client before the upstream has produced the last."""
    conn = http.client.HTTPConnection(HOST, proxy_gateway.port, timeout=30)
    try:
        conn.request("GET", "/stream?chunks=4&interval_ms=400")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") is None
        assert response.getheader("Transfer-Encoding") == "chunked"
        first = b""
        while b"\n" not in first:
            first += response.read1(65536)
        first_arrived_ms = time.monotonic() * 1000  # CLOCK_MONOTONIC: one clock per machine
        rest = response.read()
    finally:
        conn.close()
    lines = (first + rest).decode().splitlines()
    assert [line.split(" at ")[0] for line in lines] == [f"chunk {i} of 4" for i in (1, 2, 3, 4)]
    last_produced_ms = float(lines[-1].split(" at ")[1])
    assert first_arrived_ms < last_produced_ms, "the gateway buffered the stream"


def test_the_head_of_a_slow_stream_reaches_the_client_before_its_body(
    proxy_gateway: Proc, broken: BrokenUpstream
) -> None:
    """A stream's status and headers go out as soon as the upstream sent them, even when
    its first body byte is a long way off (an event stream, a long poll): a gateway that
    held the head back until the body started would leave the client guessing."""
    broken.release.clear()
    conn = http.client.HTTPConnection(HOST, proxy_gateway.port, timeout=5)
    try:
        conn.request("GET", "/broken/slow-start")
        response = conn.getresponse()  # times out if the head waits for the body
        assert response.status == 200
        broken.release.set()
        assert response.read() == b"hello"
    finally:
        broken.release.set()
        conn.close()


def test_compressed_request_body_is_not_decompressed(proxy_gateway: Proc) -> None:
    compressed = gzip.compress(b"hello " * 1000)
    result = echoed(
        send(proxy_gateway.port, "POST", "/upload", [("Content-Encoding", "gzip")], compressed)
    )
    assert result["bytes"] == len(compressed) == result["content_length"]
    assert result["sha256"] == hashlib.sha256(compressed).hexdigest()


def test_compressed_response_is_passed_untouched(proxy_gateway: Proc) -> None:
    """The upstream says gzip (the bytes are not): a decompressing proxy would choke."""
    reply = send(
        proxy_gateway.port,
        "GET",
        "/status/200?header=Content-Encoding:gzip",
        [("Accept-Encoding", "gzip")],
    )
    assert reply.status == 200
    assert reply.header("Content-Encoding") == "gzip"
    assert reply.body == b'{"status": 200}'
    assert reply.header("Content-Length") == str(len(reply.body))


def test_content_length_is_kept_and_echo_sees_the_body(proxy_gateway: Proc) -> None:
    reply = send(proxy_gateway.port, "PUT", "/echo/put", body=b"\x00\xffbinary")
    echo = echoed(reply)
    assert echoed_header(echo, "content-length") == ["8"]
    assert base64.b64decode(echo["body"]) == b"\x00\xffbinary"
    assert reply.header("Content-Length") == str(len(reply.body))
    assert reply.header("Transfer-Encoding") is None


# --- headers -----------------------------------------------------------------------------


def test_hop_by_hop_request_headers_are_dropped(proxy_gateway: Proc) -> None:
    headers = [
        ("Connection", "keep-alive, X-Connection-Scoped"),
        ("X-Connection-Scoped", "named by Connection, so hop-by-hop"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-Checksum"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("X-End-To-End", "kept"),
    ]
    echo = echoed(send(proxy_gateway.port, "GET", "/echo/hop", headers))
    received = {name for name, _ in echo["headers"]}
    assert received.isdisjoint({*HOP_BY_HOP, "x-connection-scoped"}), received
    assert echoed_header(echo, "x-end-to-end") == ["kept"]


def test_hop_by_hop_response_headers_are_dropped(proxy_gateway: Proc) -> None:
    extra = [
        "Connection:X-Upstream-Scoped",
        "X-Upstream-Scoped:1",
        "Keep-Alive:timeout%3D5",
        "Proxy-Connection:keep-alive",
        "Proxy-Authenticate:Basic",
        "Trailer:X-Checksum",
        "Upgrade:h2c",
        "TE:trailers",
        "X-End-To-End:kept",
    ]
    reply = send(proxy_gateway.port, "GET", "/status/200?" + "&".join(f"header={h}" for h in extra))
    assert reply.status == 200
    names = {name.lower() for name, _ in reply.headers}
    # Connection is allowed back only as the gateway's own framing signal ("close").
    assert names.isdisjoint({*HOP_BY_HOP, "x-upstream-scoped"} - {"connection"}), names
    assert reply.all("Connection") in ([], ["close"])
    assert reply.header("X-End-To-End") == "kept"


def test_repeated_request_headers_arrive_as_sent_in_order(proxy_gateway: Proc) -> None:
    headers = [("X-Repeat", "one"), ("Accept", "text/plain"), ("X-Repeat", "two")]
    echo = echoed(send(proxy_gateway.port, "GET", "/echo/repeat", headers))
    assert echoed_header(echo, "x-repeat") == ["one", "two"]
    assert echoed_header(echo, "accept") == ["text/plain"]
    # Nothing the client did not send: no User-Agent, Accept-Encoding or Content-Type
    # invented by the gateway's HTTP client.
    for name in ("user-agent", "accept-encoding", "content-type", "cookie"):
        assert echoed_header(echo, name) == [], name


def test_repeated_response_headers_stay_separate_lines(proxy_gateway: Proc) -> None:
    query = "header=Set-Cookie:a=1;%20Path=/&header=X-Multi:one&header=Set-Cookie:b=2"
    reply = send(proxy_gateway.port, "GET", f"/status/200?{query}")
    assert reply.all("Set-Cookie") == ["a=1; Path=/", "b=2"]
    assert reply.all("X-Multi") == ["one"]
    assert reply.header("Server") == "uvicorn"  # the upstream's headers, not the gateway's


# --- path and query ----------------------------------------------------------------------


# Paths every stage forwards byte for byte. Paths with an encoded slash (`%2F`), `//` or
# dot-segments are not here: stage 01 forwards them raw too (its own tests say so), but
# from stage 02 on the router normalises or refuses them, and the routing contract
# (common/contracts/routing.py) says what happens to them.
@pytest.mark.parametrize(
    "target",
    [
        "/echo/plus+sign?q=a+b",
        "/echo/sp%20ace?x=%20%2F&y=%2f",
        "/echo/caf%C3%A9?name=%C3%A9l%C3%A8ve",
        "/echo/%7Euser/~user;param=1,2?a=1&a=2&empty=&flag",
    ],
)
def test_path_and_query_arrive_byte_for_byte(proxy_gateway: Proc, target: str) -> None:
    path, _, query = target.partition("?")
    echo = echoed(send(proxy_gateway.port, "GET", target))
    assert (echo["path"], echo["query"]) == (path, query)


def test_strip_prefix_removes_only_the_prefix(proxy_gateway: Proc) -> None:
    echo = echoed(send(proxy_gateway.port, "GET", "/api/echo/api/a%20b?next=/api/x"))
    assert (echo["path"], echo["query"]) == ("/echo/api/a%20b", "next=/api/x")


# --- who asked: X-Forwarded-*, Forwarded, Via, Host ----------------------------------------


def test_forwarding_headers_are_appended_and_set(proxy_gateway: Proc, proxy_backend: Proc) -> None:
    headers = [
        ("Host", "api.example:8080"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.9;proto=https"),
        ("Via", "1.0 edge"),
    ]
    reply = send(proxy_gateway.port, "GET", "/echo/forwarded", headers)
    echo = echoed(reply)
    assert echoed_header(echo, "x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]
    assert echoed_header(echo, "x-forwarded-proto") == ["http"]
    assert echoed_header(echo, "x-forwarded-host") == ["api.example:8080"]
    [forwarded] = echoed_header(echo, "forwarded")
    first, ours = forwarded_elements(forwarded)
    assert first == {"for": "203.0.113.9", "proto": "https"}
    assert ours == {"for": "127.0.0.1", "host": "api.example:8080", "proto": "http"}
    [via] = echoed_header(echo, "via")
    assert via.startswith("1.0 edge, 1.1 ") and len(via) > len("1.0 edge, 1.1 ")
    # Host names the upstream (virtual hosts upstream depend on it) ...
    assert echoed_header(echo, "host") == [f"{HOST}:{proxy_backend.port}"]
    # ... and the response says it came through a proxy too.
    assert (reply.header("Via") or "").startswith("1.1 ")


def test_forwarding_headers_start_a_chain(proxy_gateway: Proc) -> None:
    echo = echoed(send(proxy_gateway.port, "GET", "/echo/first-hop"))
    assert echoed_header(echo, "x-forwarded-for") == ["127.0.0.1"]
    [forwarded] = echoed_header(echo, "forwarded")
    assert [e["for"] for e in forwarded_elements(forwarded)] == ["127.0.0.1"]


def test_preserve_host_passes_the_clients_host(proxy_gateway: Proc) -> None:
    headers = [("Host", "shop.example")]
    echo = echoed(send(proxy_gateway.port, "GET", "/preserved/echo/host", headers))
    assert echo["path"] == "/echo/host"
    assert echoed_header(echo, "host") == ["shop.example"]


# --- X-Request-ID ------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["abc-123", "x" * 200, "Req.42_~!#$%&'*+^`|"])
def test_a_sane_request_id_is_kept(proxy_gateway: Proc, request_id: str) -> None:
    reply = send(proxy_gateway.port, "GET", "/echo/id", [("X-Request-ID", request_id)])
    assert echoed_header(echoed(reply), "x-request-id") == [request_id]
    assert reply.all("X-Request-ID") == [request_id]


@pytest.mark.parametrize(
    "raw_id",
    [b"x" * 201, b"has space", b"caf\xc3\xa9", b""],
    ids=["too-long", "space", "non-ascii", "empty"],
)
def test_an_insane_request_id_is_replaced(proxy_gateway: Proc, raw_id: bytes) -> None:
    data = b"GET /echo/id HTTP/1.1\r\nHost: x\r\nX-Request-ID: " + raw_id + b"\r\n\r\n"
    reply = send_raw(proxy_gateway.port, data)
    [sent_upstream] = echoed_header(echoed(reply), "x-request-id")
    assert SANE_ID.fullmatch(sent_upstream)
    assert sent_upstream.encode() != raw_id
    assert reply.all("X-Request-ID") == [sent_upstream]


def test_a_request_id_is_generated_when_missing(proxy_gateway: Proc) -> None:
    replies = [send(proxy_gateway.port, "GET", "/echo/id") for _ in range(2)]
    ids = [echoed_header(echoed(reply), "x-request-id") for reply in replies]
    assert [reply.all("X-Request-ID") for reply in replies] == ids
    assert all(SANE_ID.fullmatch(i) for [i] in ids)
    assert ids[0] != ids[1]


# The failure half and the HTTP edges live next door; importing them here means a stage's
# `from common.contracts.proxy import *` runs all of it against the same fixtures.
from common.contracts.proxy_edges import *  # noqa: E402, F403
from common.contracts.proxy_failures import *  # noqa: E402, F403
