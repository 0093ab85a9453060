"""One access log line per request: what was asked, what was answered, by whom, how fast.

    2025-01-01 12:00:00,123 INFO 4242 [3f2c9a...] gateway.access: GET /users/1 200
        upstream=http://127.0.0.1:9001 1.84ms      (one line; wrapped here)

The request id comes from the log format (requestid.RequestIdFilter), like on every other
line, so `grep <id>` finds the access line next to any warning the same request caused.
The duration runs from the moment the handler chain starts until the last body byte was
handed to the socket, so for a streamed response it includes the client's download.

aiohttp's built-in access log is switched off (it knows neither the upstream nor the
request id). With `access_log = false` this middleware is not installed at all: a
disabled logger still costs a call per request, and the bench measures with it off.
Production gateways log the same fields and more (Envoy's default format has upstream
host, response flags, bytes in/out, the upstream's own service time), usually as JSON
lines for a log pipeline rather than text for a terminal.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger("gateway.access")

UPSTREAM = web.RequestKey("upstream", str)  # set by the app once a route is chosen

# nginx's code for "the client closed the connection before the response was complete".
CLIENT_CLOSED = 499


def access_log_middleware() -> Middleware:
    """The middleware. A factory, like the others in the chain: a later stage gives it an
    option (06: query parameters whose values are not logged) without re-indenting it."""

    @web.middleware
    async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = CLIENT_CLOSED
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            log.info(
                "%s %s %d upstream=%s %.2fms",
                request.method,
                request.raw_path,
                status,
                request.get(UPSTREAM, "-"),
                (time.perf_counter() - start) * 1000,
            )

    return access_log
