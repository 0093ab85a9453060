"""The routed part of the middleware chain, composed once per configuration generation.

aiohttp composes an application's middlewares around the handler for every request
(`partial(middleware, handler=inner)` from the innermost out), and an application's
middleware list is fixed once it serves. The middlewares that depend on the configuration
(routing, auth, rate limits, the cache) must change with it, so they are composed here, by
the same recipe, once per generation (gateway/app.py's `build_generation`), and the
application's one route calls the current generation's composed handler. The request
then reads the configuration exactly once (`Live.handle`), and everything it touches
after that (its route, policies, pool, keys, limits) comes from that one generation,
however long it runs and whatever is reloaded meanwhile.

Composed once instead of per request, these four layers cost less than they did as
application middlewares: a reload adds nothing to the request path (bench-all's 09 row).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from aiohttp.typedefs import Handler, Middleware


def chain(middlewares: Sequence[Middleware], handler: Handler) -> Handler:
    """`handler` wrapped in `middlewares`, the first outermost, as aiohttp would."""
    for middleware in reversed(middlewares):
        handler = partial(middleware, handler=handler)
    return handler
