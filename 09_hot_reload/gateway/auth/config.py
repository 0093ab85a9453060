"""Authentication in gateway.toml: who the consumers are, which issuers are trusted, and
what each route asks for.

[auth]                          # every route's defaults
mode = "public"                 # public | key | jwt | either (an API key or a JWT)
realm = "gateway"               # in WWW-Authenticate
key_header = "X-API-Key"        # where an API key is looked for...
key_query = ""                  # ...or a query parameter ("" = not in the query)
forward_credential = false      # the Authorization header / API key goes upstream too
max_token_bytes = 8192
verified_cache = 10000          # verified tokens kept (until they expire); 0 = none
strip_headers = ["X-Tenant-User"]   # more client headers to remove (identity.py's list)
keep_headers = ["X-User-ID"]    # names of that list to let through (a routing hint)

[[auth.issuers]]
name = "demo"                   # how routes and consumers refer to it
issuer = "http://127.0.0.1:9100"    # the iss claim, exactly
audiences = ["api"]             # a token's aud must name one of these
algorithms = ["RS256", "ES256"] # never taken from the token
jwks_url = "http://127.0.0.1:9100/jwks.json"   # or discovery = true, or keys = [...]
leeway = 60.0                   # clock skew allowed on exp, nbf, iat
required_claims = ["exp"]       # sub is always required
jwks_ttl = 300.0                # when the JWKS response has no max-age
jwks_max_ttl = 86400.0
refetch_interval = 30.0         # at most one fetch per interval for unknown kids
fetch_timeout = 2.0

[[consumers]]
id = "alice"
name = "Alice"
scopes = ["orders:read"]        # what her API keys grant
groups = ["staff"]
api_keys = [{ id = "k7f3a9c2", hash = "sha256:..." }]   # python -m gateway keygen
# a key made elsewhere: keygen --import reads it on stdin and prints this line
# api_keys = [{ id = "legacy-1", hash = "sha256:...", imported = true }]
subjects = ["demo:alice"]       # JWT subjects (issuer name:sub) that are this consumer

[[routes]]
auth = { mode = "jwt", scopes = ["orders:read"], issuers = ["demo"] }
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.headers import TOKEN
from gateway.validation import Seconds, Strict

from .apikeys import HASH, IMPORTED_ID, KEY_ID
from .identity import SPOOFABLE_PREFIXES, STRIPPED_NAMES, Spoofable, normalise
from .keys import ALGORITHMS, KeyProblem, VerifyKey, from_jwk, from_pem, from_secret

Mode = Literal["public", "key", "jwt", "either"]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
ConsumerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@\-]{0,127}$")]
# A scope or group: printable ASCII without spaces or quotes (RFC 6749 §3.3's scope-token).
Scope = Annotated[str, Field(pattern=r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")]


def _header_name(value: str) -> str:
    if not TOKEN.fullmatch(value):
        raise ValueError(f"{value!r} is not a header field name")
    return value


def _query_name(value: str) -> str:
    if value and not TOKEN.fullmatch(value):
        raise ValueError(f"{value!r} is not a query parameter name")
    return value


class KeyConfig(Strict):
    """An inline key: exactly one of pem (a public key), jwk, secret (HMAC)."""

    kid: str | None = None
    pem: str | None = None
    jwk: dict[str, Any] | None = None
    secret: str | None = None

    @model_validator(mode="after")
    def _one(self) -> KeyConfig:
        if sum(v is not None for v in (self.pem, self.jwk, self.secret)) != 1:
            raise ValueError("give exactly one of pem, jwk or secret")
        self.key()  # a key that cannot be used is a config error, not a 401 later
        return self

    def key(self) -> VerifyKey:
        try:
            if self.pem is not None:
                return from_pem(self.pem, self.kid)
            if self.secret is not None:
                return from_secret(self.secret, self.kid)
            assert self.jwk is not None
            return from_jwk({**self.jwk, **({"kid": self.kid} if self.kid else {})})
        except KeyProblem as exc:
            raise ValueError(str(exc)) from None


class IssuerConfig(Strict):
    name: Name
    issuer: Annotated[str, Field(min_length=1)]
    audiences: Annotated[list[str], Field(min_length=1)]
    algorithms: Annotated[list[str], Field(min_length=1)]
    keys: list[KeyConfig] = []
    jwks_url: str | None = None
    discovery: bool = False
    leeway: Annotated[float, Field(ge=0, le=600)] = 60.0
    required_claims: list[str] = ["exp"]
    jwks_ttl: Seconds = 300.0
    jwks_max_ttl: Annotated[float, Field(gt=0, le=7 * 86400)] = 86400.0
    refetch_interval: Seconds = 30.0
    fetch_timeout: Seconds = 2.0

    @field_validator("algorithms")
    @classmethod
    def _check_algorithms(cls, value: list[str]) -> list[str]:
        for alg in value:
            if alg.lower() == "none":
                raise ValueError("'none' means an unsigned token: never accepted")
            if alg not in ALGORITHMS:
                raise ValueError(f"{alg!r}: one of {', '.join(sorted(ALGORITHMS))}")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> IssuerConfig:
        sources = [bool(self.keys), self.jwks_url is not None, self.discovery]
        if sum(sources) != 1:
            raise ValueError(
                f"issuer {self.name}: give exactly one of keys = [...], jwks_url or"
                f" discovery = true"
            )
        if self.discovery and not self.issuer.startswith(("http://", "https://")):
            raise ValueError(f"issuer {self.name}: discovery needs an http(s) issuer URL")
        for key in self.keys:
            verify = key.key()
            if not any(verify.fits(alg) for alg in self.algorithms):
                raise ValueError(
                    f"issuer {self.name}: key {key.kid or '(no kid)'} ({verify.kty}) fits none"
                    f" of the algorithms {self.algorithms}"
                )
        return self


class ApiKeyConfig(Strict):
    """A `gwk_` key (its id is inside the key) or an imported one (found by its hash)."""

    id: str
    hash: Annotated[str, Field(pattern=HASH.pattern)]
    imported: bool = False

    @model_validator(mode="after")
    def _matchable(self) -> ApiKeyConfig:
        # An entry that can never match is refused here, not discovered as 401s later.
        if self.imported and not IMPORTED_ID.fullmatch(self.id):
            raise ValueError(f"id: {self.id!r}: letters, digits, '_', '.', '-' (at most 64)")
        if not self.imported and not KEY_ID.fullmatch(self.id):
            raise ValueError(
                f"id: {self.id!r} cannot match a gwk_ key, whose id is the 8 lowercase letters"
                " and digits after gwk_; for a key made elsewhere, add imported = true"
                " (python -m gateway keygen --import prints the line)"
            )
        return self


class ConsumerConfig(Strict):
    id: ConsumerId
    # It goes upstream in X-Consumer-Username: printable ASCII, nothing to smuggle.
    name: Annotated[str, Field(pattern=r"^[\x20-\x7e]{0,128}$")] = ""  # "" = the id
    scopes: list[Scope] = []
    groups: list[Scope] = []
    api_keys: list[ApiKeyConfig] = []
    subjects: list[str] = []  # "issuer name:sub"
    plan: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{0,32}$")] = ""  # rate-limit plan

    @field_validator("subjects")
    @classmethod
    def _check_subjects(cls, value: list[str]) -> list[str]:
        for subject in value:
            if ":" not in subject:
                raise ValueError(f"{subject!r}: write issuer name:sub, e.g. demo:alice")
        return value


class AuthConfig(Strict):
    mode: Mode = "public"
    realm: Annotated[str, Field(pattern=r"^[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}$")] = "gateway"
    key_header: str = "X-API-Key"
    key_query: str = ""
    forward_credential: bool = False
    max_token_bytes: Annotated[int, Field(ge=512, le=64 * 1024)] = 8192
    verified_cache: Annotated[int, Field(ge=0, le=1_000_000)] = 10_000
    issuers: list[IssuerConfig] = []
    strip_headers: list[str] = []
    keep_headers: list[str] = []

    _header = field_validator("key_header")(_header_name)
    _query = field_validator("key_query")(_query_name)

    @field_validator("strip_headers", "keep_headers")
    @classmethod
    def _names(cls, values: list[str]) -> list[str]:
        return [_header_name(v) for v in values]

    @field_validator("keep_headers")
    @classmethod
    def _keepable(cls, values: list[str]) -> list[str]:
        for name in values:
            if normalise(name).startswith(SPOOFABLE_PREFIXES):
                raise ValueError(f"{name}: the gateway sets this family itself; it cannot be kept")
            if normalise(name) not in STRIPPED_NAMES:
                raise ValueError(f"{name} is not among the removed headers; nothing to keep")
        return values


class RouteAuth(Strict):
    """A route's `auth` table; None inherits [auth]."""

    mode: Mode | None = None
    scopes: list[Scope] | None = None
    issuers: list[str] | None = None
    key_header: str | None = None
    key_query: str | None = None
    forward_credential: bool | None = None

    _header = field_validator("key_header")(_header_name)
    _query = field_validator("key_query")(_query_name)


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """One route's authentication, resolved at start-up."""

    mode: str
    scopes: frozenset[str]
    issuers: frozenset[str] | None  # None: every configured issuer
    key_header: str
    key_query: str  # "": not in the query
    forward_credential: bool
    # The headers that carry this route's credential, lower case: removed before
    # forwarding unless forward_credential (empty then). Worked out once, not per request.
    credential_headers: frozenset[str] = frozenset()

    @property
    def wants_key(self) -> bool:
        return self.mode in ("key", "either")

    @property
    def wants_jwt(self) -> bool:
        return self.mode in ("jwt", "either")

    @classmethod
    def resolve(cls, defaults: AuthConfig, route: RouteAuth | None) -> AuthPolicy:
        merged = defaults.model_dump(include=set(RouteAuth.model_fields) - {"scopes", "issuers"})
        merged.update(scopes=[], issuers=None)
        if route is not None:
            merged.update(route.model_dump(include=route.model_fields_set))
        issuers, mode = merged["issuers"], merged["mode"]
        carriers = set()
        if mode in ("jwt", "either"):
            carriers.add("authorization")
        if mode in ("key", "either"):
            carriers.add(merged["key_header"].lower())
        return cls(
            mode=mode,
            scopes=frozenset(merged["scopes"]),
            issuers=None if issuers is None else frozenset(issuers),
            key_header=merged["key_header"],
            key_query=merged["key_query"],
            forward_credential=merged["forward_credential"],
            credential_headers=frozenset() if merged["forward_credential"] else frozenset(carriers),
        )


