"""Verification keys, and which JWS algorithm may be checked with which key.

The algorithm comes from the issuer's configuration, never from the token: a token's
`alg` header is only compared with that list. And the key must fit the algorithm, by
type: an RSA key checks RS256/PS256 and nothing else, an HMAC secret only HS256. That
second rule is what stops key confusion, the classic where a verifier handed an RSA
public key checks an `HS256` token as an HMAC keyed with that public key, a key everyone
has (CVE-2016-10555 and relatives; PyJWT's own CVE-2022-29217 was a variant). PyJWT does
the cryptography (`jwt.algorithms`); which key may meet which algorithm is decided here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import get_default_algorithms

# What each algorithm needs: (kty, curves or None for any). RFC 7518 §3.1, RFC 8037.
FITS: dict[str, tuple[str, frozenset[str] | None]] = {
    **{alg: ("oct", None) for alg in ("HS256", "HS384", "HS512")},
    **{alg: ("RSA", None) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
ALGORITHMS = frozenset(FITS)
# RFC 7518 §3.2: an HMAC key at least as long as the hash; §3.3: RSA keys of 2048 bits.
MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
MIN_RSA_BITS = 2048
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_IMPLEMENTATIONS = get_default_algorithms()


class KeyProblem(ValueError):
    """A key that cannot be used (bad JWK, unsupported type, too short)."""


@dataclass(frozen=True, slots=True)
class VerifyKey:
    kid: str | None
    kty: str  # "RSA", "EC", "OKP", "oct"
    crv: str | None
    key: Any  # a cryptography public key, or the HMAC secret's bytes
    alg: str | None = None  # a JWK's own "alg": then only that one

    def fits(self, alg: str) -> bool:
        if self.alg is not None and self.alg != alg:
            return False
        kty, curves = FITS[alg]
        if self.kty != kty or (curves is not None and self.crv not in curves):
            return False
        return alg not in MIN_SECRET_BYTES or len(self.key) >= MIN_SECRET_BYTES[alg]

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """The signature check itself (PyJWT's implementation of `alg`)."""
        return bool(_IMPLEMENTATIONS[alg].verify(signing_input, self.key, signature))


def from_public_key(public: Any, kid: str | None, alg: str | None = None) -> VerifyKey:
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise KeyProblem(f"an RSA key of {public.key_size} bits; at least {MIN_RSA_BITS}")
        return VerifyKey(kid=kid, kty="RSA", crv=None, key=public, alg=alg)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return VerifyKey(
            kid=kid,
            kty="EC",
            crv=_CURVES.get(public.curve.name, public.curve.name),
            key=public,
            alg=alg,
        )
    if isinstance(public, ed25519.Ed25519PublicKey):
        return VerifyKey(kid=kid, kty="OKP", crv="Ed25519", key=public, alg=alg)
    if isinstance(public, ed448.Ed448PublicKey):
        return VerifyKey(kid=kid, kty="OKP", crv="Ed448", key=public, alg=alg)
    raise KeyProblem(f"unsupported key type {type(public).__name__}")


def from_pem(pem: str, kid: str | None) -> VerifyKey:
    try:
        public = load_pem_public_key(pem.encode())
    except ValueError as exc:
        raise KeyProblem(f"not a PEM public key: {exc}") from None
    return from_public_key(public, kid)


def from_secret(secret: str, kid: str | None) -> VerifyKey:
    if len(secret.encode()) < MIN_SECRET_BYTES["HS256"]:
        raise KeyProblem("an HMAC secret needs 32 bytes at least (64 for HS512)")
    return VerifyKey(kid=kid, kty="oct", crv=None, key=secret.encode())


def from_jwk(data: dict[str, Any]) -> VerifyKey:
    """One JWK (RFC 7517) with its public parts; a private one is refused (a verifier
    must never be handed, or keep, a signing key)."""
    kid = data.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyProblem("kid must be a string")
    alg = data.get("alg")
    if alg is not None and alg not in ALGORITHMS:
        raise KeyProblem(f"alg {alg!r} is not one this gateway verifies")
    if data.get("use", "sig") != "sig":
        raise KeyProblem(f"use {data.get('use')!r}: not a signing key")
    if data.get("kty") != "oct" and "d" in data:
        raise KeyProblem("a private key: publish the public part only")
    try:
        parsed = jwt.PyJWK(data, algorithm=alg)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise KeyProblem(f"not a usable JWK: {exc}") from None
    if data.get("kty") == "oct":
        if len(parsed.key) < MIN_SECRET_BYTES["HS256"]:
            raise KeyProblem("an HMAC key needs 32 bytes at least")
        return VerifyKey(kid=kid, kty="oct", crv=None, key=parsed.key, alg=alg)
    return from_public_key(parsed.key, kid, alg)
