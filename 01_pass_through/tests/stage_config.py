"""This stage's gateway.toml dialect, rendered from a neutral `GatewaySpec`.

The contracts (common/contracts/), the benches and this stage's own tests describe the
gateway they want as a `GatewaySpec` (common/testing/specs.py) and call `render(spec)`;
a later stage whose config looks different rewrites only this file.
"""

from __future__ import annotations

import json

from common.testing.specs import GatewaySpec, RouteSpec, Unsupported


def _toml(value: object) -> str:
    # JSON's string, number and boolean literals are valid TOML too.
    return json.dumps(value)


def render(spec: GatewaySpec) -> str:
    if spec.pools:
        raise Unsupported("stage 01 has no upstream pools: a route's upstream is a URL")
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
        if not isinstance(route, RouteSpec):
            raise Unsupported(f"stage 01 has prefix routes only, not {route!r}")
        if route.encoded_slash != "reject":
            raise Unsupported("stage 01 forwards raw paths: it has no encoded_slash setting")
        lines += [
            "",
            "[[routes]]",
            f"prefix = {_toml(route.prefix)}",
            f"upstream = {_toml(route.upstream)}",
            f"strip_prefix = {_toml(route.strip_prefix)}",
            f"preserve_host = {_toml(route.preserve_host)}",
        ]
    return "\n".join(lines) + "\n"