def auth_problems(
    shown: str,
    auth: AuthConfig,
    consumers: list[ConsumerConfig],
    routes: list[tuple[int, RouteAuth | None]],
) -> list[str]:
    """What one section cannot see alone: names across issuers, consumers and routes."""
    problems = []
    issuers = [i.name for i in auth.issuers]
    for i, name in enumerate(issuers):
        if name in issuers[:i]:
            problems.append(f"{shown}: auth.issuers[{i}].name: {name!r} is used twice")
    seen_ids: dict[str, int] = {}
    seen_keys: dict[str, int] = {}
    seen_hashes: dict[str, str] = {}
    for c, consumer in enumerate(consumers):
        key = f"{shown}: consumers[{c}]"
        if consumer.id in seen_ids:
            problems.append(f"{key}.id: {consumer.id!r} is also consumers[{seen_ids[consumer.id]}]")
        seen_ids.setdefault(consumer.id, c)
        for k, api_key in enumerate(consumer.api_keys):
            if api_key.id in seen_keys:
                problems.append(f"{key}.api_keys[{k}].id: key id {api_key.id!r} is used twice")
            seen_keys.setdefault(api_key.id, c)
            if api_key.hash in seen_hashes:  # one key, two entries: the second never matches
                problems.append(
                    f"{key}.api_keys[{k}].hash: the same key as {seen_hashes[api_key.hash]}"
                )
            seen_hashes.setdefault(api_key.hash, f"{key.partition(': ')[2]}.api_keys[{k}]")
        for s, subject in enumerate(consumer.subjects):
            if subject.partition(":")[0] not in issuers:
                problems.append(
                    f"{key}.subjects[{s}]: no [[auth.issuers]] is named"
                    f" {subject.partition(':')[0]!r}"
                )
    for i, route in routes:
        policy = AuthPolicy.resolve(auth, route)
        key = f"{shown}: routes[{i}].auth"
        for name in sorted(policy.issuers or ()):
            if name not in issuers:
                problems.append(f"{key}.issuers: no [[auth.issuers]] is named {name!r}")
        if policy.wants_jwt and not issuers:
            problems.append(f"{key}.mode: {policy.mode!r} needs at least one [[auth.issuers]]")
        if policy.mode == "public" and policy.scopes:
            problems.append(f"{key}.scopes: a public route has no caller to have scopes")
    return problems


def stripped_hash_keys(shown: str, auth: AuthConfig, hash_keys: dict[str, str | None]) -> list[str]:
    """A pool that hashes on a header the gateway removes would hash every request on
    nothing: a config error, not a silent imbalance (gateway.toml keeps X-User-ID)."""
    spoofable = Spoofable(auth.strip_headers, auth.keep_headers)
    return [
        f"{shown}: upstreams.{pool}.hash_key: {hash_key[7:]} is removed from every request"
        f" (an identity header a client could forge); add it to [auth] keep_headers if it"
        f" is a routing hint"
        for pool, hash_key in hash_keys.items()
        if hash_key and hash_key.startswith("header:") and spoofable(hash_key[7:])
    ]
