"""Endpoints that exercise a proxy's data path: streaming, big bodies, slowness.

- `/stream` proves a proxy streams (forwards each chunk as it arrives) instead of
  buffering the whole response: every chunk carries the backend's monotonic clock.
- `/bytes/{n}` and `/upload` move large bodies each way; the backend never holds more
  than one piece of them, so the test can measure the *proxy's* memory.
- `/delay/{ms}` is a slow backend, for timeouts. It reports the deadline a gateway sent
  (`X-Request-Deadline-Ms`, stage 04 on), and with `?honour_deadline=true` it stops
  working when that deadline passes (504), as a service should: nobody waits any more.

Limits are constants (a real service would read them from configuration) and are
enforced with FastAPI's own validation, so an out-of-range value is a 422 whose JSON
names the parameter and the limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, StreamingResponse

from common.backends.payload import pattern

GET_HEAD = ["GET", "HEAD"]
ANY_COMMON_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

STREAM_MAX_CHUNKS = 1_000
STREAM_MAX_INTERVAL_MS = 10_000
STREAM_MIN_SIZE = 64  # a padded chunk still holds its whole "chunk i of n at t" line
STREAM_MAX_SIZE = 1024 * 1024
BYTES_LIMIT = 1024**3  # 1 GiB
DELAY_LIMIT_MS = 60_000
# What a gateway's deadline propagation sends (stage 04): the milliseconds left.
DEADLINE_HEADER = "x-request-deadline-ms"

router = APIRouter(tags=["diagnostics"])


def stream_line(index: int, total: int, size: int | None) -> bytes:
    """`chunk 3 of 10 at 123456.789\\n` (monotonic ms), padded with dots to `size` bytes."""
    line = f"chunk {index} of {total} at {time.monotonic() * 1000:.3f}"
    if size is None:
        return (line + "\n").encode("ascii")
    return (line + "." * (size - len(line) - 1) + "\n").encode("ascii")


@router.api_route("/stream", methods=GET_HEAD)
async def stream(
    request: Request,
    chunks: Annotated[int, Query(ge=1, le=STREAM_MAX_CHUNKS)] = 10,
    interval_ms: Annotated[int, Query(ge=0, le=STREAM_MAX_INTERVAL_MS)] = 100,
    size: Annotated[int | None, Query(ge=STREAM_MIN_SIZE, le=STREAM_MAX_SIZE)] = None,
) -> Response:
    headers = {"Cache-Control": "no-store"}  # a cache must not turn a live stream into a file
    if request.method == "HEAD":
        response = Response(media_type="text/plain; charset=utf-8", headers=headers)
        del response.headers["content-length"]  # the GET has none: its length is unknown
        return response

    async def produce() -> AsyncIterator[bytes]:
        # Chunk i is due at start + (i-1) * interval: sleeping *until* a deadline, not
        # *for* an interval, keeps a slow consumer from stretching the schedule.
        start = time.monotonic()
        for index in range(1, chunks + 1):
            due = start + (index - 1) * interval_ms / 1000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield stream_line(index, chunks, size)

    # No Content-Length: uvicorn sends `Transfer-Encoding: chunked` (HTTP/1.1), one
    # HTTP chunk per yield, written to the socket as soon as it is produced.
    return StreamingResponse(produce(), media_type="text/plain; charset=utf-8", headers=headers)


@router.api_route("/bytes/{n}", methods=GET_HEAD)
async def bytes_(
    request: Request,
    n: Annotated[int, Path(ge=0, le=BYTES_LIMIT)],
    seed: Annotated[int, Query(ge=0, le=2**32 - 1)] = 0,
) -> Response:
    headers = {"Content-Length": str(n), "X-Payload-Seed": str(seed)}
    if request.method == "HEAD":
        return Response(media_type="application/octet-stream", headers=headers)

    async def produce() -> AsyncIterator[bytes]:
        # An async generator, not the sync `pattern` iterator: Starlette would run a sync
        # iterator in a thread, one hop per 64 KiB piece. Each `send` below waits while
        # the socket is full, so a slow reader slows the producer instead of growing RSS.
        for piece in pattern(n, seed):
            yield piece

    return StreamingResponse(produce(), media_type="application/octet-stream", headers=headers)


@router.api_route("/upload", methods=["POST", "PUT"])
async def upload(request: Request) -> Response:
    # request.stream() hands over each piece as uvicorn receives it, and uvicorn stops
    # reading the socket while a piece waits (flow control), so a 200 MiB upload costs
    # one piece of memory, not 200 MiB. `await request.body()` would buffer it all.
    digest = hashlib.sha256()
    size = 0
    pieces = 0
    try:
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
            pieces += 1 if chunk else 0  # how many pieces it came in: proof it streamed
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is left to read it; keeps the log quiet
    content_length = request.headers.get("content-length")
    return JSONResponse(
        {
            "bytes": size,
            "sha256": digest.hexdigest(),
            "content_type": request.headers.get("content-type"),
            "content_length": int(content_length) if content_length else None,
            "chunked": "chunked" in request.headers.get("transfer-encoding", "").lower(),
            "pieces": pieces,
        }
    )


@router.api_route("/delay/{ms}", methods=ANY_COMMON_METHOD)
async def delay(
    request: Request,
    ms: Annotated[int, Path(ge=0, le=DELAY_LIMIT_MS)],
    honour_deadline: bool = False,
) -> Response:
    start = time.monotonic()
    raw = request.headers.get(DEADLINE_HEADER)
    deadline_ms = int(raw) if raw is not None and raw.isdigit() else None
    if honour_deadline and deadline_ms is not None and deadline_ms < ms:
        await asyncio.sleep(deadline_ms / 1000)  # work until nobody waits, not longer
        slept = round((time.monotonic() - start) * 1000, 3)
        body = {"detail": "gave up at the caller's deadline", "deadline_ms": deadline_ms}
        return JSONResponse({**body, "delayed_ms": ms, "slept_ms": slept}, status_code=504)
    await asyncio.sleep(ms / 1000)
    slept = round((time.monotonic() - start) * 1000, 3)
    return JSONResponse({"delayed_ms": ms, "slept_ms": slept, "deadline_ms": deadline_ms})
