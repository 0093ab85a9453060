"""/echo must report a request byte for byte: later stages' proxy tests rely on it.

The fidelity tests speak HTTP over a raw socket, so nothing between the test and the
backend (no client library) can normalise the path, the query or the headers.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket

import aiohttp
import pytest

from common.backends.echo import ECHO_BODY_LIMIT
from common.testing.processes import HOST, Proc


def raw_exchange(port: int, request: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Send `request` as is (it must say `Connection: close`), return status line,
    headers in order, and every byte after the blank line."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(request)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [
        (name.lower(), value.strip()) for name, _, value in (h.partition(":") for h in lines)
    ]
    return status_line, headers, body


def test_echo_reports_raw_path_query_duplicate_headers_and_binary_body(
    users_backend: Proc,
) -> None:
    body = bytes(range(256)) * 4 + b"\xff\xfe not utf-8"
    target = b"/echo/a%2Fb/%7Euser/caf%C3%A9?a=%2F&b=+&c=%20&d=%E2%9C%93&e"
    request = (
        b"PUT " + target + b" HTTP/1.1\r\n"
        b"Host: backend.test\r\n"
        b"X-Dup: one\r\n"
        b"X-Mixed-Case: Value With  Spaces\r\n"
        b"x-dup: two\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n"
        b"\r\n" + body
    )
    status, _, response_body = raw_exchange(users_backend.port, request)
    assert status.startswith("HTTP/1.1 200")
    echo = json.loads(response_body)

    assert echo["method"] == "PUT"
    assert echo["path"] == "/echo/a%2Fb/%7Euser/caf%C3%A9"  # not decoded, %2F kept
    assert echo["query"] == "a=%2F&b=+&c=%20&d=%E2%9C%93&e"  # `+` is not turned into a space
    assert echo["headers"] == [  # in order, duplicates kept; names lowercased by uvicorn
        ["host", "backend.test"],
        ["x-dup", "one"],
        ["x-mixed-case", "Value With  Spaces"],
        ["x-dup", "two"],
        ["content-type", "application/octet-stream"],
        ["content-length", str(len(body))],
        ["connection", "close"],
    ]
    assert echo["body_encoding"] == "base64"
    assert base64.b64decode(echo["body"]) == body
    assert echo["body_bytes"] == len(body)
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["client"][0] == "127.0.0.1"
    assert echo["http_version"] == "1.1"


def test_echo_returns_a_utf8_body_as_text(users_backend: Proc) -> None:
    body = "héllo ✓\n".encode()
    request = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    _, _, response_body = raw_exchange(users_backend.port, request)
    echo = json.loads(response_body)
    assert (echo["body"], echo["body_encoding"], echo["path"]) == ("héllo ✓\n", "utf-8", "/echo")


def test_head_on_echo_answers_headers_and_no_body(users_backend: Proc) -> None:
    request = b"HEAD /echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, headers, body = raw_exchange(users_backend.port, request)
    assert status.startswith("HTTP/1.1 200")
    assert int(dict(headers)["content-length"]) > 0  # the length a GET would have
    assert body == b""


@pytest.mark.parametrize(
    "method", ["GET", "POST", "PATCH", "DELETE", "OPTIONS", "PURGE", "PROPFIND"]
)
async def test_echo_accepts_any_method(
    users_backend: Proc, client_session: aiohttp.ClientSession, method: str
) -> None:
    async with client_session.request(method, users_backend.url + "/echo/any") as resp:
        assert resp.status == 200
        assert (await resp.json())["method"] == method


async def test_echo_refuses_a_body_over_its_limit_with_413(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    # BytesIO, not bytes: aiohttp warns that a multi-MiB bytes body blocks its event loop.
    at_limit = io.BytesIO(b"x" * ECHO_BODY_LIMIT)
    async with client_session.post(users_backend.url + "/echo", data=at_limit) as resp:
        assert resp.status == 200
        assert (await resp.json())["body_bytes"] == ECHO_BODY_LIMIT
    too_big = io.BytesIO(b"x" * (ECHO_BODY_LIMIT + 1))
    async with client_session.post(users_backend.url + "/echo", data=too_big) as resp:
        assert resp.status == 413
        assert (await resp.json())["limit"] == ECHO_BODY_LIMIT
        assert resp.headers["X-Served-By"] == f"users/a@{users_backend.port}"
