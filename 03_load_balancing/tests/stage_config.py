"""This stage's gateway.toml dialect, rendered from a neutral `GatewaySpec`.

The contracts (common/contracts/), the benches and this stage's own tests describe the
gateway they want as a `GatewaySpec` (common/testing/specs.py) and call `render(spec)`;
stage 02 added pattern routes (`PathRoute`), this stage adds upstream pools (`PoolSpec`):
a route's `upstream` may name one, and its passive health is written as the circuit
breaker it is here. A later stage whose config looks different rewrites only this file.
"""

from __future__ import annotations

import json

from common.testing.specs import GatewaySpec, PathRoute, PoolSpec, RouteSpec


def _toml(value: object) -> str:
    # JSON's string, number and boolean literals are valid TOML too.
    return json.dumps(value)


def render(spec: GatewaySpec) -> str:
    lines = [
        "[server]",
        f"access_log = {_toml(spec.access_log)}",
        f"shutdown_timeout = {_toml(float(spec.shutdown_timeout))}",
        f"header_timeout = {_toml(float(spec.header_timeout))}",
        f"max_header_bytes = {_toml(spec.max_header_bytes)}",
        "",
        "[timeouts]",
        f"connect = {_toml(float(spec.connect_timeout))}",
        f"read = {_toml(float(spec.read_timeout))}",
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
            # The spec's passive health is this stage's circuit breaker (balancing/breaker.py):
            # an ejection is an opening, and its times are the breaker's.
            f"[upstreams.{name}.breaker]",
            f"consecutive_failures = {_toml(health.consecutive_failures)}",
            f"failure_rate = {_toml(float(pool.failure_rate))}",
            f"window = {_toml(float(pool.failure_window))}",
            f"min_requests = {_toml(pool.failure_min_requests)}",
            f"open_for = {_toml(float(health.base_ejection_time))}",
            f"max_open_for = {_toml(float(health.max_ejection_time))}",
            f"max_open_percent = {_toml(health.max_ejection_percent)}",
        ]
    return "\n".join(lines) + "\n"


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
    return [*lines, f"encoded_slash = {_toml(route.encoded_slash)}"]


def _pool(pool: PoolSpec) -> list[str]:
    lines = [f"strategy = {_toml(pool.strategy)}", "targets = ["]
    lines += [f"  {{ url = {_toml(t.url)}, weight = {t.weight} }}," for t in pool.targets]
    lines.append("]")
    for key in ("hash_key", "virtual_nodes", "bounded_load", "choices"):
        if (value := getattr(pool, key)) is not None:
            lines.append(f"{key} = {_toml(value)}")
    return lines
