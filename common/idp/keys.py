"""The provider's signing keys: one per family, each with a kid, rotated on request."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

# Which key family signs which algorithm (RFC 7518, RFC 8037).
FAMILY = {
    "RS256": "rsa", "RS384": "rsa", "RS512": "rsa", "PS256": "rsa", "ES256": "ec",
    "EdDSA": "okp", "HS256": "hmac", "HS384": "hmac", "HS512": "hmac",
}  # fmt: skip


@dataclass(frozen=True)
class KeySet:
    generation: int
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    okp: ed25519.Ed25519PrivateKey

    def kid(self, family: str) -> str:
        return f"{family}-{self.generation}"

    def private(self, family: str) -> Any:
        return {"rsa": self.rsa, "ec": self.ec, "okp": self.okp}[family]

    def public_jwks(self) -> list[dict[str, Any]]:
        jwks = []
        # No "alg" member: one RSA key signs RS256 and PS256 alike, and which algorithms
        # an issuer may use is the verifier's configuration, never the key's or token's.
        for family, to_jwk in (("rsa", RSAAlgorithm.to_jwk), ("ec", ECAlgorithm.to_jwk),
                               ("okp", OKPAlgorithm.to_jwk)):  # fmt: skip
            jwk = to_jwk(self.private(family).public_key(), as_dict=True)
            jwks.append({**jwk, "kid": self.kid(family), "use": "sig"})
        return jwks


_generations = itertools.count(1)


def new_keyset() -> KeySet:
    return KeySet(
        generation=next(_generations),
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
        okp=ed25519.Ed25519PrivateKey.generate(),
    )


def new_secret() -> str:
    """The HMAC secret a gateway must be configured with: 512 bits, as long as HS512's
    hash (RFC 7518 §3.2 asks for a key at least that long; PyJWT warns below it)."""
    return secrets.token_urlsafe(64)
