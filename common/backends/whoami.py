"""`/whoami`: the identity a gateway forwarded, as the backend sees it.

After authenticating a request a gateway tells the backend who the caller is with
headers (Kong's X-Consumer-ID / X-Consumer-Username / X-Authenticated-*, other gateways'
X-User-*). The backend trusts them blindly — which is only safe because the gateway
strips any such header a client sent itself. Stage 06's tests check exactly that here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(tags=["diagnostics"])

IDENTITY_PREFIXES = {
    "consumer": "x-consumer-",
    "user": "x-user-",
    "authenticated": "x-authenticated-",
}


@router.api_route("/whoami", methods=["GET", "HEAD"])
async def whoami(request: Request) -> dict[str, Any]:
    """Each group maps the header name minus its prefix (lowercase) to its value:
    `X-Consumer-Username: alice` shows up as `{"consumer": {"username": "alice"}}`.
    A repeated header is joined with ", " as RFC 9110 §5.3 allows."""
    groups: dict[str, dict[str, str]] = {group: {} for group in IDENTITY_PREFIXES}
    for raw_name, raw_value in request.headers.raw:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        for group, prefix in IDENTITY_PREFIXES.items():
            if name.startswith(prefix) and len(name) > len(prefix):
                key = name[len(prefix) :]
                seen = groups[group].get(key)
                groups[group][key] = value if seen is None else f"{seen}, {value}"
    return {
        **groups,
        "authorization": request.headers.get("authorization"),
        "request_id": request.headers.get("x-request-id"),
    }
