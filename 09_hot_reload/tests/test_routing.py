"""Stage 02's routing layer: config routes in the trie, and the path each upstream receives.

The trie alone is tested in test_trie.py, the normaliser in test_pathsafety.py, and both
end to end by the routing contract; this is the glue between them and gateway.toml.
"""

from __future__ import annotations

from typing import Any

import pytest
from gateway.config import RouteConfig
from gateway.pathsafety import normalise
from gateway.routing import Route, Router
from gateway.trie import NotAllowed


def prefix(value: str, upstream: str = "http://users", **flags: Any) -> RouteConfig:
    return RouteConfig(prefix=value, upstream=upstream, **flags)


def path(value: str, upstream: str, **keys: object) -> RouteConfig:
    # the type ignore below: a route's keys, as a test writes them
    return RouteConfig(path=value, upstream=upstream, **keys)  # type: ignore[arg-type]


def sent(router: Router, target: str, method: str = "GET") -> tuple[str, str] | None:
    """(the chosen route's upstream, the request-target it receives), or None for a 404."""
    safe = normalise(target)
    found = router.match(safe, method)
    assert not isinstance(found, NotAllowed), found
    if found is None:
        return None
    route, params, _ = found
    return route.upstream, route.request_target(safe, params)


ROUTER = Router.from_config(
    [
        prefix("/users"),
        prefix("/users/admin", "http://admin"),
        prefix("/orders", "http://orders"),
        path("/users/{id}/avatar", "http://avatars", rewrite="/img/{id}.png"),
    ]
)


@pytest.mark.parametrize(
    ("target", "upstream"),
    [
        ("/users", "http://users"),
        ("/users/", "http://users"),
        ("/users/1", "http://users"),
        ("/users?page=2", "http://users"),
        ("/users/admin", "http://admin"),  # more specific, whatever the order
        ("/users/admin/7?x=1", "http://admin"),
        ("/users/administrator", "http://users"),  # a prefix of segments, not of characters
        ("/users/1/avatar", "http://avatars"),  # a pattern below a prefix route beats it
        ("/users/1/avatar/x", "http://users"),
        ("/orders/1", "http://orders"),
        ("/usersX", None),
        ("/user", None),
        ("/", None),
        ("/Users", None),  # paths are case-sensitive
    ],
)
def test_prefix_routes_keep_stage_01s_meaning(target: str, upstream: str | None) -> None:
    found = sent(ROUTER, target)
    assert (found[0] if found else None) == upstream


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # Stage 01 sent this to the users service as it was; here it is /orders/1.
        ("/users/../orders/1", ("http://orders", "/orders/1")),
        ("/users/%2e%2e/orders/1?x=..", ("http://orders", "/orders/1?x=..")),
        ("//users//1", ("http://users", "/users/1")),
        ("/users/./1/", ("http://users", "/users/1/")),
        # Decoded for matching, forwarded as sent: 01 had no route for /%75sers at all.
        ("/%75sers/1", ("http://users", "/%75sers/1")),
        ("/users/../admin", None),
    ],
)
def test_the_normalised_path_is_matched_and_forwarded(
    target: str, expected: tuple[str, str] | None
) -> None:
    assert sent(ROUTER, target) == expected


def test_a_root_route_catches_everything_else() -> None:
    router = Router.from_config([prefix("/", "http://root"), prefix("/orders", "http://orders")])
    assert sent(router, "/anything/at/all") == ("http://root", "/anything/at/all")
    assert sent(router, "/") == ("http://root", "/")
    assert sent(router, "/orders/1") == ("http://orders", "/orders/1")


@pytest.mark.parametrize(
    ("route_prefix", "target", "stripped"),
    [
        ("/api", "/api/users/1?x=%2F", "/users/1?x=%2F"),
        ("/api", "/api", "/"),
        ("/api", "/api/", "/"),
        ("/api", "/api?x=1", "/?x=1"),
        ("/api", "/api/api/x", "/api/x"),  # only the prefix itself, once
        ("/api", "/api/a/../b", "/b"),  # stripped from the normalised path
        ("/", "/users/1", "/users/1"),
    ],
)
def test_strip_prefix_removes_exactly_the_prefix(
    route_prefix: str, target: str, stripped: str
) -> None:
    router = Router.from_config([prefix(route_prefix, "http://u", strip_prefix=True)])
    assert sent(router, target) == ("http://u", stripped)
    kept = Router.from_config([prefix(route_prefix, "http://u")])
    assert sent(kept, target) == ("http://u", normalise(target).target)


def test_an_upstream_base_path_is_prepended() -> None:
    based = Route.from_config(prefix("/api", "http://127.0.0.1:9001/v1/", strip_prefix=True))
    assert based.base_path == "/v1"  # the server itself comes from the pool's lease
    router = Router([based])
    assert sent(router, "/api/users?x=1") == ("http://127.0.0.1:9001/v1", "/v1/users?x=1")


def test_a_rewrite_inserts_the_raw_parameters_after_the_base_path() -> None:
    router = Router.from_config(
        [path("/api/v1/users/{id}", "http://h/base", rewrite="/users/{id}", methods=["GET"])]
    )
    assert sent(router, "/api/v1/users/a%20b?q=1") == ("http://h/base", "/base/users/a%20b?q=1")
    assert sent(router, "/api/v1/users/a/../b") == ("http://h/base", "/base/users/b")


def test_a_path_route_without_rewrite_forwards_the_normalised_path() -> None:
    router = Router.from_config([path("/files/{rest:path}", "http://f")])
    assert sent(router, "/files/a/./b//c") == ("http://f", "/files/a/b/c")


def test_methods_narrow_a_route_and_the_rest_is_405() -> None:
    router = Router.from_config(
        [prefix("/orders", "http://orders"), path("/users/{id}", "http://u", methods=["GET"])]
    )
    assert router.match(normalise("/users/1"), "DELETE") == NotAllowed(["GET", "HEAD"])
    head = router.match(normalise("/users/1"), "HEAD")
    assert isinstance(head, tuple) and head[0].upstream == "http://u"
    assert isinstance(router.match(normalise("/orders/1"), "PURGE"), tuple)  # every method
    assert len(router) == 2
