"""How much request head the gateway accepts: 431 past `[server] max_header_bytes`.

aiohttp's parser caps one header line (16 KiB here, gateway/protocol.py) and the number of
lines (128), not their sum: 128 lines of 16 KiB is two megabytes of headers, per request,
forwarded upstream to services that may choke on a tenth of it. RFC 6585 §5 gives the
answer for "too much": 431 Request Header Fields Too Large. The default, 32 KiB, is
nginx's 4 × 8 KiB `large_client_header_buffers`; Envoy allows 60 KiB
(`max_request_headers_kb`). A single line over that limit is a 431 too, answered before
any middleware runs (gateway/protocol.py), and so is a 129th header.

The check runs after the head was parsed, which costs nothing extra to hold: aiohttp has
already bounded it. It is a middleware right after the error handler, so the answer is a
problem+json like any other, with the request id.
"""

from __future__ import annotations

from itertools import chain

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.errors import HeaderFieldsTooLarge

# ": " and CRLF around every field, as on the wire.
_PER_FIELD = 4


def head_limits_middleware(max_header_bytes: int) -> Middleware:
    @web.middleware
    async def head_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = request.raw_headers  # (name, value) bytes as received
        size = sum(map(len, chain.from_iterable(raw))) + _PER_FIELD * len(raw)
        if size > max_header_bytes:
            raise HeaderFieldsTooLarge(
                f"the request's header fields are {size} bytes; this gateway accepts"
                f" {max_header_bytes}"
            )
        return await handler(request)

    return head_limits
