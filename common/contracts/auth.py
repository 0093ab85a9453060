"""The auth contract: what every stage from 06 on does about who is calling.

A stage runs it from `tests/test_auth_contract.py`:

    from common.contracts.auth import *  # noqa: F403

with the `stage_dir` and `render` fixtures of its conftest.py. Everything is real: the
identity provider (common/idp) signs tokens with its own keys and publishes them as a
JWKS, the gateway fetches them, and the backend behind it counts every request it
answers (`/_stats`) and shows the identity headers it received (`/whoami`).

- API keys: a valid key is accepted and becomes its consumer's identity upstream; a
  wrong key, a missing one, one in the wrong place, a prefix of a valid one: 401;
- JWT: every algorithm the issue lists verifies (RS256/384/512, PS256, ES256, EdDSA,
  HS256/384/512); scopes (403 insufficient_scope); leeway;
- attacks, each refused with 401 *and never reaching the upstream*: alg none in every
  capitalisation, key confusion (HS256 keyed with the RSA public key), stripped signature,
  psychic ECDSA (r = s = 0), expired, not yet valid, wrong iss, wrong aud, no exp, alg
  that does not fit the key, odd kids, jku/x5u/jwk headers, crit, tokens over 8 KiB,
  malformed base64, extra segments, duplicate JSON keys, a tampered payload;
- unknown kids: a refetch at most once per interval; a rotated key accepted after it;
- identity headers: the client's own are removed on every route, the credential is not
  forwarded unless the route says so;
- the cache: consumer B never gets what the origin answered consumer A, unless the
  response allows sharing; a per-consumer route keeps each one's entries apart;
- the admin listener is not reachable through the public port.

Run against stage 05 it fails: 05 has no [auth], every request reaches the upstream.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from common.contracts.wire import Reply, assert_problem, send
from common.idp import forge
from common.testing.gateway import Render, start_gateway
from common.testing.processes import REPO_ROOT, Proc, child_env, spawn, start_backend, wait_healthy
from common.testing.specs import (
    AuthSpec,
    ConsumerSpec,
    GatewaySpec,
    IssuerSpec,
    RouteAuthSpec,
    RouteSpec,
)

SECRET = "contract-hmac-secret-" + "x" * 64  # 85 bytes: long enough for HS512
# Two API keys of alice (rotation: both work) and one of bob, in the gateway's format.
ALICE_KEY = "gwk_alice001_" + "A" * 43
ALICE_NEXT = "gwk_alice002_" + "B" * 43
BOB_KEY = "gwk_bobbob01_" + "C" * 43
# A key another gateway made, brought in as it is (imported = true): carol keeps using it.
CAROL_OLD_KEY = "probe-key-3f9a7c1e5b2d4680"
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "ES256", "EdDSA")
HMAC = ("HS256", "HS384", "HS512")


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


# --- the identity provider ----------------------------------------------------------------


class Idp:
    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.url = proc.url

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=5) as response:
            # the type ignore below: the IdP's JSON: a dict by its own contract
            return json.load(response)  # type: ignore[no-any-return]

    def token(self, **request: Any) -> str:
        return str(self._post("/token", request)["access_token"])

    def rotate(self, drop_old: bool = False) -> list[str]:
        return list(self._post("/_rotate", {"drop_old": drop_old})["kids"])

    def jwks(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/jwks.json", timeout=5) as response:
            return list(json.load(response)["keys"])

    def fetches(self) -> int:
        with urllib.request.urlopen(self.url + "/_stats", timeout=5) as response:
            return int(json.load(response)["jwks_fetches"])

    def kid(self, kty: str) -> str:
        return next(str(k["kid"]) for k in self.jwks() if k["kty"] == kty)

    def rsa_public_pem(self) -> bytes:
        jwk = next(k for k in self.jwks() if k["kty"] == "RSA")
        public = RSAAlgorithm.from_jwk(jwk)
        # the type ignore below: an RSA JWK gives an RSA public key
        return public.public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    proc = spawn("idp", [sys.executable, "-m", "common.idp", "--secret", SECRET],
                 log_dir=tmp_path_factory.mktemp("idp"))  # fmt: skip
    yield Idp(proc)
    proc.stop()


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_backend("users", "a", log_dir=tmp_path_factory.mktemp("auth-origin"))
    yield proc
    proc.stop()


def auth_spec(idp: Idp, refetch_interval: float = 1.0) -> AuthSpec:
    return AuthSpec(
        issuers=(
            IssuerSpec(
                "demo",
                idp.url,
                ASYMMETRIC,
                jwks_url=idp.url + "/jwks.json",
                refetch_interval=refetch_interval,
            ),
            # HS and RS allowed at once, keys from the JWKS (which has no HMAC key): the
            # configuration where key confusion would bite if the key type were not checked.
            IssuerSpec(
                "mixed",
                idp.url + "/mixed",
                ("RS256", "HS256"),
                jwks_url=idp.url + "/jwks.json",
                refetch_interval=refetch_interval,
            ),
            IssuerSpec("hmac", idp.url + "/hmac", HMAC, secret=SECRET),
            IssuerSpec(
                "lax",
                idp.url + "/lax",
                ("RS256",),
                jwks_url=idp.url + "/jwks.json",
                required_claims=(),
            ),
        ),  # fmt: skip
        consumers=(
            ConsumerSpec(
                "alice",
                "Alice",
                scopes=("orders:read",),
                groups=("staff",),
                api_keys=(("alice001", key_hash(ALICE_KEY)), ("alice002", key_hash(ALICE_NEXT))),
                subjects=("demo:alice",),
            ),
            ConsumerSpec("bob", "Bob", api_keys=(("bobbob01", key_hash(BOB_KEY)),)),
            ConsumerSpec("carol", "Carol", imported_keys=(("legacy-1", key_hash(CAROL_OLD_KEY)),)),
        ),  # fmt: skip
    )


def routes(origin: Proc) -> list[RouteSpec]:
    def route(prefix: str, **auth: Any) -> RouteSpec:
        return RouteSpec(prefix, origin.url, strip_prefix=True, auth=RouteAuthSpec(**auth))

    return [
        route("/public"),
        route("/key", mode="key"),
        route("/keyq", mode="key", key_query="api_key"),
        route("/jwt", mode="jwt", issuers=("demo",)),
        route("/mixed", mode="jwt", issuers=("mixed",)),
        route("/hs", mode="jwt", issuers=("hmac",)),
        route("/lax", mode="jwt", issuers=("lax",)),
        route("/either", mode="either"),
        route("/scoped", mode="jwt", scopes=("orders:write",)),
        route("/keyscoped", mode="key", scopes=("orders:read",)),
        route("/forward", mode="jwt", forward_credential=True),
        RouteSpec("/cache", origin.url, auth=RouteAuthSpec(mode="either")),
        RouteSpec("/cache/mine", origin.url, auth=RouteAuthSpec(mode="either",
                                                              per_consumer_cache=True)),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def gateway(idp: Idp, origin: Proc, stage_dir: Path, render: Render,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:  # fmt: skip
    spec = GatewaySpec(routes(origin), auth=auth_spec(idp))
    proc = start_gateway(stage_dir, render(spec), tmp_path_factory.mktemp("auth-gateway"))
    yield proc
    proc.stop()


# --- helpers ------------------------------------------------------------------------------


def get(gateway: Proc, target: str, headers: list[tuple[str, str]] | None = None) -> Reply:
    return send(gateway.port, "GET", target, headers or [])


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def upstream_requests(origin: Proc) -> int:
    with urllib.request.urlopen(origin.url + "/_stats", timeout=5) as response:
        return int(json.load(response)["requests"])


def whoami(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, (reply.status, reply.body[:300])
    # the type ignore below: the gateway's JSON: a dict by the contract
    return reply.json()  # type: ignore[no-any-return]


def assert_refused(gateway: Proc, origin: Proc, target: str, headers: list[tuple[str, str]],
                   status: int = 401) -> Reply:  # fmt: skip
    """Refused by the gateway with a problem, and the upstream never asked."""
    before = upstream_requests(origin)
    reply = get(gateway, target, headers)
    problem = assert_problem(reply, status)
    assert upstream_requests(origin) == before, "a refused request reached the upstream"
    if status == 401:
        assert reply.header("WWW-Authenticate"), "a 401 must carry a challenge (RFC 9110 §11.6.1)"
    assert problem["status"] == status
    return reply


def claims(idp: Idp, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": idp.url, "sub": "mallory", "aud": "api", "iat": now, "exp": now + 300, **extra}


# --- API keys -----------------------------------------------------------------------------


def test_a_valid_api_key_is_its_consumers_identity_upstream(gateway: Proc) -> None:
    seen = whoami(get(gateway, "/key/whoami", [("X-API-Key", ALICE_KEY)]))
    assert seen["consumer"] == {"id": "alice", "username": "Alice", "groups": "staff"}
    assert seen["authenticated"]["subject"] == "alice"
    assert seen["authenticated"]["scope"] == "orders:read"
    # Both of alice's keys work (rotation), and bob's key is bob.
    assert (
        whoami(get(gateway, "/key/whoami", [("X-API-Key", ALICE_NEXT)]))["consumer"]["id"]
        == "alice"
    )
    assert whoami(get(gateway, "/key/whoami", [("X-API-Key", BOB_KEY)]))["consumer"]["id"] == "bob"


def test_the_api_key_is_not_forwarded(gateway: Proc) -> None:
    echo = get(gateway, "/key/echo", [("X-API-Key", ALICE_KEY)]).json()
    names = [name for name, _ in echo["headers"]]
    assert "x-api-key" not in names
    assert "x-credential-identifier" in names


@pytest.mark.parametrize(
    "headers",
    [
        [],  # missing
        [("X-API-Key", ALICE_KEY[:-1])],  # a prefix of a valid key
        [("X-API-Key", ALICE_KEY[:-1] + "Z")],  # one character changed
        [("X-API-Key", "gwk_nosuchid_" + "A" * 43)],  # an id nobody has
        [("X-API-Key", "not-a-key")],
        [("X-API-Key", "")],
        [("X-Api-Key-Wrong", ALICE_KEY)],  # the wrong header
        [("Authorization", f"Bearer {ALICE_KEY}")],  # a key where a token would go
    ],
    ids=["missing", "prefix", "changed", "unknown-id", "garbage", "empty", "wrong-header",
         "as-bearer"],
)  # fmt: skip
def test_api_key_refused(gateway: Proc, origin: Proc, headers: list[tuple[str, str]]) -> None:
    reply = assert_refused(gateway, origin, "/key/whoami", headers)
    assert (reply.header("WWW-Authenticate") or "").startswith('ApiKey realm="gateway"')


def test_api_key_in_the_wrong_place(gateway: Proc, origin: Proc) -> None:
    # /key reads the header only: a key in the query is not a credential there.
    assert_refused(gateway, origin, f"/key/whoami?api_key={ALICE_KEY}", [])
    # /keyq reads the query too, and then the key is not forwarded upstream in it.
    echo = get(gateway, f"/keyq/echo?a=1&api_key={ALICE_KEY}&b=2").json()
    assert echo["query"] == "a=1&b=2"
    assert ALICE_KEY not in json.dumps(echo)
    assert get(gateway, f"/keyq/whoami?api_key={BOB_KEY}").json()["consumer"]["id"] == "bob"


def test_two_api_keys_are_a_bad_request(gateway: Proc, origin: Proc) -> None:
    assert_refused(gateway, origin, "/key/whoami",
                   [("X-API-Key", ALICE_KEY), ("X-API-Key", BOB_KEY)], status=400)  # fmt: skip


def test_key_scopes(gateway: Proc, origin: Proc) -> None:
    assert get(gateway, "/keyscoped/whoami", [("X-API-Key", ALICE_KEY)]).status == 200
    assert_refused(gateway, origin, "/keyscoped/whoami", [("X-API-Key", BOB_KEY)], status=403)


# --- JWT: what must work ------------------------------------------------------------------


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_every_asymmetric_algorithm_verifies(gateway: Proc, idp: Idp, alg: str) -> None:
    seen = whoami(get(gateway, "/jwt/whoami", bearer(idp.token(alg=alg, sub="carol",
                                                               scope="a b"))))  # fmt: skip
    assert seen["consumer"]["id"] == "demo:carol"
    assert seen["authenticated"]["subject"] == "carol"
    assert seen["authenticated"]["scope"] == "a b"
    assert seen["authorization"] is None, "the token went upstream"


@pytest.mark.parametrize("alg", HMAC)
def test_every_hmac_algorithm_verifies(gateway: Proc, idp: Idp, alg: str) -> None:
    token = idp.token(alg=alg, iss=idp.url + "/hmac", sub="svc")
    assert whoami(get(gateway, "/hs/whoami", bearer(token)))["consumer"]["id"] == "hmac:svc"


def test_a_subject_mapped_to_a_consumer(gateway: Proc, idp: Idp) -> None:
    seen = whoami(get(gateway, "/jwt/whoami", bearer(idp.token(sub="alice"))))
    assert seen["consumer"]["id"] == "alice"
    assert seen["consumer"]["groups"] == "staff"


def test_either_takes_a_key_or_a_token(gateway: Proc, origin: Proc, idp: Idp) -> None:
    assert get(gateway, "/either/whoami", [("X-API-Key", BOB_KEY)]).status == 200
    assert get(gateway, "/either/whoami", bearer(idp.token(sub="dave"))).status == 200
    reply = assert_refused(gateway, origin, "/either/whoami", [])
    challenge = reply.header("WWW-Authenticate") or ""
    assert "Bearer" in challenge and "ApiKey" in challenge


def test_missing_token_challenge_has_no_error_code(gateway: Proc, origin: Proc) -> None:
    reply = assert_refused(gateway, origin, "/jwt/whoami", [])
    assert reply.header("WWW-Authenticate") == 'Bearer realm="gateway"'  # RFC 6750 §3.1


def test_scopes_insufficient_is_403(gateway: Proc, origin: Proc, idp: Idp) -> None:
    reply = assert_refused(gateway, origin, "/scoped/whoami",
                           bearer(idp.token(scope="orders:read")), status=403)  # fmt: skip
    challenge = reply.header("WWW-Authenticate") or ""
    assert 'error="insufficient_scope"' in challenge and 'scope="orders:write"' in challenge
    ok = get(gateway, "/scoped/whoami", bearer(idp.token(scope="orders:read orders:write")))
    assert ok.status == 200
    scp = idp.token(claims={"scp": ["orders:write"]})  # Azure AD / Okta spelling
    assert get(gateway, "/scoped/whoami", bearer(scp)).status == 200


def test_leeway_allows_a_little_clock_skew(gateway: Proc, idp: Idp) -> None:
    assert get(gateway, "/jwt/whoami", bearer(idp.token(expires_in=-20))).status == 200
    assert get(gateway, "/jwt/whoami", bearer(idp.token(not_before=20))).status == 200


def test_forward_credential_on_request(gateway: Proc, idp: Idp) -> None:
    token = idp.token()
    assert (
        whoami(get(gateway, "/forward/whoami", bearer(token)))["authorization"] == f"Bearer {token}"
    )


def test_a_valid_token_with_jku_and_x5u_is_judged_by_the_issuers_keys(
    gateway: Proc, idp: Idp
) -> None:
    token = idp.token(header={"jku": "http://127.0.0.1:1/evil.json", "x5u": "http://127.0.0.1:1/x"})
    assert get(gateway, "/jwt/whoami", bearer(token)).status == 200


def test_the_verified_token_cache_still_expires_tokens(
    gateway: Proc, origin: Proc, idp: Idp
) -> None:
    token = idp.token(expires_in=-55)  # inside the 60 s leeway for five seconds or so
    assert get(gateway, "/jwt/whoami", bearer(token)).status == 200
    deadline = time.monotonic() + 10
    while get(gateway, "/jwt/whoami", bearer(token)).status == 200:
        assert time.monotonic() < deadline, "a cached token outlived its exp + leeway"
        time.sleep(0.1)  # polling an observable state (the answer), not waiting for one
    assert_refused(gateway, origin, "/jwt/whoami", bearer(token))


# --- JWT: attacks, each a 401 that never reaches the upstream ----------------------------


@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "nOnE"])
def test_alg_none(gateway: Proc, origin: Proc, idp: Idp, spelling: str) -> None:
    token = forge.alg_none(claims(idp), spelling)
    assert_refused(gateway, origin, "/jwt/whoami", bearer(token))
    # And the signature-less form with the trailing dot dropped, too.
    assert_refused(gateway, origin, "/jwt/whoami", bearer(token.rstrip(".")))


def test_key_confusion_hs256_with_the_rsa_public_key(gateway: Proc, origin: Proc, idp: Idp) -> None:
    pem = idp.rsa_public_pem()
    kid = idp.kid("RSA")
    # On an issuer that allows RS256 and HS256 alike: the key's type decides, not the token.
    forged = forge.hs256_with_public_key(claims(idp, iss=idp.url + "/mixed"), pem, kid)
    assert_refused(gateway, origin, "/mixed/whoami", bearer(forged))
    assert_refused(gateway, origin, "/jwt/whoami",
                   bearer(forge.hs256_with_public_key(claims(idp), pem, kid)))  # fmt: skip
    # The issuer itself is fine: a real RS256 token of it passes.
    good = idp.token(iss=idp.url + "/mixed")
    assert get(gateway, "/mixed/whoami", bearer(good)).status == 200


def test_psychic_ecdsa_signature(gateway: Proc, origin: Proc, idp: Idp) -> None:
    forged = forge.psychic_es256(claims(idp), idp.kid("EC"))
    assert_refused(gateway, origin, "/jwt/whoami", bearer(forged))


@pytest.mark.parametrize(
    "make",
    [
        lambda idp: forge.stripped(idp.token()),
        lambda idp: forge.stripped(idp.token()).rstrip("."),
        lambda idp: forge.extra_segment(idp.token()),
        lambda idp: forge.bad_base64(idp.token()),
        lambda idp: idp.token() + "=",  # padding
        lambda idp: idp.token().replace("-", "+").replace("_", "/") + "+/",  # plain base64
        lambda idp: forge.resigned_claims(idp.token(sub="mallory"), claims(idp, sub="admin")),
        lambda idp: idp.token(expires_in=-120),
        lambda idp: idp.token(not_before=600),
        lambda idp: idp.token(iss="http://evil.example"),
        lambda idp: idp.token(aud="someone-else"),
        lambda idp: idp.token(claims={"iat": int(time.time()) + 3600}),
        lambda idp: idp.token(claims={"exp": "tomorrow"}),
        lambda idp: idp.token(raw_payload=json.dumps({"iss": idp.url, "sub": "x", "aud": "api"})),
        lambda idp: idp.token(raw_payload=(
            f'{{"iss":"{idp.url}","sub":"alice","sub":"admin","aud":"api",'
            f'"exp":{int(time.time()) + 300}}}')),
        lambda idp: idp.token(raw_payload="[1, 2, 3]"),
        lambda idp: idp.token(raw_payload="not json"),
        lambda idp: idp.token(header={"crit": ["exp-ext"], "exp-ext": True}),
        lambda idp: idp.token(claims={"padding": "x" * 9000}),
        lambda idp: idp.token(claims={"sub": "alice\r\nX-Consumer-ID: admin"}),
        lambda idp: idp.token(sub=""),
        lambda idp: "",
        lambda idp: "a.b",
        lambda idp: "....",
    ],
    ids=["stripped", "no-signature-segment", "extra-segment", "bad-base64", "padded",
         "plain-base64", "tampered-payload", "expired", "not-yet-valid", "wrong-iss",
         "wrong-aud", "iat-in-the-future", "exp-not-a-number", "no-exp", "duplicate-keys",
         "payload-not-an-object", "payload-not-json", "crit", "over-8-KiB",
         "sub-with-crlf", "empty-sub", "empty", "two-segments", "empty-segments"],
)  # fmt: skip
def test_token_refused(gateway: Proc, origin: Proc, idp: Idp, make: Callable[[Idp], str]) -> None:
    reply = assert_refused(gateway, origin, "/jwt/whoami", bearer(make(idp)))
    challenge = reply.header("WWW-Authenticate") or ""
    assert challenge.startswith('Bearer realm="gateway"'), challenge


def test_expired_and_forged_look_alike(gateway: Proc, idp: Idp) -> None:
    expired = get(gateway, "/jwt/whoami", bearer(idp.token(expires_in=-120)))
    forged = get(gateway, "/jwt/whoami", bearer(forge.psychic_es256(claims(idp), idp.kid("EC"))))
    assert expired.status == forged.status == 401
    assert expired.header("WWW-Authenticate") == forged.header("WWW-Authenticate")
    drop = ("request_id", "instance")
    assert ({k: v for k, v in expired.json().items() if k not in drop}
            == {k: v for k, v in forged.json().items() if k not in drop})  # fmt: skip


def test_no_exp_is_a_stated_policy(gateway: Proc, origin: Proc, idp: Idp) -> None:
    payload = json.dumps({"iss": idp.url + "/lax", "sub": "x", "aud": "api"})
    # An issuer configured with required_claims = [] takes it; the default refuses it.
    assert get(gateway, "/lax/whoami", bearer(idp.token(raw_payload=payload))).status == 200
    strict = json.dumps({"iss": idp.url, "sub": "x", "aud": "api"})
    assert_refused(gateway, origin, "/jwt/whoami", bearer(idp.token(raw_payload=strict)))


def test_alg_that_does_not_fit_the_key(gateway: Proc, origin: Proc, idp: Idp) -> None:
    # Signed with the RSA key, but naming the EC key's kid; and an ES256 header on an RSA kid.
    assert_refused(gateway, origin, "/jwt/whoami",
                   bearer(idp.token(alg="RS256", header={"kid": idp.kid("EC")})))  # fmt: skip
    rsa_kid = idp.kid("RSA")
    forged = forge.assemble({"alg": "ES256", "kid": rsa_kid}, claims(idp), bytes(64))
    assert_refused(gateway, origin, "/jwt/whoami", bearer(forged))


def test_a_token_of_another_issuer_on_a_route_that_does_not_take_it(gateway: Proc, origin: Proc,
                                                                   idp: Idp) -> None:  # fmt: skip
    hs = idp.token(alg="HS256", iss=idp.url + "/hmac")
    assert_refused(gateway, origin, "/jwt/whoami", bearer(hs))


def test_jku_jwk_and_x5u_of_an_attackers_key_are_ignored(
    gateway: Proc, origin: Proc, idp: Idp
) -> None:
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(mine.public_key(), as_dict=True)
    for header in ({"jku": "http://127.0.0.1:1/jwks.json", "kid": "attacker"},
                   {"jwk": {**jwk, "kid": "attacker"}, "kid": "attacker"},
                   {"x5u": "http://127.0.0.1:1/cert.pem", "kid": "attacker"},
                   {"jwk": jwk}):  # fmt: skip
        token = jwt.encode(claims(idp), mine, algorithm="RS256", headers=header)
        assert_refused(gateway, origin, "/jwt/whoami", bearer(token))


@pytest.mark.parametrize(
    "kid",
    ["../../../../dev/null", "' OR '1'='1", "k" * 300, "../../etc/passwd%00", "", "\u00e9"],
    ids=["traversal", "sql", "oversized", "traversal-nul", "empty", "non-ascii"],
)
def test_odd_kids(gateway: Proc, origin: Proc, idp: Idp, kid: str) -> None:
    assert_refused(gateway, origin, "/jwt/whoami", bearer(idp.token(header={"kid": kid})))


def test_two_authorization_headers(gateway: Proc, origin: Proc, idp: Idp) -> None:
    token = idp.token()
    assert_refused(gateway, origin, "/jwt/whoami", bearer(token) + bearer(token), status=400)


def test_unknown_kids_refetch_at_most_once_per_interval(
    gateway: Proc, origin: Proc, idp: Idp
) -> None:
    before = idp.fetches()
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < 1.5:  # a stream of new kids for 1.5 refetch intervals
        assert_refused(gateway, origin, "/jwt/whoami",
                       bearer(idp.token(header={"kid": f"kid-{uuid.uuid4().hex}"})))  # fmt: skip
        sent += 1
    fetched = idp.fetches() - before
    assert sent >= 10
    assert 1 <= fetched <= 2, f"{sent} unknown kids cost the IdP {fetched} fetches"


# --- keys made elsewhere ------------------------------------------------------------------


def test_an_imported_key_from_another_gateway_works_as_it_is(gateway: Proc, origin: Proc) -> None:
    seen = whoami(get(gateway, "/key/whoami", [("X-API-Key", CAROL_OLD_KEY)]))
    assert seen["consumer"] == {"id": "carol", "username": "Carol"}
    for wrong in (CAROL_OLD_KEY[:-1] + "1", CAROL_OLD_KEY[:15], "x" + CAROL_OLD_KEY):
        assert_refused(gateway, origin, "/key/whoami", [("X-API-Key", wrong)])


def test_check_refuses_a_key_entry_that_can_never_match(
    stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    """The entry a team moving over writes first: the old key's hash under a made-up id,
    without `imported = true`. No gwk_ key can ever have that id: --check says so."""
    consumer = ConsumerSpec("carol", api_keys=(("probe-key", key_hash(CAROL_OLD_KEY)),))
    config = tmp_path / "gateway.toml"
    config.write_text(render(GatewaySpec([RouteSpec("/", "http://127.0.0.1:9")],
                                         auth=AuthSpec(consumers=(consumer,)))))  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "gateway", "--config", str(config), "--check"],
                          cwd=stage_dir, env=child_env(), capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "consumers[0].api_keys[0]" in done.stderr and "imported = true" in done.stderr, (
        done.stderr
    )


# --- identity headers ---------------------------------------------------------------------

SPOOFED = [("X-Consumer-ID", "admin"), ("X-Consumer-Username", "root"),
           ("X-Authenticated-Scope", "admin:all"), ("X-Consumer-Custom-ID", "1"),
           ("X_Consumer_ID", "admin"), ("x-authenticated-subject", "admin"),
           ("X-Credential-Identifier", "key:root")]  # fmt: skip


def test_spoofed_identity_headers_are_removed_on_public_routes(gateway: Proc) -> None:
    echo = get(gateway, "/public/echo", SPOOFED + [("X-Other", "kept")]).json()
    names = [name for name, _ in echo["headers"]]
    assert not [n for n in names if n.replace("_", "-").startswith(
        ("x-consumer-", "x-authenticated-", "x-credential-"))], names  # fmt: skip
    assert "x-other" in names


def test_spoofed_identity_headers_are_replaced_on_protected_routes(gateway: Proc, idp: Idp) -> None:
    seen = whoami(get(gateway, "/key/whoami", SPOOFED + [("X-API-Key", BOB_KEY)]))
    assert seen["consumer"] == {"id": "bob", "username": "Bob"}
    assert "admin" not in json.dumps(seen)
    seen = whoami(get(gateway, "/jwt/whoami", SPOOFED + bearer(idp.token(sub="erin"))))
    assert seen["consumer"]["id"] == "demo:erin"
    assert "admin" not in json.dumps(seen)


# Names other proxies set for "the user", which upstreams behind them trust (oauth2-proxy,
# Apache and nginx auth_request, Grafana): a client must not be able to send them through.
TRUSTED_ELSEWHERE = [("X-User-ID", "admin"), ("X-Auth-Subject", "admin"),
                     ("X-Forwarded-User", "admin"), ("X-Remote-User", "admin"),
                     ("X-Auth-Request-User", "admin"), ("X_Remote_User", "admin"),
                     ("x_auth_request_email", "admin@example.com"), ("Remote-User", "admin"),
                     ("X-Forwarded-Email", "admin@example.com")]  # fmt: skip


def sent_upstream(reply: Reply) -> list[str]:
    assert reply.status == 200, (reply.status, reply.body[:300])
    return [name for name, _ in reply.json()["headers"]]


def test_identity_headers_other_proxies_set_never_reach_the_upstream(
    gateway: Proc, idp: Idp
) -> None:
    for target, credential in (("/public/echo", []), ("/key/echo", [("X-API-Key", BOB_KEY)]),
                               ("/jwt/echo", bearer(idp.token(sub="erin")))):  # fmt: skip
        names = sent_upstream(get(gateway, target, TRUSTED_ELSEWHERE + credential))
        forged = {n.lower().replace("_", "-") for n, _ in TRUSTED_ELSEWHERE}
        assert not forged.intersection(n.replace("_", "-") for n in names), (target, names)


def test_the_removed_list_can_grow_and_one_name_can_be_kept(
    origin: Proc, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    auth = AuthSpec(strip_headers=("X-Tenant-User",), keep_headers=("X-Forwarded-User",))
    route = RouteSpec("/public", origin.url, strip_prefix=True)
    gateway = start_gateway(stage_dir, render(GatewaySpec([route], auth=auth)), tmp_path)
    try:
        names = sent_upstream(
            get(
                gateway,
                "/public/echo",
                [("X-Tenant-User", "admin"), ("X-Forwarded-User", "hint"), ("X-Remote-User", "x")],
            )
        )
        assert "x-tenant-user" not in names and "x-remote-user" not in names, names
        assert "x-forwarded-user" in names, names
    finally:
        gateway.stop()


# --- the cache: one consumer's answer is not another's ------------------------------------


def generation(reply: Reply) -> int:
    assert reply.status == 200, (reply.status, reply.body[:300])
    return int(reply.json()["generation"])


def test_the_cache_never_gives_b_what_the_origin_told_a(gateway: Proc) -> None:
    path = f"/cache/private-{uuid.uuid4().hex[:8]}?cache_control=max-age%3D60"
    a = generation(get(gateway, path, [("X-API-Key", ALICE_KEY)]))
    b = generation(get(gateway, path, [("X-API-Key", BOB_KEY)]))
    assert b == a + 1, "bob was served the answer the origin generated for alice"
    assert generation(get(gateway, path, [("X-API-Key", ALICE_KEY)])) == a + 2


def test_a_response_that_allows_sharing_is_shared(gateway: Proc) -> None:
    path = f"/cache/shared-{uuid.uuid4().hex[:8]}?cache_control=public%2C%20max-age%3D60"
    a = generation(get(gateway, path, [("X-API-Key", ALICE_KEY)]))
    assert generation(get(gateway, path, [("X-API-Key", BOB_KEY)])) == a


def test_per_consumer_cache_keeps_entries_apart(gateway: Proc) -> None:
    path = f"/cache/mine/own-{uuid.uuid4().hex[:8]}?cache_control=max-age%3D60"
    a = generation(get(gateway, path, [("X-API-Key", ALICE_KEY)]))
    assert generation(get(gateway, path, [("X-API-Key", ALICE_KEY)])) == a, "alice's own is kept"
    b = generation(get(gateway, path, [("X-API-Key", BOB_KEY)]))
    assert b == a + 1, "bob got alice's entry"
    assert generation(get(gateway, path, [("X-API-Key", BOB_KEY)])) == b
    private = f"/cache/mine/priv-{uuid.uuid4().hex[:8]}?cache_control=private%2C%20max-age%3D60"
    first = generation(get(gateway, private, [("X-API-Key", ALICE_KEY)]))
    assert generation(get(gateway, private, [("X-API-Key", ALICE_KEY)])) == first + 1


# --- the admin listener -------------------------------------------------------------------


def test_the_admin_listener_is_not_reachable_through_public_routes(gateway: Proc) -> None:
    path = f"/cache/kept-{uuid.uuid4().hex[:8]}?cache_control=public%2C%20max-age%3D60"
    first = generation(get(gateway, path, [("X-API-Key", ALICE_KEY)]))
    for target in ("/auth", "/health", "/upstreams", "/channel"):
        reply = get(gateway, target)
        assert_problem(reply, 404)
        assert b'"pid"' not in reply.body
    # /cache is a route here: what answers below it is the origin, never the admin's purge.
    purge = send(gateway.port, "POST", "/cache/purge?prefix=/", [("X-API-Key", ALICE_KEY)])
    assert b'"purged"' not in purge.body
    assert generation(get(gateway, path, [("X-API-Key", ALICE_KEY)])) == first, (
        "purged via public port"
    )
    # The admin listener itself answers, and shows the auth counts.
    with urllib.request.urlopen(gateway.admin_url + "/auth", timeout=5) as response:
        view = json.load(response)["auth"]
    assert view["counts"]["accepted"] > 0 and view["counts"]["invalid"] > 0


# --- rotation (last: it changes the IdP's keys) -------------------------------------------


def test_a_rotated_key_is_accepted_after_a_refetch(gateway: Proc, idp: Idp) -> None:
    old = idp.token(alg="ES256")
    idp.rotate()
    new = idp.token(alg="ES256")
    assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"] != json.loads(
        base64.urlsafe_b64decode(old.split(".")[0] + "=="))["kid"]  # fmt: skip
    deadline = time.monotonic() + 5
    while (reply := get(gateway, "/jwt/whoami", bearer(new))).status != 200:
        assert reply.status == 401, reply.status
        assert time.monotonic() < deadline, "the rotated key was never fetched"
        time.sleep(0.1)  # polling an observable state (the answer), not waiting for one
    assert get(gateway, "/jwt/whoami", bearer(old)).status == 200, "the old key still published"


# --- an identity provider that was down at start-up -----------------------------------------


def test_an_idp_down_at_start_up_is_used_within_two_seconds_of_answering(
    origin: Proc, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    """The gateway starts while the JWKS URL refuses connections: every token is a 503
    (no keys to check it with). The IdP comes up: a valid token is accepted within about
    2 s, not after `refetch_interval` (30 s by default), which protects the IdP from
    unknown-kid floods once keys were loaded, not before."""
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    url = f"http://127.0.0.1:{reserved.getsockname()[1]}"
    issuer = IssuerSpec("late", url, ("RS256",), jwks_url=url + "/jwks.json")
    route = RouteSpec("/jwt", origin.url, strip_prefix=True, auth=RouteAuthSpec(mode="jwt"))
    spec = GatewaySpec([route], auth=AuthSpec(issuers=(issuer,)))
    gateway = start_gateway(stage_dir, render(spec), tmp_path)
    idp_proc = None
    try:
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        early = jwt.encode({"iss": url, "sub": "x", "aud": "api", "exp": int(time.time()) + 300},
                           stranger, algorithm="RS256", headers={"kid": "k1"})  # fmt: skip
        assert_problem(get(gateway, "/jwt/whoami", bearer(early)), 503)
        time.sleep(1.5)  # the IdP stays down a while: the gateway's retries back off
        reserved.listen(64)
        log = open(tmp_path / "idp.log", "wb")  # noqa: SIM115 - closed by Proc.stop
        fd = reserved.fileno()
        popen = subprocess.Popen(
            [sys.executable, "-m", "common.idp", "--fd", str(fd), "--secret", SECRET],
            cwd=REPO_ROOT, env=child_env(), pass_fds=(reserved.fileno(),),
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        idp_proc = Proc(
            "idp", reserved.getsockname()[1], popen, tmp_path / "idp.log", _log_file=log
        )
        wait_healthy(idp_proc)
        answering = time.monotonic()
        token = Idp(idp_proc).token(sub="carol")
        while (status := get(gateway, "/jwt/whoami", bearer(token)).status) != 200:
            assert status == 503, status
            assert time.monotonic() - answering < 10, "still no keys 10 s after the IdP answered"
            time.sleep(0.05)  # polling an observable state
        waited = time.monotonic() - answering
        assert waited <= 2.5, f"a valid token waited {waited:.1f} s after the IdP answered"
    finally:
        gateway.stop()
        if idp_proc is not None:
            idp_proc.stop()
        reserved.close()
