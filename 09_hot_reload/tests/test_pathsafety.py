"""Path normalisation: every rule, and the attacks it stops end to end (normalise -> match ->
the path the upstream would receive)."""

from __future__ import annotations

import pytest
from gateway.pathsafety import SafePath, UnsafePath, normalise
from gateway.trie import Router


def forwarded(target: str) -> str:
    return normalise(target).target


# --- what passes untouched -----------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/users",
        "/users/",
        "/users/42?x=1",
        "/a.b/c..d/...",
        "/.well-known/x",
        "/caf%C3%A9/%41%7e",
        "/q?next=/../admin&x=%2F",
        "/a%20b/%252e%252e",
        "/a;b=c/d",
    ],
)
def test_paths_without_anything_to_resolve_are_forwarded_byte_for_byte(target: str) -> None:
    assert forwarded(target) == target


def test_segments_for_matching_are_decoded_and_raw_ones_are_kept() -> None:
    safe = normalise("/caf%C3%A9/%6De?q")
    assert safe == SafePath("/caf%C3%A9/%6De", "?q", ["caf%C3%A9", "%6De"], ["café", "me"])
    assert normalise("/").segments == [""]
    assert normalise("/a/").segments == ["a", ""]


def test_invalid_utf8_escapes_stay_distinct_when_decoded() -> None:
    assert normalise("/%FF").match_segments != normalise("/%FE").match_segments


# --- dot-segments (RFC 3986 §5.2.4) --------------------------------------------------------


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/a/./b", "/a/b"),
        ("/a/b/../c", "/a/c"),
        ("/a/b/.", "/a/b/"),  # a trailing dot-segment leaves the slash, as the RFC says
        ("/a/b/..", "/a/"),
        ("/a/..", "/"),
        ("/a/b/c/./../../g", "/a/g"),  # the RFC's own example
        ("/a/%2e/b", "/a/b"),
        ("/a/%2E%2e/b", "/b"),
        ("/a/.%2E/b", "/b"),
        ("/a/%2e./b", "/b"),
        ("/a/b/..?x=..", "/a/?x=.."),  # the query is the origin's business
    ],
)
def test_dot_segments_are_resolved_in_every_spelling(target: str, expected: str) -> None:
    assert forwarded(target) == expected


@pytest.mark.parametrize("target", ["/..", "/a/../..", "/%2e%2e/etc/passwd", "/a/./../../b"])
def test_dot_dot_above_the_root_is_refused(target: str) -> None:
    with pytest.raises(UnsafePath, match="above the root"):
        normalise(target)


# --- repeated slashes: merged, in matching and forwarding alike -----------------------------


@pytest.mark.parametrize(
    "target, expected",
    [
        ("//", "/"),
        ("//a///b", "/a/b"),
        ("/a//", "/a/"),
        ("/a//../b", "/b"),
        ("/a/.//b", "/a/b"),
    ],
)
def test_repeated_slashes_are_merged(target: str, expected: str) -> None:
    assert forwarded(target) == expected


# --- refused with a reason (400) -----------------------------------------------------------


@pytest.mark.parametrize(
    "target, reason",
    [
        ("users", "must start with '/'"),
        ("*", "must start with '/'"),
        ("http://evil/x", "must start with '/'"),
        ("", "must start with '/'"),
        ("/a\\b", "backslash"),
        ("/public\\..\\admin", "backslash"),
        ("/a%5Cb", "encoded backslash"),
        ("/a%5cb", "encoded backslash"),
        ("/admin%00.png", "encoded NUL"),
        ("/a\x00b", "control character"),
        ("/a\nb", "control character"),
        ("/a%zzb", "malformed percent-escape '%zz'"),
        ("/a%4", "malformed percent-escape '%4'"),
        ("/public/..;/admin", "dot-segment with parameters"),
        ("/public/%2e%2e;x=1/admin", "dot-segment with parameters"),
        ("/projects/a%2F..%2Fadmin", "dot-segment behind an encoded slash"),
        ("/projects/..%2fadmin", "dot-segment behind an encoded slash"),
        ("/projects/a%2F%2e%2E%2Fadmin", "dot-segment behind an encoded slash"),
        ("/projects/a%2F.", "dot-segment behind an encoded slash"),
    ],
)
def test_refused_with_a_precise_reason(target: str, reason: str) -> None:
    with pytest.raises(UnsafePath, match=reason) as refused:
        normalise(target)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("target", "segments"),
    [
        ("/projects/group%2Fname", ["projects", "group%2Fname"]),
        ("/projects/a%2fb%2Fc/members", ["projects", "a%2fb%2Fc", "members"]),
        ("/a%2F/b", ["a%2F", "b"]),
    ],
)
def test_an_encoded_slash_is_flagged_and_stays_inside_its_segment(
    target: str, segments: list[str]
) -> None:
    """normalise() does not refuse %2F: the router does, unless the route keeps it, and
    for that the slash must still be data, in the segment the client put it in."""
    safe = normalise(target)
    assert safe.encoded_slash is True
    assert safe.segments == segments
    assert safe.path == target  # byte for byte, case of the escape included
    assert normalise("/projects/group-name").encoded_slash is False


# --- the attacks, end to end ---------------------------------------------------------------


@pytest.fixture
def gateway_routes() -> Router[str]:
    r: Router[str] = Router()
    r.add("/public/{rest:path}", None, "public: no login")
    r.add("/admin/{rest:path}", None, "admin: login required")
    r.add("/admin", None, "admin: login required")
    return r


@pytest.mark.parametrize(
    "attack",
    [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/.%2E/admin",
        "/public/%2E./admin",
        "/public/./../admin",
        "/public//../admin/",
    ],
)
def test_traversal_is_routed_and_forwarded_as_the_path_it_resolves_to(
    attack: str, gateway_routes: Router[str]
) -> None:
    safe = normalise(attack)
    found = gateway_routes.match_segments(safe.match_segments, "GET", safe.segments)
    assert isinstance(found, tuple)
    assert found[0] == "admin: login required"  # not the public route
    assert safe.path.startswith("/admin")  # and the upstream is told the same thing


def test_an_encoded_letter_cannot_walk_around_a_static_route(gateway_routes: Router[str]) -> None:
    safe = normalise("/%61dmin/users")  # %61 is "a": the origin will read /admin/users
    found = gateway_routes.match_segments(safe.match_segments, "GET", safe.segments)
    assert isinstance(found, tuple) and found[0] == "admin: login required"
    assert safe.path == "/%61dmin/users"  # forwarded as sent: only dot-segments are rewritten


@pytest.mark.parametrize(
    "attack",
    ["/public/..%2Fadmin", "/public%2F..%2Fadmin", "/public/..%5Cadmin", "/public\\..\\admin"],
)
def test_separators_smuggled_in_escapes_or_backslashes_are_refused(attack: str) -> None:
    with pytest.raises(UnsafePath):
        normalise(attack)
