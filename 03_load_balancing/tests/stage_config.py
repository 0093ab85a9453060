"""This stage's gateway.toml dialect, rendered from neutral route descriptions.

The proxy contract (common/contracts/proxy.py) and the bench describe routes as
`RouteSpec`s and call `render()`; the routing contract (common/contracts/routing.py) adds
pattern routes (`PathRoute`) and calls `render_routes()`; the LB contract
(common/contracts/lb.py), lb-bench and lb-chaos add upstream pools (`PoolSpec`s) and call
`render_pools()`. A later stage whose config looks different rewrites only this file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from common.contracts.routing import PathRoute
from common.testing.gateway import RouteSpec
from common.testing.pools import PoolSpec


def _toml(value: object) -> str:
    # JSON's string, number and boolean literals are valid TOML too.
    return json.dumps(value)


def render(
    routes: list[RouteSpec],
    *,
    connect_timeout: float = 2.0,
    read_timeout: float = 30.0,
    shutdown_timeout: float = 10.0,
    access_log: bool = False,
) -> str:
    lines = [
        "[server]",
        f"access_log = {_toml(access_log)}",
        f"shutdown_timeout = {_toml(float(shutdown_timeout))}",
        "",
        "[timeouts]",
        f"connect = {_toml(float(connect_timeout))}",
        f"read = {_toml(float(read_timeout))}",
    ]
    lines += _routes(routes)
    return "\n".join(lines) + "\n"


def render_pools(
    routes: Sequence[RouteSpec | PathRoute], pools: dict[str, PoolSpec], **options: object
) -> str:
    """Routes whose `upstream` may name one of `pools`, and an [upstreams.NAME] per pool.

    `options` are render()'s (timeouts, access_log).
    """
    lines = [render(list(routes), **options).rstrip("\n")]  # type: ignore[arg-type]
    for name, pool in pools.items():
        lines += ["", f"[upstreams.{name}]", f"strategy = {_toml(pool.strategy)}", "targets = ["]
        lines += [f"  {{ url = {_toml(t.url)}, weight = {t.weight} }}," for t in pool.targets]
        lines.append("]")
        for key in ("hash_key", "virtual_nodes", "bounded_load", "choices"):
            if (value := getattr(pool, key)) is not None:
                lines.append(f"{key} = {_toml(value)}")
        lines += ["", f"[upstreams.{name}.health]"]
        lines += [f"{key} = {_toml(value)}" for key, value in vars(pool.health).items()]
    return "\n".join(lines) + "\n"


def render_routes(routes: Sequence[RouteSpec | PathRoute], *, access_log: bool = False) -> str:
    """Prefix routes and pattern routes together, everything else at its default."""
    lines = ["[server]", f"access_log = {_toml(access_log)}", *_routes(routes)]
    return "\n".join(lines) + "\n"


def _routes(routes: Sequence[RouteSpec | PathRoute]) -> list[str]:
    lines = []
    for route in routes:
        lines += ["", "[[routes]]"]
        if isinstance(route, PathRoute):
            lines.append(f"path = {_toml(route.path)}")
            if route.methods is not None:
                lines.append(f"methods = {_toml(list(route.methods))}")
            lines.append(f"upstream = {_toml(route.upstream)}")
            if route.rewrite is not None:
                lines.append(f"rewrite = {_toml(route.rewrite)}")
        else:
            lines += [
                f"prefix = {_toml(route.prefix)}",
                f"upstream = {_toml(route.upstream)}",
                f"strip_prefix = {_toml(route.strip_prefix)}",
                f"preserve_host = {_toml(route.preserve_host)}",
            ]
    return lines
