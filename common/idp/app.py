"""The identity provider's HTTP endpoints (see __init__.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from aiohttp import web

from .keys import FAMILY, KeySet, new_keyset, new_secret

JWKS_MAX_AGE = 300  # seconds a verifier may keep the key set (Cache-Control)
MAX_LIFETIME = 86400
RESERVED = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "scope"})


class Provider:
    def __init__(self, issuer: str, secret: str | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.secret = secret or new_secret()
        self.current: KeySet = new_keyset()
        self.published: list[KeySet] = [self.current]  # newest first
        self.jwks_fetches = 0
        self.tokens = 0

    def rotate(self, drop_old: bool) -> KeySet:
        self.current = new_keyset()
        self.published = [self.current] + ([] if drop_old else self.published[:1])
        return self.current

    def issue(self, request: dict[str, Any]) -> dict[str, Any]:
        alg = request.get("alg", "RS256")
        if alg not in FAMILY:
            raise ValueError(f"alg {alg!r}: one of {', '.join(FAMILY)}")
        lifetime = request.get("expires_in", 300)
        if not isinstance(lifetime, int) or not -MAX_LIFETIME <= lifetime <= MAX_LIFETIME:
            raise ValueError(f"expires_in: whole seconds up to {MAX_LIFETIME} (negative: expired)")
        extra = request.get("claims", {})
        if not isinstance(extra, dict):
            raise ValueError("claims: a JSON object")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": request.get("iss", self.issuer),
            "sub": request.get("sub", "alice"),
            "aud": request.get("aud", "api"),
            "iat": now,
            "exp": now + lifetime,
            **({"scope": request["scope"]} if "scope" in request else {}),
            **({"nbf": now + request["not_before"]} if "not_before" in request else {}),
            **extra,  # anything, reserved names included: tests need odd tokens too
        }
        header = request.get("header", {})
        if not isinstance(header, dict):
            raise ValueError("header: a JSON object (extra JWS header fields: jku, crit, kid...)")
        family = FAMILY[alg]
        if family == "hmac":
            key, kid = self.secret, "hmac"
        else:
            key, kid = self.current.private(family), self.current.kid(family)
        headers = {"kid": kid, **header}
        raw = request.get("raw_payload")
        if raw is not None:  # signed exactly as given: duplicate keys, odd JSON
            if not isinstance(raw, str):
                raise ValueError("raw_payload: a string, signed byte for byte")
            token = jwt.PyJWS().encode(raw.encode(), key, algorithm=alg, headers=headers)
        else:
            token = jwt.encode(claims, key, algorithm=alg, headers=headers)
        self.tokens += 1
        return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}


def build_app(provider: Provider) -> web.Application:
    app = web.Application()

    async def discovery(request: web.Request) -> web.Response:
        issuer = provider.issuer
        return web.json_response({
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks.json",
            "token_endpoint": f"{issuer}/token",
            "id_token_signing_alg_values_supported": sorted(a for a, f in FAMILY.items()
                                                            if f != "hmac"),
        })  # fmt: skip

    async def jwks(request: web.Request) -> web.Response:
        provider.jwks_fetches += 1
        keys = [jwk for keyset in provider.published for jwk in keyset.public_jwks()]
        return web.json_response(
            {"keys": keys}, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}
        )

    async def token(request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            return web.json_response(provider.issue(body), headers={"Cache-Control": "no-store"})
        except (ValueError, json.JSONDecodeError) as exc:
            return web.json_response({"error": "invalid_request", "error_description": str(exc)},
                                     status=400)  # fmt: skip

    async def rotate(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        keyset = provider.rotate(bool(body.get("drop_old", False)))
        kids = [keyset.kid(family) for family in ("rsa", "ec", "okp")]
        return web.json_response({"kids": kids, "published": len(provider.published) * 3})

    async def stats(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            provider.jwks_fetches = provider.tokens = 0
        return web.json_response({"jwks_fetches": provider.jwks_fetches, "tokens": provider.tokens})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "issuer": provider.issuer})

    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks.json", jwks)
    app.router.add_post("/token", token)
    app.router.add_post("/_rotate", rotate)
    app.router.add_route("GET", "/_stats", stats)
    app.router.add_route("DELETE", "/_stats", stats)
    app.router.add_get("/health", health)
    return app
