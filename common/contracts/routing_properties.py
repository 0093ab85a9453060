"""The routing contract's property tests: the stage's trie against a brute-force matcher,
and its path normalisation against RFC 3986's own algorithm, on inputs hypothesis invents.

Unlike routing.py these import the stage's modules (`gateway.trie`, `gateway.pathsafety`):
end to end, a few hundred random route tables would cost a gateway start each. Every stage
from 02 on keeps both modules and their interfaces (`Router().add(pattern, methods,
value)`, `match(path, method)`, `normalise(target)`), so the properties travel forward.

The reference matcher is written independently of the trie (try every route, rank the
matches by specificity), and remove_dot_segments the way the RFC writes it (string
buffers), so a shared misunderstanding cannot make both sides agree.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from gateway.pathsafety import UnsafePath, normalise
from gateway.trie import Match, NotAllowed, Router
from hypothesis import given, settings
from hypothesis import strategies as st

METHODS = ["GET", "POST", "HEAD"]

# --- route sets without conflicts ----------------------------------------------------------
# A parameter is named after its position ({p0}, {p1}, ...), so two parameters at the same
# node always share a name; the only conflict left to avoid is one pattern with overlapping
# methods, which the strategy filters out by itself (not by asking the router).


@st.composite
def patterns(draw: st.DrawFn) -> str:
    length = draw(st.integers(1, 4))
    parts = []
    for k in range(length):
        last = k == length - 1
        choices = ["a", "b", f"{{p{k}}}"] + (["", "{rest:path}"] if last else [])
        parts.append(draw(st.sampled_from(choices)))
    return "/" + "/".join(parts)


method_sets = st.one_of(st.none(), st.sets(st.sampled_from(METHODS), min_size=1).map(frozenset))


@st.composite
def route_sets(draw: st.DrawFn) -> list[tuple[str, frozenset[str] | None]]:
    chosen: list[tuple[str, frozenset[str] | None]] = []
    for pattern, methods in draw(st.lists(st.tuples(patterns(), method_sets), max_size=12)):
        clash = any(
            p == pattern and (m is None or methods is None or m & methods) for p, m in chosen
        )
        if not clash:
            chosen.append((pattern, methods))
    return chosen


paths = st.lists(
    st.sampled_from(["a", "b", "c", "d", "", "%61", "x%20y"]), min_size=1, max_size=5
).map(lambda segs: "/" + "/".join(segs))


# --- the reference: every route, ranked ----------------------------------------------------


def _try(
    pattern: str, segs: list[str], raw: list[str]
) -> tuple[tuple[int, ...], dict[str, str]] | None:
    """(kinds, params) if `pattern` matches: kind 0 static, 1 param, 2 catch-all."""
    kinds: list[int] = []
    params: dict[str, str] = {}
    parts = pattern[1:].split("/")
    for k, part in enumerate(parts):
        if part.endswith(":path}"):  # the rest, at least one segment (maybe empty)
            if k >= len(segs):
                return None
            params[part[1:-6]] = "/".join(raw[k:])
            return tuple(kinds + [2]), params
        if k >= len(segs):
            return None
        if part.startswith("{"):
            if segs[k] == "":
                return None
            params[part[1:-1]] = raw[k]
            kinds.append(1)
        elif part == segs[k]:
            kinds.append(0)
        else:
            return None
    return (tuple(kinds), params) if len(parts) == len(segs) else None


def reference(
    routes: list[tuple[str, frozenset[str] | None]], path: str, method: str
) -> Match[str] | NotAllowed | None:
    raw = path[1:].split("/")
    segs = [unquote(s) for s in raw]
    matches = []
    for pattern, methods in routes:
        tried = _try(pattern, segs, raw)
        if tried:
            matches.append((tried[0], pattern, methods, tried[1]))
    matches.sort(key=lambda m: m[0])  # most specific first; ties share one pattern
    for _, pattern, _, params in matches:
        same = [m for k, p, m, _ in matches if p == pattern]
        if any(m is None or method in m for m in same) or (
            method == "HEAD" and any(m is not None and "GET" in m for m in same)
        ):
            return pattern, params, pattern
    allow: set[str] = set()
    for _, _, methods, _ in matches:
        allow |= (methods or set()) | ({"HEAD"} if methods and "GET" in methods else set())
    return NotAllowed(sorted(allow)) if matches else None


def instances(pattern: str) -> st.SearchStrategy[str]:
    """Paths that `pattern` itself matches, so that overlapping routes meet often."""
    fill = st.sampled_from(["a", "b", "c", "%61"])
    rest = st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=3).map("/".join)
    parts = [
        rest if p.endswith(":path}") else fill if p.startswith("{") else st.just(p)
        for p in pattern[1:].split("/")
    ]
    return st.tuples(*parts).map(lambda segs: "/" + "/".join(segs))


@settings(max_examples=500, deadline=None)
@given(route_sets(), st.data())
def test_trie_agrees_with_brute_force(
    routes: list[tuple[str, frozenset[str] | None]], data: st.DataObject
) -> None:
    router: Router[str] = Router()
    for pattern, methods in routes:
        router.add(pattern, methods, pattern)  # never raises: the set has no conflicts
    targets = [paths] + [instances(pattern) for pattern, _ in routes]
    requests = data.draw(
        st.lists(
            st.tuples(st.one_of(targets), st.sampled_from(METHODS + ["DELETE"])),
            min_size=1,
            max_size=15,
        )
    )
    for path, method in requests:
        assert router.match(path, method) == reference(routes, path, method), (path, method)


# --- normalise() against RFC 3986 §5.2.4, written as the RFC writes it ----------------------


class Climbed(Exception):
    pass


def remove_dot_segments(path: str) -> str:
    inp, out = path, ""
    while inp:
        if inp.startswith("/./") or inp == "/.":
            inp = "/" + inp[3:]
        elif inp.startswith("/../") or inp == "/..":
            inp = "/" + inp[4:]
            if not out:
                raise Climbed  # where the RFC would clamp, normalise() refuses
            out = out[: out.rfind("/")]
        else:
            # the type ignore below: this pattern matches every string (all parts optional)
            segment = re.match(r"/?[^/]*", inp).group()  # type: ignore[union-attr]
            out, inp = out + segment, inp[len(segment) :]
    return out


def _dots_decoded(path: str) -> str:
    return re.sub("%2[eE]", ".", path)


dotty_paths = st.lists(
    st.sampled_from([".", "..", "%2e", "%2E.", ".%2e", "a", "b%2eb", "", "...", "%41"]),
    min_size=1,
    max_size=7,
).map(lambda segs: "/" + "/".join(segs))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b%2Fc", "%2f", "d%2F%2Fe", "f%2Fg%2F", "%41"]), min_size=1))
def test_an_encoded_slash_never_adds_a_segment(segments: list[str]) -> None:
    """However many %2F a path holds, it has exactly the segments its literal slashes
    make, each byte for byte: an encoded slash is data, never a separator."""
    path = "/" + "/".join(segments)
    safe = normalise(path)
    assert safe.segments == segments
    assert safe.encoded_slash == ("%2f" in path.lower())
    assert [s.count("/") for s in safe.match_segments] == [s.lower().count("%2f") for s in segments]


@settings(max_examples=400, deadline=None)
@given(dotty_paths)
def test_normalise_agrees_with_rfc_3986(path: str) -> None:
    merged = re.sub("/+", "/", _dots_decoded(path))  # slashes merged first, as documented
    try:
        expected = remove_dot_segments(merged)
    except Climbed:
        try:
            normalise(path)
        except UnsafePath as refused:
            assert "above the root" in refused.reason
            return
        raise AssertionError(f"{path!r} climbs above the root but was accepted") from None
    safe = normalise(path)
    assert _dots_decoded(safe.path) == expected
    assert normalise(safe.path) == safe  # idempotent: nothing left for the origin to resolve
    assert set(safe.segments) <= set(path[1:].split("/")) | {""}  # escapes kept verbatim
