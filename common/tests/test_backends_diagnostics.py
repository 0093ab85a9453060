"""/status, /whoami, /delay, and the X-Served-By stamp on every kind of response."""

from __future__ import annotations

import time

import aiohttp
import pytest

from common.testing.processes import Proc


@pytest.mark.parametrize("code", [200, 299, 418, 503, 599])
async def test_status_answers_the_requested_code_even_unnamed_ones(
    users_backend: Proc, client_session: aiohttp.ClientSession, code: int
) -> None:
    async with client_session.get(f"{users_backend.url}/status/{code}") as resp:
        assert resp.status == code
        assert await resp.json() == {"status": code}


@pytest.mark.parametrize("code", [204, 304])
async def test_status_204_and_304_have_no_body(
    users_backend: Proc, client_session: aiohttp.ClientSession, code: int
) -> None:
    async with client_session.get(f"{users_backend.url}/status/{code}") as resp:
        assert resp.status == code
        assert "Content-Length" not in resp.headers
        assert await resp.read() == b""


async def test_status_adds_repeated_headers_as_separate_lines(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    params = [
        ("header", "Set-Cookie:a=1; Path=/"),
        ("header", "Set-Cookie:b=2"),
        ("header", "X-Hi:there"),
    ]
    async with client_session.post(f"{users_backend.url}/status/201", params=params) as resp:
        assert resp.status == 201
        assert resp.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2"]
        assert resp.headers["X-Hi"] == "there"


@pytest.mark.parametrize(
    "path",
    [
        "/status/199",
        "/status/600",
        "/status/abc",
        "/status/200?header=no-colon",
        "/status/200?header=Content-Length:5",
        "/status/200?header=Bad%20Name:x",
        "/status/200?header=X-Bad:a%0D%0AInjected:1",
    ],
)
async def test_status_rejects_what_it_cannot_send_with_422(
    users_backend: Proc, client_session: aiohttp.ClientSession, path: str
) -> None:
    async with client_session.get(users_backend.url + path) as resp:
        assert resp.status == 422
        assert "detail" in await resp.json()


async def test_whoami_groups_the_identity_headers_a_gateway_forwards(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    headers = {
        "X-Consumer-ID": "7",
        "X-Consumer-Username": "alice",
        "X-User-Email": "alice@example.com",
        "X-Authenticated-Scope": "read write",
        "Authorization": "Bearer abc.def.ghi",
        "X-Request-ID": "req-42",
        "X-Unrelated": "ignored",
    }
    async with client_session.get(users_backend.url + "/whoami", headers=headers) as resp:
        assert await resp.json() == {
            "consumer": {"id": "7", "username": "alice"},
            "user": {"email": "alice@example.com"},
            "authenticated": {"scope": "read write"},
            "authorization": "Bearer abc.def.ghi",
            "request_id": "req-42",
        }
    async with client_session.get(users_backend.url + "/whoami") as resp:
        anonymous = await resp.json()
    assert anonymous["consumer"] == {} and anonymous["authorization"] is None


async def test_delay_waits_then_answers_and_caps_at_60_s(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    start = time.monotonic()
    async with client_session.get(users_backend.url + "/delay/150") as resp:
        assert resp.status == 200
        assert (await resp.json())["delayed_ms"] == 150
    assert time.monotonic() - start >= 0.15
    async with client_session.get(users_backend.url + "/delay/60001") as resp:
        assert resp.status == 422


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", 200),
        ("GET", "/users", 200),
        ("HEAD", "/users", 200),
        ("GET", "/no/such/path", 404),
        ("DELETE", "/users", 405),
        ("GET", "/users/x", 422),
        ("POST", "/users", 422),
        ("GET", "/echo", 200),
        ("GET", "/stream?chunks=2&interval_ms=0", 200),
        ("GET", "/bytes/100000", 200),
        ("POST", "/upload", 200),
        ("GET", "/status/599", 599),
        ("GET", "/status/304", 304),
        ("GET", "/cache/x", 200),
        ("GET", "/whoami", 200),
        ("GET", "/_chaos", 200),
        ("GET", "/openapi.json", 200),
    ],
)
async def test_every_response_says_which_backend_served_it(
    users_backend: Proc, client_session: aiohttp.ClientSession, method: str, path: str, status: int
) -> None:
    async with client_session.request(method, users_backend.url + path) as resp:
        await resp.read()
        assert resp.status == status
        assert resp.headers["X-Served-By"] == f"users/a@{users_backend.port}"


@pytest.mark.parametrize(
    "path",
    ["/health", "/users/1", "/echo", "/stream", "/bytes/1000", "/delay/0", "/status/200"]
    + ["/cache/x?etag=v1", "/whoami", "/_chaos"],
)
async def test_head_answers_like_get_without_a_body(
    users_backend: Proc, client_session: aiohttp.ClientSession, path: str
) -> None:
    async with client_session.head(users_backend.url + path) as resp:
        assert resp.status == 200
        assert await resp.read() == b""
        if path == "/bytes/1000":
            assert resp.headers["Content-Length"] == "1000"
