"""The authentication middleware: a credential becomes an identity, or the answer is 401.

Right after routing (the route says what it needs) and before everything that spends
work on a request: rate limits (stage 07) count callers, so they need to know who calls;
the cache must not hand one consumer's answer to another; the channel must not spend a
bulkhead place, a retry or an upstream connection on a caller who will be refused.

Per route (`auth.mode`): `public` (nobody is asked, but spoofed identity headers are
still removed), `key` (an API key), `jwt` (a bearer token, RFC 6750), `either`. A route
may require scopes (403 `insufficient_scope` when the identity lacks one).

What the client learns is deliberately little: "no credential" (401, with a challenge
saying what to send) or "not valid" (401, `error="invalid_token"`), the same answer for a
token that expired, one that was forged, one whose key is unknown and one that is
malformed, so that the answer is no oracle for an attacker's experiments. The reason
goes to the log, next to the request id the client got (`X-Request-ID`), where whoever
runs the gateway can look it up.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import ClientSession, DummyCookieJar, hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from gateway.concern import AdminView
from gateway.errors import GatewayError
from gateway.observability.tracing import child
from gateway.routing import ROUTE, RouteMatch

from .apikeys import KeyRing, StoredKey
from .config import AuthConfig, AuthPolicy, ConsumerConfig, IssuerConfig
from .handover import take_over
from .identity import Identity, Spoofable
from .jwks import KeysUnavailable, RemoteKeys, StaticKeys
from .tokens import ClaimsPolicy, Invalid, check_claims, header_fields, parse, scopes_of
from .upstream import replace_headers, rewrite_for_upstream

log = logging.getLogger("gateway.auth")

Clock = Callable[[], float]
NO_EXP_CACHE = 60.0  # a token without exp (only if an issuer allows it) is kept this long
_PRINTABLE = frozenset(map(chr, range(0x20, 0x7F)))


class Unauthorized(GatewayError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(GatewayError):
    status, title, slug = 403, "Forbidden", "insufficient-scope"


class AmbiguousCredentials(GatewayError):
    """Two Authorization headers, or two API keys: which one counts would be a guess."""

    status, title, slug = 400, "Bad Request", "ambiguous-credentials"


class AuthUnavailable(GatewayError):
    """An issuer's keys could not be obtained yet: no token of it can be checked."""

    status, title, slug = 503, "Service Unavailable", "auth-unavailable"


@dataclass(frozen=True, slots=True)
class Issuer:
    name: str
    algorithms: frozenset[str]
    claims: ClaimsPolicy
    keys: StaticKeys | RemoteKeys

    @classmethod
    def from_config(cls, config: IssuerConfig) -> Issuer:
        keys: StaticKeys | RemoteKeys
        if config.keys:
            keys = StaticKeys([k.key() for k in config.keys])
        else:
            keys = RemoteKeys(
                config.name,
                jwks_url=config.jwks_url,
                discovery_issuer=config.issuer if config.discovery else None,
                ttl=config.jwks_ttl,
                max_ttl=config.jwks_max_ttl,
                refetch_interval=config.refetch_interval,
                fetch_timeout=config.fetch_timeout,
            )
        claims = ClaimsPolicy(
            issuer=config.issuer,
            audiences=frozenset(config.audiences),
            leeway=config.leeway,
            required=tuple(config.required_claims),
        )
        algorithms = frozenset(config.algorithms)
        return cls(name=config.name, algorithms=algorithms, claims=claims, keys=keys)


