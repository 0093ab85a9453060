"""The trie on its own: priority, backtracking, 404/405, conflicts, catch-all, rewrite."""

from __future__ import annotations

import pytest
from gateway.patterns import PatternError, check_rewrite, prefix_patterns, rewrite
from gateway.trie import NotAllowed, RouteConflict, Router


def router(*routes: tuple[str, list[str] | None]) -> Router[str]:
    r: Router[str] = Router()
    for pattern, methods in routes:
        r.add(pattern, methods, pattern)
    return r


def hit(r: Router[str], path: str, method: str = "GET") -> tuple[str, dict[str, str], str]:
    """A match that must be a hit: (value, params, the pattern)."""
    found = r.match(path, method)
    assert isinstance(found, tuple), found
    return found


def winner(r: Router[str], path: str, method: str = "GET") -> str | None:
    found = r.match(path, method)
    assert not isinstance(found, NotAllowed), found
    return found[2] if isinstance(found, tuple) else None


# --- priority ------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, -1])
def test_static_beats_param_whatever_the_declaration_order(order: int) -> None:
    r = router(*[("/users/me", None), ("/users/{id}", None)][::order])
    assert r.match("/users/me", "GET") == ("/users/me", {}, "/users/me")
    assert r.match("/users/42", "GET") == ("/users/{id}", {"id": "42"}, "/users/{id}")


@pytest.mark.parametrize("order", [1, -1])
def test_param_beats_catch_all(order: int) -> None:
    r = router(*[("/files/{name}", None), ("/files/{rest:path}", None)][::order])
    assert winner(r, "/files/a") == "/files/{name}"
    assert winner(r, "/files/a/b") == "/files/{rest:path}"


def test_specificity_is_decided_segment_by_segment_from_the_left() -> None:
    # A static first segment outranks anything a parameter first segment offers later.
    r = router(("/a/{rest:path}", None), ("/{x}/b/c", None))
    assert winner(r, "/a/b/c") == "/a/{rest:path}"
    assert winner(r, "/z/b/c") == "/{x}/b/c"


# --- backtracking --------------------------------------------------------------------------


def test_a_failed_static_branch_backtracks_to_the_parameter() -> None:
    r = router(("/a/b/c", None), ("/a/{x}/d", None))
    assert r.match("/a/b/d", "GET") == ("/a/{x}/d", {"x": "b"}, "/a/{x}/d")
    assert winner(r, "/a/b/c") == "/a/b/c"


def test_backtracking_reaches_a_catch_all_several_levels_up() -> None:
    r = router(("/a/b/c/d", None), ("/a/{x}/c/e", None), ("/{rest:path}", None))
    assert winner(r, "/a/b/c/e") == "/a/{x}/c/e"
    assert r.match("/a/b/c/f", "GET") == ("/{rest:path}", {"rest": "a/b/c/f"}, "/{rest:path}")


def test_backtracking_through_a_compressed_edge() -> None:
    # /api/internal/billing is one edge; a miss in its middle still falls back to {svc}.
    r = router(("/api/internal/billing/health", None), ("/api/{svc}/{op}", None))
    assert winner(r, "/api/internal/billing/health") == "/api/internal/billing/health"
    assert r.match("/api/internal/status", "GET") == (
        "/api/{svc}/{op}",
        {"svc": "internal", "op": "status"},
        "/api/{svc}/{op}",
    )
    assert winner(r, "/api/internal/billing/x") is None  # billing is a hallway, not a node


def test_single_child_chains_become_one_edge() -> None:
    # White-box, because compression is invisible from outside by design: the lookup tree
    # for these two routes holds `internal` -> [billing, health] as one edge.
    r = router(("/api/internal/billing/health", None), ("/api/{svc}/{op}", None))
    r.compile()
    # the type ignore below: these static children exist: the test added them
    internal = r._root.static["api"].static["internal"]  # type: ignore[union-attr]
    assert (internal.edge, internal.span) == (["billing", "health"], 3)


# --- 404 and what a segment matches --------------------------------------------------------


def test_unknown_paths_are_none() -> None:
    r = router(("/users/{id}", None), ("/", None))
    assert winner(r, "/") == "/"
    for path in ("/users", "/users/1/x", "/orders/1", "users/1", ""):
        assert r.match(path, "GET") is None, path


def test_a_parameter_never_matches_an_empty_segment() -> None:
    r = router(("/users/{id}", None))
    assert r.match("/users/", "GET") is None


