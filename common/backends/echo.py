"""`/echo`: tell the client exactly what arrived, byte for byte.

Proxy tests send a request through the gateway to `/echo` and compare what the backend
saw with what the client sent. That only proves something if the echo hides nothing:

- `path` is the ASGI scope's `raw_path`, the request-target's path as it came off the
  wire, decoded latin-1 (one character per byte). `scope["path"]` is percent-decoded,
  so `/a%2Fb` and `/a/b` look the same there; a proxy that decodes `%2F` must be caught.
- `query` is the raw `query_string`: `+`, `%20` and `%2F` stay as sent.
- `headers` is the list in received order, duplicates kept. One deviation from the wire:
  uvicorn lowercases header *names* (HTTP names are case-insensitive; values are kept).
- the body is returned as text when it is valid UTF-8, else base64, with its length and
  SHA-256, so binary uploads can be compared exactly.

It is a raw ASGI endpoint mounted as a Starlette `Route(..., methods=None)`: a FastAPI
route needs a fixed list of methods, and a plain-function Starlette route defaults to
GET. An ASGI endpoint with `methods=None` is handed every method the HTTP parser accepts
(PURGE, PROPFIND, QUERY, ...; llhttp rejects unknown tokens like FROB with a 400 before
any application code runs).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

# The echo answers with the whole body inside a JSON document, so it must hold the body
# in memory; the cap keeps a careless 10 GiB upload from taking the process down.
# /upload is the endpoint for big bodies: it hashes them as they stream by.
ECHO_BODY_LIMIT = 8 * 1024 * 1024


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it grows past `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None  # stop reading: the rest is never buffered
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def describe(scope: Scope, body: bytes) -> dict[str, Any]:
    """The echo document for one request (see the module docstring for each field)."""
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    client = scope.get("client")
    return {
        "method": scope["method"],
        "path": raw_path.decode("latin-1"),
        "query": scope.get("query_string", b"").decode("latin-1"),
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "body": text,
        "body_encoding": encoding,
        "body_bytes": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "client": list(client) if client else None,
        "http_version": scope.get("http_version", "1.1"),
    }


class EchoEndpoint:
    """ASGI app for `/echo` and `/echo/{anything:path}`, any method."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive, ECHO_BODY_LIMIT)
        if body is None:
            response = JSONResponse(
                {
                    "detail": f"request body exceeds the echo limit of {ECHO_BODY_LIMIT} bytes;"
                    " use /upload for large bodies",
                    "limit": ECHO_BODY_LIMIT,
                },
                status_code=413,
            )
        else:
            # For HEAD uvicorn sends the headers (Content-Length included) and drops the
            # body, so HEAD and GET describe the same representation.
            response = JSONResponse(describe(scope, body))
        await response(scope, receive, send)
