"""Hostile tokens, for stage 06's attack tests: what a gateway's JWT check must refuse.

Each builder makes the token an attacker would send, from what an attacker has: the
claims they want, and whatever the issuer publishes (its JWKS, its public keys). None of
them needs a private key; the attacks that need a *validly signed* odd token (a `jku` or
`crit` header, duplicate JSON keys, a traversal `kid`) are issued by the provider itself
(`/token` with `header` or `raw_payload`), because the point there is what the gateway
does with a token whose signature is fine.

What they stand for: alg "none" accepted as "no signature needed" (the oldest JWT bug,
found again and again); RS/HS key confusion, an HMAC keyed with the public key (PyJWT's
own CVE-2022-29217 was a variant); "psychic signatures", ECDSA r = s = 0 accepted by
Java 15-18 (CVE-2022-21449).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def assemble(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    """header.payload.signature, each part base64url-encoded as JWS compact form wants."""
    parts = [b64url(json.dumps(header, separators=(",", ":")).encode()),
             b64url(json.dumps(claims, separators=(",", ":")).encode())]  # fmt: skip
    return ".".join([*parts, b64url(signature)])


def alg_none(claims: dict[str, Any], spelling: str = "none") -> str:
    """No signature at all, and a header that says so (in any capitalisation)."""
    return assemble({"alg": spelling, "typ": "JWT"}, claims, b"")


def hs256_with_public_key(claims: dict[str, Any], public_pem: bytes, kid: str) -> str:
    """Key confusion: an HMAC over the token keyed with the issuer's *public* RSA key. A
    verifier that takes the algorithm from the token and the key from its config would
    check an HMAC with a key everyone has."""
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    unsigned = assemble(header, claims, b"").rsplit(".", 1)[0]
    signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{b64url(signature)}"


def psychic_es256(claims: dict[str, Any], kid: str) -> str:
    """ES256 with r = s = 0: 64 zero bytes, which a broken ECDSA check accepts for any
    message and any key."""
    return assemble({"alg": "ES256", "typ": "JWT", "kid": kid}, claims, bytes(64))


def stripped(token: str) -> str:
    """The signature cut off, the dot kept: `header.payload.`."""
    return token.rsplit(".", 1)[0] + "."


def resigned_claims(token: str, claims: dict[str, Any]) -> str:
    """The header and signature of a real token around other claims (a tampered payload)."""
    header, _, signature = token.split(".")
    return ".".join([header, b64url(json.dumps(claims, separators=(",", ":")).encode()),
                     signature])  # fmt: skip


def extra_segment(token: str) -> str:
    return token + "." + b64url(b"{}")


def bad_base64(token: str) -> str:
    """A payload character outside base64url (`*`), the rest untouched."""
    header, payload, signature = token.split(".")
    return ".".join([header, payload[:-1] + "*", signature])
