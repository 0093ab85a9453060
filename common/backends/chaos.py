"""Chaos controls and the ASGI middleware that applies them and stamps X-Served-By.

Load-balancing and retry stages need backends that misbehave on demand: slow down, or
fail with a 5xx some fraction of the time. Each backend process keeps its own settings,
changed at runtime with `POST /_chaos` (partial updates), read with `GET /_chaos` and
reset with `DELETE /_chaos`. Real fault injection (Envoy's fault filter, Toxiproxy, a
service mesh) works the same way: configured per target, at runtime, without a restart.

The same middleware counts the requests the application answered (`GET /_stats`, reset
with `DELETE /_stats`): how a test sees how many requests a gateway really sent upstream,
retries included, and by which method.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CHAOS_PATH = "/_chaos"
STATS_PATH = "/_stats"
HEALTH_PATH = "/health"


class ChaosSettings(BaseModel):
    """One backend's chaos settings. Strict: `"0.5"` or `1` for a bool is a 422, not a guess."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    latency_ms: int = Field(0, ge=0, le=60_000)
    failure_status: int = Field(503, ge=500, le=599)
    include_health: bool = False
    # A long tail: with probability slow_rate a request waits slow_ms more (a p99 of 2 s
    # is slow_rate 0.02, slow_ms 2000), on top of latency_ms.
    slow_rate: float = Field(0.0, ge=0.0, le=1.0)
    slow_ms: int = Field(0, ge=0, le=60_000)
    # Seconds for a Retry-After header on every chaos failure; None: no header.
    retry_after: int | None = Field(None, ge=0, le=3600)


class ChaosState:
    """The current settings of one backend process.

    The settings object is immutable and replaced as a whole, so a request in flight
    reads one consistent snapshot even if `POST /_chaos` lands halfway through it.
    """

    def __init__(self) -> None:
        self.settings = ChaosSettings()
        self.random = random.Random()
        self.requests: Counter[str] = Counter()  # by method; /health and the controls aside

    def applies_to(self, path: str, settings: ChaosSettings) -> bool:
        # /_chaos and /_stats are never disturbed: a test must always be able to switch
        # chaos off and read the counters. /health is spared by default so a balancer's
        # health checks can tell "this backend is flaky" (requests fail) from "this
        # backend is down" (health fails).
        if path in (CHAOS_PATH, STATS_PATH):
            return False
        if path == HEALTH_PATH:
            return settings.include_health
        return True


def chaos_router(state: ChaosState) -> APIRouter:
    router = APIRouter(tags=["chaos"])

    @router.api_route(CHAOS_PATH, methods=["GET", "HEAD"])
    async def read_chaos() -> dict[str, Any]:
        return state.settings.model_dump()

    @router.post(CHAOS_PATH)
    async def update_chaos(patch: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        # Merge first, validate the merged whole: a partial update is checked against the
        # same rules as a full one, and a rejected update leaves the old settings in place.
        try:
            state.settings = ChaosSettings.model_validate(state.settings.model_dump() | patch)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
            ) from None
        return state.settings.model_dump()

    @router.delete(CHAOS_PATH)
    async def reset_chaos() -> dict[str, Any]:
        state.settings = ChaosSettings()
        return state.settings.model_dump()

    @router.api_route(STATS_PATH, methods=["GET", "HEAD"])
    async def read_stats() -> dict[str, Any]:
        return {"requests": sum(state.requests.values()), "by_method": dict(state.requests)}

    @router.delete(STATS_PATH)
    async def reset_stats() -> dict[str, Any]:
        state.requests.clear()
        return {"requests": 0, "by_method": {}}

    return router


class ChaosMiddleware:
    """Stamp `X-Served-By` on every response, and inject latency and failures.

    A pure ASGI middleware rather than Starlette's `BaseHTTPMiddleware`: that one runs
    the endpoint in a separate task and pipes the response body through a memory stream,
    which has broken streaming, background tasks and client-disconnect detection in the
    past. Here we only wrap `send` to append one header, so a 1 GiB streamed body passes
    through untouched, piece by piece.

    It wraps the whole FastAPI application, outside FastAPI's own error middleware, so
    even the plain-text 500 of a crashed endpoint says which backend it came from. The
    only responses it cannot stamp are the HTTP parser's own 400s for malformed requests,
    which never reach the application.
    """

    def __init__(self, app: ASGIApp, *, served_by: str, state: ChaosState) -> None:
        self.app = app
        self.served_by = served_by
        self.stamp = (b"x-served-by", served_by.encode("latin-1"))
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan, websocket: nothing to stamp
            await self.app(scope, receive, send)
            return

        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self.stamp]}
            await send(message)

        try:
            await self.handle(scope, receive, send_stamped)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when a stop's grace period (3 s,
            # see __main__.py) runs out, says so in one log line, then logs each cancelled
            # request as "Exception in ASGI application" with a long traceback. For a
            # /stream or /delay cut short by a stop that is expected, not a bug: end the
            # request quietly. Nothing else cancels a whole request task here.
            return

    async def handle(self, scope: Scope, receive: Receive, send_stamped: Send) -> None:
        settings = self.state.settings  # one snapshot for the whole request
        path = scope["path"]
        if path not in (CHAOS_PATH, STATS_PATH, HEALTH_PATH):
            self.state.requests[scope["method"]] += 1
        if self.state.applies_to(path, settings):
            # Latency first, then maybe fail: a real overloaded backend is slow *and* then
            # errors, and a gateway's timeout should see both.
            delay = settings.latency_ms
            if settings.slow_rate and self.state.random.random() < settings.slow_rate:
                delay += settings.slow_ms
            if delay:
                await asyncio.sleep(delay / 1000)
            if self.state.random.random() < settings.failure_rate:
                response = JSONResponse(
                    {
                        "error": "chaos",
                        "status": settings.failure_status,
                        "served_by": self.served_by,
                        "failure_rate": settings.failure_rate,
                    },
                    status_code=settings.failure_status,
                )
                if settings.retry_after is not None:
                    response.headers["Retry-After"] = str(settings.retry_after)
                # The request body is left unread; uvicorn discards it (or closes the
                # connection), exactly as a real backend that fails early would.
                await response(scope, receive, send_stamped)
                return
        await self.app(scope, receive, send_stamped)
