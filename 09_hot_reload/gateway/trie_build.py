"""Building the trie: conflicts are caught while routes are added, and the lookup tree is
compiled (radix-compressed) from the checked one.

Two trees, because they serve two masters. The build tree is plain (one node per pattern
segment) and remembers which route created each wildcard, so a conflict message can name
both routes. The lookup tree is built from it in one pass: nodes with only what a lookup
needs, in __slots__, and single-child chains collapsed into one edge. A production router
(httprouter, Envoy's route table) also builds once at start-up and then only reads, which
is what makes a lock-free hot path possible; a config reload builds a new tree and swaps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from gateway.headers import TOKEN
from gateway.patterns import CATCH_ALL, PARAM, STATIC, Segment

V = TypeVar("V")
ANY = "*"  # the leaf key of a route that accepts every method


class RouteConflict(ValueError):
    """Two routes that could never both be reached. The message names both; the parts are
    kept too, so gateway.toml's errors can say which `[[routes]]` entry `other` came from."""

    def __init__(self, route: str, other_route: str, reason: str, other: object) -> None:
        super().__init__(f"route {route!r} conflicts with {other_route!r}: {reason}")
        self.route, self.other_route, self.reason = route, other_route, reason
        self.other = other  # the value of the route that was there first


class Route(Generic[V]):
    __slots__ = ("pattern", "methods", "value", "params", "catch_all")

    def __init__(
        self, pattern: str, methods: frozenset[str] | None, value: V, segments: Sequence[Segment]
    ) -> None:
        self.pattern, self.methods, self.value = pattern, methods, value
        # Where each parameter sits in the path is fixed by the pattern, so the lookup never
        # records captures: once the route is known, these index the segment list.
        self.params = tuple((s.text, k) for k, s in enumerate(segments) if s.kind == PARAM)
        tail = segments[-1] if segments else None
        self.catch_all = (tail.text, len(segments) - 1) if tail and tail.kind == CATCH_ALL else None

    def describe(self) -> str:
        """`GET,POST /users/{id}`, or the bare pattern for a route taking every method."""
        return f"{','.join(sorted(self.methods))} {self.pattern}" if self.methods else self.pattern


def check_methods(methods: Iterable[str] | None, pattern: str) -> frozenset[str] | None:
    """None (every method) or a non-empty set of upper-cased method names."""
    if methods is None:
        return None
    listed = sorted(methods)
    upper = frozenset(m.upper() for m in listed)
    if not upper or any(m == ANY or not TOKEN.fullmatch(m) for m in upper):
        raise ValueError(
            f"route {pattern!r}: methods must be HTTP method names, got "
            f"{listed!r}; use None for every method"
        )
    return upper


# --- the build tree ------------------------------------------------------------------------


class BuildNode:
    __slots__ = (
        "static",
        "param",
        "param_name",
        "param_owner",
        "catch_all",
        "catch_all_name",
        "catch_all_owner",
        "routes",
    )

    def __init__(self) -> None:
        self.static: dict[str, BuildNode] = {}
        self.param: BuildNode | None = None
        self.catch_all: BuildNode | None = None
        self.param_name = self.catch_all_name = ""
        self.param_owner: Route[Any] | None = None  # the route that created the wildcard
        self.catch_all_owner: Route[Any] | None = None
        self.routes: list[Route[Any]] = []


def _wildcard(node: BuildNode, seg: Segment, route: Route[Any], create: bool) -> BuildNode | None:
    """The param or catch-all child for `seg`. A node has one of each, with one name: the
    name is the variable for everything below it, and `/a/{id}` beside `/a/{name}` means two
    people describe one resource differently (httprouter refuses it too)."""
    kind = "param" if seg.kind == PARAM else "catch_all"
    child: BuildNode | None = getattr(node, kind)
    name, owner = getattr(node, f"{kind}_name"), getattr(node, f"{kind}_owner")
    if child is not None and name != seg.text:
        label = "{%s}" if seg.kind == PARAM else "{%s:path}"
        reason = (
            f"{label % seg.text} and {label % name} at the same position; one position, one name"
        )
        raise RouteConflict(route.pattern, owner.pattern, reason, owner.value)
    if child is None and create:
        child = BuildNode()
        setattr(node, kind, child)
        setattr(node, f"{kind}_name", seg.text)
        setattr(node, f"{kind}_owner", route)
    return child


