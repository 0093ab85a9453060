"""A JWT, parsed strictly and verified against one issuer's policy.

    header.payload.signature       (JWS compact serialisation, RFC 7515 §7.1)

In the order a token meets the checks, each one an attack it stops:

1. At most `max_token_bytes` (8 KiB): a 1 MB "token" costs a base64 decode and a JSON
   parse before anything else can refuse it.
2. Exactly three segments, each strict base64url (no padding, no `+` or `/`, no
   whitespace): a decoder that skips junk reads what a stricter one upstream does not.
3. Header and payload are JSON objects, UTF-8, with no duplicate member names (RFC 7515
   §5.2 / RFC 8725 §3.13: `{"sub":"alice","sub":"admin"}` is alice to one parser and admin
   to the next) and no NaN or Infinity.
4. The issuer comes from the unverified `iss` only to choose whose policy applies; the
   token is then checked against that issuer's keys and nothing else.
5. `alg` must be one of the issuer's configured algorithms, compared exactly: `none` in
   any spelling is never among them (config.py refuses it), and the key must fit the
   algorithm by type (keys.py: the key-confusion attack).
6. `crit` names header extensions the verifier must understand (RFC 7515 §4.1.11); this
   one understands none, so a token with `crit` is refused. `jku`, `x5u`, `jwk` and `x5c`
   (a key, or where to fetch one, chosen by the token's sender) are never read.
7. `kid`: printable ASCII, at most 256 characters. It is only ever a dictionary key,
   never a path or a query, so `../../dev/null` or `' OR 1=1 --` is just an unknown kid;
   an unknown kid costs at most one JWKS refetch per interval (jwks.py).
8. The signature, with PyJWT's implementation of the algorithm: an ECDSA signature of
   r = s = 0 ("psychic signatures", CVE-2022-21449) fails like any other wrong one, and an
   empty signature never gets that far.
9. The claims: `iss` equal to the issuer; `aud` naming one of the issuer's audiences;
   `exp`, `nbf`, `iat` as numbers, with `leeway` for clock skew; the required claims
   (`exp` by default: a token without it would be valid forever, so by policy it is not
   valid at all); `sub` always, since the identity is built from it.

PyJWT's `jwt.decode` does most of 2-9 too; this module does them itself because three
of them (duplicate keys, `crit`, the key's type against the algorithm) are not its
defaults, and because parsing once is cheaper than parsing twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

KID = re.compile(r"[\x21-\x7e]{1,256}")
_B64URL = re.compile(r"[A-Za-z0-9_\-]*")


class Invalid(Exception):
    """The token is not accepted. The message is for the log, never for the client."""


@dataclass(frozen=True, slots=True)
class Token:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes  # "header.payload", the bytes the signature covers
    signature: bytes


def parse(token: str, max_bytes: int) -> Token:
    if len(token) > max_bytes:
        raise Invalid(f"token of {len(token)} bytes, over the {max_bytes} allowed")
    parts = token.split(".")
    if len(parts) != 3:
        raise Invalid(f"{len(parts)} segments, not 3 (JWE and JSON serialisation refused)")
    header, claims = _json(parts[0], "header"), _json(parts[1], "payload")
    signature = _b64(parts[2], "signature")
    if not signature:
        raise Invalid("no signature")
    return Token(
        header=header,
        claims=claims,
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=signature,
    )


def _b64(part: str, what: str) -> bytes:
    if len(part) % 4 == 1 or not _B64URL.fullmatch(part):
        raise Invalid(f"{what}: not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise Invalid(f"{what}: not base64url") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise Invalid(f"duplicate member {name!r}")
        found[name] = value
    return found


def _no_constants(name: str) -> None:
    raise Invalid(f"{name} is not JSON")


def _json(part: str, what: str) -> dict[str, Any]:
    raw = _b64(part, what)
    try:
        value = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Invalid(f"{what}: not a UTF-8 JSON object") from None
    if not isinstance(value, dict):
        raise Invalid(f"{what}: not a JSON object")
    return value


def header_fields(header: dict[str, Any], algorithms: frozenset[str]) -> tuple[str, str | None]:
    """(alg, kid) from a header the issuer's policy accepts."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise Invalid(f"alg {alg!r} is not one of this issuer's ({', '.join(sorted(algorithms))})")
    if "crit" in header:
        raise Invalid(f"crit {header['crit']!r}: no header extension is understood")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not KID.fullmatch(kid)):
        raise Invalid("kid is not printable ASCII of at most 256 characters")
    return alg, kid


@dataclass(frozen=True, slots=True)
class ClaimsPolicy:
    issuer: str
    audiences: frozenset[str]
    leeway: float
    required: tuple[str, ...]


def check_claims(claims: dict[str, Any], policy: ClaimsPolicy, now: float) -> None:
    for name in policy.required:
        if name not in claims:
            raise Invalid(f"required claim {name!r} is missing")
    if claims.get("iss") != policy.issuer:
        raise Invalid(f"iss {claims.get('iss')!r} is not {policy.issuer!r}")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Invalid("sub is missing or not a string")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not policy.audiences.intersection(
        a for a in audiences if isinstance(a, str)
    ):
        raise Invalid(f"aud {aud!r} names none of {sorted(policy.audiences)}")
    leeway = policy.leeway
    if (exp := _time(claims, "exp")) is not None and now > exp + leeway:
        raise Invalid(f"expired {now - exp:.0f} s ago")
    if (nbf := _time(claims, "nbf")) is not None and now + leeway < nbf:
        raise Invalid(f"not valid for another {nbf - now:.0f} s (nbf)")
    if (iat := _time(claims, "iat")) is not None and now + leeway < iat:
        raise Invalid(f"issued {iat - now:.0f} s in the future (iat)")


def _time(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{name} is not a number")
    return float(value)


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """`scope` (RFC 8693 §4.2: space-separated) or `scp` (a list, Azure AD / Okta)."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, str):
        return frozenset(scp.split())
    if isinstance(scp, list):
        return frozenset(s for s in scp if isinstance(s, str))
    return frozenset()
