"""gateway.toml: load it, validate it, and say exactly what is wrong with it.

The person reading a config error is editing the file right now, so every message names
the file, the line, the key path and the reason, one line per problem:

    gateway.toml:7: routes[1].upstream: must be an http:// URL (got 'localhost:9001')

and start-up stops with exit status 2, never a traceback. Envoy does the same with its
protobuf-validated YAML (`--mode validate` checks a file without starting); nginx has
`nginx -t`. Here `python -m gateway --config gateway.toml --check` is the equivalent.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator

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


class TimeoutsConfig(Strict):
    """Every route's upstream timeouts (routing.Route.timeouts; a later stage adds
    per-route values and a total deadline on top of these defaults)."""

    connect: Seconds = 2.0  # TCP connect to the upstream -> 504 when exceeded
    read: Seconds = 30.0  # waiting for the response head, and between body chunks -> 504


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
    prefix: str
    upstream: str
    strip_prefix: bool = False
    preserve_host: bool = False

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
        if any(c in value for c in "?#") or any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in value):
            raise ValueError("must be a plain path: no query, fragment, spaces or non-ASCII")
        return value

    def describe(self) -> str:
        """One line for the start-up log: `prefix /debug -> http://... (strip_prefix)`."""
        flags = [f for f in ("strip_prefix", "preserve_host") if getattr(self, f)]
        suffix = f" ({', '.join(flags)})" if flags else ""
        return f"prefix {self.prefix} -> {self.upstream}{suffix}"

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port such as :99999 or :abc
        except ValueError:
            raise ValueError("must be an http:// URL with a valid port") from None
        if parts.scheme != "http" or not parts.hostname:
            # TLS to upstreams is a production must-have (mTLS in a mesh) but not this
            # repo's lesson: every backend here speaks plain HTTP on 127.0.0.1.
            raise ValueError("must be an http:// URL")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not contain a query, a fragment or credentials")
        return value.rstrip("/")  # a base path is kept; the trailing slash is not


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDefaults:
    """The gateway-wide sections a route's own settings fall back to, as one record for
    routing.Route.from_config. A later concern with a per-route policy adds its section
    here as one field (and one line in GatewayConfig.route_defaults), so the signature
    of Route.from_config, which every stage calls, never grows."""

    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)


ROUTE_DEFAULTS = RouteDefaults()  # as gateway.toml defaults every section: for tests


class GatewayConfig(Strict):
    server: ServerConfig = ServerConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    connections: ConnectionsConfig = ConnectionsConfig()
    routes: Annotated[list[RouteConfig], Field(min_length=1)]

    def route_defaults(self) -> RouteDefaults:
        return RouteDefaults(
            timeouts=self.timeouts,
        )


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
    problems = _duplicate_prefixes(shown, config)
    if problems:
        raise ConfigError("\n".join(placed(problems, shown, text)))
    return config


def _duplicate_prefixes(shown: str, config: GatewayConfig) -> list[str]:
    """What a per-field check cannot see: two routes claiming the same prefix."""
    first: dict[str, int] = {}
    problems = []
    for i, route in enumerate(config.routes):
        if route.prefix in first:
            problems.append(
                f"{shown}: routes[{i}].prefix: {route.prefix!r} is already routed by"
                f" routes[{first[route.prefix]}]"
            )
        first.setdefault(route.prefix, i)
    return problems
