"""Path normalisation before routing: one path is matched, and that same path is forwarded.

The classic path-confusion bug is a gateway and an origin that read one path two ways.
The gateway routes `/public/../admin` by its first segment (public: no login needed) and
forwards the bytes unchanged; the origin resolves the dot-segments and serves `/admin`.
nginx has exactly this hole with `proxy_pass http://up;` (no URI part): it matches the
normalised URI but forwards the original one. The fix is in the contract of this module:
`normalise()` returns the normalised *raw* path, the gateway matches it and forwards it, and
the origin has nothing left to resolve.

Each rule below says what nginx and Envoy do. The order matters: percent-escapes are
checked first (so an encoded `/` or `\\` cannot survive as data and reappear as a separator
later), then slashes are merged, then dot-segments resolved. The query string is never
touched: it is the origin's to interpret.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FORBIDDEN_ESCAPE = re.compile(r"%(5[Cc]|00)")
_ENCODED_SLASH = re.compile(r"%2[Ff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPE_NAMES = {"5c": "an encoded backslash", "00": "an encoded NUL"}
# Why the router refuses a path with %2F on a route that does not keep it (routing.py).
ENCODED_SLASH = "an encoded slash ('%2F') in the request path"


class UnsafePath(ValueError):
    """A request path the gateway refuses (400); `reason` is safe to show the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SafePath(NamedTuple):  # not a frozen dataclass: its __init__ cost ~200 ns more
    path: str  # normalised, still percent-encoded: what is matched AND what is forwarded
    query: str  # "" or "?..." exactly as received
    segments: list[str]  # path split on "/": path == "/" + "/".join(segments)
    match_segments: list[str]  # the same, percent-decoded: what patterns are compared with
    encoded_slash: bool = False  # holds a %2F: only a route with encoded_slash = "keep" takes it

    @property
    def target(self) -> str:
        """The request-target to send upstream (when no rewrite applies)."""
        return self.path + self.query


def _dots(segment: str) -> int:
    """1 for ".", 2 for "..", in any spelling (`%2e`, `%2E`, `.%2e`, `%2E.`), else 0.
    RFC 3986 §2.3: `%2E` *is* "."; code that only looks for literal dots is why these
    attacks keep working (CVE-2021-41773: Apache httpd 2.4.49 let `/cgi-bin/.%2e/.%2e/`
    walk out of its root). Overlong UTF-8 (`%c0%ae`) is not a dot here: it decodes to
    nothing valid, and is forwarded as sent; only a broken decoder reads it as one."""
    if len(segment) > 6 or "." not in segment and "%" not in segment:
        return 0
    plain = segment.lower().replace("%2e", ".")
    return len(plain) if plain in (".", "..") else 0


def normalise(target: str) -> SafePath:
    """Normalise the raw request-target (path and optional query, as received)."""
    path, question, query = target.partition("?")
    # 1. Origin-form only (RFC 9112 §3.2.1): gateway/requesttarget.py has already turned
    #    an absolute-form target into one, and refused every other form.
    if not path.startswith("/"):
        raise UnsafePath("the request path must start with '/'")
    # Fast path: nothing to normalise in a path without '%', '\', '//', a segment that
    # starts with '.', or a control character, which is nearly every real request.
    if not ("%" in path or "\\" in path or "//" in path or "/." in path) and path.isprintable():
        segments = path[1:].split("/")
        return SafePath(
            path=path,
            query=question + query,
            segments=segments,
            match_segments=segments,
        )
    return _slow(path, question + query)


