"""What a test wants from a gateway, said once, in no stage's config dialect.

The contracts, the benches and the chaos tool describe a gateway as one `GatewaySpec`:
its routes (`RouteSpec`: a prefix; `PathRoute`: a pattern), its upstream pools
(`PoolSpec`), its timeouts. Each stage's `tests/stage_config.py` has one function,
`render(spec) -> str`, that writes that spec as the stage's own gateway.toml. A later
stage with a new concern adds a field here (with a default that means "off") and teaches
its render() to write it; the contracts written against earlier stages keep passing
because the default is what those stages did.

A stage that cannot express part of a spec (stage 01 has no pattern routes, stages 01
and 02 have no pools) refuses it with `Unsupported`, so a contract run against the wrong
stage fails with a sentence instead of a gateway that silently ignores half its config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


class Unsupported(ValueError):
    """A spec asks for something this stage's config cannot say."""


@dataclass(frozen=True)
class ChannelSpec:
    """The way to the upstream under pressure (stage 04 on): tries, time limits, hedging.

    On `GatewaySpec.channel` it is every route's default; on a route, its own. The
    defaults mean what stages 01-03 do: one try, no per-try limit, no overall deadline.
    """

    attempts: int = 1  # tries in all: 1 never retries
    retry_on: tuple[str, ...] | None = None  # None: the stage's default conditions
    try_timeout: float | None = None  # one try, until its response head
    deadline: float | None = None  # every try and backoff together
    backoff_base: float | None = None  # None: the stage's default (25 ms)
    hedge_after: float | str | None = None  # seconds or "p95"; None: no hedging
    websocket: bool = False  # take WebSocket upgrades on this route
    websocket_idle: float | None = None


@dataclass(frozen=True)
class RouteAuthSpec:
    """Stage 06 on: who may call one route. `mode` is public, key, jwt or either."""

    mode: str = "public"
    scopes: tuple[str, ...] = ()
    issuers: tuple[str, ...] | None = None  # None: every issuer of AuthSpec
    key_header: str | None = None  # None: the stage's default (X-API-Key)
    key_query: str | None = None  # a query parameter that may carry the key
    forward_credential: bool = False
    per_consumer_cache: bool = False  # the cache keeps each consumer's entries apart


@dataclass(frozen=True)
class LimitSpec:
    """Stage 07 on: one rate limit of a route: `requests` per `window` seconds."""

    name: str
    requests: int
    window: float
    algorithm: str = "gcra"  # or sliding_window, fixed_window
    plans: tuple[tuple[str, int], ...] = ()  # (plan, requests) for consumers with that plan


@dataclass(frozen=True)
class RouteLimitSpec:
    """Stage 07 on: a route's `rate_limit` table."""

    limits: tuple[LimitSpec, ...] = ()
    concurrency: int | None = None
    key: str | None = None  # consumer, client_ip, api_key, header:NAME; None: the default
    failure_mode: str | None = None  # open or closed; None: the default


@dataclass(frozen=True)
class RouteSpec:
    """Requests under `prefix` go to `upstream`: a base URL, or (stage 03 on) a pool's name."""

    prefix: str
    upstream: str
    strip_prefix: bool = False
    preserve_host: bool = False
    encoded_slash: str = "reject"  # stage 02 on: "keep" takes %2F in its paths as data
    channel: ChannelSpec | None = None  # stage 04 on; None: GatewaySpec.channel
    auth: RouteAuthSpec | None = None  # stage 06 on; None: public
    rate_limit: RouteLimitSpec | None = None  # stage 07 on; None: no limits


@dataclass(frozen=True)
class PathRoute:
    """A pattern route (stage 02 on): what `RouteSpec` (a prefix) cannot say.

    `path` has static segments, `{name}` parameters (one non-empty segment each) and
    optionally a trailing `{name:path}` catch-all (the rest of the path, maybe empty).
    `methods`: None for every method. `rewrite`: the path sent upstream, with captured
    parameters inserted as the client sent them (still percent-encoded), e.g.
    `/api/v1/users/{id}` -> `/users/{id}`; None forwards the matched path.
    """

    path: str
    upstream: str
    methods: tuple[str, ...] | None = None
    rewrite: str | None = None
    encoded_slash: str = "reject"  # "keep": %2F in this route's paths is data
    channel: ChannelSpec | None = None  # stage 04 on; None: GatewaySpec.channel
    auth: RouteAuthSpec | None = None  # stage 06 on; None: public
    rate_limit: RouteLimitSpec | None = None  # stage 07 on; None: no limits


@dataclass(frozen=True)
class TargetSpec:
    url: str  # scheme://host:port
    weight: int = 1


@dataclass(frozen=True)
class HealthSpec:
    """Active checks (probe `path` every `interval`) and passive ones (eject after
    `consecutive_failures` failed requests, for `base_ejection_time`, growing). Tests use
    short times so that ejection and recovery happen within a second or two. The stages
    write passive checks as their circuit breaker: ejected is open there, and its error
    rate trigger is `PoolSpec.failure_rate` (off by default: a streak is the classic
    passive check)."""

    active: bool = True
    path: str = "/health"
    interval: float = 0.2
    timeout: float = 0.2
    healthy_threshold: int = 1
    unhealthy_threshold: int = 1
    consecutive_failures: int = 3  # 0: no passive checks
    base_ejection_time: float = 1.0
    max_ejection_time: float = 5.0
    max_ejection_percent: int = 50


@dataclass(frozen=True)
class BulkheadSpec:
    """How much of the gateway one pool may take (stage 04 on)."""

    max_concurrent: int = 256
    max_queue: int = 128
    queue_timeout: float = 1.0


