"""The one middleware of observability: every request's span and its RED numbers.

One layer, not two: every middleware is one more coroutine that each of the request's
awaits passes through, and the span and the numbers begin and end at the same moments
anyway. It comes right after the request id, outside the access log and the error
handler, so that it times the whole request and sees the status the client got, a
problem+json included; the route is read after the handler returned (labels.py).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.proxy import RelayedResponse

from .labels import CLIENT_CLOSED, method_label, route_label
from .metrics import Metrics
from .tracing import Tracing


def observe_middleware(metrics: Metrics | None, tracing: Tracing | None) -> Middleware:
    """The middleware; None for what is switched off ([observability] metrics, tracing)."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        begun = None if tracing is None else tracing.begin(request)
        if metrics is not None:
            metrics.inside += 1
        status, source = 500, "gateway"  # an exception that escaped every handler
        try:
            response = await handler(request)
            status = response.status
            if isinstance(response, RelayedResponse):
                source = "upstream"  # a service's answer, relayed; anything else is ours
            return response
        except asyncio.CancelledError:
            status = CLIENT_CLOSED  # the client left first
            raise
        finally:
            route = route_label(request)
            if metrics is not None:
                metrics.inside -= 1
                consumer = "" if metrics.consumers is None else metrics.consumer_of(request)
                seconds = time.perf_counter() - start  # recorded while the span is current
                metrics.record(
                    route, method_label(request.method), status, source, consumer, seconds
                )
            if tracing is not None and begun is not None:
                tracing.end(begun, request, route, status)

    return observe
