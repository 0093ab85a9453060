"""Which upstream gets a request: the longest route prefix that matches the path.

Stage 01 keeps the routes in a dict and scans all of them for every request, so a
lookup costs O(number of routes). That is deliberate: it is the simplest thing that is
correct, and stage 02 replaces it with a radix trie and measures the difference. (nginx
sorts its prefix locations into a tree at start-up; Envoy matches routes in order, first
match wins, and leaves "longest first" to whoever writes the config.)

What this router does NOT do is normalise the path. It compares the request-target's
bytes as the client sent them, so `/users/../admin` matches the `/users` route and is
forwarded as is, and `/%75sers` (a percent-encoded `u`) matches nothing. The upstream
may decode and normalise differently from the router, and that gap is exactly where
path-confusion attacks live. Stage 02 normalises before it routes.

Routing is a middleware (`routing_middleware`), the first one after the error handler:
it puts the matched route on the request (`request[ROUTE]`) or answers 404 itself, so
every middleware after it (auth, rate limits, the cache, in later stages) can apply the
route's own policy, and the handler only forwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.config import ROUTE_DEFAULTS, RouteConfig, RouteDefaults
from gateway.errors import NoRoute
from gateway.proxy import Timeouts
from gateway.requesttarget import origin_form


@dataclass(frozen=True, slots=True)
class Route:
    """One route, with what the proxy needs precomputed once at start-up."""

    prefix: str
    upstream: str  # as configured, e.g. http://127.0.0.1:9001 (for logs and errors)
    origin: str  # scheme://host:port, the start of every upstream URL
    base_path: str  # the upstream URL's own path ("" or e.g. "/v1"), prepended to the target
    strip_prefix: bool
    preserve_host: bool
    timeouts: Timeouts

    @classmethod
    def from_config(cls, config: RouteConfig, defaults: RouteDefaults = ROUTE_DEFAULTS) -> Route:
        parts = urlsplit(config.upstream)
        timeouts = defaults.timeouts  # [timeouts]: this stage has no per-route timeouts yet
        return cls(
            prefix=config.prefix,
            upstream=config.upstream,
            origin=f"{parts.scheme}://{parts.netloc}",
            base_path=parts.path.rstrip("/"),
            strip_prefix=config.strip_prefix,
            preserve_host=config.preserve_host,
            timeouts=Timeouts(connect=timeouts.connect, read=timeouts.read),
        )

    def request_target(self, target: str) -> str:
        """The request-target to send upstream: path and query, still percent-encoded.

        `target` is the client's raw request-target (`/users/1?x=%2F`). Nothing here
        decodes or re-encodes it; strip_prefix cuts exactly len(prefix) characters.
        """
        if self.strip_prefix and self.prefix != "/":
            target = target[len(self.prefix) :]
            if not target.startswith("/"):  # "/users" -> "", "/users?x" -> "?x"
                target = "/" + target
        return self.base_path + target if self.base_path else target


class RouteMatch(NamedTuple):
    """What routing found for one request: `request[ROUTE]`, for every later step."""

    route: Route
    path: str  # the path that was matched (here the raw one, query cut off)
    request_target: str  # path + query as the upstream receives them


ROUTE = web.RequestKey("route", RouteMatch)


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes: dict[str, Route] = {route.prefix: route for route in routes}

    @classmethod
    def from_config(
        cls, routes: Iterable[RouteConfig], defaults: RouteDefaults = ROUTE_DEFAULTS
    ) -> Router:
        return cls(Route.from_config(route, defaults) for route in routes)

    def __len__(self) -> int:
        return len(self._routes)

    def match(self, target: str) -> Route | None:
        """The route with the longest prefix matching `target` on a segment boundary.

        `/users` matches `/users`, `/users/1` and `/users?page=2`, never `/usersX`: the
        character after the prefix must end the path or start a segment or the query.
        The scan works on the raw target, query included, so no split is needed first.
        """
        best: Route | None = None
        best_len = -1
        for prefix, route in self._routes.items():
            n = len(prefix)
            if (
                n > best_len
                and target.startswith(prefix)
                and (n == len(target) or prefix == "/" or target[n] in "/?")
            ):
                best, best_len = route, n
        return best


def routing_middleware(router: Router, routed: Handler) -> Middleware:
    """Match every request that `routed` (the proxy handler) will answer; 404 if none.

    The gateway's own endpoints (`/_gateway/health`) have handlers of their own and pass
    through unrouted: no route can shadow them, and a later middleware can tell them
    apart by the missing `request[ROUTE]`.
    """

    @web.middleware
    async def route(request: web.Request, handler: Handler) -> web.StreamResponse:
        request = origin_form(request)  # absolute-form becomes origin-form; `#` is a 400
        if request.match_info.handler != routed:  # `!=`: a bound method is made per access
            return await handler(request)
        target = request.raw_path
        found = router.match(target)
        if found is None:
            raise NoRoute(f"no route matches {target.partition('?')[0]}")
        request[ROUTE] = RouteMatch(
            route=found,
            path=target.partition("?")[0],
            request_target=found.request_target(target),
        )
        return await handler(request)

    return route