@dataclass(frozen=True)
class PoolSpec:
    """One upstream pool (stage 03 on). `strategy` is round_robin, weighted_round_robin,
    least_connections or consistent_hash; the other settings belong to one of them."""

    targets: tuple[TargetSpec, ...]
    strategy: str = "round_robin"
    hash_key: str | None = None  # consistent_hash: header:NAME | cookie:NAME | client_ip | path
    virtual_nodes: int | None = None  # consistent_hash
    bounded_load: float | None = None  # consistent_hash
    choices: int | None = None  # least_connections: 2 = power of two choices
    health: HealthSpec = field(default_factory=HealthSpec)
    bulkhead: BulkheadSpec = field(default_factory=BulkheadSpec)  # stage 04 on
    failure_rate: float = 0.0  # a breaker opens at this share of failures...
    failure_window: float = 10.0  # ...over this many seconds...
    failure_min_requests: int = 20  # ...once it saw at least this many requests


def targets(*urls: str, weights: tuple[int, ...] | None = None) -> tuple[TargetSpec, ...]:
    """`targets(a.url, b.url, weights=(3, 1))`, the common case in one call."""
    weights = weights or (1,) * len(urls)
    return tuple(TargetSpec(url, w) for url, w in zip(urls, weights, strict=True))


@dataclass(frozen=True)
class CacheSpec:
    """Stage 05 on: the [cache] section. None keeps the stage's default."""

    enabled: bool = True
    store: str = "memory"  # or "redis", with redis_url
    redis_url: str | None = None
    max_bytes: int | None = None
    max_object_bytes: int | None = None
    lock_timeout: float | None = None
    stale_if_error: float | None = None
    default_ttl: float | None = None
    key_headers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class IssuerSpec:
    """Stage 06 on: one trusted token issuer. Keys from `jwks_url`, from discovery, or an
    inline HMAC `secret`."""

    name: str
    issuer: str  # the iss claim
    algorithms: tuple[str, ...]
    audiences: tuple[str, ...] = ("api",)
    jwks_url: str | None = None
    discovery: bool = False
    secret: str | None = None
    leeway: float | None = None
    required_claims: tuple[str, ...] | None = None
    refetch_interval: float | None = None


@dataclass(frozen=True)
class ConsumerSpec:
    """Stage 06 on: one consumer. `api_keys`: (key id, "sha256:...") pairs; `subjects`:
    "issuer name:sub" strings that are this consumer."""

    id: str
    name: str = ""
    scopes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    api_keys: tuple[tuple[str, str], ...] = ()
    imported_keys: tuple[tuple[str, str], ...] = ()  # (id, hash) of keys made elsewhere
    subjects: tuple[str, ...] = ()
    plan: str = ""  # stage 07 on: which of a limit's plans applies


@dataclass(frozen=True)
class AuthSpec:
    """Stage 06 on: [auth], its issuers, and the consumers."""

    issuers: tuple[IssuerSpec, ...] = ()
    consumers: tuple[ConsumerSpec, ...] = ()
    verified_cache: int | None = None  # None: the stage's default; 0: no cache
    max_token_bytes: int | None = None
    strip_headers: tuple[str, ...] = ()  # client headers removed besides the default list
    keep_headers: tuple[str, ...] = ()  # names of the default list let through


@dataclass(frozen=True)
class RateLimitSpec:
    """Stage 07 on: [rate_limit]. None keeps the stage's default."""

    store: str | None = None  # memory, redis, auto
    redis_url: str | None = None
    redis_timeout: float | None = None
    trusted_proxies: tuple[str, ...] = ()
    failure_mode: str | None = None
    fallback: bool | None = None
    breaker_failures: int | None = None
    breaker_open_for: float | None = None


@dataclass(frozen=True)
class ObservabilitySpec:
    """Stage 08's `[observability]`: traces sampled and sent where, the access log's format."""

    sample_ratio: float = 1.0
    otlp_endpoint: str = ""  # "" sends nothing
    export_delay: float = 0.2  # seconds between batches: short, so that tests need not wait
    access_log_format: str = "text"  # or json
    consumer_label: bool = False  # a `consumer` label on gateway_requests_total


@dataclass(frozen=True)
class GatewaySpec:
    """One gateway: routes, the pools they may name, and the settings tests vary.

    Everything else stays at the stage's defaults. `access_log` is off by default: a log
    line per request is noise in a test and real work in a bench.
    """

    routes: Sequence[RouteSpec | PathRoute]
    pools: Mapping[str, PoolSpec] = field(default_factory=dict)
    connect_timeout: float = 2.0
    read_timeout: float = 30.0
    shutdown_timeout: float = 10.0
    header_timeout: float = 10.0  # a client's request head must arrive within this
    max_header_bytes: int = 32 * 1024  # the request's header fields together; more: 431
    access_log: bool = False
    channel: ChannelSpec = field(default_factory=ChannelSpec)  # stage 04 on: route defaults
    max_in_flight: int = 1024  # stage 04 on: requests in flight; past it, 503
    retry_budget: tuple[float, float] = (0.2, 3.0)  # stage 04 on: (ratio, min_per_second)
    cache: CacheSpec | None = None  # stage 05 on; None: the stage's defaults
    auth: AuthSpec | None = None  # stage 06 on; None: no issuers, no consumers
    rate_limit: RateLimitSpec | None = None  # stage 07 on; None: the stage's defaults
    observability: ObservabilitySpec | None = None  # stage 08 on; None: the stage's defaults
