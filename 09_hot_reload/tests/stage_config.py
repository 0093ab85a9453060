"""This stage's gateway.toml dialect, rendered from a neutral `GatewaySpec`.

The contracts (common/contracts/), the benches and this stage's own tests describe the
gateway they want as a `GatewaySpec` (common/testing/specs.py) and call `render(spec)`;
stage 02 added pattern routes (`PathRoute`), stage 03 upstream pools (`PoolSpec`),
stage 04 the channel: `ChannelSpec` as [timeouts] and [retries] (every route's defaults)
or a route's own tables, bulkheads, the retry budget, and passive health written as the
circuit breaker it became; stage 05 the cache; stage 06 [auth], its issuers, the
consumers and a route's `auth` table; stage 07 [rate_limit] and a route's `rate_limit`
table; this stage [observability] and its tracing. A later stage whose config looks
different rewrites only this file.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from common.testing.specs import (
    AuthSpec,
    CacheSpec,
    ChannelSpec,
    GatewaySpec,
    PathRoute,
    PoolSpec,
    RateLimitSpec,
    RouteAuthSpec,
    RouteLimitSpec,
    RouteSpec,
)


def _toml(value: object) -> str:
    # JSON's string, number and boolean literals are valid TOML too.
    return json.dumps(value)


def _inline(table: dict[str, object]) -> str:
    return "{ " + ", ".join(f"{key} = {_toml(value)}" for key, value in table.items()) + " }"


def render(spec: GatewaySpec) -> str:
    channel = spec.channel
    lines = [
        "[server]",
        f"access_log = {_toml(spec.access_log)}",
        f"shutdown_timeout = {_toml(float(spec.shutdown_timeout))}",
        f"header_timeout = {_toml(float(spec.header_timeout))}",
        f"max_header_bytes = {_toml(spec.max_header_bytes)}",
        f"max_in_flight = {_toml(spec.max_in_flight)}",
        "",
        "[timeouts]",
        f"connect = {_toml(float(spec.connect_timeout))}",
        f"read = {_toml(float(spec.read_timeout))}",
        *(f"{key} = {_toml(value)}" for key, value in _timeouts(channel).items()),
        "",
        "[retries]",
        *(f"{key} = {_toml(value)}" for key, value in _retries(channel).items()),
        "",
        "[retry_budget]",
        f"ratio = {_toml(float(spec.retry_budget[0]))}",
        f"min_per_second = {_toml(float(spec.retry_budget[1]))}",
    ]
    if spec.cache is not None:
        lines += ["", "[cache]", *_cache(spec.cache)]
    # A pool that hashes on a header the gateway removes (X-User-ID is on its default
    # list) must keep it, as gateway.toml does, or the config is refused.
    keys = [pool.hash_key or "" for pool in spec.pools.values()]
    hashed = [key.removeprefix("header:") for key in keys if key.startswith("header:")]
    keep = [name for name in hashed if _stripped(name)]
    if spec.auth is not None or keep:
        lines += _auth(spec.auth or AuthSpec(), keep)
    if spec.rate_limit is not None:
        lines += _rate_limit(spec.rate_limit)
    if spec.observability is not None:
        seen = spec.observability
        lines += [
            "",
            "[observability]",
            f"access_log_format = {_toml(seen.access_log_format)}",
            f"consumer_label = {_toml(seen.consumer_label)}",
            "",
            "[observability.tracing]",
            f"sample_ratio = {_toml(float(seen.sample_ratio))}",
            f"otlp_endpoint = {_toml(seen.otlp_endpoint)}",
            f"export_delay = {_toml(float(seen.export_delay))}",
        ]
    for route in spec.routes:
        lines += ["", "[[routes]]", *_route(route)]
    for name, pool in spec.pools.items():
        lines += ["", f"[upstreams.{name}]", *_pool(pool)]
        health = pool.health
        lines += [
            "",
            f"[upstreams.{name}.health]",
            f"active = {_toml(health.active)}",
            f"path = {_toml(health.path)}",
            f"interval = {_toml(float(health.interval))}",
            f"timeout = {_toml(float(health.timeout))}",
            f"healthy_threshold = {_toml(health.healthy_threshold)}",
            f"unhealthy_threshold = {_toml(health.unhealthy_threshold)}",
            "",
            # Stage 03's passive health is this stage's circuit breaker (balancing/breaker.py):
            # an ejection is an opening, and its times are the breaker's.
            f"[upstreams.{name}.breaker]",
            f"consecutive_failures = {_toml(health.consecutive_failures)}",
            f"failure_rate = {_toml(float(pool.failure_rate))}",
            f"window = {_toml(float(pool.failure_window))}",
            f"min_requests = {_toml(pool.failure_min_requests)}",
            f"open_for = {_toml(float(health.base_ejection_time))}",
            f"max_open_for = {_toml(float(health.max_ejection_time))}",
            f"max_open_percent = {_toml(health.max_ejection_percent)}",
            "",
            f"[upstreams.{name}.bulkhead]",
            f"max_concurrent = {_toml(pool.bulkhead.max_concurrent)}",
            f"max_queue = {_toml(pool.bulkhead.max_queue)}",
            f"queue_timeout = {_toml(float(pool.bulkhead.queue_timeout))}",
        ]
    return "\n".join(lines) + "\n"


def _timeouts(channel: ChannelSpec) -> dict[str, object]:
    """The channel's keys of [timeouts] that the spec sets. A deadline it leaves at None
    stays at the stage's default (30 s): TOML has no null, and no test waits that long."""
    values: dict[str, object] = {}
    if channel.try_timeout is not None:
        values["try"] = float(channel.try_timeout)
    if channel.deadline is not None:
        values["deadline"] = float(channel.deadline)
    if channel.websocket_idle is not None:
        values["websocket_idle"] = float(channel.websocket_idle)
    return values


