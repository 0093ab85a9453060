"""The auth package piece by piece: keys, the token parser, claims, config errors, the
JWKS refetch limit (with a stand-in IdP and a fake clock). The contract
(test_auth_contract.py) checks the same behaviour end to end through a running gateway."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from gateway.__main__ import main as gateway_main
from gateway.accesslog import redact
from gateway.auth.apikeys import KeyRing, StoredKey, key_hash, new_key
from gateway.auth.jwks import RemoteKeys
from gateway.auth.keys import KeyProblem, from_jwk, from_public_key, from_secret
from gateway.auth.tokens import ClaimsPolicy, Invalid, check_claims, parse, scopes_of
from gateway.auth.upstream import replace_headers, without_param
from gateway.config import ConfigError, load_config
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from multidict import CIMultiDict


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_of(header: dict[str, Any] | str, payload: dict[str, Any] | str, sig: bytes = b"s") -> str:
    def part(value: dict[str, Any] | str) -> str:
        return b64((value if isinstance(value, str) else json.dumps(value)).encode())

    return f"{part(header)}.{part(payload)}.{b64(sig)}"


# --- API keys -------------------------------------------------------------------------------


def test_keygen_keys_check_and_near_misses_do_not() -> None:
    made = new_key()
    ring = KeyRing([StoredKey(key_id=made.key_id, hash=made.hash, consumer="alice")])
    assert ring.check(made.key) == ("alice", made.key_id)
    changed = made.key[:-1] + ("A" if made.key[-1] != "A" else "B")
    for wrong in (
        made.key[:-1],
        made.key + "x",
        changed,
        made.key.upper(),
        "",
        "gwk_",
        made.key_id,
    ):
        assert ring.check(wrong) is None, wrong
    assert made.hash == key_hash(made.key) and made.key not in made.config_line()


def test_an_imported_key_is_found_by_its_hash_and_a_refusal_says_why() -> None:
    old = "probe-key-3f9a7c1e5b2d4680"
    made = new_key()
    ring = KeyRing([StoredKey(key_id="legacy-1", hash=key_hash(old), consumer="carol",
                              imported=True),
                    StoredKey(key_id=made.key_id, hash=made.hash, consumer="alice")])  # fmt: skip
    assert ring.check(old) == ("carol", "legacy-1")
    assert ring.check(made.key) == ("alice", made.key_id)
    assert ring.check(old[:-1] + "1") is None and ring.check(old[:15]) is None
    assert "no imported key has its hash" in ring.why(old[:-1] + "1")
    assert "printable" in ring.why(old[:15])  # too short to be any key: never hashed
    assert "does not match" in ring.why(made.key[:-1] + "x")
    assert old not in ring.why(old[:-1] + "1")


def test_keygen_command_prints_a_key_and_only_its_hash_for_the_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert gateway_main(["keygen", "--consumer", "alice"]) == 0
    out = capsys.readouterr().out
    key = next(line.split()[-1] for line in out.splitlines() if line.startswith("key:"))
    config = next(line for line in out.splitlines() if line.startswith("api_keys"))
    assert key not in config and key_hash(key) in config


# --- keys and algorithms --------------------------------------------------------------------


def test_a_key_fits_only_its_algorithms() -> None:
    rsa_key = from_public_key(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(), "r"
    )
    p256 = from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key(), "e")
    p384 = from_public_key(ec.generate_private_key(ec.SECP384R1()).public_key(), "e3")
    okp = from_public_key(ed25519.Ed25519PrivateKey.generate().public_key(), "o")
    secret = from_secret("s" * 32, "h")
    assert rsa_key.fits("RS256") and rsa_key.fits("PS256") and not rsa_key.fits("HS256")
    assert p256.fits("ES256") and not p256.fits("ES384") and p384.fits("ES384")
    assert okp.fits("EdDSA") and not okp.fits("ES256")
    assert secret.fits("HS256") and not secret.fits("HS512")  # 32 bytes: too short for HS512
    assert not secret.fits("RS256")


def test_jwks_entries_that_must_not_be_used() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyProblem, match="1024 bits"):
        from_jwk(RSAAlgorithm.to_jwk(small.public_key(), as_dict=True))
    private = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
    with pytest.raises(KeyProblem, match="private"):
        from_jwk(private)
    public = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    with pytest.raises(KeyProblem, match="use"):
        from_jwk({**public, "use": "enc"})
    assert from_jwk({**public, "alg": "ES256"}).fits("ES256")


# --- the parser -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "a.b",
        "a.b.c.d",
        token_of({"alg": "HS256"}, {"a": 1}) + "=",
        token_of({"alg": "HS256"}, '{"a": 1, "a": 2}'),
        token_of({"alg": "HS256"}, '{"a": {"b": 1, "b": 2}}'),  # nested duplicates too
        token_of({"alg": "HS256"}, '{"a": NaN}'),
        token_of({"alg": "HS256"}, "[1]"),
        token_of("not json", {"a": 1}),
        token_of({"alg": "HS256"}, {"a": 1}, sig=b""),
        "e30.e30.*",
        "x" * 10_000,
    ],
)
def test_parse_refuses(token: str) -> None:
    with pytest.raises(Invalid):
        parse(token, 8192)


def test_parse_keeps_what_the_signature_covers() -> None:
    token = token_of({"alg": "HS256"}, {"sub": "a"}, b"sig")
    parsed = parse(token, 8192)
    assert parsed.signing_input == token.rsplit(".", 1)[0].encode()
    assert parsed.signature == b"sig" and parsed.claims == {"sub": "a"}


POLICY = ClaimsPolicy("https://idp", frozenset({"api"}), 60.0, ("exp",))
NOW = 1_800_000_000.0


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": "https://idp", "sub": "a", "aud": "api", "exp": NOW + 300, **extra}


@pytest.mark.parametrize(
    "value",
    [
        claims(exp=NOW - 61),
        claims(nbf=NOW + 61),
        claims(iat=NOW + 61),
        claims(exp="soon"),
        claims(exp=True),
        claims(iss="https://idp/"),
        claims(aud="web"),
        claims(aud=["web", 7]),
        claims(sub=""),
        {k: v for k, v in claims().items() if k != "exp"},
        {k: v for k, v in claims().items() if k != "aud"},
    ],
)
def test_claims_refused(value: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        check_claims(value, POLICY, NOW)


def test_claims_accepted_within_leeway() -> None:
    check_claims(claims(exp=NOW - 59, nbf=NOW + 59, iat=NOW + 59, aud=["web", "api"]), POLICY, NOW)


def test_scopes_from_scope_or_scp() -> None:
    assert scopes_of({"scope": "a  b"}) == {"a", "b"}
    assert scopes_of({"scp": ["a", 3, "b"]}) == {"a", "b"}
    assert scopes_of({"scp": "a b"}) == {"a", "b"}
    assert scopes_of({}) == frozenset()


# --- query parameters ---------------------------------------------------------------------


def test_the_key_parameter_is_removed_and_the_rest_kept_byte_for_byte() -> None:
    assert without_param("?a=1&api_key=X&b=%2F+", "api_key") == "?a=1&b=%2F+"
    assert without_param("?api_key=X", "api_key") == ""
    assert without_param("?api%5Fkey=X&c", "api_key") == "?c"  # encoded names count too
    assert redact("/r?api_key=secret&x=1", frozenset({"api_key"})) == "/r?api_key=REDACTED&x=1"


# --- the request as the upstream gets it ---------------------------------------------------


def test_replaced_headers_are_what_every_later_step_and_a_later_clone_see() -> None:
    """replace_headers writes three private fields of aiohttp's request: if an aiohttp
    upgrade moves them, this fails (a later step would see the client's own headers)."""
    sent = {"Host": "client.example", "X-Consumer-ID": "spoofed", "X-API-Key": "gwk_x"}
    request = make_mocked_request("GET", "/r", headers=sent)
    assert request.headers["X-Consumer-ID"] == "spoofed"  # read before, as routing does
    replace_headers(request, CIMultiDict({"Host": "client.example", "X-Consumer-ID": "alice"}))
    for seen in (request, request.clone()):
        assert seen.headers.getall("X-Consumer-ID") == ["alice"]
        assert "X-API-Key" not in seen.headers
    assert request.host == "client.example"  # aiohttp reads Host from the message
    assert (b"X-API-Key", b"gwk_x") in request.raw_headers  # the head as it was received


# --- config errors: file, key, reason -----------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text('[[routes]]\nprefix = "/"\nupstream = "http://127.0.0.1:9"\n' + text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[auth.issuers]]\nname = "x"\nissuer = "i"\naudiences = ["a"]\nalgorithms = ["none"]\n'
         'keys = [{ secret = "' + "s" * 40 + '" }]\n', "auth.issuers[0].algorithms: 'none'"),
        ('[[auth.issuers]]\nname = "x"\nissuer = "i"\naudiences = ["a"]\nalgorithms = ["HS256"]\n',
         "give exactly one of keys"),
        ('[[auth.issuers]]\nname = "x"\nissuer = "i"\naudiences = ["a"]\nalgorithms = ["HS256"]\n'
         'keys = [{ secret = "short" }]\n', "32 bytes"),
        ('[[auth.issuers]]\nname = "x"\nissuer = "i"\naudiences = ["a"]\nalgorithms = ["RS256"]\n'
         'keys = [{ secret = "' + "s" * 40 + '" }]\n', "fits none of the algorithms"),
        ('[[consumers]]\nid = "a"\napi_keys = [{ id = "abcdefgh", hash = "md5:x" }]\n',
         "consumers[0].api_keys[0].hash"),
        ('[[consumers]]\nid = "a"\nsubjects = ["nobody:a"]\n', "consumers[0].subjects[0]"),
        ('[[consumers]]\nid = "a"\n[[consumers]]\nid = "a"\n', "consumers[1].id"),
        ("[auth]\nmode = \"jwt\"\n", "routes[0].auth.mode: 'jwt' needs at least one"),
        ("[auth]\nmode = \"sometimes\"\n", "auth.mode"),
    ],
)  # fmt: skip
def test_config_errors_name_file_key_and_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), shown="gateway.toml")
    assert message in str(caught.value), str(caught.value)
    assert re.match(r"gateway\.toml(:\d+)?: ", str(caught.value)), caught.value  # file[:line]: key


