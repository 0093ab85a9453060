"""`/status/{code}`: answer any status from 200 to 599, with extra headers on request.

Proxy tests use it to check that a gateway passes statuses through untouched — including
ones it has no name for (299, 599) and the ones that must not carry a body (204, 304) —
and that repeated headers survive: `?header=Set-Cookie:a=1&header=Set-Cookie:b=2` answers
with two separate Set-Cookie lines, which must never be folded into one.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

ANY_COMMON_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
NO_BODY_STATUSES = {204, 205, 304}  # RFC 9110 §15.3.5, §15.3.6, §15.4.5

# RFC 9110 §5.6.2 token; a value may hold visible characters, spaces and tabs only.
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]*$")
# Framing is the server's job: a second Content-Length or a fake Transfer-Encoding would
# corrupt the response itself rather than test a proxy. Anything else is allowed, on
# purpose including hop-by-hop headers such as Connection, so proxy tests can check that
# they are removed.
FORBIDDEN_HEADERS = {"content-length", "transfer-encoding"}

router = APIRouter(tags=["diagnostics"])


def parse_header(spec: str) -> tuple[bytes, bytes]:
    """`Name:Value` -> (b"name", b"value"), or a 422 that says what is wrong with it."""
    name, sep, value = spec.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not HEADER_NAME.match(name):
        raise HTTPException(422, detail=f"header {spec!r}: expected Name:Value with a token name")
    if name.lower() in FORBIDDEN_HEADERS:
        raise HTTPException(422, detail=f"header {name!r} is set by the server, not by ?header=")
    if not HEADER_VALUE.match(value):
        raise HTTPException(422, detail=f"header {spec!r}: control or non-latin-1 characters")
    return name.lower().encode("latin-1"), value.encode("latin-1")


@router.api_route("/status/{code}", methods=ANY_COMMON_METHOD)
async def status(
    request: Request,
    code: Annotated[int, Path(ge=200, le=599)],
    header: Annotated[list[str] | None, Query()] = None,
) -> Response:
    extra = [parse_header(spec) for spec in header or []]
    if code in NO_BODY_STATUSES:
        response = Response(status_code=code)
    else:
        response = Response(
            content=f'{{"status": {code}}}', status_code=code, media_type="application/json"
        )
    # raw_headers, not a dict: the same name may appear twice and must stay two lines.
    response.raw_headers.extend(extra)
    return response
