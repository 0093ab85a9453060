"""The admin listener: the gateway's own endpoints, on their own socket (default :8081).

    GET /health       {"status": "ok", "pid"}: this process is up and serving

and every concern's views (gateway/concern.py), e.g. stage 03's load balancing:

    GET /upstreams    every pool: strategy, and each target's state (healthy, unhealthy,
                      open, half-open), requests in flight, openings
    POST /upstreams/NAME/reset   close every breaker of pool NAME now

Until stage 02 the gateway's one endpoint of its own, `/_gateway/health`, answered on the
public port beside the routes: it says only "this process is up". Stage 03 adds
endpoints that show target addresses and breaker states and one that changes them, which
nobody on the internet may read or call. Every production gateway keeps such endpoints
apart: Envoy's admin listener, Kong's Admin API, Traefik's dashboard entry point,
HAProxy's stats socket. Here the admin listener binds 127.0.0.1 by default, and the
public port answers only routes: a request for /_gateway/health there is routed (and,
with no route for it, a 404) like any other. A later concern brings its own views (its
`admin_views()`), and app.py hands them over. Stage 08 added pages that are not JSON
(`AdminView.page`): /metrics is Prometheus's text format.

One worker's view: with --workers N every process balances, counts and ejects on its
own, and each answers for itself (the pid says which). /metrics is the exception: it
adds up every worker's numbers (gateway/observability/workers.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.concern import AdminView
from gateway.errors import problem_middleware, problem_response
from gateway.requestid import request_id_middleware

HEALTH_PATH = "/health"


async def health() -> dict[str, object]:
    return {"status": "ok"}


def build_admin_app(views: Callable[[], Iterable[AdminView]]) -> web.Application:
    """`views()` is asked again on every admin request: after a reload (gateway/reload/)
    a page shows the new configuration's pools, keys and limits. The paths are the same
    in every generation (the concerns are), so the routes are made once."""
    app = web.Application(middlewares=[request_id_middleware, problem_middleware])

    def every() -> tuple[AdminView, ...]:
        return (AdminView(path=HEALTH_PATH, show=health), *views())

    def current(path: str) -> AdminView:
        return next(view for view in every() if view.path == path)

    for view in every():
        app.router.add_route("*", view.path, _get_only(view.path, _viewing(view.path, current)))
        for path in view.actions:
            app.router.add_route("*", path, _post_only(path, _acting(view.path, path, current)))
    return app


def _viewing(path: str, current: Callable[[str], AdminView]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _answer(current(path))(request)

    return handler


def _acting(path: str, action: str, current: Callable[[str], AdminView]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await current(path).actions[action](request)

    return handler


def _answer(view: AdminView) -> Handler:
    """The view's own page, or its `show()` as JSON."""
    if view.page is not None:
        return view.page
    show = view.show
    assert show is not None  # AdminView holds one of the two

    async def as_json(request: web.Request) -> web.StreamResponse:
        # The pid tells which worker answered (python -m gateway --workers N).
        return web.json_response({"pid": os.getpid(), **await show()})

    return as_json


def _get_only(path: str, answer: Handler) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            response = problem_response(
                405, "Method Not Allowed", f"{path} answers GET and HEAD only", instance=path
            )
            response.headers["Allow"] = "GET, HEAD"  # RFC 9110 §15.5.6: a 405 must say
            return response
        return await answer(request)

    return handler


def _post_only(path: str, action: Handler) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            response = problem_response(
                405, "Method Not Allowed", f"{path} answers POST only", instance=request.path
            )
            response.headers["Allow"] = "POST"
            return response
        return await action(request)

    return handler
