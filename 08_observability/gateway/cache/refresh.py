"""stale-while-revalidate's other half: the refresh that runs after the stale answer went
out (RFC 5861 §3).

The client already has its answer; nobody waits for this one. So it is a task of the
cache's own (Cache.spawn, cancelled on shutdown), one per key at a time, and its errors
are a log line: the stale entry simply stays until the next request tries again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.proxy import TAP

from .config import CachePolicy
from .entry import Entry
from .tap import CacheTap
from .validators import conditional

if TYPE_CHECKING:
    from .cache import Cache

log = logging.getLogger("gateway.cache")


def refresh(
    cache: Cache,
    request: web.Request,
    handler: Handler,
    key: str,
    entry: Entry,
    policy: CachePolicy,
) -> None:
    """stale-while-revalidate: one background revalidation per key at a time.

    The refresh is the client's request again (a clone with the cache's validators),
    sent down the same chain (channel, pool, proxy), with a tap that keeps whatever
    comes back and sends nothing to anyone: nginx's proxy_cache_background_update is
    the same idea, a subrequest.
    """
    if key in cache.refreshing:
        return
    cache.refreshing.add(key)
    # The client's address, fixed now: the clone outlives the client's connection.
    headers = conditional(request, entry)
    remote = request.remote
    background = (
        request.clone(headers=headers)
        if remote is None
        else request.clone(headers=headers, remote=remote)
    )
    tap = CacheTap(cache, background, key, entry, policy, {}, "stale", None)
    tap.conditional = bool(entry.facts.etag or entry.facts.last_modified)
    tap.background = True
    background[TAP] = tap

    async def run() -> None:
        try:
            await handler(background)
        except Exception as exc:  # an error or a timeout: the stale entry stays
            log.info("background refresh of %s failed: %s", key, exc)
        finally:
            tap.finished()
            del background[TAP]  # the tap and the clone refer to each other (Cache._forward)
            cache.refreshing.discard(key)

    cache.spawn(run())
