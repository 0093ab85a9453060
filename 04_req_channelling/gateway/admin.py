"""The admin listener: the gateway's own endpoints, on their own socket (default :8081).

    GET /health       {"status": "ok", "pid"}: this process is up and serving
    GET /upstreams    every pool: strategy, and each target's state (healthy, unhealthy,
                      open, half-open), requests in flight, openings; its bulkhead
    GET /channel      the retry budget, the load shedder, WebSocket connections
    POST /upstreams/NAME/reset   close every breaker of pool NAME now (the upstream is
                      fixed: no need to wait for open_for and a probe); answers the
                      targets as they were (`before`) and as they are

Until stage 02 the gateway's one endpoint of its own, `/_gateway/health`, answered on the
public port beside the routes: it says only "this process is up". Stage 03 adds
endpoints that show target addresses and breaker states and one that changes them, which
nobody on the internet may read or call. Every production gateway keeps such endpoints
apart: Envoy's admin listener, Kong's Admin API, Traefik's dashboard entry point,
HAProxy's stats socket. Here the admin listener binds 127.0.0.1 by default, and the
public port answers only routes: a request for /_gateway/health there is routed (and,
with no route for it, a 404) like any other. Later stages add their views here.

One worker's view: with --workers N every process balances, counts and ejects on its
own, and each answers for itself (the pid says which).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.balancing import Upstreams
from gateway.channel.budget import RetryBudget
from gateway.channel.bulkhead import Bulkhead, LoadShedder
from gateway.channel.websocket import WebSockets
from gateway.errors import problem_middleware, problem_response
from gateway.requestid import request_id_middleware

HEALTH_PATH = "/health"
UPSTREAMS_PATH = "/upstreams"
CHANNEL_PATH = "/channel"


def build_admin_app(
    upstreams: Upstreams,
    bulkheads: dict[str, Bulkhead],
    budget: RetryBudget,
    shedder: LoadShedder,
    websockets: WebSockets,
) -> web.Application:
    app = web.Application(middlewares=[request_id_middleware, problem_middleware])

    async def health() -> dict[str, object]:
        return {"status": "ok"}

    async def upstreams_view() -> dict[str, object]:
        return {
            "upstreams": {
                pool.name: {
                    "strategy": pool.strategy.name,
                    "bulkhead": bulkheads[pool.name].snapshot(),
                    "targets": pool.snapshot(),
                }
                for pool in upstreams
            }
        }

    async def channel_view() -> dict[str, object]:
        return {
            "retry_budget": budget.snapshot(),
            "load_shedder": shedder.snapshot(),
            "websockets": websockets.open,
        }

    async def reset(request: web.Request) -> web.Response:
        name = request.match_info["pool"]
        pool = next((p for p in upstreams if p.name == name), None)
        if pool is None:
            return problem_response(
                404, "Not Found", f"no upstream pool named {name!r}", instance=request.path
            )
        before = pool.snapshot()
        if pool.breaker is not None:
            pool.breaker.reset()
        return web.json_response(
            {"pid": os.getpid(), "pool": name, "before": before, "targets": pool.snapshot()}
        )

    for path, view in (
        (HEALTH_PATH, health),
        (UPSTREAMS_PATH, upstreams_view),
        (CHANNEL_PATH, channel_view),
    ):
        app.router.add_route("*", path, _get_only(path, view))
    app.router.add_post(UPSTREAMS_PATH + "/{pool}/reset", reset)
    return app


def _get_only(path: str, view: Callable[[], Awaitable[dict[str, object]]]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            response = problem_response(
                405, "Method Not Allowed", f"{path} answers GET and HEAD only", instance=path
            )
            response.headers["Allow"] = "GET, HEAD"  # RFC 9110 §15.5.6: a 405 must say
            return response
        # The pid tells which worker answered (python -m gateway --workers N).
        return web.json_response({"pid": os.getpid(), **await view()})

    return handler