def _retries(channel: ChannelSpec) -> dict[str, object]:
    values: dict[str, object] = {"attempts": channel.attempts}
    if channel.retry_on is not None:
        values["on"] = list(channel.retry_on)
    if channel.backoff_base is not None:
        values["backoff_base"] = float(channel.backoff_base)
        values["backoff_cap"] = max(0.25, 10 * float(channel.backoff_base))
    return values


def _route(route: RouteSpec | PathRoute) -> list[str]:
    if isinstance(route, PathRoute):
        lines = [f"path = {_toml(route.path)}"]
        if route.methods is not None:
            lines.append(f"methods = {_toml(list(route.methods))}")
        lines.append(f"upstream = {_toml(route.upstream)}")
        if route.rewrite is not None:
            lines.append(f"rewrite = {_toml(route.rewrite)}")
    else:
        lines = [
            f"prefix = {_toml(route.prefix)}",
            f"upstream = {_toml(route.upstream)}",
            f"strip_prefix = {_toml(route.strip_prefix)}",
            f"preserve_host = {_toml(route.preserve_host)}",
        ]
    lines.append(f"encoded_slash = {_toml(route.encoded_slash)}")
    if (channel := route.channel) is not None:
        if timeouts := _timeouts(channel):
            lines.append(f"timeouts = {_inline(timeouts)}")
        lines.append(f"retries = {_inline(_retries(channel))}")
        if channel.hedge_after is not None:
            lines.append(f"hedge = {_inline({'after': channel.hedge_after})}")
        if channel.websocket:
            lines.append("websocket = true")
    if route.auth is not None:
        lines += _route_auth(route.auth)
    if route.rate_limit is not None:
        lines.append(f"rate_limit = {_route_limits(route.rate_limit)}")
    return lines


def _route_limits(spec: RouteLimitSpec) -> str:
    limits = []
    for limit in spec.limits:
        table: dict[str, object] = {
            "name": limit.name,
            "requests": limit.requests,
            "window": float(limit.window),
            "algorithm": limit.algorithm,
        }
        text = _inline(table)
        if limit.plans:
            text = text[:-2] + ", plans = " + _inline(dict(limit.plans)) + " }"
        limits.append(text)
    parts = [f"limits = [{', '.join(limits)}]"]
    for key in ("concurrency", "key", "failure_mode"):
        if (value := getattr(spec, key)) is not None:
            parts.append(f"{key} = {_toml(value)}")
    return "{ " + ", ".join(parts) + " }"


def _rate_limit(spec: RateLimitSpec) -> list[str]:
    lines = ["", "[rate_limit]", f"trusted_proxies = {_toml(list(spec.trusted_proxies))}"]
    for key in ("store", "failure_mode", "fallback"):
        if (value := getattr(spec, key)) is not None:
            lines.append(f"{key} = {_toml(value)}")
    redis = {"url": spec.redis_url, "timeout": spec.redis_timeout}
    if any(v is not None for v in redis.values()):
        lines += ["", "[rate_limit.redis]"]
        lines += [f"{k} = {_toml(v)}" for k, v in redis.items() if v is not None]
    breaker = {"failures": spec.breaker_failures, "open_for": spec.breaker_open_for}
    if any(v is not None for v in breaker.values()):
        lines += ["", "[rate_limit.breaker]"]
        lines += [f"{k} = {_toml(v)}" for k, v in breaker.items() if v is not None]
    return lines


