"""The cache's settings in gateway.toml, and a route's resolved cache policy.

[cache]                         # the store, and every route's defaults
enabled = true                  # a route's `cache = { enabled = false }` opts out
store = "memory"                # or "redis": shared by every worker and instance
max_bytes = 67108864            # the memory store's bound (64 MiB), per worker
max_object_bytes = 1048576      # larger responses stream through, uncached (1 MiB)
lock_timeout = 5.0              # coalescing: how long a follower waits for the leader
keep_stale = 3600.0             # an entry is kept this long past its freshness, to be
                                # revalidated (304) or served stale when allowed
default_ttl = 0.0               # freshness for responses that give none, Last-Modified
                                # aside (heuristic: 10% of its age, at most a day)
stale_if_error = 0.0            # stale seconds served on an error when the origin's
                                # stale-if-error did not say
key_headers = []                # request fields added to the key, e.g. ["Host"]
bypass_headers = []             # requests with any of these skip the cache
per_consumer = false            # stage 06: the consumer is part of the key
name = "gateway"                # this cache's name in Cache-Status

[cache.redis]
url = "redis://127.0.0.1:6379/0"
timeout = 0.05                  # one Redis call; slower counts as an outage
max_object_bytes = 1048576

[[routes]]
cache = { default_ttl = 10.0, key_headers = ["Accept-Language"] }   # per route
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, field_validator

from gateway.headers import TOKEN
from gateway.redisconfig import RedisConfig
from gateway.validation import Seconds, Strict

from .entry import Heuristics

Bytes = Annotated[int, Field(gt=0, le=1 << 40)]
Staleness = Annotated[float, Field(ge=0, le=7 * 86400)]


def _check_names(value: list[str]) -> list[str]:
    for name in value:
        if not TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not a header field name")
    return [name.lower() for name in value]


class RouteCache(Strict):
    """A route's `cache` table; None inherits [cache]."""

    enabled: bool | None = None
    default_ttl: Staleness | None = None
    stale_if_error: Staleness | None = None
    key_headers: list[str] | None = None
    bypass_headers: list[str] | None = None
    per_consumer: bool | None = None

    _names = field_validator("key_headers", "bypass_headers")(_check_names)


class CacheConfig(Strict):
    enabled: bool = True
    store: Literal["memory", "redis"] = "memory"
    max_bytes: Bytes = 64 << 20
    max_object_bytes: Bytes = 1 << 20
    lock_timeout: Seconds = 5.0
    keep_stale: Staleness = 3600.0
    default_ttl: Staleness = 0.0
    stale_if_error: Staleness = 0.0
    key_headers: list[str] = []
    bypass_headers: list[str] = []
    per_consumer: bool = False
    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-.]*$")] = "gateway"
    redis: RedisConfig = RedisConfig()

    _names = field_validator("key_headers", "bypass_headers")(_check_names)

    def with_redis(self, url: str) -> CacheConfig:
        """--redis-url: cache in the Redis store at `url`, whatever [cache] store says."""
        redis = self.redis.model_copy(update={"url": url})
        return self.model_copy(update={"store": "redis", "redis": redis})


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """One route's cache policy, resolved at start-up."""

    heuristics: Heuristics
    stale_if_error: float
    key_headers: tuple[str, ...]
    bypass_headers: tuple[str, ...]
    per_consumer: bool = False  # each consumer (gateway/auth/) has entries of its own

    @classmethod
    def resolve(cls, defaults: CacheConfig, route: RouteCache | None) -> CachePolicy | None:
        """None: this route does not use the cache."""
        merged = defaults.model_dump(include=set(RouteCache.model_fields))
        if route is not None:
            merged.update(route.model_dump(include=route.model_fields_set))
        if not merged["enabled"]:
            return None
        return cls(
            heuristics=Heuristics(default_ttl=merged["default_ttl"]),
            stale_if_error=merged["stale_if_error"],
            key_headers=tuple(merged["key_headers"]),
            bypass_headers=tuple(merged["bypass_headers"]),
            per_consumer=merged["per_consumer"],
        )
