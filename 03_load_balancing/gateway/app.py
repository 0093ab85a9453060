"""The aiohttp application: its lifecycle and the middleware chain.

A request meets, in order:

    request id -> (access log) -> problem errors -> health | normalise -> route -> balance -> proxy

Each arrow is an aiohttp middleware or a plain call, and the response travels back the
same way. Later stages add their concern as one more line in `middlewares` below (auth,
rate limiting, caching) or one more call between route and proxy (load balancing), so
`diff` between two stages shows the new concern and nothing else.

Why this order: the request id comes first so that every later step, and every log line,
has it. The access log sits outside the error handler so it logs the status the client
really got, a 502 problem included. The error handler sits right above the work, so no
exception from routing or proxying escapes as a traceback.

Normalising and routing are plain calls in the handler, not middlewares: every request
that is not the gateway's own goes through both, and later stages' middlewares (auth,
rate limits, the cache) will want to know the route, so routing stays the last step
before the proxy. The path is normalised once and that one path is matched and forwarded.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from aiohttp import ClientSession, DummyCookieJar, web

from gateway.accesslog import UPSTREAM, access_log_middleware
from gateway.balancing import NoHealthyTarget, Upstreams
from gateway.config import GatewayConfig
from gateway.errors import (
    BadPath,
    MethodNotAllowed,
    NoHealthyUpstream,
    NoRoute,
    problem_middleware,
    problem_response,
)
from gateway.pathsafety import UnsafePath, normalise
from gateway.proxy import Proxy
from gateway.requestid import request_id_middleware
from gateway.routing import NotAllowed, Router

# The gateway's own endpoint, answered before routing: no route can shadow it, and it
# says "this process is up and serving", nothing about the upstreams. Production gateways
# keep such endpoints on a separate admin port (Envoy's admin listener, Kong's Admin API,
# Traefik's ping on its own entry point) so they are never reachable from the internet.
HEALTH_PATH = "/_gateway/health"
# Every pool's targets and their health, as JSON: what `make lb-chaos` draws, and what an
# operator asks first during an incident. It shows target addresses, which is one more
# reason such endpoints belong on an admin port (Envoy: /clusters on the admin listener).
UPSTREAMS_PATH = "/_gateway/upstreams"


class Gateway:
    """The handler behind every path: normalise it, pick the route, then a target, proxy."""

    def __init__(self, router: Router, upstreams: Upstreams, proxy: Proxy) -> None:
        self.router = router
        self.upstreams = upstreams
        self.proxy = proxy

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            path = normalise(request.raw_path)
        except UnsafePath as exc:
            raise BadPath(exc.reason) from None
        found = self.router.match(path, request.method)
        if found is None:
            raise NoRoute(f"no route matches {path.path}")
        if isinstance(found, NotAllowed):
            raise MethodNotAllowed(
                f"{path.path} does not answer {request.method}", allow=found.allow
            )
        route = found.value
        pool = self.upstreams[route.pool]
        try:
            # Pick and count in one step, no await in between (balancing/pool.py).
            lease = pool.acquire(pool.key_for(request))
        except NoHealthyTarget as exc:
            request[UPSTREAM] = route.upstream
            raise NoHealthyUpstream(exc.reason) from None
        request[UPSTREAM] = lease.target.url  # the access log names the server that answered
        with lease:  # in flight until the last byte went out, or the request failed
            target = route.upstream_target(path, found.params)
            return await self.proxy.forward(request, route, target, lease)


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


def upstreams_view(upstreams: Upstreams) -> web.Handler:
    """GET /_gateway/upstreams: {name: {strategy, targets: [state of each target]}}.

    One worker's view: with --workers N every process balances, counts and ejects on
    its own (see ARCHITECTURE.md), and this answers for whichever worker got the request.
    """

    async def view(request: web.Request) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            return get_only(UPSTREAMS_PATH)
        body = {
            pool.name: {"strategy": pool.strategy.name, "targets": pool.snapshot()}
            for pool in upstreams
        }
        return web.json_response({"pid": os.getpid(), "upstreams": body})

    return view


def build_app(config: GatewayConfig) -> web.Application:
    proxy = Proxy(config.timeouts, config.pool)
    upstreams = Upstreams.from_config(config.pools())
    gateway = Gateway(Router.from_config(config.routes), upstreams, proxy)

    middlewares = [request_id_middleware]
    if config.server.access_log:
        middlewares.append(access_log_middleware)
    middlewares.append(problem_middleware)

    app = web.Application(middlewares=middlewares)

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        # Created inside the running event loop (a ClientSession binds to the loop that
        # creates it) and closed on shutdown, after the requests in flight finished.
        await proxy.start()
        # Health probes get a small session of their own: a probe must not queue behind
        # proxied requests for a pooled connection (that would be measuring the gateway,
        # not the target), and probes must not use up [pool] max_connections.
        probes = ClientSession(cookie_jar=DummyCookieJar())
        upstreams.start_health_checks(probes)
        yield
        await upstreams.stop_health_checks()
        await probes.close()
        await proxy.close()

    app.cleanup_ctx.append(upstream_session)
    app.router.add_route("*", HEALTH_PATH, health)
    app.router.add_route("*", UPSTREAMS_PATH, upstreams_view(upstreams))
    # One catch-all route: aiohttp's router only separates "ours" from "everything
    # else"; the gateway's own Router decides where everything else goes.
    app.router.add_route("*", "/{path:.*}", gateway.handle)
    return app
