"""gateway.toml: load it, validate it, and say exactly what is wrong with it.

The person reading a config error is editing the file right now, so every message names
the file, the line, the key path and the reason, one line per problem:

    gateway.toml:7: routes[1].upstream: must be an http:// URL (got 'localhost:9001')

and start-up stops with exit status 2, never a traceback. Envoy does the same with its
protobuf-validated YAML (`--mode validate` checks a file without starting); nginx has
`nginx -t`. Here `python -m gateway --config gateway.toml --check` is the equivalent.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator

from gateway.auth.config import (
    AuthConfig,
    ConsumerConfig,
    RouteAuth,
    auth_problems,
    stripped_hash_keys,
)
from gateway.balancing.config import (
    POOL_NAME,
    UpstreamConfig,
    UpstreamName,
    split_http_url,
    unknown_upstreams,
)
from gateway.cache.config import CacheConfig, RouteCache
from gateway.channel.config import (
    BulkheadConfig,
    HedgeConfig,
    RetriesConfig,
    RetryBudgetConfig,
    RouteRetries,
    RouteTimeouts,
    TimeoutsConfig,
)
from gateway.headers import TOKEN
from gateway.patterns import PatternError, check_rewrite, parse_pattern, prefix_patterns
from gateway.trie import RouteConflict, Router
from gateway.validation import Port, Seconds, Strict, describe, placed


class ConfigError(Exception):
    """A bad configuration file; the message is ready to print as is."""


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: Port = 8080
    access_log: bool = True
    # How long SIGTERM waits for requests in flight before cutting them off. Kubernetes
    # sends SIGTERM and then SIGKILL after terminationGracePeriodSeconds (30 s by
    # default): this must stay below that, or the "graceful" part never happens.
    shutdown_timeout: Annotated[float, Field(ge=0, le=3600)] = 10.0
    # A client must complete each request head (request line and headers) within this
    # long, or it is answered 408 and disconnected (gateway/protocol.py: slow clients).
    header_timeout: Seconds = 10.0
    # The request's header fields together, in bytes; more is a 431 (gateway/limits.py).
    max_header_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 32 * 1024
    # Requests in flight, all routes together; past it, 503 at once (channel/bulkhead.py).
    max_in_flight: Annotated[int, Field(ge=1, le=1_000_000)] = 1024


class AdminConfig(Strict):
    """[admin]: the listener for the gateway's own endpoints (gateway/admin.py)."""

    host: str = "127.0.0.1"  # never the public interface: it shows every target's address
    port: Port = 8081


class ConnectionsConfig(Strict):
    """[connections]: the gateway's pool of upstream connections, shared by every route."""

    # Upstream connections the gateway may hold open at once, over all upstreams. Envoy's
    # circuit breaker default is the same 1024 per cluster; aiohttp's own default of 100
    # would quietly queue the 101st concurrent request.
    max_connections: Annotated[int, Field(ge=1, le=100_000)] = 1024
    # How long an idle pooled connection is kept for reuse. Keep it below the upstream's
    # own keep-alive timeout (uvicorn: 5 s) or the gateway will sometimes pick a
    # connection the upstream is just closing; aiohttp then retries idempotent requests
    # once on a fresh connection.
    idle_timeout: Seconds = 4.0


