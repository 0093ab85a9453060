"""common/idp: the identity provider stage 06's tests and demo get real tokens from."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from common.idp import forge
from common.testing.processes import Proc, spawn

SECRET = "a-test-secret-" + "x" * 64  # HS512 wants 64 bytes at least (RFC 7518 §3.2)


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[Proc]:
    proc = spawn("idp", [sys.executable, "-m", "common.idp", "--secret", SECRET], log_dir=tmp_path)
    yield proc
    proc.stop()


def call(
    idp: Proc, path: str, body: dict[str, Any] | None = None, method: str | None = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(idp.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def keys_by_kid(idp: Proc) -> dict[str, jwt.PyJWK]:
    return {k["kid"]: jwt.PyJWK(k) for k in call(idp, "/jwks.json")["keys"]}


def verify(idp: Proc, token: str, alg: str) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    key = SECRET if alg.startswith("HS") else keys_by_kid(idp)[kid].key
    return jwt.decode(token, key, algorithms=[alg], audience="api")


def test_discovery_names_the_issuer_and_its_key_set(idp: Proc) -> None:
    config = call(idp, "/.well-known/openid-configuration")
    assert config["issuer"] == idp.url and config["jwks_uri"] == f"{idp.url}/jwks.json"
    assert {"RS256", "ES256", "EdDSA"} <= set(config["id_token_signing_alg_values_supported"])
    with urllib.request.urlopen(config["jwks_uri"], timeout=5) as response:
        assert response.headers["Cache-Control"] == "public, max-age=300"
        kids = [k["kid"] for k in json.load(response)["keys"]]
    assert kids == ["rsa-1", "ec-1", "okp-1"]  # one per family, generation 1
    assert call(idp, "/_stats")["jwks_fetches"] == 1


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "ES256", "EdDSA", "HS256",
                                 "HS384", "HS512"])  # fmt: skip
def test_tokens_are_signed_as_asked_and_verify_with_the_published_keys(idp: Proc, alg: str) -> None:
    issued = call(idp, "/token", {"sub": "bob", "alg": alg, "scope": "orders:read",
                                  "expires_in": 120, "claims": {"team": "blue"}})  # fmt: skip
    assert issued["token_type"] == "Bearer" and issued["expires_in"] == 120
    assert jwt.get_unverified_header(issued["access_token"])["alg"] == alg
    claims = verify(idp, issued["access_token"], alg)
    assert claims["iss"] == idp.url and claims["sub"] == "bob" and claims["aud"] == "api"
    assert claims["exp"] - claims["iat"] == 120
    assert claims["scope"] == "orders:read" and claims["team"] == "blue"


def test_a_negative_lifetime_issues_an_expired_token(idp: Proc) -> None:
    token = call(idp, "/token", {"expires_in": -30})["access_token"]
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(idp, token, "RS256")


def test_rotation_publishes_new_keys_beside_the_old_until_they_are_dropped(idp: Proc) -> None:
    old = call(idp, "/token", {})["access_token"]
    rotated = call(idp, "/_rotate", {}, "POST")
    new = call(idp, "/token", {})["access_token"]
    assert jwt.get_unverified_header(new)["kid"] in rotated["kids"]
    assert jwt.get_unverified_header(old)["kid"] not in rotated["kids"]
    assert len(keys_by_kid(idp)) == 6  # both generations: old tokens still verify
    verify(idp, old, "RS256")
    call(idp, "/_rotate", {"drop_old": True}, "POST")
    published = keys_by_kid(idp)
    assert len(published) == 3 and jwt.get_unverified_header(new)["kid"] not in published


def test_an_unknown_algorithm_is_refused(idp: Proc) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        call(idp, "/token", {"alg": "none"})
    assert refused.value.code == 400
    assert json.load(refused.value)["error"] == "invalid_request"


# --- forge.py: what an attacker sends, and that a correct verifier refuses it -----------


CLAIMS = {"iss": "http://idp", "sub": "mallory", "aud": "api", "exp": 4_102_444_800}


def public_key(idp: Proc, kid: str) -> Any:
    return keys_by_kid(idp)[kid].key


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused_by_a_verifier_that_names_its_algorithms(
    idp: Proc, spelling: str
) -> None:
    token = forge.alg_none(CLAIMS, spelling)
    assert token.endswith(".")  # no signature at all
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(token, public_key(idp, "rsa-1"), algorithms=["RS256"], audience="api")


def test_key_confusion_is_a_valid_hmac_with_the_public_key_and_is_refused(idp: Proc) -> None:
    from cryptography.hazmat.primitives import serialization

    rsa_key = public_key(idp, "rsa-1")
    pem = rsa_key.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    token = forge.hs256_with_public_key(CLAIMS, pem, "rsa-1")
    unsigned, signature = token.rsplit(".", 1)
    naive = forge.b64url(hmac.new(pem, unsigned.encode(), hashlib.sha256).digest())
    assert signature == naive  # a verifier trusting the header's alg would accept it
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, rsa_key, algorithms=["RS256"], audience="api")


def test_psychic_signature_is_refused(idp: Proc) -> None:
    token = forge.psychic_es256(CLAIMS, "ec-1")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, public_key(idp, "ec-1"), algorithms=["ES256"], audience="api")


def test_stripped_tampered_and_malformed_tokens_are_refused(idp: Proc) -> None:
    real = call(idp, "/token", {"alg": "RS256"})["access_token"]
    key = public_key(idp, "rsa-1")
    for token in (forge.stripped(real), forge.resigned_claims(real, CLAIMS),
                  forge.extra_segment(real), forge.bad_base64(real)):  # fmt: skip
        with pytest.raises(jwt.InvalidTokenError):
            jwt.decode(token, key, algorithms=["RS256"], audience="api")
    jwt.decode(real, key, algorithms=["RS256"], audience="api")  # the untouched one passes


def segment(token: str, n: int) -> bytes:
    part = token.split(".")[n]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_the_provider_signs_odd_headers_and_raw_payloads(idp: Proc) -> None:
    """Validly signed oddities: what a gateway does with them is its own business."""
    headers = {"jku": "http://evil.example/jwks", "crit": ["x-unknown"], "kid": "../../etc/passwd"}
    token = call(idp, "/token", {"header": headers})["access_token"]
    # Read by hand: PyJWT itself refuses to parse a header whose `crit` it does not know.
    header = json.loads(segment(token, 0))
    assert {k: header[k] for k in headers} == headers
    raw = '{"sub":"alice","sub":"admin","aud":"api","exp":4102444800}'
    token = call(idp, "/token", {"alg": "HS256", "raw_payload": raw})["access_token"]
    assert segment(token, 1).decode() == raw
    assert jwt.PyJWS().decode(token, SECRET, algorithms=["HS256"]).decode() == raw
