"""Which route gets a request, and which path its upstream receives.

Stage 01 scanned a dict for the longest prefix of the raw request-target. This stage
matches the *normalised* path (gateway/pathsafety.py) against a radix trie of route
patterns (gateway/trie.py): a lookup costs one dict access per path segment however many
routes there are, priority is by specificity instead of length or declaration order, and
a route may name its methods (a path that matches with the wrong method is a 405).

gateway.toml has two kinds of route, and both end up in the same trie:

- `prefix = "/users"`: stage 01's meaning, `/users` and everything below it. It becomes
  two patterns, `/users` and `/users/{rest:path}` (patterns.prefix_patterns), so a more
  specific pattern route such as `/users/{id}/avatar` still wins below it.
- `path = "/api/v1/users/{id}"`: a pattern, with an optional `rewrite = "/users/{id}"`.

The path sent upstream is always built from what was matched, never from the raw bytes
the client sent: the normalised path as it is, or with the prefix stripped, or the rewrite
template filled with the captured parameters (raw, still percent-encoded).

Routing is a middleware (`routing_middleware`), the first one after the error handler:
it normalises the path, matches it, and puts the result on the request (`request[ROUTE]`)
or answers 400, 404 or 405 itself, so every middleware after it (auth, rate limits, the
cache, in later stages) can apply the route's own policy, and the handler only forwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway import trie
from gateway.auth.config import AuthPolicy
from gateway.cache.config import CachePolicy
from gateway.channel.policy import ChannelPolicy
from gateway.config import ROUTE_DEFAULTS, RouteConfig, RouteDefaults
from gateway.errors import BadPath, MethodNotAllowed, NoRoute
from gateway.pathsafety import ENCODED_SLASH, SafePath, UnsafePath, normalise
from gateway.patterns import REST, rewrite
from gateway.proxy import Timeouts
from gateway.ratelimit.config import LimitPolicy
from gateway.requesttarget import origin_form
from gateway.trie import Match, NotAllowed


@dataclass(frozen=True, slots=True)
class Route:
    """One `[[routes]]` entry, with what the proxy needs precomputed once at start-up."""

    patterns: tuple[str, ...]  # what goes into the trie (a prefix route has two)
    methods: frozenset[str] | None  # None: every method
    upstream: str  # as configured: a pool's name, or e.g. http://127.0.0.1:9001
    pool: str  # the upstream pool that picks the server (config.RouteConfig.pool)
    # A URL upstream's own path ("" or e.g. "/v1"), prepended to the request-target; ""
    # for a named pool, whose targets are bare servers. The server itself (scheme, host,
    # port) is always the one the pool's lease names: the handler builds the URL.
    base_path: str
    strip_prefix: bool
    rewrite: str | None
    preserve_host: bool
    keep_encoded_slash: bool  # encoded_slash = "keep": %2F is data in this route's paths
    timeouts: Timeouts  # connect and read, for the proxy; channel has the rest
    channel: ChannelPolicy  # tries, deadline, retries, hedging, WebSocket (gateway/channel/)
    cache: CachePolicy | None  # None: this route does not cache (gateway/cache/)
    auth: AuthPolicy  # who may call it (gateway/auth/); mode "public": anybody
    rate_limit: LimitPolicy | None  # how often (gateway/ratelimit/); None: no limits

    @classmethod
    def from_config(cls, config: RouteConfig, defaults: RouteDefaults = ROUTE_DEFAULTS) -> Route:
        parts = urlsplit(config.upstream)
        channel = ChannelPolicy.resolve(
            defaults.timeouts,  # [timeouts] and [retries], under the route's own values
            defaults.retries,
            config.timeouts,
            config.retries,
            config.hedge,
            config.websocket,
        )
        return cls(
            patterns=config.patterns(),
            methods=frozenset(config.methods) if config.methods is not None else None,
            upstream=config.upstream,
            pool=config.pool,
            base_path=parts.path.rstrip("/") if parts.scheme else "",
            strip_prefix=config.strip_prefix,
            rewrite=config.rewrite,
            preserve_host=config.preserve_host,
            keep_encoded_slash=config.encoded_slash == "keep",
            timeouts=Timeouts(connect=channel.connect, read=channel.read),
            channel=channel,
            cache=CachePolicy.resolve(defaults.cache, config.cache),
            auth=AuthPolicy.resolve(defaults.auth, config.auth),
            rate_limit=LimitPolicy.resolve(
                f"{','.join(config.methods or ['*'])} {config.patterns()[0]}",
                defaults.rate_limit,
                config.rate_limit,
            ),
        )

    def request_target(self, path: SafePath, params: Mapping[str, str]) -> str:
        """The request-target to send upstream: path and query, still percent-encoded.

        Built from the normalised path that was matched, so the upstream cannot read the
        request differently from the router. The query is passed on exactly as received.
        """
        if self.rewrite is not None:
            target = rewrite(self.rewrite, params)
        elif self.strip_prefix:
            # What the catch-all captured is exactly what lies below the prefix:
            # /users/1/x -> "1/x" -> /1/x; /users and /users/ capture nothing -> /.
            target = "/" + params.get(REST, "")
        else:
            target = path.path
        return self.base_path + target + path.query


class RouteMatch(NamedTuple):
    """What routing found for one request: `request[ROUTE]`, for every later step."""

    route: Route
    params: Mapping[str, str]  # captured segments, raw (still percent-encoded)
    path: SafePath  # the normalised path that was matched, and its query

    @property
    def request_target(self) -> str:
        """Path + query as the upstream receives them (built from what was matched)."""
        return self.route.request_target(self.path, self.params)


ROUTE = web.RequestKey("route", RouteMatch)


class Router:
    """The routes of one gateway.toml, in a trie whose values are `Route`s."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._trie: trie.Router[Route] = trie.Router()
        self._count = 0
        self._routes: list[Route] = []
        for route in routes:
            self._routes.append(route)
            # config.load_config() has already refused conflicting routes with an error
            # naming both; this would raise RouteConflict for a Router built by hand.
            for pattern in route.patterns:
                self._trie.add(pattern, route.methods, route)
            self._count += 1
        self._trie.compile()  # at start-up, not on the first request

    @classmethod
    def from_config(
        cls, routes: Iterable[RouteConfig], defaults: RouteDefaults = ROUTE_DEFAULTS
    ) -> Router:
        return cls(Route.from_config(route, defaults) for route in routes)

    def __len__(self) -> int:
        return self._count

    def routes(self) -> list[Route]:
        return list(self._routes)

    def match(self, path: SafePath, method: str) -> Match[Route] | NotAllowed | None:
        """The most specific route for this path and method; NotAllowed (405) if routes
        match the path but none takes the method; None (404) if no route matches it.

        Segments are compared percent-decoded (`/users/%6De` is `/users/me` to every
        origin), and parameters carry the raw segments, ready to be forwarded.
        """
        return self._trie.match_segments(path.match_segments, method, path.segments)


