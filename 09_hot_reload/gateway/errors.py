"""Every error the gateway itself produces, as application/problem+json (RFC 9457).

A client behind a gateway must be able to tell "the gateway said no" from "the service
said no". Upstream responses pass through untouched, whatever their status; responses the
gateway makes up are always this one JSON shape:

    {"type": "https://gateway.example/problems/upstream-timeout",
     "title": "Gateway Timeout", "status": 504,
     "detail": "the upstream did not answer within 30 s",
     "instance": "/users/1", "request_id": "3f2c..."}

`type` is the stable, machine-readable identifier (clients switch on it, not on the
English `title`); `request_id` is an extension member (RFC 9457 §3.2) that ties the
error to the gateway's log lines. The `.example` domain is reserved for documentation:
a real deployment points `type` at its own error pages.

The `detail` never names an upstream address or an exception: internal topology is none
of the client's business. The log line next to it (same request id) has the specifics.

Later stages raise their own GatewayError subclasses (401 from auth, 429 from the rate
limiter) and this module turns them into responses; nothing else builds error bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import requestid

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://gateway.example/problems/"

log = logging.getLogger("gateway.errors")


class GatewayError(Exception):
    """An error the gateway answers itself. Subclasses fix status, title and type."""

    status = 500
    title = "Internal Server Error"
    slug = "internal-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers: dict[str, str] = {}  # added to the response (Allow, Retry-After, ...)


class BadRequest(GatewayError):
    status, title, slug = 400, "Bad Request", "bad-request"


class RequestTimeout(GatewayError):
    """The request head did not arrive in time (gateway/protocol.py's header timeout)."""

    status, title, slug = 408, "Request Timeout", "request-timeout"


class UriTooLong(GatewayError):
    """The request line is longer than the parser takes (8190 bytes)."""

    status, title, slug = 414, "URI Too Long", "uri-too-long"


class HeaderFieldsTooLarge(GatewayError):
    """RFC 6585 §5: one header line, or all of them together, are too large."""

    status, title, slug = 431, "Request Header Fields Too Large", "header-fields-too-large"


class BadPath(GatewayError):
    """A path the gateway will not interpret (gateway/pathsafety.py says why)."""

    status, title, slug = 400, "Bad Request", "bad-path"


class NoRoute(GatewayError):
    status, title, slug = 404, "Not Found", "no-route"


class MethodNotAllowed(GatewayError):
    """Routes match the path, none of them takes the method."""

    status, title, slug = 405, "Method Not Allowed", "method-not-allowed"

    def __init__(self, detail: str, allow: list[str]) -> None:
        super().__init__(detail)
        # RFC 9110 §15.5.6: a 405 MUST carry Allow, the methods the resource does take.
        self.headers["Allow"] = ", ".join(allow)


class UpstreamUnavailable(GatewayError):
    """Refused, reset, or not a valid HTTP answer, before any byte reached the client."""

    status, title, slug = 502, "Bad Gateway", "upstream-unavailable"


class UpstreamTimeout(GatewayError):
    status, title, slug = 504, "Gateway Timeout", "upstream-timeout"


class NoHealthyUpstream(GatewayError):
    """Every target of the route's upstream pool is failing its health checks or has an
    open circuit breaker.

    503, not 502: the gateway did not even try, because it already knows the answer. The
    detail names the upstream and why ("upstream 'users': all 3 targets unhealthy (2 failed
    active checks, 1 open circuit)"), never a target's address. This is what fail fast
    looks like: no connection attempt, no waiting, an answer in a millisecond.
    Envoy answers the same situation with 503 and the response flag UH (no healthy host).
    """

    status, title, slug = 503, "Service Unavailable", "no-healthy-upstream"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    instance: str = "/",
    request_id: str | None = None,
) -> web.Response:
    request_id = request_id or requestid.current.get()
    # body= with an explicit header, not text=: aiohttp would append "; charset=utf-8",
    # a parameter JSON media types do not define (RFC 8259 §11).
    return web.Response(
        status=status,
        body=problem_body(status, title, detail, type_, instance, request_id),
        headers={"Content-Type": CONTENT_TYPE, requestid.HEADER: request_id},
    )


def problem_body(
    status: int, title: str, detail: str, type_: str, instance: str, request_id: str
) -> bytes:
    """The RFC 9457 document itself, as bytes (gateway/protocol.py writes some by hand)."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    return json.dumps(body).encode()


def for_error(request: web.BaseRequest, error: GatewayError) -> web.Response:
    response = problem_response(
        error.status,
        error.title,
        error.detail,
        type_=TYPE_BASE + error.slug,
        instance=_instance(request),
    )
    response.headers.update(error.headers)
    return response


def _instance(request: web.BaseRequest) -> str:
    # The path only: a query string can carry tokens that have no business in an error
    # body (or in the logs of whatever the client pastes it into).
    return request.raw_path.partition("?")[0] or "/"


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every exception below into a problem response; let nothing become a traceback."""
    try:
        return await handler(request)
    except GatewayError as error:
        return for_error(request, error)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect is not an error
            raise
        # aiohttp's own errors (405 from the router and the like): same shape, and
        # "about:blank" because they mean nothing beyond their status code.
        return problem_response(
            exc.status, exc.reason, exc.text or exc.reason, instance=_instance(request)
        )
    except (asyncio.CancelledError, ConnectionError):
        # The client went away (a write failed) or the server is stopping: there is
        # nobody to answer, and aiohttp closes the connection itself.
        raise
    except Exception:
        log.exception("unhandled error (a gateway bug)")
        if request.writer.output_size:
            raise  # the response has started: aiohttp can only close the connection
        return problem_response(
            500,
            "Internal Server Error",
            "the gateway failed to handle this request; its log has the details",
            type_=TYPE_BASE + GatewayError.slug,
            instance=_instance(request),
        )
