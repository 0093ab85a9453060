"""One issuer's verification keys: inline, or fetched from its JWKS, kept and refreshed.

A remote key set is fetched at start-up and kept for as long as the JWKS response's
`Cache-Control: max-age` says (clamped between `refetch_interval` and `jwks_max_ttl`;
`jwks_ttl` when it says nothing). Three events make the gateway ask again, and each is
bounded so that no client can turn the gateway into a flood against the identity
provider:

- the set expired: one fetch, shared by every request that needs it (single flight);
- a token names a kid the set does not have: that is how a rotation looks from here (the
  IdP publishes a new key and signs with it at once), so the set is refetched, but at
  most once per `refetch_interval` (30 s) whatever the kids: an attacker sending a new
  random kid with every request costs the IdP one request per interval, not one per
  request;
- a fetch failed: the keys already held are kept (a token signed with them still
  verifies) and the next try waits `refetch_interval`. While no key set was ever loaded
  (the IdP was down when the gateway started) there is nothing to keep, and every token
  is a 503: then the next try comes soon, after 0.5 s, 1 s, then every 2 s, so that a
  valid token is accepted within 2 s of the IdP answering. Still one fetch at a time,
  and only when a request asks: a flood costs the IdP one request per 2 s at most.

Envoy's jwt_authn does the same with `cache_duration` and an async refetch; Kong's
OpenID plugin rediscovers on an unknown kid with a rediscovery lifetime; nginx Plus
caches the JWKS by its own `auth_jwt_key_cache`. The keys live per worker process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout

from gateway.cachecontrol import delta_seconds, parse_directives
from gateway.observability.tracing import child

from .keys import KeyProblem, VerifyKey, from_jwk
from .tokens import Invalid

log = logging.getLogger("gateway.auth")

MAX_JWKS_BYTES = 256 * 1024
DISCOVERY_PATH = "/.well-known/openid-configuration"
# Until the first key set arrives: retry after 0.5 s, doubling, at most every 2 s. A real
# gateway would make these configurable; 2 s is the longest a valid token waits after
# the IdP comes back.
FIRST_RETRY, MAX_RETRY = 0.5, 2.0


class KeysUnavailable(Exception):
    """No key of this issuer has been obtained yet: tokens cannot be checked at all."""


def pick(keys: Sequence[VerifyKey], kid: str | None, alg: str) -> VerifyKey | None:
    """The key a token asks for. Without a kid, only an issuer with exactly one key for
    the algorithm: trying every key in turn would let one token cost N signature checks."""
    if kid is not None:
        return next((k for k in keys if k.kid == kid and k.fits(alg)), None)
    fitting = [k for k in keys if k.fits(alg)]
    return fitting[0] if len(fitting) == 1 else None


class StaticKeys:
    """Keys written in gateway.toml (PEM, JWK or HMAC secret): never fetched."""

    def __init__(self, keys: list[VerifyKey]) -> None:
        self.keys = keys

    async def find(self, kid: str | None, alg: str) -> VerifyKey:
        key = pick(self.keys, kid, alg)
        if key is None:
            raise Invalid(f"no configured key for kid {kid!r} and {alg}")
        return key

    async def start(self, session: ClientSession) -> None:
        pass

    def snapshot(self) -> dict[str, object]:
        return {"source": "inline", "kids": [k.kid for k in self.keys]}


class RemoteKeys:
    """A JWKS URL (or the issuer's OpenID configuration, which names it)."""

    def __init__(
        self,
        name: str,
        *,
        jwks_url: str | None,
        discovery_issuer: str | None,
        ttl: float,
        max_ttl: float,
        refetch_interval: float,
        fetch_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.jwks_url = jwks_url
        self.discovery_issuer = discovery_issuer  # the issuer URL to discover from
        self.ttl, self.max_ttl, self.refetch_interval = ttl, max_ttl, refetch_interval
        self.timeout = ClientTimeout(total=fetch_timeout)
        self.clock = clock
        self.keys: list[VerifyKey] = []
        self.loaded = False
        self.expires = -math.inf  # when the set must be fetched again
        self.last_fetch = -math.inf  # when the last fetch started
        self.fetches = self.failures = 0
        self.failures_in_a_row = 0
        self.last_error: str | None = None
        self._session: ClientSession | None = None
        self._fetching: asyncio.Future[None] | None = None

    async def start(self, session: ClientSession) -> None:
        self._session = session
        await self._refresh()  # at start-up, so the first request finds the keys

    async def find(self, kid: str | None, alg: str) -> VerifyKey:
        now = self.clock()
        if now >= self.expires:
            await self._refresh()
        key = pick(self.keys, kid, alg)
        # A kid we hold, with an algorithm that does not fit it, is no rotation: no refetch.
        due = self.clock() - self.last_fetch >= self.refetch_interval
        if key is None and kid is not None and due and not any(k.kid == kid for k in self.keys):
            log.info("issuer %s: unknown kid %.64r, fetching its keys again", self.name, kid)
            await self._refresh()
            key = pick(self.keys, kid, alg)
        if key is None:
            if not self.loaded:
                raise KeysUnavailable(f"issuer {self.name}: no keys yet ({self.last_error})")
            raise Invalid(
                f"no key for kid {kid!r} and {alg} (refetched at most every"
                f" {self.refetch_interval:g} s)"
            )
        return key

    async def _refresh(self) -> None:
        """One fetch at a time; every caller waits for the same one. Shielded: a client
        that goes away must not cancel the fetch the others are waiting for."""
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch())
            self._fetching.add_done_callback(self._fetched)
        await asyncio.shield(self._fetching)

    def _fetched(self, future: asyncio.Future[None]) -> None:
        self._fetching = None

    async def _fetch(self) -> None:
        self.last_fetch = self.clock()
        self.fetches += 1
        try:
            # A span under the request that needed the keys (the task copied its context).
            with child("jwks fetch", {"gateway.issuer": self.name}):
                if self.jwks_url is None:
                    self.jwks_url = await self._discover()
                document, max_age = await self._get_json(self.jwks_url)
            keys = self._parse(document)
        except (ClientError, TimeoutError, OSError, ValueError) as exc:
            self.failures += 1
            self.failures_in_a_row += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            self.expires = self.clock() + self._retry_after_failure()
            log.warning(
                "issuer %s: key fetch failed (%s); keeping %d keys",
                self.name,
                self.last_error,
                len(self.keys),
            )
            return
        self.keys, self.loaded, self.last_error = keys, True, None
        self.failures_in_a_row = 0
        ttl = self.ttl if max_age is None else max_age
        self.expires = self.clock() + min(max(ttl, self.refetch_interval), self.max_ttl)
        log.info(
            "issuer %s: %d keys (%s)", self.name, len(keys), ", ".join(str(k.kid) for k in keys)
        )

    def _retry_after_failure(self) -> float:
        """Seconds until the next fetch may be tried. With keys held, `refetch_interval`:
        the old keys still verify, and the IdP is not pressed. Without any, every token
        fails meanwhile, so soon: 0.5 s, 1 s, then 2 s (never longer than the interval)."""
        if self.loaded:
            return self.refetch_interval
        backoff = FIRST_RETRY * 2.0 ** (self.failures_in_a_row - 1)
        return min(backoff, MAX_RETRY, self.refetch_interval)

    async def _discover(self) -> str:
        """OpenID Connect Discovery 1.0 §4: the configuration names the jwks_uri, and
        its `issuer` must be exactly the one configured (§4.3)."""
        assert self.discovery_issuer is not None
        document, _ = await self._get_json(self.discovery_issuer.rstrip("/") + DISCOVERY_PATH)
        if document.get("issuer") != self.discovery_issuer:
            raise ValueError(f"discovery says issuer {document.get('issuer')!r}")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
            raise ValueError("discovery has no http(s) jwks_uri")
        return uri

    async def _get_json(self, url: str) -> tuple[dict[str, Any], float | None]:
        assert self._session is not None, "start() first"
        async with self._session.get(url, timeout=self.timeout, allow_redirects=False) as response:
            if response.status != 200:
                raise ValueError(f"{url} answered {response.status}")
            body = await response.content.read(MAX_JWKS_BYTES + 1)
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError(f"{url}: over {MAX_JWKS_BYTES} bytes")
            cc = parse_directives(response.headers.getall("Cache-Control", []))
            if "no-store" in cc or "no-cache" in cc:
                max_age: float | None = 0.0
            else:
                seconds = delta_seconds(cc.get("max-age"))
                max_age = None if seconds is None else float(seconds)
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError(f"{url}: not a JSON object")
        return document, max_age

    def _parse(self, document: dict[str, Any]) -> list[VerifyKey]:
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise ValueError("a JWKS needs a keys list")
        keys = []
        for entry in entries:
            try:
                if not isinstance(entry, dict):
                    raise KeyProblem("not a JSON object")
                keys.append(from_jwk(entry))
            except KeyProblem as exc:  # one odd key must not cost the issuer all the others
                log.warning(
                    "issuer %s: key %r skipped: %s",
                    self.name,
                    entry.get("kid") if isinstance(entry, dict) else None,
                    exc,
                )
        return keys

    def snapshot(self) -> dict[str, object]:
        now = self.clock()
        return {
            "source": self.jwks_url or f"discovery {self.discovery_issuer}",
            "kids": [k.kid for k in self.keys],
            "fetches": self.fetches,
            "failures": self.failures,
            "last_error": self.last_error,
            "expires_in": round(self.expires - now, 1) if self.loaded else None,
        }
