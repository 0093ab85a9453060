"""What the cache shows an operator on the admin listener, and what it lets one do:

    GET /cache        the store (keys, bytes, evictions; Redis: available, errors) and
                      counts of hits, misses, revalidations, coalesced requests
    POST /cache/purge?url=/products/1     forget one target, every variant
    POST /cache/purge?prefix=/products    forget every target under a prefix

One worker's view: the memory store is per worker, so a purge reaches the worker that
answers it; with the Redis store it reaches them all. A production cache purges across
its fleet (Varnish's bans, Fastly's surrogate keys); here the Redis store is that fleet.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.concern import AdminView
from gateway.errors import problem_response

if TYPE_CHECKING:  # cache.py imports this module to build its views
    from .cache import Cache

PURGE_PATH = "/cache/purge"


def views(cache: Cache) -> Sequence[AdminView]:
    async def show() -> dict[str, object]:
        return {"cache": cache.stats()}

    async def purge(request: web.Request) -> web.Response:
        url, prefix = request.query.get("url"), request.query.get("prefix")
        target = url if url is not None else prefix
        if (url is None) == (prefix is None) or not target or not target.startswith("/"):
            return problem_response(
                400,
                "Bad Request",
                "give exactly one of ?url=/path or ?prefix=/path",
                instance=PURGE_PATH,
            )
        purged = await cache.purge(target, prefix=prefix is not None)
        return web.json_response({"pid": os.getpid(), "purged": purged, "target": target})

    return (AdminView(path="/cache", show=show, actions={PURGE_PATH: purge}),)
