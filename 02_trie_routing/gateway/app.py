"""The aiohttp application: its lifecycle, the middleware chain, and the proxy handler.

A request meets, in order:

    request id -> (access log) -> problem errors -> head limits -> route -> handler: proxy

Every arrow before the handler is an aiohttp middleware (the list in `build_app`), and
the response travels back through the same ones. A later stage adds its concern as one
more line in that list, after routing, so that it can read the matched route: auth, rate
limiting and the cache are middlewares. What happens on the way to the upstream (choosing
a server, retrying, deadlines) belongs to the handler, which is the only place that talks
to the proxy.

Why this order: the request id comes first so that every later step, and every log line,
has it. The access log sits outside the error handler so it logs the status the client
really got, a 502 problem included. The error handler sits right above the work, so no
exception from routing or proxying escapes as a traceback. The head limits (431) refuse
an oversized request before any work is spent on it. Routing comes next, before any
concern that depends on the route, so there is exactly one place where a path is
matched and every later step agrees on which route a request belongs to.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.accesslog import UPSTREAM, access_log_middleware
from gateway.config import GatewayConfig
from gateway.errors import problem_middleware, problem_response
from gateway.limits import head_limits_middleware
from gateway.proxy import Proxy, UpstreamError, UpstreamRequest
from gateway.requestid import request_id_middleware
from gateway.routing import ROUTE, Router, routing_middleware

# The gateway's own endpoint, answered without routing: no route can shadow it, and it
# says "this process is up and serving", nothing about the upstreams. Production gateways
# keep such endpoints on a separate admin port (Envoy's admin listener, Kong's Admin API,
# Traefik's ping on its own entry point) so they are never reachable from the internet.
HEALTH_PATH = "/_gateway/health"


class Gateway:
    """The handler behind every routed path: send the request upstream, relay the answer."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def handle(self, request: web.Request) -> web.StreamResponse:
        found = request[ROUTE]  # set by routing_middleware
        route = found.route
        request[UPSTREAM] = route.upstream  # the access log names who answered
        upstream_request = UpstreamRequest.from_client(
            request,
            route.origin + found.request_target,
            preserve_host=route.preserve_host,
            timeouts=route.timeouts,
        )
        try:
            upstream_response = await self.proxy.open(upstream_request)
        except UpstreamError as failure:
            raise failure.problem() from None
        relayed = await self.proxy.relay(request, upstream_response)
        return relayed.response


async def health(request: web.Request) -> web.Response:
    if request.method not in ("GET", "HEAD"):
        return get_only(HEALTH_PATH)
    # The pid tells which worker answered (python -m gateway --workers N).
    return web.json_response({"status": "ok", "pid": os.getpid()})


def get_only(path: str) -> web.Response:
    response = problem_response(
        405, "Method Not Allowed", f"{path} answers GET and HEAD only", instance=path
    )
    response.headers["Allow"] = "GET, HEAD"  # RFC 9110 §15.5.6: a 405 must say
    return response


def build_app(config: GatewayConfig) -> web.Application:
    proxy = Proxy(config.connections)
    router = Router.from_config(config.routes, config.route_defaults())
    gateway = Gateway(proxy)

    middlewares: list[Middleware] = [request_id_middleware]
    if config.server.access_log:
        middlewares.append(access_log_middleware())
    middlewares.append(problem_middleware)
    middlewares.append(head_limits_middleware(config.server.max_header_bytes))
    middlewares.append(routing_middleware(router, gateway.handle))

    app = web.Application(middlewares=middlewares)

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        # Created inside the running event loop (a ClientSession binds to the loop that
        # creates it) and closed on shutdown, after the requests in flight finished.
        await proxy.start()
        yield
        await proxy.close()

    app.cleanup_ctx.append(upstream_session)
    app.router.add_route("*", HEALTH_PATH, health)
    # One catch-all route: aiohttp's router only separates "ours" from "everything
    # else"; the gateway's own Router (in routing_middleware) decides where the rest goes.
    app.router.add_route("*", "/{path:.*}", gateway.handle)
    return app