class RouteConfig(Strict):
    """One `[[routes]]` entry: exactly one of `prefix` (stage 01's meaning) or `path`."""

    prefix: str | None = None  # "/users": /users and everything below it
    path: str | None = None  # "/api/v1/users/{id}": a pattern (gateway/patterns.py)
    methods: list[str] | None = None  # None: every method; GET brings HEAD along
    upstream: str
    strip_prefix: bool = False  # prefix routes only
    rewrite: str | None = None  # path routes only: "/users/{id}", params inserted raw
    preserve_host: bool = False
    # "reject" (400, the default) or "keep": `%2F` in this route's paths is data, kept
    # inside its segment and forwarded as sent (gateway/pathsafety.py, step 5b).
    encoded_slash: Literal["reject", "keep"] = "reject"
    # The channel, per route: any key of [timeouts] and [retries], hedging, WebSocket
    # (gateway/channel/config.py).
    timeouts: RouteTimeouts | None = None
    retries: RouteRetries | None = None
    hedge: HedgeConfig | None = None
    websocket: bool = False
    # The cache, per route: any key of [cache]'s route defaults (gateway/cache/config.py).
    cache: RouteCache | None = None
    # Who may call, per route: any key of [auth]'s route defaults (gateway/auth/config.py).
    auth: RouteAuth | None = None

    @field_validator("prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        if value != "/" and value.endswith("/"):
            bare = value.rstrip("/") or "/"
            raise ValueError(
                f"must not end with '/': write {bare!r}, which matches {bare} and everything"
                f" below it"
            )
        if "{" in value or "}" in value:
            raise ValueError("a prefix is static; use path = ... for a pattern with parameters")
        _check_pattern(prefix_patterns(value)[0])
        return value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        _check_pattern(value)
        return value

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one method; leave it out for every method")
        for method in value:
            if method == "*" or not TOKEN.fullmatch(method):
                raise ValueError(
                    f"{method!r} is not an HTTP method name (leave methods out for every method)"
                )
        # Methods are case-sensitive on the wire (RFC 9110 §9.1) and every standard one
        # is upper case: `get` in a config file means GET, while a request that says
        # `get` is not a GET (a route limited to GET answers it with 405).
        return sorted({method.upper() for method in value})

    def patterns(self) -> tuple[str, ...]:
        """What this route puts into the trie."""
        if self.prefix is not None:
            return prefix_patterns(self.prefix)
        assert self.path is not None
        return (self.path,)

    def describe(self) -> str:
        """One line for the start-up log: `GET /api/v1/users/{id} -> http://... (rewrite ...)`."""
        what = f"prefix {self.prefix}" if self.prefix is not None else self.path
        methods = f"{','.join(self.methods)} " if self.methods else ""
        flags = [f for f in ("strip_prefix", "preserve_host", "websocket") if getattr(self, f)]
        if self.encoded_slash == "keep":
            flags.append("encoded_slash keep")
        if self.auth is not None and self.auth.mode not in (None, "public"):
            flags.append(f"auth {self.auth.mode}")
        if self.rewrite is not None:
            flags.insert(0, f"rewrite {self.rewrite}")
        suffix = f" ({', '.join(flags)})" if flags else ""
        return f"{methods}{what} -> {self.upstream}{suffix}"

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        if POOL_NAME.fullmatch(value):
            return value  # a pool's name; load_config checks that [upstreams.NAME] exists
        parts = split_http_url(value)
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not contain a query, a fragment or credentials")
        return value.rstrip("/")  # a base path is kept; the trailing slash is not

    @property
    def pool(self) -> str:
        """The name of the upstream pool this route sends to.

        `upstream = "users"` names [upstreams.users]. `upstream = "http://..."` is an
        implicit pool of one target named after the route (`route GET /users/{id}`), so
        that even its 503 says which route's upstream failed without naming an address.
        """
        if POOL_NAME.fullmatch(self.upstream):
            return self.upstream
        methods = f"{','.join(self.methods)} " if self.methods else ""
        return f"route {methods}{self.prefix if self.prefix is not None else self.path}"


class PoolConfig(UpstreamConfig):
    """[upstreams.NAME]: stage 03's pool, and the channel's bulkhead for it. The implicit
    pool of a URL route gets the bulkhead's defaults: one slow upstream must not take
    every socket."""

    bulkhead: BulkheadConfig = BulkheadConfig()


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDefaults:
    """The gateway-wide sections a route's own settings fall back to, as one record for
    routing.Route.from_config. A later concern with a per-route policy adds its section
    here as one field (and one line in GatewayConfig.route_defaults), so the signature
    of Route.from_config, which every stage calls, never grows."""

    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    retries: RetriesConfig = field(default_factory=RetriesConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)


ROUTE_DEFAULTS = RouteDefaults()  # as gateway.toml defaults every section: for tests


class GatewayConfig(Strict):
    server: ServerConfig = ServerConfig()
    admin: AdminConfig = AdminConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    retries: RetriesConfig = RetriesConfig()
    retry_budget: RetryBudgetConfig = RetryBudgetConfig()
    connections: ConnectionsConfig = ConnectionsConfig()
    cache: CacheConfig = CacheConfig()
    auth: AuthConfig = AuthConfig()
    consumers: list[ConsumerConfig] = []
    routes: Annotated[list[RouteConfig], Field(min_length=1)]
    upstreams: dict[UpstreamName, PoolConfig] = {}

    def route_defaults(self) -> RouteDefaults:
        return RouteDefaults(
            timeouts=self.timeouts,
            retries=self.retries,
            cache=self.cache,
            auth=self.auth,
        )

    def with_redis(self, url: str) -> GatewayConfig:
        """--redis-url: every concern that can keep its state in Redis keeps it at `url`.
        A later concern with shared state adds its section here, in one line."""
        return self.model_copy(
            update={
                "cache": self.cache.with_redis(url),
            }
        )

    def startup_notes(self, workers: int) -> list[tuple[int, str]]:
        """What the log says once at start-up, as (level, message): where each concern
        keeps its state, and what the operator should know. A state that is silently per
        process is the mistake found only when a worker's cache or quota disagrees with
        the next one. A concern with state adds its part here; __main__.py logs them."""
        cache = self.cache
        where = f"redis {cache.redis.url}" if cache.store == "redis" else "memory (per process)"
        return [(logging.INFO, f"state: cache in {where}")]

    def pools(self) -> dict[str, PoolConfig]:
        """Every pool a route sends to, by name: the [upstreams.NAME] sections, plus a pool
        of one target for each route that gives a URL (see RouteConfig.pool)."""
        pools = dict(self.upstreams)
        for route in self.routes:
            if route.pool not in pools:
                parts = urlsplit(route.upstream)
                pools[route.pool] = PoolConfig.single(f"{parts.scheme}://{parts.netloc}")
        return pools


def load_config(path: Path, shown: str | None = None) -> GatewayConfig:
    """Read and validate `path`; raise ConfigError listing every problem found.

    `shown` is the name used in messages: the path as the user typed it.
    """
    shown = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message carries line and column
        raise ConfigError(f"{shown}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError(f"{shown}: cannot read: {reason}") from None
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        found = [describe(shown, err, text=text, model=GatewayConfig) for err in exc.errors()]
        raise ConfigError("\n".join(found)) from None
    problems = _route_problems(shown, config.routes) or _conflicts(shown, config.routes)
    problems += [
        f"{shown}: routes[{i}].upstream: {reason}"
        for i, reason in unknown_upstreams([r.upstream for r in config.routes], config.upstreams)
    ]
    problems += auth_problems(
        shown, config.auth, config.consumers, [(i, r.auth) for i, r in enumerate(config.routes)]
    )
    problems += stripped_hash_keys(
        shown, config.auth, {name: pool.hash_key for name, pool in config.upstreams.items()}
    )
    if problems:
        raise ConfigError("\n".join(placed(problems, shown, text)))
    return config


def _check_pattern(pattern: str) -> None:
    try:
        parse_pattern(pattern)
    except PatternError as exc:
        raise ValueError(str(exc)) from None


def _route_problems(shown: str, routes: list[RouteConfig]) -> list[str]:
    """What a per-field check cannot see: keys that only make sense together."""
    problems = []
    for i, route in enumerate(routes):
        key = f"{shown}: routes[{i}]"
        if (route.prefix is None) == (route.path is None):
            problems.append(
                f'{key}: give exactly one of prefix ("/users": it and everything below it)'
                f' or path (a pattern such as "/users/{{id}}")'
            )
        elif route.path is not None and route.strip_prefix:
            problems.append(
                f"{key}.strip_prefix: only for prefix routes; a path route can rewrite instead"
            )
        elif route.rewrite is not None and route.path is None:
            problems.append(f"{key}.rewrite: only for path routes (path = ...)")
        elif route.rewrite is not None and route.path is not None:
            try:
                check_rewrite(route.rewrite, route.path)
            except PatternError as exc:
                problems.append(f"{key}.rewrite: {exc}")
    return problems


def _conflicts(shown: str, routes: list[RouteConfig]) -> list[str]:
    """Routes that could never both be reached, each error naming both `[[routes]]`.

    The trie itself finds them (the same pattern and method twice, `{id}` beside `{name}`
    at one position), so the config and the router can never disagree on what a
    conflict is. Whatever the declaration order, both routes are named: a conflict is
    never resolved by silently letting the first one win, as first-match routers do.
    """
    table: Router[int] = Router()
    problems = []
    for i, route in enumerate(routes):
        key = "prefix" if route.prefix is not None else "path"
        try:
            for pattern in route.patterns():
                table.add(pattern, route.methods, i)
        except RouteConflict as exc:
            problems.append(
                f"{shown}: routes[{i}].{key}: route {exc.route!r} conflicts with"
                f" {exc.other_route!r} of routes[{exc.other}]: {exc.reason}"
            )
    return problems