class Authenticator:
    def __init__(
        self, config: AuthConfig, consumers: list[ConsumerConfig], *, clock: Clock = time.time
    ) -> None:
        self.config = config
        self.realm = config.realm
        self.clock = clock
        self.ring = KeyRing(
            [
                StoredKey(key_id=k.id, hash=k.hash, consumer=c.id, imported=k.imported)
                for c in consumers
                for k in c.api_keys
            ]
        )
        # An API key's identity never changes: built once, not per request.
        self.key_identities = {
            k.id: Identity(
                consumer_id=c.id,
                name=c.name or c.id,
                subject=c.id,
                scopes=frozenset(c.scopes),
                groups=tuple(c.groups),
                credential=f"key:{k.id}",
                plan=c.plan,
            )
            for c in consumers
            for k in c.api_keys
        }
        self.by_subject = {s: c for c in consumers for s in c.subjects}
        self.spoofable = Spoofable(config.strip_headers, config.keep_headers)
        self.issuers = {i.issuer: Issuer.from_config(i) for i in config.issuers}
        self.consumers = {c.id: c for c in consumers}  # what a reload compares (take_over)
        # sha256(token) -> (identity, issuer name, valid until): tokens verified already.
        self.verified: OrderedDict[bytes, tuple[Identity, str, float]] = OrderedDict()
        self.counts: Counter[str] = Counter()
        # The same decisions by how the caller tried (key, jwt, none), for the metrics.
        self.by_method: Counter[tuple[str, str]] = Counter()
        self._session: ClientSession | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch every remote key set once, before the first request needs it. A dead
        IdP is not fatal: its tokens get 503 until a later fetch succeeds."""
        await self.fetch_keys(list(self.issuers.values()))

    async def fetch_keys(self, issuers: Sequence[Issuer]) -> None:
        """Each issuer's remote keys, once (at start-up, or a reload's new issuers)."""
        if self._session is None and any(isinstance(i.keys, RemoteKeys) for i in issuers):
            self._session = ClientSession(cookie_jar=DummyCookieJar())
        for issuer in issuers:
            if self._session is not None:
                await issuer.keys.start(self._session)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def take_over(self, previous: Authenticator) -> None:
        """A reload (gateway/reload/): what this one keeps of `previous` (handover.py)."""
        await take_over(self, previous)

    def admin_views(self) -> Sequence[AdminView]:
        return (AdminView(path="/auth", show=self._show),)

    async def _show(self) -> dict[str, object]:
        """GET /auth: counts (accepted, missing, invalid, insufficient_scope), the
        verified-token cache, each issuer's keys (kids, fetches, failures)."""
        shown: dict[str, object] = {"counts": dict(self.counts), "api_keys": len(self.ring)}
        shown["verified_cache"] = {"size": len(self.verified), "max": self.config.verified_cache}
        shown["issuers"] = {i.name: i.keys.snapshot() for i in self.issuers.values()}
        return {"auth": shown}

    # --- the middleware --------------------------------------------------------------------

    def middleware(self) -> Middleware:
        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            found = request[ROUTE]  # every request on the public port is routed
            policy = found.route.auth
            if policy.mode != "public":
                identity = await self.identify(request, found, policy)
                rewrite_for_upstream(request, found, policy, identity, self.spoofable)
            elif not self.spoofable.clean(request.headers):  # public: a copy only when spoofed
                kept = [(n, v) for n, v in request.headers.items() if not self.spoofable(n)]
                replace_headers(request, CIMultiDict(kept))
            return await handler(request)

        return authenticate

    async def identify(
        self, request: web.Request, found: RouteMatch, policy: AuthPolicy
    ) -> Identity:
        where = found.path.path
        try:
            identity = await self._identify(request, policy)
        except Invalid as exc:
            self._count(request, policy, "invalid")
            log.info("401 invalid credential on %s: %s", where, exc)
            raise self._unauthorized(
                policy, "the credential is not valid", "invalid_token"
            ) from None
        except KeysUnavailable as exc:
            self._count(request, policy, "unavailable")
            log.warning("503 on %s: %s", where, exc)
            raise AuthUnavailable(
                "the gateway cannot check tokens of this issuer right now"
            ) from None
        if identity is None:
            self._count(request, policy, "missing")
            raise self._unauthorized(policy, f"this route needs {self._wanted(policy)}", None)
        missing = policy.scopes - identity.scopes
        if missing:
            self._count(request, policy, "insufficient_scope")
            needed = " ".join(sorted(policy.scopes))
            log.info(
                "403 on %s: %s lacks %s", where, identity.consumer_id, " ".join(sorted(missing))
            )
            error = Forbidden(
                f"the credential does not grant the scopes this route needs: {needed}"
            )
            if identity.credential.startswith("jwt:"):
                error.headers["WWW-Authenticate"] = (
                    f'Bearer realm="{self.realm}", error="insufficient_scope", scope="{needed}"'
                )
            raise error
        self.counts["accepted"] += 1
        method = "jwt" if identity.credential.startswith("jwt:") else "key"
        self.by_method[(method, "accepted")] += 1
        return identity

    def _count(self, request: web.Request, policy: AuthPolicy, outcome: str) -> None:
        self.counts[outcome] += 1
        scheme = request.headers.get(hdrs.AUTHORIZATION, "")[:7].lower()
        if outcome == "missing":
            method = "none"  # no credential at all
        elif policy.wants_jwt and scheme == "bearer ":
            method = "jwt"  # _identify reads a bearer token first, as it does here
        else:
            method = "key"
        self.by_method[(method, outcome)] += 1

    async def _identify(self, request: web.Request, policy: AuthPolicy) -> Identity | None:
        if policy.wants_jwt:
            lines = request.headers.getall(hdrs.AUTHORIZATION, [])
            if len(lines) > 1:
                raise AmbiguousCredentials("send one Authorization header, not several")
            if lines:
                scheme, _, token = lines[0].strip().partition(" ")
                if scheme.lower() == "bearer":
                    with child("verify token", nests=True):  # jwks fetch inside
                        return await self.verify_token(token.strip(), policy)
        if policy.wants_key:
            keys = request.headers.getall(policy.key_header, [])
            if not keys and policy.key_query:
                keys = request.query.getall(policy.key_query, [])
            if len(keys) > 1:
                raise AmbiguousCredentials("send one API key, not several")
            if keys:
                # No span of its own: a hash and a dict lookup take about a microsecond,
                # a span some fifty times that. A token's check (above) has one: a
                # signature takes 50-250 µs, and a JWKS fetch may happen inside it.
                return self.check_key(keys[0])
        return None

    def check_key(self, presented: str) -> Identity:
        found = self.ring.check(presented)
        if found is None:
            raise Invalid(f"API key: {self.ring.why(presented)}")  # never the key itself
        return self.key_identities[found[1]]

    async def verify_token(self, token: str, policy: AuthPolicy) -> Identity:
        now = self.clock()
        digest = b""
        # The verified-token cache. A signature check costs 50-250 µs (RS256 to EdDSA,
        # auth-bench) and a client sends the same token with every request until it
        # expires, so a token that passed is remembered, keyed by the SHA-256 of its
        # bytes: not the token itself (a memory dump leaks no credential), and any change
        # to a single byte is another key. It is kept until its exp (plus the leeway), so
        # a cached token expires exactly when a checked one would; the route's issuers are
        # asked again on every hit, since two routes may accept different issuers. What it
        # does not see: a key the IdP revoked early. Envoy's jwt_authn caches the same way
        # (jwt_cache_config); a gateway that must honour revocation at once checks a
        # token's jti against a denylist, or keeps the cache short.
        if self.config.verified_cache:
            digest = hashlib.sha256(token.encode()).digest()
            hit = self.verified.get(digest)
            if hit is not None:
                identity, issuer_name, until = hit
                if now <= until:
                    if policy.issuers is not None and issuer_name not in policy.issuers:
                        raise Invalid(f"issuer {issuer_name} is not accepted on this route")
                    self.verified.move_to_end(digest)
                    self.counts["verified_cache_hit"] += 1
                    return identity
                del self.verified[digest]
        parsed = parse(token, self.config.max_token_bytes)
        iss = parsed.claims.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Invalid(f"iss {str(iss)[:100]!r} is not a configured issuer")
        if policy.issuers is not None and issuer.name not in policy.issuers:
            raise Invalid(f"issuer {issuer.name} is not accepted on this route")
        alg, kid = header_fields(parsed.header, issuer.algorithms)
        key = await issuer.keys.find(kid, alg)
        if not key.verify(alg, parsed.signing_input, parsed.signature):
            raise Invalid(f"{alg} signature does not verify with key {kid!r}")
        check_claims(parsed.claims, issuer.claims, now)
        identity = self._token_identity(issuer, parsed.claims)
        if digest:
            exp = parsed.claims.get("exp")
            until = exp + issuer.claims.leeway if exp is not None else now + NO_EXP_CACHE
            self.verified[digest] = (identity, issuer.name, until)
            if len(self.verified) > self.config.verified_cache:
                self.verified.popitem(last=False)
        return identity

    def _token_identity(self, issuer: Issuer, claims: dict[str, object]) -> Identity:
        sub = claims["sub"]
        assert isinstance(sub, str)
        if len(sub) > 256 or not _PRINTABLE.issuperset(sub):
            # It goes upstream in a header: no control characters, nothing to smuggle.
            raise Invalid("sub is not printable ASCII of at most 256 characters")
        scopes = frozenset(
            s for s in scopes_of(claims) if len(s) <= 128 and _PRINTABLE.issuperset(s)
        )
        exp = claims.get("exp")
        expires = float(exp) if isinstance(exp, int | float) else None
        credential, iss = f"jwt:{issuer.name}", issuer.claims.issuer
        consumer = self.by_subject.get(f"{issuer.name}:{sub}")
        if consumer is not None:
            return Identity(
                consumer_id=consumer.id,
                name=consumer.name or consumer.id,
                subject=sub,
                scopes=scopes,
                groups=tuple(consumer.groups),
                credential=credential,
                issuer=iss,
                expires=expires,
                plan=consumer.plan,
            )
        return Identity(
            consumer_id=f"{issuer.name}:{sub}",
            name=sub,
            subject=sub,
            scopes=scopes,
            groups=(),
            credential=credential,
            issuer=iss,
            expires=expires,
        )

    # --- answers ---------------------------------------------------------------------------

    def _wanted(self, policy: AuthPolicy) -> str:
        key = f"an API key in the {policy.key_header} header" + (
            f" or the {policy.key_query} query parameter" if policy.key_query else ""
        )
        if policy.mode == "key":
            return key
        if policy.mode == "jwt":
            return "a bearer token (Authorization: Bearer ...)"
        return f"{key}, or a bearer token"

    def _unauthorized(self, policy: AuthPolicy, detail: str, error: str | None) -> Unauthorized:
        """401 with the challenges RFC 9110 §11.6.1 requires: `Bearer` per RFC 6750 §3
        (an error code only when a token was sent, §3.1), and `ApiKey` for key routes
        (no registered scheme exists for API keys; this one names where the key goes)."""
        challenges = []
        if policy.wants_jwt:
            challenges.append(
                f'Bearer realm="{self.realm}"' + (f', error="{error}"' if error else "")
            )
        if policy.wants_key:
            where = f'header="{policy.key_header}"'
            if policy.key_query:
                where += f', query="{policy.key_query}"'
            challenges.append(f'ApiKey realm="{self.realm}", {where}')
        problem = Unauthorized(detail)
        problem.headers["WWW-Authenticate"] = ", ".join(challenges)
        return problem


def query_credentials(config: AuthConfig, routes: list[AuthPolicy]) -> frozenset[str]:
    """Every query parameter that may carry an API key: the access log hides their values."""
    return frozenset(
        {p.key_query for p in routes if p.key_query}
        | ({config.key_query} if config.key_query else set())
    )