def _locate(
    root: BuildNode, segments: Sequence[Segment], route: Route[Any], create: bool
) -> BuildNode | None:
    node: BuildNode | None = root
    for seg in segments:
        assert node is not None
        if seg.kind == STATIC:
            child = node.static.get(seg.text)
            if child is None and create:
                child = node.static[seg.text] = BuildNode()
            node = child
        else:
            node = _wildcard(node, seg, route, create)
        if node is None:
            return None
    return node


def insert(root: BuildNode, route: Route[Any], segments: Sequence[Segment]) -> None:
    """Add `route` or raise RouteConflict, leaving the tree untouched: everything is
    checked before the first node is created, so a refused route blames no one later."""
    existing = _locate(root, segments, route, create=False)
    for other in existing.routes if existing else ():
        if other.methods is None:
            both = route.methods
        elif route.methods is None:
            both = other.methods
        else:
            both = other.methods & route.methods
            if not both:
                continue  # disjoint methods share a pattern: GET here, POST there
        reason = f"both answer {', '.join(sorted(both)) if both else 'every method'}"
        raise RouteConflict(route.describe(), other.describe(), reason, other.value)
    target = _locate(root, segments, route, create=True)
    assert target is not None
    target.routes.append(route)


# --- the lookup tree -----------------------------------------------------------------------

NO_CHILDREN: dict[str, Node] = {}  # shared by every leaf; lookup nodes are never mutated


class Node:
    __slots__ = ("static", "edge", "span", "param", "is_param", "catch_all", "leaf", "any", "wild")

    def __init__(self) -> None:
        self.static: dict[str, Node] = NO_CHILDREN
        self.edge: list[str] = []  # static segments that must follow this node's dict key
        self.span = 1  # segments consumed by reaching this node: 1 + len(edge)
        # The parameter child. A lookup asks `static.get(seg, param)`: one dict call finds
        # the static child or else falls back to the parameter, and `is_param` on the
        # child says which of the two it got (that choice was a third of a lookup's time).
        self.param: Node | None = None
        self.is_param = False  # this node is its parent's parameter child
        self.catch_all: dict[str, Route[Any]] | None = None  # a catch-all is always a leaf
        self.leaf: dict[str, Route[Any]] | None = None  # method (or ANY) -> route
        self.any: Route[Any] | None = None  # leaf[ANY]: `leaf.get(method, any)`, one call
        self.wild = False  # has a param or a catch-all: an alternative to come back to


def _leaf(routes: list[Route[Any]]) -> dict[str, Route[Any]] | None:
    if not routes:
        return None
    table = {m: r for r in routes for m in (r.methods or (ANY,))}
    if "GET" in table:  # HEAD is GET without the body, unless a route claims HEAD itself
        table.setdefault("HEAD", table["GET"])
    return table


def compile_tree(build: BuildNode) -> Node:
    node = Node()
    if build.static:
        node.static = {}
        for key, child in build.static.items():
            # Radix compression: follow the chain while a node is nothing but a hallway
            # (no route ends there, no wildcard, one static child). Nothing is lost for
            # backtracking: a hallway has no alternative to come back to.
            edge = []
            while (
                not child.routes
                and child.param is None
                and child.catch_all is None
                and len(child.static) == 1
            ):
                ((next_key, child),) = child.static.items()
                edge.append(next_key)
            target = compile_tree(child)
            target.edge, target.span = edge, 1 + len(edge)
            node.static[key] = target
    if build.param is not None:
        node.param = compile_tree(build.param)
        node.param.is_param = True
    if build.catch_all is not None:
        node.catch_all = _leaf(build.catch_all.routes)
    node.leaf = _leaf(build.routes)
    node.any = node.leaf.get(ANY) if node.leaf is not None else None
    node.wild = node.param is not None or node.catch_all is not None
    return node
