"""Stage 01's router: the longest prefix wins, on whole path segments, nothing normalised."""

from __future__ import annotations

import pytest
from gateway.config import RouteConfig
from gateway.routing import Route, Router

from common.contracts.proxy import broken, proxy_backend, proxy_gateway  # noqa: F401 (fixtures)
from common.contracts.wire import echoed, send
from common.testing.processes import Proc


def route(prefix: str, upstream: str = "http://127.0.0.1:9001", **flags: bool) -> RouteConfig:
    return RouteConfig(prefix=prefix, upstream=upstream, **flags)


ROUTER = Router.from_config(
    [
        route("/users"),
        route("/users/admin", "http://127.0.0.1:9009"),
        route("/orders", "http://127.0.0.1:9002"),
    ]
)


@pytest.mark.parametrize(
    ("target", "prefix"),
    [
        ("/users", "/users"),
        ("/users/", "/users"),
        ("/users/1", "/users"),
        ("/users?page=2", "/users"),
        ("/users/admin", "/users/admin"),  # longest prefix wins, whatever the order
        ("/users/admin/7?x=1", "/users/admin"),
        ("/users/administrator", "/users"),  # /users/admin stops at a segment boundary
        ("/orders/1", "/orders"),
        ("/usersX", None),  # not a segment boundary
        ("/user", None),
        ("/", None),
        ("/Users", None),  # paths are case-sensitive
        ("/%75sers", None),  # no percent-decoding: that is stage 02's job
    ],
)
def test_longest_prefix_on_segment_boundaries(target: str, prefix: str | None) -> None:
    match = ROUTER.match(target)
    assert (match.prefix if match else None) == prefix


def test_no_normalisation_a_dot_dot_path_stays_under_its_prefix() -> None:
    # Forwarded as is: the upstream, not the router, decides what /users/../admin means.
    match = ROUTER.match("/users/../admin")
    assert match is not None and match.prefix == "/users"
    assert match.request_target("/users/../admin") == "/users/../admin"


def test_a_root_route_catches_everything_else() -> None:
    router = Router.from_config([route("/"), route("/orders", "http://127.0.0.1:9002")])
    # the type ignore below: this path has a route: the match is not None
    assert router.match("/anything/at/all").prefix == "/"  # type: ignore[union-attr]
    # the type ignore below: this path has a route: the match is not None
    assert router.match("/orders/1").prefix == "/orders"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("prefix", "target", "sent"),
    [
        ("/api", "/api/users/1?x=%2F", "/users/1?x=%2F"),
        ("/api", "/api", "/"),
        ("/api", "/api?x=1", "/?x=1"),
        ("/api", "/api/api/x", "/api/x"),  # only the prefix itself, once
        ("/", "/users/1", "/users/1"),
    ],
)
def test_strip_prefix_removes_exactly_the_prefix(prefix: str, target: str, sent: str) -> None:
    stripped = Route.from_config(route(prefix, strip_prefix=True))
    assert stripped.request_target(target) == sent
    kept = Route.from_config(route(prefix))
    assert kept.request_target(target) == target


def test_an_upstream_base_path_is_prepended() -> None:
    based = Route.from_config(route("/api", "http://127.0.0.1:9001/v1/", strip_prefix=True))
    assert based.origin == "http://127.0.0.1:9001"
    assert based.request_target("/api/users?x=1") == "/v1/users?x=1"


# End to end: what the upstream receives for the paths stage 02 will normalise or refuse.
# Stage 01 forwards them exactly as the client sent them (the upstream decides what they
# mean); the routing contract, from stage 02 on, asserts the opposite.
@pytest.mark.parametrize("target", ["/echo/a%2Fb", "/echo//double//slash/./dot", "/echo/x/../y"])
def test_raw_paths_are_forwarded_unnormalised(proxy_gateway: Proc, target: str) -> None:  # noqa: F811
    assert echoed(send(proxy_gateway.port, "GET", target))["path"] == target
