"""`create_app`: one dummy backend — a service's resources plus the diagnostic endpoints.

Every backend, whatever its service, answers the same diagnostic endpoints (echo,
stream, bytes, upload, delay, status, cache, whoami, WebSocket echo, SSE ticker, chaos
and its counters), so any route of a gateway
can be pointed at any backend in a test. The service decides only the resource:
/users, /orders or /products. README.md in this folder lists every endpoint.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from common.backends import channels, diagnostics, status, whoami
from common.backends.cache import cache_router
from common.backends.chaos import ChaosMiddleware, ChaosState, chaos_router
from common.backends.echo import EchoEndpoint
from common.backends.resources import SERVICES, resource_router


def served_by(service: str, instance: str, port: int) -> str:
    """The X-Served-By value, `users/a@9001`: which backend process answered."""
    return f"{service}/{instance}@{port}"


def create_app(service: str, instance: str, port: int) -> ASGIApp:
    """The ASGI application for one backend process.

    `port` is only used to label responses: the process that owns the listening socket
    (see __main__.py) knows it, the application cannot ask. State — records, cache
    generations, chaos settings — lives inside this call, so two apps never share it.
    """
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    name = served_by(service, instance, port)
    api = FastAPI(title=f"dummy {service} backend", description=f"Instance {name}.")

    @api.api_route("/health", methods=["GET", "HEAD"], tags=["health"])
    async def health() -> dict[str, object]:
        return {"status": "ok", "service": service, "instance": instance, "port": port}

    chaos = ChaosState()
    api.include_router(resource_router(service))
    api.include_router(diagnostics.router)
    api.include_router(channels.router)
    api.include_router(status.router)
    api.include_router(whoami.router)
    api.include_router(cache_router())
    api.include_router(chaos_router(chaos))

    echo = EchoEndpoint()
    for path in ("/echo", "/echo/{anything:path}"):
        # methods=None with an ASGI endpoint: every method reaches it (see echo.py).
        # An ASGI app, which Starlette routes as one; its type hint names handlers only.
        api.add_route(path, echo, methods=None, include_in_schema=False)  # type: ignore[arg-type]

    # Outermost, so it stamps X-Served-By on every response the application sends,
    # FastAPI's own 404/405/422/500 included (see chaos.py).
    return ChaosMiddleware(api, served_by=name, state=chaos)