def _slow(path: str, query: str) -> SafePath:
    # 2. Control characters and NUL, raw or encoded. `/admin%00.png` is truncated to
    #    `/admin` by any origin that hands the path to C (a "file.php%00.jpg" classic).
    #    nginx answers 400 to both; a raw one rarely gets past a strict HTTP/1.1 parser,
    #    the encoded one always does.
    if _CONTROL.search(path):
        raise UnsafePath("control character in the request path")
    # 3. Backslash: not a separator in URLs, but one on Windows origins and in some URL
    #    parsers (WHATWG URL treats `\` as `/` for http), so `/public\..\admin` reads as
    #    `/admin` there. nginx treats it as data (except on Windows); we refuse it,
    #    like the encoded forms below.
    if "\\" in path:
        raise UnsafePath("backslash in the request path")
    # 4. Malformed escapes (`%zz`, a trailing `%4`): decoding them is a guess, and two
    #    parsers that guess differently are the bug this module prevents. nginx: 400.
    bad = _BAD_ESCAPE.search(path)
    if bad:
        raise UnsafePath(f"malformed percent-escape {path[bad.start() : bad.start() + 3]!r}")
    # 5. Encoded backslash and NUL: refused (400), always: `%5C` is a separator to Windows
    #    origins, `%00` ends the path for any origin written in C.
    encoded = _FORBIDDEN_ESCAPE.search(path)
    if encoded:
        raise UnsafePath(
            f"{_ESCAPE_NAMES[encoded.group(1).lower()]} ({encoded.group(0)!r}) in the request path"
        )
    # 5b. Encoded slash: `/a%2Fb` is one segment to us and two to an origin that decodes
    #     before it splits (many do, via a framework). Refused by default, as Envoy's
    #     `path_with_escaped_slashes_action: REJECT_REQUEST` (its default is KEEP_UNCHANGED;
    #     nginx decodes `%2F` into a real `/` before matching). The refusal happens in the
    #     router, after the match, because a route may keep it: APIs that carry `/` inside
    #     an id (`/projects/group%2Fname`, `@scope%2Fname` in package registries) set
    #     `encoded_slash = "keep"`. Then `%2F` is data: it stays inside its segment, so it
    #     can never make a new segment for routing, and goes upstream byte for byte. One
    #     thing is refused even there (step 7c): a dot-segment behind an encoded slash.
    slash = _ENCODED_SLASH.search(path) is not None
    # 6 and 7, segment by segment. The last part always adds a segment (maybe "", a
    # trailing slash), so `out` is never empty: "/" is [""].
    parts = path[1:].split("/")
    last = len(parts) - 1
    out: list[str] = []
    for k, part in enumerate(parts):
        # 6. Repeated slashes are merged: `//a///b` is `/a/b`, for matching AND forwarding
        #    (nginx `merge_slashes on`, its default; Envoy's `merge_slashes`, off by
        #    default). Merging before step 7 means `/a//../b` is `/b`, as nginx reads it.
        if part == "" and k != last:
            continue
        # 7. Dot-segments (RFC 3986 §5.2.4 remove_dot_segments), encoded ones included:
        #    nginx resolves them in the URI it matches; Envoy with `normalize_path: true`
        #    (off by default!). A trailing `.` or `..` leaves a trailing slash, as in the
        #    RFC: `/a/b/..` is `/a/`.
        dots = _dots(part)
        if dots == 2:
            # `..` above the root: the RFC clamps (`/../a` is `/a`), Envoy clamps too,
            # nginx answers 400. We answer 400: no browser sends it (they resolve dot-
            # segments before sending), so it is a probe, and clamping would quietly
            # route a path the client did not mean.
            if not out:
                raise UnsafePath("'..' climbs above the root")
            out.pop()
        if dots:
            if k == last:
                out.append("")
            continue
        # 7b. `..;x`: not a dot-segment to RFC 3986, but Tomcat and Jetty strip `;params`
        #     first and then resolve it, so `/public/..;/admin` reaches `/admin` behind
        #     a proxy that routed it as `/public/...` (Orange Tsai, "Breaking Parser
        #     Logic", 2018). Refused.
        if ";" in part and _dots(part.partition(";")[0]):
            raise UnsafePath(f"dot-segment with parameters {part!r} in the request path")
        # 7c. `a%2F..%2Fadmin` is one harmless segment here and `a/../admin`, which is
        #     `admin`, to an origin that decodes before it resolves: refused.
        if slash and _hides_dots(part):
            raise UnsafePath(f"a dot-segment behind an encoded slash in {part!r}")
        out.append(part)
    # 8. Every other escape stays byte for byte in what we forward (`%41` is not rewritten
    #    to `A`, `%252e` is not decoded twice); the decoded copy is for matching only.
    decoded = [unquote(s, errors="surrogateescape") if "%" in s else s for s in out]
    return SafePath(
        path="/" + "/".join(out),
        query=query,
        segments=out,
        match_segments=decoded,
        encoded_slash=slash,
    )


def _hides_dots(segment: str) -> bool:
    """True for a segment that is a dot-segment once its %2F are decoded into slashes."""
    if not _ENCODED_SLASH.search(segment):
        return False
    return any(_dots(piece.partition(";")[0]) for piece in unquote(segment).split("/"))
