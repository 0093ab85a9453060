"""Conditional requests, both ways: the cache's validators on the way to the origin, and
the client's validators against a stored response (RFC 9110 §13, RFC 9111 §4.3).

A stale entry with an ETag or a Last-Modified is revalidated, not fetched again: the
request goes upstream with the *stored* validators instead of the client's, and a 304
refreshes the entry (tap.py). A client that sends its own If-None-Match or
If-Modified-Since gets a 304 from the cache when the stored response matches.
"""

from __future__ import annotations

import time

from aiohttp import web
from multidict import CIMultiDict

from .directives import parse_http_date
from .entry import Entry

CONDITIONALS = ("If-None-Match", "If-Modified-Since")


def conditional(request: web.Request, entry: Entry) -> CIMultiDict[str]:
    """The request's headers with the cache's validators instead of the client's
    (§4.3.1): the stored ETag and Last-Modified are what the origin must compare."""
    headers = CIMultiDict(request.headers)
    for name in CONDITIONALS:
        headers.popall(name, None)
    if entry.facts.etag:
        headers["If-None-Match"] = _quoted(entry.facts.etag)
    if entry.facts.last_modified:
        headers["If-Modified-Since"] = entry.facts.last_modified
    return headers


def not_modified(request: web.Request, entry: Entry) -> bool:
    """The client's own conditional, evaluated against the stored response (RFC 9110
    §13.2.2): If-None-Match (weak comparison) wins over If-Modified-Since."""
    if entry.status != 200:
        return False
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        etag = entry.facts.etag
        if if_none_match.strip() == "*":
            return True
        if etag is None:
            return False
        # Weak comparison (§8.8.3.2), and lenient about quotes: `abc` and `"abc"` name
        # the same tag (origins and clients both get this wrong).
        wanted = {_opaque(t) for t in if_none_match.split(",")}
        return _opaque(etag) in wanted
    since = request.headers.get("If-Modified-Since")
    if since is not None:
        now = time.time()
        since_at = parse_http_date(since, now)
        modified = entry.facts.last_modified or entry.headers.get("Date")
        modified_at = parse_http_date(modified, now) if modified else entry.response_time
        return since_at is not None and modified_at is not None and modified_at <= since_at
    return False


def _opaque(tag: str) -> str:
    return tag.strip().removeprefix("W/").strip('"')


def _quoted(tag: str) -> str:
    """An entity-tag as it must be sent: `abc` (which some origins send) as `"abc"`."""
    return tag if tag.startswith(('"', 'W/"')) else f'"{tag}"'
