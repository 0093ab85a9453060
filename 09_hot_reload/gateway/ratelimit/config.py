"""Rate limits in gateway.toml: the store, the defaults, and each route's limits.

[rate_limit]
store = "auto"              # memory | redis | auto: Redis whenever --redis-url is given
key = "consumer"            # whose budget: consumer | client_ip | header:NAME | api_key
trusted_proxies = []        # addresses whose X-Forwarded-For is believed, e.g. ["10.0.0.0/8"]
headers = true              # RateLimit-Policy and RateLimit on every limited route's answers
failure_mode = "open"       # Redis unreachable: open (let requests through) | closed (503)
fallback = true             # ...or, while it is down, limit each process on its own
max_keys = 100000           # the memory store's bound, per process

[rate_limit.redis]
url = "redis://127.0.0.1:6379/0"
timeout = 0.05              # one decision; slower counts as Redis trouble
prefix = "gateway:rl:"

[rate_limit.breaker]        # after `failures` in a row, skip Redis for `open_for` seconds
failures = 3
open_for = 1.0

[[routes]]
rate_limit = { limits = [
  { name = "burst", requests = 10, window = 1.0, algorithm = "gcra" },  # 10 at once, then 10/s
  { name = "hourly", requests = 1000, window = 3600.0,   # strict_window (the default):
    plans = { gold = 10000 } },        # <= 1000 in any hour; plan = "gold" gets 10,000
], concurrency = 4, key = "client_ip", failure_mode = "closed" }
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, field_validator

from gateway.headers import TOKEN
from gateway.redisconfig import RedisConfig
from gateway.validation import Seconds, Strict

# fixed_window is here for ratelimit-bench, to show its edge burst; the gateway warns at
# start-up when a route uses it.
Algorithm = Literal["strict_window", "gcra", "sliding_window", "fixed_window"]
FailureMode = Literal["open", "closed"]
LimitName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$")]
Window = Annotated[float, Field(ge=0.001, le=31 * 86400)]
Requests = Annotated[int, Field(ge=1, le=1_000_000_000)]


def _check_key(value: str) -> str:
    if value in ("consumer", "client_ip", "api_key"):
        return value
    kind, _, name = value.partition(":")
    if kind == "header" and TOKEN.fullmatch(name):
        return f"header:{name.lower()}"
    raise ValueError("one of consumer, client_ip, api_key, header:NAME")


class LimitConfig(Strict):
    name: LimitName
    requests: Requests
    window: Window
    # The default keeps the promise `requests = 100, window = 10` makes: at most 100 in any
    # 10 s. GCRA's is "100 at once, then 10 a second" (a client sending twice the rate
    # gets ~200 in its first 10 s); the counter's an estimate (~140 in the worst phase).
    algorithm: Algorithm = "strict_window"
    plans: dict[str, Requests] = {}  # a consumer's plan -> its requests per window


class RedisLimitConfig(RedisConfig):
    """[rate_limit.redis]: the settings [cache.redis] has (url, timeout), its own prefix."""

    prefix: str = "gateway:rl:"


class BreakerConfig(Strict):
    failures: Annotated[int, Field(ge=1, le=1000)] = 3
    open_for: Seconds = 1.0


class RateLimitConfig(Strict):
    store: Literal["auto", "memory", "redis"] = "auto"
    key: str = "consumer"
    trusted_proxies: list[str] = []
    headers: bool = True
    failure_mode: FailureMode = "open"
    fallback: bool = True
    max_keys: Annotated[int, Field(ge=100, le=100_000_000)] = 100_000
    redis: RedisLimitConfig = RedisLimitConfig()
    breaker: BreakerConfig = BreakerConfig()

    _key = field_validator("key")(_check_key)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an address or a network") from None
        return value

    def with_redis(self, url: str) -> RateLimitConfig:
        """--redis-url: limits in Redis at `url` unless [rate_limit] store says memory. A
        URL given means shared limits: N workers, or N gateways on N machines, each
        limiting on its own would admit N times the limit. One process cannot tell
        whether another instance shares its Redis, so "auto" does not guess from
        --workers; without a URL, "auto" is memory (ratelimit/store.py open_store)."""
        store = "redis" if self.store == "auto" else self.store
        redis = self.redis.model_copy(update={"url": url})
        return self.model_copy(update={"store": store, "redis": redis})


class RouteRateLimit(Strict):
    """A route's `rate_limit` table."""

    limits: list[LimitConfig] = []
    concurrency: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    key: str | None = None
    failure_mode: FailureMode | None = None

    _key = field_validator("key")(lambda v: v if v is None else _check_key(v))

    @field_validator("limits")
    @classmethod
    def _unique(cls, value: list[LimitConfig]) -> list[LimitConfig]:
        names = [limit.name for limit in value]
        if len(set(names)) != len(names):
            raise ValueError("two limits with one name: each needs its own")
        return value


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    requests: int
    window_ms: float
    algorithm: str
    plans: tuple[tuple[str, int], ...] = ()

    def requests_for(self, plan: str) -> int:
        for name, requests in self.plans:
            if name == plan:
                return requests
        return self.requests


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """One route's limits, resolved at start-up."""

    scope: str  # the route, in every store key: two routes' "burst" limits are two limits
    limits: tuple[Limit, ...]
    concurrency: int | None
    key: str
    failure_mode: str

    @classmethod
    def resolve(
        cls, scope: str, defaults: RateLimitConfig, route: RouteRateLimit | None
    ) -> LimitPolicy | None:
        if route is None or not (route.limits or route.concurrency):
            return None
        limits = tuple(
            Limit(
                name=c.name,
                requests=c.requests,
                window_ms=c.window * 1000,
                algorithm=c.algorithm,
                plans=tuple(sorted(c.plans.items())),
            )
            for c in route.limits
        )
        return cls(
            scope,
            limits,
            route.concurrency,
            route.key or defaults.key,
            route.failure_mode or defaults.failure_mode,
        )