def routing_middleware(router: Router) -> Middleware:
    """Normalise and match every request on the public port.

    400 for a path the gateway will not interpret, 404 when no route matches, 405 (with
    Allow) when routes match the path but not the method. Every request that gets past
    this middleware carries `request[ROUTE]`, so every later one may read it without a
    check: until stage 02 the gateway's own endpoint shared this port and passed through
    unrouted; from this stage on it lives on the admin listener (admin.py). The path is
    normalised once, and that one path is matched and forwarded.
    """

    @web.middleware
    async def route(request: web.Request, handler: Handler) -> web.StreamResponse:
        request = origin_form(request)  # absolute-form becomes origin-form; `#` is a 400
        try:
            path = normalise(request.raw_path)
        except UnsafePath as exc:
            raise BadPath(exc.reason) from None
        found = router.match(path, request.method)
        if path.encoded_slash and not (isinstance(found, tuple) and found[0].keep_encoded_slash):
            raise BadPath(ENCODED_SLASH)  # data only on a route that keeps it (pathsafety 5b)
        if found is None:
            raise NoRoute(f"no route matches {path.path}")
        if isinstance(found, NotAllowed):
            raise MethodNotAllowed(
                f"{path.path} does not answer {request.method}", allow=found.allow
            )
        value, params, _ = found
        request[ROUTE] = RouteMatch(route=value, params=params, path=path)
        return await handler(request)

    return route