def test_trailing_slash_is_significant() -> None:
    r = router(("/users", None), ("/orders/", None))
    assert winner(r, "/users") == "/users" and r.match("/users/", "GET") is None
    assert winner(r, "/orders/") == "/orders/" and r.match("/orders", "GET") is None


def test_segments_compare_decoded_and_params_stay_raw() -> None:
    r = router(("/users/me", None), ("/users/{id}", None), ("/café", None))
    assert winner(r, "/users/%6De") == "/users/me"  # %6D is "m": the origin sees /users/me
    assert winner(r, "/caf%C3%A9") == "/café"
    assert r.match("/users/a%20b", "GET") == ("/users/{id}", {"id": "a%20b"}, "/users/{id}")


# --- catch-all -----------------------------------------------------------------------------


def test_catch_all_takes_the_rest_possibly_empty_but_needs_its_slash() -> None:
    r = router(("/static/{rest:path}", None))
    assert hit(r, "/static/css/a.css")[1] == {"rest": "css/a.css"}
    assert hit(r, "/static/")[1] == {"rest": ""}
    assert r.match("/static", "GET") is None


def test_stage_01_prefix_routes_are_two_patterns() -> None:
    assert prefix_patterns("/users") == ("/users", "/users/{rest:path}")
    assert prefix_patterns("/users/") == ("/users", "/users/{rest:path}")
    r = router(*[(p, None) for p in prefix_patterns("/users")])
    assert winner(r, "/users") == "/users"
    assert winner(r, "/users/1/orders") == "/users/{rest:path}"
    assert r.match("/usersx", "GET") is None  # a prefix of segments, not of characters


# --- methods: 405 and Allow ----------------------------------------------------------------


def test_wrong_method_is_405_with_allow_including_head() -> None:
    r = router(("/users/{id}", ["GET", "DELETE"]))
    assert r.match("/users/1", "POST") == NotAllowed(["DELETE", "GET", "HEAD"])
    assert winner(r, "/users/1", "HEAD") == "/users/{id}"  # HEAD rides on GET
    assert r.match("/users/1", "get") == NotAllowed(["DELETE", "GET", "HEAD"])  # case matters


def test_explicit_head_beats_the_get_fallback() -> None:
    r = router(("/x", ["GET"]))
    r.add("/x", ["HEAD"], "head")
    assert hit(r, "/x", "HEAD")[0] == "head"


def test_the_method_takes_part_in_matching_so_405_backtracks() -> None:
    r = router(("/users/me", ["GET"]), ("/users/{id}", ["PUT"]), ("/users/{rest:path}", ["POST"]))
    assert winner(r, "/users/me", "PUT") == "/users/{id}"
    assert winner(r, "/users/me", "POST") == "/users/{rest:path}"
    # Allow: every method some route on this path accepts, so each one would be routed.
    assert r.match("/users/me", "DELETE") == NotAllowed(["GET", "HEAD", "POST", "PUT"])
    assert r.match("/users/7", "DELETE") == NotAllowed(["POST", "PUT"])


def test_a_route_without_methods_accepts_any() -> None:
    r = router(("/any", None))
    assert winner(r, "/any", "PURGE") == "/any"


# --- conflicts: rejected at add, naming both routes ----------------------------------------


def test_same_pattern_and_method_twice() -> None:
    r = router(("/users/{id}", ["GET", "POST"]))
    with pytest.raises(
        RouteConflict,
        match=r"'GET /users/\{id\}' conflicts with "
        r"'GET,POST /users/\{id\}': both answer GET",
    ):
        r.add("/users/{id}", ["get"], "again")
    r.add("/users/{id}", ["DELETE"], "fine")  # disjoint methods share the pattern


def test_any_method_overlaps_everything() -> None:
    r = router(("/x", ["GET"]))
    with pytest.raises(RouteConflict, match=r"'/x' conflicts with 'GET /x': both answer GET"):
        r.add("/x", None, "any")
    with pytest.raises(RouteConflict, match=r"'/y' conflicts with '/y': both answer every method"):
        router(("/y", None)).add("/y", None, "again")


def test_a_conflict_says_which_route_was_there_first() -> None:
    r: Router[int] = Router()
    r.add("/a/{id}", None, 7)
    with pytest.raises(RouteConflict) as conflict:
        r.add("/a/{name}", None, 8)
    assert (conflict.value.route, conflict.value.other_route, conflict.value.other) == (
        "/a/{name}",
        "/a/{id}",
        7,
    )


