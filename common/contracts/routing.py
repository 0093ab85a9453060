"""The routing contract: which route a request reaches, and which path its upstream sees.

Written once, run by stage 02 and every stage after it. A stage runs it from
`tests/test_routing_contract.py`:

    from common.contracts.routing import *  # noqa: F403
    from common.contracts.routing_properties import *  # noqa: F403

and its conftest.py provides two fixtures:

- `stage_dir`: the stage folder (the gateway runs `python -m gateway` from there);
- `render`: `tests/stage_config.render(spec) -> str`, the stage's gateway.toml for a
  `GatewaySpec` of `RouteSpec`s (prefix routes) and `PathRoute`s (pattern routes), both
  in common/testing/specs.py.

Everything is checked end to end, through a live gateway, against the users backend's
`/echo`, which reports the path it received byte for byte. Each route sends its requests
to a different `/echo/...` path, so the echo also tells which route won. That is the point
of the path-safety tests: a gateway that routes `/public/../admin` as `/admin` but forwards
the original bytes has a hole, so they assert what the upstream *received*, not only the
status the client got.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.contracts.wire import Reply, assert_problem, echoed, send
from common.testing.gateway import Render, start_gateway
from common.testing.processes import Proc, start_backend
from common.testing.specs import GatewaySpec, PathRoute, RouteSpec

# --- the gateway under test ----------------------------------------------------------------


@pytest.fixture(scope="module")
def routing_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_backend("users", "a", log_dir=tmp_path_factory.mktemp("routing-backend"))
    yield proc
    proc.stop()


def contract_routes(backend: str) -> list[RouteSpec | PathRoute]:
    echo = backend + "/echo"  # the upstream's base path: every target lands on /echo/...
    return [
        # Priority: declared from least to most specific, so that a first-match router
        # (Starlette, Django, Envoy) would answer every one of these requests wrongly.
        PathRoute("/users/{rest:path}", echo, rewrite="/catch-all/{rest}"),
        PathRoute("/users/{id}", echo, rewrite="/param/{id}"),
        PathRoute("/users/me", echo, rewrite="/static/me"),
        # Backtracking: /a/b/d enters the static `b` branch, finds no `d` there, and must
        # come back to try `{x}` = "b".
        PathRoute("/a/b/c", echo, rewrite="/static/abc"),
        PathRoute("/a/{x}/d", echo, rewrite="/param/{x}/d"),
        # Methods.
        PathRoute("/items/{id}", echo, methods=("GET", "DELETE"), rewrite="/items/{id}"),
        PathRoute("/items/special", echo, methods=("POST",), rewrite="/items-special"),
        # Two parameters, swapped around by the rewrite.
        PathRoute("/api/v1/users/{id}/orders/{order}", echo, rewrite="/orders/{order}/of/{id}"),
        # Path safety: a public area and an admin area (in a later stage, the one with
        # authentication), forwarded whole to two different base paths.
        RouteSpec("/public", backend + "/echo/via-public"),
        RouteSpec("/admin", backend + "/echo/via-admin"),
        # Encoded slashes as data, on the routes that say so (and only on those): ids that
        # carry a "/" (`group%2Fname`), beside a static route it must never reach.
        PathRoute("/projects/{id}", echo, rewrite="/project/{id}", encoded_slash="keep"),
        PathRoute("/projects/{id}/members", echo, rewrite="/members/{id}", encoded_slash="keep"),
        PathRoute("/projects/group/name", echo, rewrite="/static/group-name"),
        RouteSpec("/files", echo, strip_prefix=True, encoded_slash="keep"),
    ]


@pytest.fixture(scope="module")
def routing_gateway(
    stage_dir: Path,
    render: Render,
    routing_backend: Proc,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    config = render(GatewaySpec(contract_routes(routing_backend.url)))
    proc = start_gateway(stage_dir, config, tmp_path_factory.mktemp("routing-gateway"))
    yield proc
    proc.stop()


def upstream_saw(gateway: Proc, target: str, method: str = "GET") -> tuple[str, str]:
    """(path, query) as the upstream received them."""
    echo = echoed(send(gateway.port, method, target))
    return echo["path"], echo["query"]


def allow(reply: Reply) -> set[str]:
    return {m.strip() for m in (reply.header("Allow") or "").split(",") if m.strip()}


# --- priority and backtracking --------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "received"),
    [
        ("/users/me", "/echo/static/me"),  # static beats {id}, declared after it
        ("/users/42", "/echo/param/42"),  # {id} beats the catch-all, declared before it
        ("/users/42/avatar", "/echo/catch-all/42/avatar"),  # two segments: only the rest
        ("/users/me/avatar", "/echo/catch-all/me/avatar"),
    ],
)
def test_the_most_specific_route_wins_whatever_the_declaration_order(
    routing_gateway: Proc, target: str, received: str
) -> None:
    assert upstream_saw(routing_gateway, target)[0] == received


def test_a_failed_static_branch_backtracks_to_a_parameter(routing_gateway: Proc) -> None:
    assert upstream_saw(routing_gateway, "/a/b/d")[0] == "/echo/param/b/d"
    assert upstream_saw(routing_gateway, "/a/b/c")[0] == "/echo/static/abc"


def test_segments_are_matched_percent_decoded(routing_gateway: Proc) -> None:
    # %6D is "m": every origin reads /users/%6De as /users/me, so the router must too.
    assert upstream_saw(routing_gateway, "/users/%6De")[0] == "/echo/static/me"


def test_captured_parameters_reach_the_upstream_raw_through_a_rewrite(
    routing_gateway: Proc,
) -> None:
    received = upstream_saw(routing_gateway, "/api/v1/users/a%20b+c/orders/%7E7?x=%2F&y=a+b")
    assert received == ("/echo/orders/%7E7/of/a%20b+c", "x=%2F&y=a+b")


# --- 404, 405 and HEAD ----------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/nowhere", "/a/b", "/users", "/publicX", "/items"])
def test_no_route_is_the_gateways_own_404(routing_gateway: Proc, target: str) -> None:
    problem = assert_problem(send(routing_gateway.port, "GET", target), 404)
    assert problem["type"].endswith("/no-route")


def test_a_method_no_route_takes_is_405_with_allow(routing_gateway: Proc) -> None:
    reply = send(routing_gateway.port, "POST", "/items/1", body=b"{}")
    problem = assert_problem(reply, 405)
    assert problem["type"].endswith("/method-not-allowed")
    assert allow(reply) == {"GET", "HEAD", "DELETE"}  # HEAD comes with GET


def test_allow_lists_every_method_some_route_on_the_path_takes(routing_gateway: Proc) -> None:
    # /items/special matches both item routes: each method in Allow would be routed.
    reply = send(routing_gateway.port, "PATCH", "/items/special", body=b"{}")
    assert_problem(reply, 405)
    assert allow(reply) == {"GET", "HEAD", "DELETE", "POST"}


def test_the_method_takes_part_in_matching(routing_gateway: Proc) -> None:
    # The static route only takes POST; DELETE falls back to /items/{id} = "special".
    assert upstream_saw(routing_gateway, "/items/special", "DELETE")[0] == "/echo/items/special"
    received = echoed(send(routing_gateway.port, "POST", "/items/special", body=b"{}"))
    assert received["path"] == "/echo/items-special"


def test_head_is_routed_wherever_get_is(routing_gateway: Proc) -> None:
    reply = send(routing_gateway.port, "HEAD", "/items/7")
    assert reply.status == 200 and reply.body == b""
    assert reply.header("Content-Type") == "application/json"  # the echo's, not a problem


# --- path safety: the path that is matched is the path that is forwarded --------------------


@pytest.mark.parametrize(
    "attack",
    [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/%2E%2e/admin/x",
        "/public/.%2E/admin/x",
        "/public/%2e./admin/x",
        "/public/./../admin/x",
        "/public/x/../../admin/x",
    ],
)
def test_dot_segments_are_routed_and_forwarded_as_what_they_resolve_to(
    routing_gateway: Proc, attack: str
) -> None:
    # Routed by the resolved path (the admin route, not the public one) AND forwarded as
    # it: the upstream has nothing left to resolve differently.
    assert upstream_saw(routing_gateway, attack) == ("/echo/via-admin/admin/x", "")


def test_dot_segments_inside_one_route_are_resolved_too(routing_gateway: Proc) -> None:
    received = upstream_saw(routing_gateway, "/public/a/./b/../c?next=../x")
    assert received == ("/echo/via-public/public/a/c", "next=../x")  # the query is untouched


@pytest.mark.parametrize(
    ("target", "received"),
    [
        ("//admin//x", "/echo/via-admin/admin/x"),
        ("/public//a///b", "/echo/via-public/public/a/b"),
        ("/public/a//../b", "/echo/via-public/public/b"),  # merged first, then resolved
    ],
)
def test_repeated_slashes_are_merged_in_matching_and_forwarding(
    routing_gateway: Proc, target: str, received: str
) -> None:
    assert upstream_saw(routing_gateway, target)[0] == received


def test_other_escapes_are_forwarded_byte_for_byte(routing_gateway: Proc) -> None:
    received = upstream_saw(routing_gateway, "/public/caf%C3%A9/%7Euser;v=1,2/a+b?q=%2F&r=%2e")
    assert received == ("/echo/via-public/public/caf%C3%A9/%7Euser;v=1,2/a+b", "q=%2F&r=%2e")


def test_an_encoded_letter_does_not_walk_around_a_route(routing_gateway: Proc) -> None:
    # %61 is "a": the origin reads /admin/x, so this is the admin route's request.
    assert upstream_saw(routing_gateway, "/%61dmin/x")[0] == "/echo/via-admin/%61dmin/x"


@pytest.mark.parametrize(
    "target",
    [
        "/public/a%2Fb",  # an encoded slash: one segment here, two behind a decoding origin
        "/public/a%2fb",
        "/public/..%2Fadmin",
        "/public\\..\\admin",  # a separator on Windows and to WHATWG URL parsers
        "/public/a%5Cb",
        "/public/a%5cb",
        "/public/a%00.png",  # truncates the path in any origin written in C
        "/../admin",  # above the root
        "/public/../../admin",
        "/public/..;/admin",  # Tomcat and Jetty strip ;params and then resolve the dots
        "/public/a%zz",  # a malformed escape: decoding it would be a guess
    ],
)
def test_ambiguous_paths_are_refused_with_400(routing_gateway: Proc, target: str) -> None:
    problem = assert_problem(send(routing_gateway.port, "GET", target), 400)
    assert problem["type"].endswith("/bad-path")


# --- encoded slashes, where a route keeps them ----------------------------------------------


@pytest.mark.parametrize(
    ("target", "received"),
    [
        ("/projects/group%2Fname", "/echo/project/group%2Fname"),
        ("/projects/group%2fname/members", "/echo/members/group%2fname"),
        ("/projects/a%2Fb%2Fc", "/echo/project/a%2Fb%2Fc"),
        ("/files/dir%2Ffile.txt", "/echo/dir%2Ffile.txt"),
        ("/files/a/b%2Fc/d", "/echo/a/b%2Fc/d"),
    ],
)
def test_a_kept_encoded_slash_is_data_forwarded_byte_for_byte(
    routing_gateway: Proc, target: str, received: str
) -> None:
    assert upstream_saw(routing_gateway, target)[0] == received


def test_a_kept_encoded_slash_never_makes_a_new_segment(routing_gateway: Proc) -> None:
    # Decoded, `group%2Fname` spells the static route's `group/name`: still one segment,
    # the parameter's. A router that decoded before splitting would pick the static route.
    assert upstream_saw(routing_gateway, "/projects/group%2Fname")[0] == (
        "/echo/project/group%2Fname"
    )
    assert upstream_saw(routing_gateway, "/projects/group/name")[0] == "/echo/static/group-name"


@pytest.mark.parametrize(
    "target",
    [
        "/projects/a%2F..%2Fadmin",  # `a/../admin` to an origin that decodes first
        "/projects/..%2Fadmin",
        "/files/x%2F%2e%2e%2Fy",
        "/projects/group%5Cname",  # backslash and NUL stay refused everywhere
        "/projects/a%00b",
    ],
)
def test_a_kept_encoded_slash_cannot_hide_a_dot_segment(routing_gateway: Proc, target: str) -> None:
    problem = assert_problem(send(routing_gateway.port, "GET", target), 400)
    assert problem["type"].endswith("/bad-path")


def test_an_encoded_slash_stays_refused_on_every_other_route(routing_gateway: Proc) -> None:
    for target in ("/users/a%2Fb", "/public/a%2Fb", "/nosuchroute/a%2Fb"):
        problem = assert_problem(send(routing_gateway.port, "GET", target), 400)
        assert "encoded slash" in problem["detail"], target


# --- conflicts: refused at start-up, naming both routes -------------------------------------


def start_up_error(stage_dir: Path, config: str, tmp: Path) -> str:
    """What the gateway said when it refused to start; fails the test if it started."""
    try:
        proc = start_gateway(stage_dir, config, tmp)
    except RuntimeError as refused:  # it exited before its health check answered
        return str(refused)
    proc.stop()
    pytest.fail("the gateway started with two conflicting routes")


def test_the_same_pattern_and_method_twice_is_refused_at_start_up(
    stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    upstream = "http://127.0.0.1:9"  # never contacted
    routes = [
        PathRoute("/things/{id}", upstream, methods=("GET", "PUT")),
        PathRoute("/things/{id}", upstream, methods=("DELETE",)),  # fine: other methods
        PathRoute("/things/{id}", upstream, methods=("GET",)),
    ]
    error = start_up_error(stage_dir, render(GatewaySpec(routes)), tmp_path)
    assert "exited with code 2" in error
    assert error.count("/things/{id}") >= 2, error  # both routes named


def test_one_pattern_may_hold_routes_for_other_methods(
    stage_dir: Path,
    render: Render,
    routing_backend: Proc,
    tmp_path: Path,
) -> None:
    echo = routing_backend.url + "/echo"
    routes = [
        PathRoute("/things/{id}", echo, methods=("GET", "PUT"), rewrite="/read-write/{id}"),
        PathRoute("/things/{id}", echo, methods=("DELETE",), rewrite="/delete/{id}"),
    ]
    proc = start_gateway(stage_dir, render(GatewaySpec(routes)), tmp_path)
    try:
        assert upstream_saw(proc, "/things/1", "PUT")[0] == "/echo/read-write/1"
        assert upstream_saw(proc, "/things/1", "DELETE")[0] == "/echo/delete/1"
        assert allow(send(proc.port, "POST", "/things/1", body=b"")) == {
            "GET",
            "HEAD",
            "PUT",
            "DELETE",
        }
    finally:
        proc.stop()


def test_two_parameter_names_at_one_position_are_refused_at_start_up(
    stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    upstream = "http://127.0.0.1:9"
    routes = [PathRoute("/a/{id}/x", upstream), PathRoute("/a/{name}", upstream)]
    error = start_up_error(stage_dir, render(GatewaySpec(routes)), tmp_path)
    assert "exited with code 2" in error
    assert "/a/{id}/x" in error and "/a/{name}" in error, error
