"""The backends' long-lived channels: the WebSocket echo and the SSE ticker, and /delay
reporting (and honouring) a gateway's deadline."""

from __future__ import annotations

import json
import time

import aiohttp

from common.testing.processes import Proc


async def test_ws_echo_echoes_text_and_binary_with_the_offered_subprotocol(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    url = users_backend.url + "/ws/echo"
    async with client_session.ws_connect(url, protocols=("chat.v2", "chat.v1")) as ws:
        assert ws.protocol == "chat.v2"
        await ws.send_str("hello")
        assert (await ws.receive()).data == "hello"
        big = bytes(range(256)) * 4096  # 1 MiB
        await ws.send_bytes(big)
        assert (await ws.receive()).data == big


async def test_ws_echo_closes_with_the_code_it_is_asked_for(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    async with client_session.ws_connect(users_backend.url + "/ws/echo") as ws:
        await ws.send_str("close:4321:bye")
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert (message.data, message.extra) == (4321, "bye")


async def test_ws_echo_remembers_how_the_client_closed_the_last_connection(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    url = users_backend.url + "/ws/echo"
    async with client_session.ws_connect(url) as ws:
        await ws.close(code=4002, message=b"done here")
    deadline = time.monotonic() + 5
    async with client_session.ws_connect(url) as ws:
        while True:  # until the first close is handled (earlier tests closed others)
            await ws.send_str("last-close")
            seen = json.loads((await ws.receive()).data)
            if seen["code"] == 4002 or time.monotonic() > deadline:
                break
    assert seen == {"code": 4002, "reason": "done here"}


async def test_ws_echo_floods_on_request(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    async with client_session.ws_connect(users_backend.url + "/ws/echo") as ws:
        await ws.send_str("flood:5:1000")
        sizes = [len((await ws.receive()).data) for _ in range(5)]
        assert sizes == [1000] * 5


async def test_sse_ticker_streams_events_as_they_happen(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    url = users_backend.url + "/sse/ticker?count=3&interval_ms=200"
    async with client_session.get(url) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await resp.content.readuntil(b"\n\n")
        first_at = time.monotonic() * 1000
        rest = await resp.read()
    events = [e for e in (first + rest).decode().split("\n\n") if e]
    assert [e.splitlines()[0] for e in events] == ["id: 1", "id: 2", "id: 3"]
    last = json.loads(events[-1].splitlines()[2].removeprefix("data: "))
    assert first_at < last["at_ms"]  # the first event arrived before the last was made


async def test_delay_reports_the_deadline_it_was_given(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    headers = {"X-Request-Deadline-Ms": "5000"}
    async with client_session.get(users_backend.url + "/delay/10", headers=headers) as resp:
        assert (await resp.json())["deadline_ms"] == 5000
    async with client_session.get(users_backend.url + "/delay/10") as resp:
        assert (await resp.json())["deadline_ms"] is None


async def test_delay_honouring_the_deadline_stops_when_nobody_waits(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    headers = {"X-Request-Deadline-Ms": "200"}
    started = time.monotonic()
    url = users_backend.url + "/delay/5000?honour_deadline=true"
    async with client_session.get(url, headers=headers) as resp:
        assert resp.status == 504
        body = await resp.json()
    assert 0.2 <= time.monotonic() - started < 2
    assert body["deadline_ms"] == 200
