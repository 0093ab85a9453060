"""Cache-Control's syntax (RFC 9111 §5.2) and delta-seconds (§1.2.2): how to read the field,
not what a cache does with it (that is gateway/cache/).

Shared: the cache reads every directive; stage 06's JWKS fetcher reads the key set's
max-age. A module of its own, so that neither concern imports the other's package.
"""

from __future__ import annotations

from collections.abc import Iterable

# RFC 9111 §1.2.2: a delta-seconds too large to represent is 2^31, "effectively infinite".
MAX_DELTA = 2_147_483_648

Directives = dict[str, str | None]  # lower-case name -> value (unquoted), None: no value

_TOKEN_END = frozenset('=, \t"')


def parse_directives(lines: Iterable[str]) -> Directives:
    """`Cache-Control` (all its lines): each directive's first occurrence, by name.

    RFC 9111 §4.2.1: when a directive appears twice, use the first (or treat the response
    as stale; the first is the kinder choice and the one most caches make). A value may be
    a token or a quoted-string (`max-age="60"` is 60, §5.2). Anything after the value up
    to the next comma (`max-age =60`, `max-age= 60`) makes the directive's value that
    junk, which no number parser accepts: the response is then stale, not fresh.
    """
    text = ", ".join(lines)
    found: Directives = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in ", \t":
            i += 1
        start = i
        while i < n and text[i] not in _TOKEN_END:
            i += 1
        name = text[start:i].lower()
        value: str | None = None
        if i < n and text[i] == "=":
            i += 1
            if i < n and text[i] == '"':
                i += 1
                chars = []
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n:
                        i += 1
                    chars.append(text[i])
                    i += 1
                i += 1  # the closing quote
                value = "".join(chars)
            else:
                start = i
                while i < n and text[i] not in ", \t":
                    i += 1
                value = text[start:i]
        junk_start = i
        while i < n and text[i] != ",":
            i += 1
        junk = text[junk_start:i].strip()
        if junk:
            value = (value or "") + " " + junk  # no longer a number: see the docstring
        if name and name not in found:
            found[name] = value
        if start == i and not name:
            i += 1  # a stray quote or `=`: step over it
    return found


def delta_seconds(value: str | None) -> int | None:
    """A directive's delta-seconds (§1.2.2): ASCII digits only, capped at 2^31."""
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return min(int(value), MAX_DELTA)