# --- the JWKS refetch limit, with a stand-in IdP and a clock the test moves ----------------


def test_unknown_kids_refetch_once_per_interval_and_failures_keep_the_keys() -> None:
    async def scenario() -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        jwks = {"keys": [{**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1"}]}
        fetches = []
        status = [200]

        async def serve(request: web.Request) -> web.Response:
            fetches.append(1)
            return web.json_response(
                jwks, status=status[0], headers={"Cache-Control": "max-age=600"}
            )

        app = web.Application()
        app.router.add_get("/jwks", serve)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        now = [1000.0]
        keys = RemoteKeys("t", jwks_url=str(server.make_url("/jwks")), discovery_issuer=None,
                          ttl=300, max_ttl=86400, refetch_interval=30, fetch_timeout=2,
                          clock=lambda: now[0])  # fmt: skip
        from aiohttp import ClientSession

        async with ClientSession() as session:
            await keys.start(session)
            assert len(fetches) == 1 and (await keys.find("k1", "ES256")).kid == "k1"
            for i in range(20):  # a flood of unknown kids inside one interval: no fetch
                with pytest.raises(Invalid):
                    await keys.find(f"nope-{i}", "ES256")
            assert len(fetches) == 1
            now[0] += 31
            await asyncio.gather(*(keys.find("k1", "ES256") for _ in range(5)))
            with pytest.raises(Invalid):
                await keys.find("nope", "ES256")  # the interval passed: one refetch
            assert len(fetches) == 2
            now[0] += 600  # expired; the IdP is failing: the keys held stay usable
            status[0] = 500
            assert (await keys.find("k1", "ES256")).kid == "k1"
            assert len(fetches) == 3 and keys.failures == 1
            assert (await keys.find("k1", "ES256")).kid == "k1"
            assert len(fetches) == 3, "a failing IdP was asked again before the interval"
        await server.close()

    asyncio.run(scenario())
