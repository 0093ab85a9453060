"""When a stored response may answer a request: the request's Cache-Control against the
entry's freshness (RFC 9111 §4.2 and §5.2.1, RFC 5861).

The request speaks first: `no-cache` sends it to the origin, `max-age` and `min-fresh`
narrow what counts as fresh, `max-stale` widens it. Then the entry's own directives:
`must-revalidate` (and `proxy-revalidate`, `s-maxage`) forbid serving it stale at all,
`stale-while-revalidate` lets it answer while one refresh runs in the background, and
`stale-if-error` lets it answer when the origin cannot. Every function here is pure: the
same entry, request and clock reading give the same verdict, in memory or read back
from Redis.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from .config import CachePolicy
from .directives import Directives, delta_seconds, parse_directives
from .entry import Entry


def request_directives(request: web.Request) -> Directives:
    """The request's Cache-Control; `Pragma: no-cache` counts as no-cache when there is
    no Cache-Control at all (RFC 9111 §5.4)."""
    lines = request.headers.getall(hdrs.CACHE_CONTROL, ())
    if lines:
        return parse_directives(lines)
    for pragma in request.headers.getall(hdrs.PRAGMA, ()):  # most requests send none
        if "no-cache" in pragma.lower():
            return {"no-cache": None}
    return {}


def no_cache(asked: Directives) -> bool:
    return "no-cache" in asked


def verdict(entry: Entry, asked: Directives, now: float) -> str:
    """fresh, stale-allowed (the request's max-stale), stale-while-revalidate, or
    revalidate (§4.2, §5.2.1, RFC 5861 §3)."""
    facts = entry.facts
    if no_cache(asked) or facts.no_cache:
        return "revalidate"
    age = entry.age(now)
    left = facts.lifetime - age
    if "max-age" in asked:
        limit = delta_seconds(asked["max-age"])
        if limit is None or age > limit:
            return "revalidate"
    if "min-fresh" in asked:
        wanted = delta_seconds(asked["min-fresh"])
        if wanted is None or left < wanted:
            return "revalidate"
    if left > 0:
        return "fresh"
    if facts.no_stale:
        return "revalidate"  # must-revalidate, proxy-revalidate, s-maxage (§4.2.4)
    if "max-stale" in asked:
        allowed = asked["max-stale"]
        limit = delta_seconds(allowed)
        if allowed is None or (limit is not None and -left <= limit):
            return "stale-allowed"
    if -left <= facts.stale_while_revalidate:
        return "stale-while-revalidate"
    return "revalidate"


def stale_if_error(entry: Entry, policy: CachePolicy, asked: Directives, now: float) -> bool:
    """May `entry` answer because the origin could not (RFC 5861 §4)?"""
    if entry.facts.no_stale or entry.facts.no_cache:
        return False
    allowed = max(
        entry.facts.stale_if_error,
        policy.stale_if_error,
        float(delta_seconds(asked.get("stale-if-error")) or 0),
    )
    return -entry.ttl(now) <= allowed
