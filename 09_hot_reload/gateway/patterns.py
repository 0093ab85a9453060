"""Route patterns and rewrite templates: the syntax the trie is built from.

A pattern is a path made of segments, each of which is exactly one of

    users          static: equal to the path segment (compared percent-decoded, see below)
    {id}           parameter: any one non-empty segment
    {rest:path}    catch-all, last segment only: one or more remaining segments, joined by "/"

Starlette and FastAPI spell them the same way (`{id}`, `{rest:path}`); httprouter writes
`:id` and `*rest`; Envoy's classic route matchers are prefix, exact and regex only (URI
templates came later, as an extension). Mixed
segments such as `file.{ext}` are refused: they need a regex per segment, and the whole
point of the trie is that a segment is matched by one dict lookup.

The catch-all needs the slash in front of it: `/static/{rest:path}` matches `/static/`
(rest = "") and `/static/css/a.css` (rest = "css/a.css") but not `/static`. That keeps
`rest` unambiguous (`/static` and `/static/` would otherwise both give "") and is what
Starlette's `path` converter and httprouter's `*filepath` do. Stage 01's prefix routes
(`/users` matches `/users` and everything under `/users/`) therefore become two patterns,
`/users` and `/users/{rest:path}`; `prefix_patterns()` spells them.

Static segments are written decoded (`/café`, not `/caf%C3%A9`) because the router compares
them with percent-decoded path segments: `/users/%6De` *is* `/users/me` to every origin
server, and a router that disagreed would let `%6D` walk around a route (and, from stage 06
on, the authentication attached to it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple

STATIC, PARAM, CATCH_ALL = 0, 1, 2  # also the specificity rank: lower wins

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FIELD = re.compile(r"\{([^{}]*)\}")
_NOT_IN_PATH = re.compile(r"[?#\\\s\x00-\x1f\x7f]")


class PatternError(ValueError):
    """A route pattern or rewrite template that cannot be parsed (a config error)."""


class Segment(NamedTuple):
    kind: int  # STATIC, PARAM or CATCH_ALL
    text: str  # the static text, or the parameter's name


def _error(pattern: str, position: int, part: str, problem: str) -> PatternError:
    return PatternError(f"pattern {pattern!r}, segment {position} ({part!r}): {problem}")


def parse_pattern(pattern: str) -> tuple[Segment, ...]:
    """Split `pattern` into segments, refusing anything that could never match a path
    that pathsafety.normalise() lets through (so a typo fails at start-up, not as a 404)."""
    if not pattern.startswith("/"):
        raise PatternError(f"pattern {pattern!r}: must start with '/'")
    parts = pattern[1:].split("/")
    segments: list[Segment] = []
    names: set[str] = set()
    for position, part in enumerate(parts, start=1):
        last = position == len(parts)
        if part.startswith("{") and part.endswith("}"):
            name, colon, converter = part[1:-1].partition(":")
            if not _NAME.match(name):
                raise _error(pattern, position, part, "a parameter name is a Python identifier")
            if name in names:
                raise _error(pattern, position, part, f"parameter {{{name}}} appears twice")
            names.add(name)
            if not colon:
                segments.append(Segment(kind=PARAM, text=name))
            elif converter != "path":
                raise _error(
                    pattern, position, part, "unknown converter; use {name} or {name:path}"
                )
            elif not last:
                raise _error(
                    pattern, position, part, "a {name:path} catch-all must be the last segment"
                )
            else:
                segments.append(Segment(kind=CATCH_ALL, text=name))
        elif "{" in part or "}" in part:
            raise _error(pattern, position, part, "a segment is either static or one whole {param}")
        elif part == "" and not last:
            raise _error(
                pattern, position, part, "empty segment ('//'): paths are matched slash-merged"
            )
        elif part in (".", ".."):
            raise _error(pattern, position, part, "dot-segments are resolved before matching")
        elif "%" in part:
            raise _error(
                pattern,
                position,
                part,
                "write the segment decoded ('café', not 'caf%C3%A9'): paths are"
                " compared percent-decoded",
            )
        elif _NOT_IN_PATH.search(part):
            raise _error(
                pattern,
                position,
                part,
                "a path has no '?', '#', '\\', spaces or control characters",
            )
        else:
            segments.append(Segment(kind=STATIC, text=part))
    return tuple(segments)


def pattern_names(pattern: str) -> frozenset[str]:
    return frozenset(s.text for s in parse_pattern(pattern) if s.kind != STATIC)


REST = "rest"  # the catch-all a prefix route captures: what lies below the prefix


def prefix_patterns(prefix: str, rest: str = REST) -> tuple[str, str]:
    """Stage 01's prefix route `prefix` as two trie patterns: the prefix itself, and
    everything below it: `prefix_patterns("/users")` -> ("/users", "/users/{rest:path}").
    For "/" the pair is ("/", "/{rest:path}"); the static "/" wins for "/" itself."""
    base = prefix.rstrip("/")
    if not base:
        return ("/", f"/{{{rest}:path}}")
    return (base, f"{base}/{{{rest}:path}}")


# --- rewriting ------------------------------------------------------------------------------
# `/api/v1/users/{id}` -> `/users/{id}`: the template names captured parameters and the
# gateway forwards the filled-in result. Values go in raw (still percent-encoded, exactly as
# the client sent them), so `/api/v1/users/a%2Bb` becomes `/users/a%2Bb`, never `/users/a+b`:
# decoding here and re-encoding later is how proxies end up changing what the origin sees.
# nginx does the same with `proxy_pass http://up/users/$1` (its captures are raw); Envoy's
# `regex_rewrite` likewise substitutes on the undecoded path.


@lru_cache(maxsize=1024)
def _compile_template(template: str) -> tuple[str, ...]:
    """Literal text and parameter names, alternating: ("/users/", "id", "") for
    "/users/{id}". Cached: a gateway has a handful of templates and fills them per request."""
    if not template.startswith("/"):
        raise PatternError(f"rewrite template {template!r}: must start with '/'")
    parts: list[str] = []
    last = 0
    for field in _FIELD.finditer(template):
        name, _, converter = field.group(1).partition(":")
        if not _NAME.match(name) or converter not in ("", "path"):
            raise PatternError(f"rewrite template {template!r}: bad field {field.group(0)!r}")
        parts += [template[last : field.start()], name]
        last = field.end()
    parts.append(template[last:])
    if any("{" in text or "}" in text for text in parts[::2]):
        raise PatternError(f"rewrite template {template!r}: unbalanced braces")
    literal = "x".join(parts[::2])
    if (
        _NOT_IN_PATH.search(literal)
        or "//" in literal
        or any(s in (".", "..") for s in literal.split("/"))
    ):
        # The filled-in template is forwarded as it is: it must already be a normalised
        # path, or the upstream would read it differently from the route that chose it.
        raise PatternError(
            f"rewrite template {template!r}: must be a normalised path (no"
            " '//', dot-segments, '?', '#', '\\' or spaces)"
        )
    return tuple(parts)


def check_rewrite(template: str, pattern: str) -> None:
    """Fail at start-up when `template` uses a name that `pattern` does not capture."""
    used = set(_compile_template(template)[1::2])
    missing = used - pattern_names(pattern)
    if missing:
        names = ", ".join(sorted(f"{{{name}}}" for name in missing))
        raise PatternError(
            f"rewrite template {template!r} uses {names}, which {pattern!r} does not capture"
        )


def rewrite(template: str, params: Mapping[str, str]) -> str:
    """Fill `template` from captured `params` (raw text): the path the upstream receives.
    The caller appends the query string unchanged."""
    parts = _compile_template(template)
    out = list(parts)
    for index in range(1, len(parts), 2):
        out[index] = params[parts[index]]
    return "".join(out)
