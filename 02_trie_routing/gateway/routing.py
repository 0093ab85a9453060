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
from gateway.config import ROUTE_DEFAULTS, RouteConfig, RouteDefaults
from gateway.errors import BadPath, MethodNotAllowed, NoRoute
from gateway.pathsafety import ENCODED_SLASH, SafePath, UnsafePath, normalise
from gateway.patterns import REST, rewrite
from gateway.proxy import Timeouts
from gateway.requesttarget import origin_form
from gateway.trie import Match, NotAllowed


@dataclass(frozen=True, slots=True)
class Route:
    """One `[[routes]]` entry, with what the proxy needs precomputed once at start-up."""

    patterns: tuple[str, ...]  # what goes into the trie (a prefix route has two)
    methods: frozenset[str] | None  # None: every method
    upstream: str  # as configured, e.g. http://127.0.0.1:9001 (for logs and errors)
    origin: str  # scheme://host:port, the start of every upstream URL
    base_path: str  # the upstream URL's own path ("" or e.g. "/v1"), prepended to the target
    strip_prefix: bool
    rewrite: str | None
    preserve_host: bool
    keep_encoded_slash: bool  # encoded_slash = "keep": %2F is data in this route's paths
    timeouts: Timeouts

    @classmethod
    def from_config(cls, config: RouteConfig, defaults: RouteDefaults = ROUTE_DEFAULTS) -> Route:
        parts = urlsplit(config.upstream)
        timeouts = defaults.timeouts  # [timeouts]: this stage has no per-route timeouts yet
        return cls(
            patterns=config.patterns(),
            methods=frozenset(config.methods) if config.methods is not None else None,
            upstream=config.upstream,
            origin=f"{parts.scheme}://{parts.netloc}",
            base_path=parts.path.rstrip("/"),
            strip_prefix=config.strip_prefix,
            rewrite=config.rewrite,
            preserve_host=config.preserve_host,
            keep_encoded_slash=config.encoded_slash == "keep",
            timeouts=Timeouts(connect=timeouts.connect, read=timeouts.read),
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
        for route in routes:
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

    def match(self, path: SafePath, method: str) -> Match[Route] | NotAllowed | None:
        """The most specific route for this path and method; NotAllowed (405) if routes
        match the path but none takes the method; None (404) if no route matches it.

        Segments are compared percent-decoded (`/users/%6De` is `/users/me` to every
        origin), and parameters carry the raw segments, ready to be forwarded.
        """
        return self._trie.match_segments(path.match_segments, method, path.segments)


def routing_middleware(router: Router, routed: Handler) -> Middleware:
    """Normalise and match every request that `routed` (the proxy handler) will answer.

    400 for a path the gateway will not interpret, 404 when no route matches, 405 (with
    Allow) when routes match the path but not the method. The gateway's own endpoints
    (`/_gateway/health`) have handlers of their own and pass through unrouted: no route
    can shadow them, and a later middleware can tell them apart by the missing
    `request[ROUTE]`. The path is normalised once, and that one path is matched and
    forwarded.
    """

    @web.middleware
    async def route(request: web.Request, handler: Handler) -> web.StreamResponse:
        request = origin_form(request)  # absolute-form becomes origin-form; `#` is a 400
        if request.match_info.handler != routed:  # `!=`: a bound method is made per access
            return await handler(request)
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