def test_parameter_names_differ_at_the_same_position() -> None:
    r = router(("/a/{id}/x", None))
    with pytest.raises(RouteConflict, match=r"'/a/\{name\}' conflicts with '/a/\{id\}/x'"):
        r.add("/a/{name}", None, "other")


def test_two_catch_alls_at_one_node() -> None:
    r = router(("/s/{rest:path}", ["GET"]))
    with pytest.raises(
        RouteConflict,
        match=r"'/s/\{tail:path\}' conflicts with "
        r"'/s/\{rest:path\}'",
    ):
        r.add("/s/{tail:path}", ["POST"], "other")
    r.add("/s/{rest:path}", ["POST"], "same name, other method")


def test_a_rejected_route_leaves_the_router_unchanged() -> None:
    r = router(("/a/{id}", None))
    with pytest.raises(RouteConflict):
        r.add("/a/{name}/b/{other}", None, "x")
    r.add("/a/{id}/b/{other}", None, "y")  # not blamed on the route that was refused
    with pytest.raises(RouteConflict, match=r"conflicts with '/a/\{id\}/b/\{other\}'"):
        r.add("/a/{id}/b/{different}", None, "z")
    assert len(r) == 2


@pytest.mark.parametrize(
    "pattern, error",
    [
        ("users", "must start with '/'"),
        ("/a/{id", "static or one whole"),
        ("/a/x{id}", "static or one whole"),
        ("/a/{1d}", "identifier"),
        ("/a/{id}/{id}", "appears twice"),
        ("/a/{rest:path}/b", "must be the last"),
        ("/a/{id:int}", "unknown converter"),
        ("/a//b", "empty segment"),
        ("/a/../b", "dot-segments"),
        ("/caf%C3%A9", "write the segment decoded"),
        ("/a?b", "no '?'"),
        ("/a b", "spaces"),
        ("/a\\b", "no '?'"),
    ],
)
def test_bad_patterns_are_config_errors(pattern: str, error: str) -> None:
    with pytest.raises(PatternError, match=error):
        Router[int]().add(pattern, None, 1)


@pytest.mark.parametrize("methods", [[], ["*"], ["GE T"]])
def test_bad_method_lists(methods: list[str]) -> None:
    with pytest.raises(ValueError, match="HTTP method names"):
        Router[int]().add("/x", methods, 1)


# --- routes added after a lookup, and many of them ------------------------------------------


def test_adding_after_matching_rebuilds_the_lookup_tree() -> None:
    r = router(("/a", None))
    assert winner(r, "/a") == "/a"
    r.add("/b", None, "/b")
    assert winner(r, "/b") == "/b"


def test_many_routes_all_reachable() -> None:
    r: Router[int] = Router()
    for k in range(2000):
        r.add(f"/api/v{k % 3}/res{k}/{{id}}/sub{k % 7}", None, k)
    for k in range(0, 2000, 37):
        found = r.match(f"/api/v{k % 3}/res{k}/x{k}/sub{k % 7}", "GET")
        assert found == (k, {"id": f"x{k}"}, f"/api/v{k % 3}/res{k}/{{id}}/sub{k % 7}")


# --- rewrite -------------------------------------------------------------------------------


def test_rewrite_fills_raw_params() -> None:
    r = router(("/api/v1/users/{id}", None))
    found = r.match("/api/v1/users/a%2Bb%20c", "GET")
    assert isinstance(found, tuple)
    assert rewrite("/users/{id}", found[1]) == "/users/a%2Bb%20c"


def test_rewrite_a_catch_all() -> None:
    r = router(("/old/{rest:path}", None))
    found = r.match("/old/x/%7Ey", "GET")
    assert isinstance(found, tuple)
    assert rewrite("/new/{rest}", found[1]) == "/new/x/%7Ey"
    assert rewrite("/new/{rest:path}", {"rest": ""}) == "/new/"


def test_rewrite_templates_are_checked_against_their_pattern() -> None:
    check_rewrite("/users/{id}", "/api/v1/users/{id}")
    with pytest.raises(PatternError, match=r"uses \{uid\}, which '/api/\{id\}' does not capture"):
        check_rewrite("/users/{uid}", "/api/{id}")
    for bad in ("users/{id}", "/users/{id", "/users/{i d}", "/a//{id}", "/a/./{id}", "/{id}?x"):
        with pytest.raises(PatternError):
            check_rewrite(bad, "/api/{id}")