def _route_auth(auth: RouteAuthSpec) -> list[str]:
    table: dict[str, object] = {"mode": auth.mode, "scopes": list(auth.scopes),
                                "forward_credential": auth.forward_credential}  # fmt: skip
    if auth.issuers is not None:
        table["issuers"] = list(auth.issuers)
    for key in ("key_header", "key_query"):
        if (value := getattr(auth, key)) is not None:
            table[key] = value
    lines = [f"auth = {_inline(table)}"]
    if auth.per_consumer_cache:
        lines.append("cache = { per_consumer = true }")
    return lines


def _stripped(name: str) -> bool:
    """Whether this stage removes the header `name` from every request by default. Read
    from the stage's own gateway/auth/identity.py by path: the renderer also runs in
    processes (benches, the cache suite's runner) where `gateway` is not importable."""
    name_in_modules = f"_stage_identity_{id(_stripped)}"
    module = sys.modules.get(name_in_modules)
    if module is None:
        path = Path(__file__).resolve().parents[1] / "gateway" / "auth" / "identity.py"
        spec = importlib.util.spec_from_file_location(name_in_modules, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name_in_modules] = module  # its dataclasses look themselves up there
        spec.loader.exec_module(module)
    return bool(module.Spoofable()(name))


def _auth(auth: AuthSpec, keep: list[str]) -> list[str]:
    lines = ["", "[auth]"]
    for key in ("verified_cache", "max_token_bytes"):
        if (value := getattr(auth, key)) is not None:
            lines.append(f"{key} = {_toml(value)}")
    lines.append(f"strip_headers = {_toml(list(auth.strip_headers))}")
    lines.append(f"keep_headers = {_toml(sorted({*auth.keep_headers, *keep}))}")
    for issuer in auth.issuers:
        lines += ["", "[[auth.issuers]]", f"name = {_toml(issuer.name)}",
                  f"issuer = {_toml(issuer.issuer)}",
                  f"audiences = {_toml(list(issuer.audiences))}",
                  f"algorithms = {_toml(list(issuer.algorithms))}"]  # fmt: skip
        if issuer.jwks_url is not None:
            lines.append(f"jwks_url = {_toml(issuer.jwks_url)}")
        if issuer.discovery:
            lines.append("discovery = true")
        if issuer.secret is not None:
            lines.append(f'keys = [{{ kid = "hmac", secret = {_toml(issuer.secret)} }}]')
        if issuer.leeway is not None:
            lines.append(f"leeway = {_toml(float(issuer.leeway))}")
        if issuer.required_claims is not None:
            lines.append(f"required_claims = {_toml(list(issuer.required_claims))}")
        if issuer.refetch_interval is not None:
            lines.append(f"refetch_interval = {_toml(float(issuer.refetch_interval))}")
    for consumer in auth.consumers:
        keys = ", ".join(
            [_inline({"id": i, "hash": h}) for i, h in consumer.api_keys]
            + [_inline({"id": i, "hash": h, "imported": True}) for i, h in consumer.imported_keys]
        )
        lines += ["", "[[consumers]]", f"id = {_toml(consumer.id)}",
                  f"name = {_toml(consumer.name)}", f"scopes = {_toml(list(consumer.scopes))}",
                  f"groups = {_toml(list(consumer.groups))}",
                  f"subjects = {_toml(list(consumer.subjects))}",
                  f"plan = {_toml(consumer.plan)}", f"api_keys = [{keys}]"]  # fmt: skip
    return lines


def _pool(pool: PoolSpec) -> list[str]:
    lines = [f"strategy = {_toml(pool.strategy)}", "targets = ["]
    lines += [f"  {{ url = {_toml(t.url)}, weight = {t.weight} }}," for t in pool.targets]
    lines.append("]")
    for key in ("hash_key", "virtual_nodes", "bounded_load", "choices"):
        if (value := getattr(pool, key)) is not None:
            lines.append(f"{key} = {_toml(value)}")
    return lines


def _cache(cache: CacheSpec) -> list[str]:
    lines = [f"enabled = {_toml(cache.enabled)}", f"store = {_toml(cache.store)}"]
    for key in ("max_bytes", "max_object_bytes", "lock_timeout", "stale_if_error", "default_ttl"):
        value = getattr(cache, key)
        if value is not None:
            lines.append(f"{key} = {_toml(value)}")
    if cache.key_headers is not None:
        lines.append(f"key_headers = {_toml(list(cache.key_headers))}")
    if cache.redis_url is not None:
        lines += ["", "[cache.redis]", f"url = {_toml(cache.redis_url)}"]
    return lines
