"""The aiohttp applications: the public one with its middleware chain and handler, and
the admin one (gateway/admin.py) beside it, on a socket of its own.

A request meets, in order:

    request id -> (trace) -> (metrics) -> (access log) -> problem errors -> head limits
      -> route -> auth -> rate limit -> cache -> handler: channel

Every arrow before the handler is an aiohttp middleware (the list in `build_apps`), and
the response travels back through the same ones. A later stage adds its concern as one
more line in that list, after routing, so that it can read the matched route: auth, rate
limiting and the cache are middlewares. What happens on the way to the upstream (choosing
a server, retrying, deadlines) belongs to the channel, which is the only place that talks
to the proxy: the handler gives it every routed request, WebSocket upgrades aside.

Why this order: the request id comes first so that every later step, and every log line,
has it. The request's trace span comes right after it, so that every later step's spans
(and log lines) belong to it, then the metrics (gateway/observability/): they time the
whole request and count the status the client got, whoever made it. The access log
sits outside the error handler so it logs the status the client really got, a 502
problem included. The error handler sits right above the work, so no
exception from routing or proxying escapes as a traceback. The head limits (431) refuse
an oversized request before any work is spent on it. Routing comes next, before any
concern that depends on the route, so there is exactly one place where a path is
matched and every later step agrees on which route a request belongs to. The cache comes
after routing, because its policy is the route's, and last, right before the channel, so
that a hit costs no bulkhead place, retry or upstream connection (gateway/cache/cache.py).

Authentication sits between the two: after routing, because the route says what it
needs (public, an API key, a token, which scopes), and before the cache and everything
after it, so that a refused caller costs nothing but the check, and so that the cache
knows whose request it is looking at (it must never hand one consumer's answer to
another; gateway/cache/cache.py). Rate limiting comes between auth and the cache: it
counts per consumer, so it needs the identity; a request auth refused spends nobody's
budget; and a cache hit still counts against a limit (gateway/ratelimit/limiter.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway import STAGE
from gateway.accesslog import access_log_middleware
from gateway.admin import build_admin_app
from gateway.auth.auth import Authenticator, query_credentials
from gateway.balancing import Upstreams
from gateway.cache.cache import Cache
from gateway.cache.store import open_store
from gateway.channel.budget import RetryBudget
from gateway.channel.bulkhead import Bulkhead, LoadShedder
from gateway.channel.channel import Channel
from gateway.channel.websocket import is_upgrade
from gateway.concern import Concern
from gateway.config import GatewayConfig
from gateway.errors import problem_middleware
from gateway.limits import head_limits_middleware
from gateway.observability.dashboard import Dashboard
from gateway.observability.metrics import Metrics
from gateway.observability.middleware import observe_middleware
from gateway.observability.state import Observed
from gateway.observability.tracing import Tracing
from gateway.proxy import Proxy
from gateway.ratelimit.limiter import Limiter
from gateway.ratelimit.store import open_store as open_limit_store
from gateway.requestid import request_id_middleware
from gateway.routing import ROUTE, Router, routing_middleware


class Gateway:
    """The handler behind every routed path: the channel takes it from here."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def handle(self, request: web.Request) -> web.StreamResponse:
        found = request[ROUTE]  # set by routing_middleware
        if found.route.channel.websocket and is_upgrade(request):
            return await self.channel.websockets.relay(request, found)
        return await self.channel.forward(request, found)


def build_apps(config: GatewayConfig) -> tuple[web.Application, web.Application]:
    """(the public application, the admin application), sharing one set of pools."""
    proxy = Proxy(config.connections)
    router = Router.from_config(config.routes, config.route_defaults())
    pools = config.pools()
    upstreams = Upstreams.from_config(pools)
    bulkheads = {
        name: Bulkhead(
            name, c.bulkhead.max_concurrent, c.bulkhead.max_queue, c.bulkhead.queue_timeout
        )
        for name, c in pools.items()
    }
    budget = RetryBudget(
        ratio=config.retry_budget.ratio, min_per_second=config.retry_budget.min_per_second
    )
    shedder = LoadShedder(config.server.max_in_flight)
    observability = config.observability
    tracing = Tracing(observability.tracing, stage=STAGE)
    known = frozenset(consumer.id for consumer in config.consumers)
    metrics = Metrics(
        stage=STAGE,
        config_text=config.model_dump_json(),
        consumers=known if observability.consumer_label else None,
    )
    channel = Channel(upstreams, proxy, bulkheads, shedder, budget, observe=metrics.upstream_time)
    gateway = Gateway(channel)

    middlewares: list[Middleware] = [request_id_middleware]
    if observability.metrics or observability.tracing.enabled:
        middlewares.append(
            observe_middleware(
                metrics if observability.metrics else None,
                tracing if observability.tracing.enabled else None,
            )
        )
    if config.server.access_log:
        hidden = query_credentials(config.auth, [route.auth for route in router.routes()])
        middlewares.append(
            access_log_middleware(hidden, json_lines=observability.access_log_format == "json")
        )
    middlewares.append(problem_middleware)
    middlewares.append(head_limits_middleware(config.server.max_header_bytes))
    middlewares.append(routing_middleware(router))
    authenticator = Authenticator(config.auth, config.consumers)
    middlewares.append(authenticator.middleware())
    limiter = Limiter(config.rate_limit, open_limit_store(config.rate_limit))
    middlewares.append(limiter.middleware())
    cache = Cache(open_store(config.cache), config.cache)
    middlewares.append(cache.middleware())

    # Each concern's own numbers (retries, cache results, auth outcomes, ...) as metrics.
    observed = Observed(
        upstreams=upstreams,
        channel=channel,
        proxy=proxy,
        cache=cache,
        auth=authenticator,
        limiter=limiter,
    )
    metrics.watch(observed)
    dashboard = Dashboard(metrics.exposed, observed, metrics.sync, tracing.recent)

    app = web.Application(middlewares=middlewares)
    app.on_response_prepare.append(limiter.on_prepare)  # RateLimit fields on streamed answers
    # Every concern with work to do at start and close, and views on the admin
    # listener (gateway/concern.py), in the order they start; they close in reverse.
    concerns: list[Concern] = [
        upstreams,
        channel,
        authenticator,  # the issuers' keys, before the first token needs them
        limiter,  # Redis connections open, scripts loaded
        cache,
        metrics,  # GET /metrics
        tracing,  # the last spans exported on close
        dashboard,  # GET /dashboard
    ]
    app.cleanup_ctx.append(partial(lifecycle, proxy, concerns))
    # One catch-all route: the public port answers only routes, and the gateway's own
    # Router (in routing_middleware) decides where each request goes.
    app.router.add_route("*", "/{path:.*}", gateway.handle)
    admin = build_admin_app(view for concern in concerns for view in concern.admin_views())
    return app, admin


async def lifecycle(
    proxy: Proxy, concerns: list[Concern], app: web.Application
) -> AsyncIterator[None]:
    """Start the proxy, then each concern, inside the running event loop (a ClientSession
    binds to the loop that creates it); on shutdown, after the requests in flight
    finished, close them in reverse. What started is closed even when a later start
    fails (the exit stack)."""
    async with AsyncExitStack() as started:
        await proxy.start()
        started.push_async_callback(proxy.close)
        for concern in concerns:
            await concern.start()
            started.push_async_callback(concern.close)
        yield
