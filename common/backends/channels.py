"""Long-lived channels for a gateway to carry: a WebSocket echo and a Server-Sent Events ticker.

- `/ws/echo` (WebSocket) accepts the first subprotocol the client offers and echoes every
  text or binary message. A few text commands make it misbehave on purpose, so a test
  can check what a proxy passes through: `close:<code>[:<reason>]` closes with that code,
  `flood:<count>:<bytes>` sends that many binary messages as fast as the socket takes
  them (a slow reader at the other end must slow it down, not fill a proxy's memory),
  and `last-close` answers `{"code": ..., "reason": ...}`: how the last connection that
  the *client* closed was closed, so a test can see which close code a proxy passed on.
  Pings are answered by the server itself (RFC 6455 §5.5.2).
- `/sse/ticker?count=N&interval_ms=M` is a `text/event-stream` of N events, the first at
  once and one every M ms after it, each stamped with the backend's monotonic clock:
  `id: 3` / `event: tick` / `data: {"n": 3, "of": 10, "at_ms": 12345.6}`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect
from starlette.responses import StreamingResponse

FLOOD_MAX_COUNT = 100_000
FLOOD_MAX_BYTES = 1024 * 1024
TICKER_MAX_COUNT = 10_000
TICKER_MAX_INTERVAL_MS = 60_000

router = APIRouter(tags=["channels"])

# The close code and reason of the last connection the client end closed (this process).
last_close: dict[str, object] = {"code": None, "reason": None}


@router.websocket("/ws/echo")
async def ws_echo(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=offered[0] if offered else None)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                last_close.update(code=message.get("code"), reason=message.get("reason"))
                return
            text = message.get("text")
            if text is None:
                await websocket.send_bytes(message.get("bytes") or b"")
            elif text.startswith("close:"):
                _, code, *reason = text.split(":", 2)
                await websocket.close(code=int(code), reason=reason[0] if reason else None)
                return
            elif text == "last-close":
                await websocket.send_text(json.dumps(last_close))
            elif text.startswith("flood:"):
                _, count, size = text.split(":")
                payload = b"x" * min(int(size), FLOOD_MAX_BYTES)
                for _ in range(min(int(count), FLOOD_MAX_COUNT)):
                    await websocket.send_bytes(payload)  # waits while the socket is full
            else:
                await websocket.send_text(text)
    except WebSocketDisconnect:
        return


@router.api_route("/sse/ticker", methods=["GET"])
async def sse_ticker(
    count: Annotated[int, Query(ge=1, le=TICKER_MAX_COUNT)] = 10,
    interval_ms: Annotated[int, Query(ge=0, le=TICKER_MAX_INTERVAL_MS)] = 1000,
) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        for n in range(1, count + 1):
            if n > 1:
                await asyncio.sleep(interval_ms / 1000)
            data = json.dumps({"n": n, "of": count, "at_ms": time.monotonic() * 1000})
            yield f"id: {n}\nevent: tick\ndata: {data}\n\n".encode()

    # No buffering anywhere on the way, please: nginx honours X-Accel-Buffering: no.
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
