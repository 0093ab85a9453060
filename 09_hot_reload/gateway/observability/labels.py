"""What a request is called in metrics and traces: its route as configured, never its path.

Shared by the metrics (a label value is a series: a raw path would make one per user id,
per typo, per scanner's probe) and the traces (a span named by its route groups in every
trace viewer; by its path, it would not group at all).
"""

from __future__ import annotations

from aiohttp import web

from gateway.routing import ROUTE

UNMATCHED = "(unmatched)"  # a request no route matched: 404, 400, 431
OTHER_METHOD = "_OTHER"  # OpenTelemetry's name for a method outside the standard ones
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
# nginx's code for "the client closed the connection before the response was complete".
CLIENT_CLOSED = 499


def route_label(request: web.Request) -> str:
    """The matched route's pattern (`/users`, `/api/v1/users/{id}`), or UNMATCHED.

    Read from `request[ROUTE]`, which routing leaves on this request object. (An
    absolute-form request-target is routed on a clone: it counts as unmatched, a price
    paid for never reading the raw path here.)"""
    found = request.get(ROUTE)
    return UNMATCHED if found is None else found.route.patterns[0]


def method_label(method: str) -> str:
    """A client may send any token as a method: only the standard ones are their own value."""
    return method if method in METHODS else OTHER_METHOD
