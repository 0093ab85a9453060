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
lines for a log pipeline rather than text for a terminal: `access_log_format = "json"`
(stage 08) writes those, each a JSON object alone on its line, with the trace's ids.

A query parameter that can carry an API key (stage 06: a route's `key_query`) is logged
as `api_key=REDACTED`: access logs are read, shipped and kept by many more people than
the key's owner. Headers are never logged, so Authorization needs no such care.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from urllib.parse import unquote_plus

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway import requestid
from gateway.observability.tracing import current_ids

log = logging.getLogger("gateway.access")

UPSTREAM = web.RequestKey("upstream", str)  # set by the app once a route is chosen

# nginx's code for "the client closed the connection before the response was complete".
CLIENT_CLOSED = 499


def access_log_middleware(
    hidden: Callable[[], frozenset[str]] = frozenset, *, json_lines: bool = False
) -> Middleware:
    """The middleware; the values of the query parameters named by `hidden()` are not
    logged (asked per request with a query: a reload may name others, gateway/reload/).
    `json_lines`: one JSON object per line instead, with the trace's ids."""

    @web.middleware
    async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = CLIENT_CLOSED
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            target = request.raw_path
            if "?" in target and (names := hidden()):
                target = redact(target, names)
            method, upstream = request.method, request.get(UPSTREAM, "-")
            ms = (time.perf_counter() - start) * 1000
            if json_lines:
                log.info("%s", as_json(method, target, status, upstream, ms))
            else:
                log.info("%s %s %d upstream=%s %.2fms", method, target, status, upstream, ms)

    return access_log


def as_json(method: str, target: str, status: int, upstream: str, ms: float) -> str:
    """A JSON line for a log pipeline (Loki, Elasticsearch): the same fields, and the ids of
    the request's trace when it is sampled, so that one line leads to its trace."""
    line: dict[str, object] = {"request_id": requestid.current.get(), "method": method}
    line.update(target=target, status=status, upstream=upstream, ms=round(ms, 2))
    ids = current_ids()
    if ids is not None:
        line["trace_id"], line["span_id"] = ids
    return json.dumps(line, separators=(",", ":"))


def redact(target: str, hidden: frozenset[str]) -> str:
    path, _, query = target.partition("?")
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}=REDACTED" if eq and unquote_plus(name) in hidden else part)
    return path + "?" + "&".join(parts)
