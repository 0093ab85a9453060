"""The aiohttp applications: the public one with its middleware chain and handler, and
the admin one (gateway/admin.py) beside it, on a socket of its own.

A request meets, in order:

    request id -> (trace) -> (metrics) -> (access log) -> problem errors -> head limits
      -> route -> auth -> rate limit -> cache -> handler: channel

Every arrow before the handler is an aiohttp middleware, and the response travels back
through the same ones. From this stage on the chain has two halves. The first (request
id to head limits, the list in `build_apps`) is the application's, fixed while it runs.
The second, from routing on, depends on the configuration: `build_generation` composes it
once per configuration generation, and the application's last middleware hands each
request to the generation serving when it arrived (gateway/reload/). A concern that needs
the matched route (auth, rate limiting, the cache) is one more line in that second list.
What happens on the way to the upstream (choosing a server, retrying, deadlines) belongs
to the channel, which is the only place that talks to the proxy: the handler gives it
every routed request, WebSocket upgrades aside.

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
from dataclasses import dataclass
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
from gateway.channel.bulkhead import LoadShedder
from gateway.channel.channel import Channel
from gateway.channel.websocket import is_upgrade
from gateway.concern import AdminView, Concern
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
from gateway.ratelimit.store import Store as LimitStore
from gateway.ratelimit.store import open_store as open_limit_store
from gateway.reload.chain import chain
from gateway.reload.generation import Generation, config_digest, reuse_bulkhead
from gateway.reload.live import Live, Load
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Shared:
    """What every generation of the configuration uses, and no reload replaces: the
    upstream connection pool, the cache and the rate-limit store (their entries and
    counters), the global limits (in flight, retry budget), the metrics and the traces.
    Their config sections cannot change while the gateway runs (reload/fixed.py)."""

    proxy: Proxy
    shedder: LoadShedder
    budget: RetryBudget
    cache: Cache
    limit_store: LimitStore
    metrics: Metrics
    tracing: Tracing


def build_shared(config: GatewayConfig) -> Shared:
    observability = config.observability
    known = frozenset(consumer.id for consumer in config.consumers)
    return Shared(
        proxy=Proxy(config.connections),
        shedder=LoadShedder(config.server.max_in_flight),
        budget=RetryBudget(
            ratio=config.retry_budget.ratio, min_per_second=config.retry_budget.min_per_second
        ),
        cache=Cache(open_store(config.cache), config.cache),
        limit_store=open_limit_store(config.rate_limit),
        metrics=Metrics(
            stage=STAGE,
            config_text=config.model_dump_json(),
            consumers=known if observability.consumer_label else None,
        ),
        tracing=Tracing(observability.tracing, stage=STAGE),
    )


def build_generation(
    config: GatewayConfig, shared: Shared, previous: Generation | None = None
) -> Generation:
    """Everything `config` describes, built off to the side: the routes, the pools (a
    target that stays is the same object, with its health and breaker), the channel, the
    key rings and issuers, the limits, and the routed part of the middleware chain. Nothing
    here starts, stops or changes what `previous` serves; `Generation.take_over` does that,
    just before the swap (gateway/reload/live.py)."""
    router = Router.from_config(config.routes, config.route_defaults())
    pools = config.pools()
    upstreams = Upstreams.from_config(pools, previous=previous.upstreams if previous else None)
    before = previous.channel.bulkheads if previous else {}
    bulkheads = {name: reuse_bulkhead(name, c.bulkhead, before) for name, c in pools.items()}
    channel = Channel(
        upstreams,
        shared.proxy,
        bulkheads,
        shared.shedder,
        shared.budget,
        observe=shared.metrics.upstream_time,
    )
    authenticator = Authenticator(config.auth, config.consumers)
    limiter = Limiter(config.rate_limit, shared.limit_store)
    # The routed part of the chain: per generation, composed once (gateway/reload/chain.py).
    handle = chain(
        [
            routing_middleware(router),
            authenticator.middleware(),
            limiter.middleware(),
            shared.cache.middleware(),
        ],
        Gateway(channel).handle,
    )
    # Each concern's own numbers (retries, cache results, auth outcomes, ...) as metrics.
    observed = Observed(
        upstreams=upstreams,
        channel=channel,
        proxy=shared.proxy,
        cache=shared.cache,
        auth=authenticator,
        limiter=limiter,
    )
    return Generation(
        number=1 if previous is None else previous.number + 1,
        config=config,
        digest=config_digest(config),
        handle=handle,
        hidden=query_credentials(config.auth, [route.auth for route in router.routes()]),
        upstreams=upstreams,
        channel=channel,
        authenticator=authenticator,
        limiter=limiter,
        observed=observed,
    )


def build_apps(
    config: GatewayConfig,
    load: Load | None = None,
    shown: str = "gateway.toml",
    *,
    watch: bool = False,
) -> tuple[web.Application, web.Application]:
    """(the public application, the admin application), sharing one set of pools.

    `load` reads the configuration file (`shown`, as the user named it) again, for a
    reload (SIGHUP, POST /reload, and with `watch` every change to the file); None: the
    gateway cannot reload (a config built in code, as some tests do)."""
    shared = build_shared(config)
    observability = config.observability
    live = Live(
        build_generation(config, shared),
        build=lambda new, previous: build_generation(new, shared, previous),
        load=load,
        shown=shown,
        metrics=shared.metrics,
        watch=watch,
    )
    dashboard = Dashboard(
        shared.metrics.exposed, live.current.observed, shared.metrics.sync, shared.tracing.recent
    )
    shared.metrics.watch(live.current.observed)
    live.on_swap(
        lambda new: shared.metrics.watch(
            new.observed, frozenset(consumer.id for consumer in new.config.consumers)
        )
    )
    live.on_swap(lambda new: dashboard.watch(new.observed))

    middlewares: list[Middleware] = [request_id_middleware]
    if observability.metrics or observability.tracing.enabled:
        middlewares.append(
            observe_middleware(
                shared.metrics if observability.metrics else None,
                shared.tracing if observability.tracing.enabled else None,
            )
        )
    if config.server.access_log:
        middlewares.append(
            access_log_middleware(live.hidden, json_lines=observability.access_log_format == "json")
        )
    middlewares.append(problem_middleware)
    middlewares.append(head_limits_middleware(config.server.max_header_bytes))
    # ...then the live configuration's part (build_generation): route -> auth -> rate
    # limit -> cache -> channel, composed once per generation and read once per request.
    middlewares.append(live.middleware())

    app = web.Application(middlewares=middlewares)
    # RateLimit fields on streamed answers: on_prepare reads only what the rate-limit
    # middleware left on the request, so the first generation's serves every later one.
    app.on_response_prepare.append(live.current.limiter.on_prepare)
    # Every concern with work to do at start and close, and views on the admin
    # listener (gateway/concern.py), in the order they start; they close in reverse.
    # The first four belong to a generation: a reload's take over from the ones before
    # (gateway/reload/generation.py), and the ones serving at shutdown are closed.
    shared_concerns: list[Concern] = [
        shared.cache,
        shared.metrics,  # GET /metrics
        shared.tracing,  # the last spans exported on close
        dashboard,  # GET /dashboard
        live,  # SIGHUP, POST /reload, GET /config
    ]
    app.cleanup_ctx.append(partial(lifecycle, shared.proxy, live, shared_concerns))
    # One catch-all aiohttp route, whose handler live.middleware never calls: the live
    # configuration's Router (its routing middleware) decides where each request goes.
    # Without it aiohttp's router would answer every request "no match" by building an
    # HTTPNotFound first (a whole Response) to hand to the middlewares: measurable.
    app.router.add_route("*", "/{path:.*}", live.unreachable)

    def views() -> list[AdminView]:
        # Asked on every admin request: after a reload, the new generation's pages.
        concerns = [*live.current.concerns(), *shared_concerns]
        return [view for concern in concerns for view in concern.admin_views()]

    return app, build_admin_app(views)


async def lifecycle(
    proxy: Proxy, live: Live, concerns: list[Concern], app: web.Application
) -> AsyncIterator[None]:
    """Start the proxy, then the first generation's concerns and the shared ones, inside
    the running event loop (a ClientSession binds to the loop that creates it); on
    shutdown, after the requests in flight finished, close them in reverse: the shared
    ones, then the generation serving by then. What started is closed even when a later
    start fails (the exit stack)."""
    async with AsyncExitStack() as started:
        await proxy.start()
        started.push_async_callback(proxy.close)
        started.push_async_callback(live.close_current)
        for concern in live.current.concerns():
            await concern.start()
        for concern in concerns:
            await concern.start()
            started.push_async_callback(concern.close)
        yield
