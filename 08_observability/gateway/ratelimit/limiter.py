"""The rate-limit middleware: count the request against its route's limits, or refuse it.

It sits after auth (the budget is usually the consumer's, and a request auth refused
never spends anyone's budget) and before the cache: a cache hit is still a request, and
a client over its limit is not served from the cache either. Kong runs rate-limiting at
priority 910, after its auth plugins and before proxy-cache; Envoy's `ratelimit` filter
comes after `jwt_authn` in the usual filter chain; nginx's `limit_req` runs in the
preaccess phase, before access control, which is why it can only key on addresses.

For each request on a limited route: the key (keys.py), then one decision for all the
route's limits at once (store.py, redis_store.py): admitted only if every limit has room,
and then every limit counts it. Refused: 429, `Retry-After` (the soonest moment the
tightest limit has room again), problem+json. Either way the answer carries
`RateLimit-Policy` and `RateLimit` (fields.py). A route's `concurrency` caps the requests
it has in flight per key, beside the rate: a client with 4 slow requests open waits for
one to finish, however few requests per second that is.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.auth.identity import IDENTITY, Identity
from gateway.concern import AdminView
from gateway.errors import GatewayError, problem_response
from gateway.observability.tracing import child
from gateway.routing import ROUTE

from .algorithms import Outcome
from .config import LimitPolicy, RateLimitConfig
from .fields import policy_field, state_field
from .keys import ClientAddress, key_of
from .store import MemoryStore, Store, StoreUnavailable

# (each limit's algorithm, requests and window; RateLimit-Policy; each limit's key prefix;
# each limit's by_limit key for an admission)
Granted = tuple[list[tuple[str, int, float]], str, list[str], list[tuple[str, str, str]]]

log = logging.getLogger("gateway.ratelimit")

T = TypeVar("T")
LEASE_MS = 60_000.0  # a request in flight holds its concurrency place at most this long
FIELDS = web.RequestKey("rate_limit_fields", tuple)  # (RateLimit-Policy, RateLimit)


class TooManyRequests(GatewayError):
    status, title, slug = 429, "Too Many Requests", "rate-limited"


class LimiterUnavailable(GatewayError):
    """The shared store is unreachable and the route says: closed."""

    status, title, slug = 503, "Service Unavailable", "rate-limit-unavailable"


class RefusalLog:
    """One log line per refused key and interval, with a count, not one per 429.

    A client hammering a limit gets thousands of 429s a second, each cheap to answer; a
    log line for each would make the log the most expensive part of the refusal, and let
    any client flood it (and the disk behind it). The first refusal of a key is logged at
    once; the ones after it within `interval` are counted, and one line with the count
    follows when the interval ends. The access log, when on, still has every request.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.counting: dict[tuple[str, str, str], int] = {}

    def refused(self, who: str, scope: str, tight: str) -> None:
        key = (who, scope, tight)
        if key in self.counting:
            self.counting[key] += 1
            return
        self.counting[key] = 0
        log.info("429 %s on %s (%s)", who, scope, tight)
        asyncio.get_running_loop().call_later(self.interval, self._flush, key)

    def _flush(self, key: tuple[str, str, str]) -> None:
        more = self.counting.pop(key, 0)
        if more:
            who, scope, tight = key
            log.info("429 %s on %s (%s): %d more in %g s", who, scope, tight, more, self.interval)


class Limiter:
    def __init__(self, config: RateLimitConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.span_attributes = {"gateway.store": store.name}  # made once, not per request
        # While a shared store is down, each process limits on its own (fallback = true).
        self.fallback = (
            MemoryStore(config.max_keys) if config.fallback and store.name != "memory" else None
        )
        self.addresses = ClientAddress(config.trusted_proxies)
        self.counts: Counter[str] = Counter()
        # The same by route and limit: which limit refuses whom, for the metrics.
        self.by_limit: Counter[tuple[str, str, str]] = Counter()
        self.refusals = RefusalLog()
        # What a route's limits are for a plan, its RateLimit-Policy and its keys' prefixes:
        # the same for every request of that plan, so made once (the per-request work is
        # the decision).
        self._granted: dict[tuple[str, str], Granted] = {}

    async def forget(self, who: str) -> int:
        """A key's counts forgotten on every route, in the store and the fallback: an
        operator's lever for a customer refused by mistake (POST /ratelimit/reset)."""
        forgotten = await self.store.forget(who)
        if self.fallback is not None:
            forgotten += await self.fallback.forget(who)
        log.warning("rate limits of %s reset by the admin listener (%d counts)", who, forgotten)
        return forgotten

    def middleware(self) -> Middleware:
        @web.middleware
        async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
            found = request[ROUTE]  # every request on the public port is routed
            policy = found.route.rate_limit
            if policy is None:
                return await handler(request)
            identity = request.get(IDENTITY)  # auth's verdict, read once for both below
            who = key_of(request, policy.key, self.addresses, identity)
            fields = await self._check(request, policy, who, identity) if policy.limits else None
            token, store = None, None
            if policy.concurrency is not None:
                token, store = await self._acquire(policy, who)
            try:
                response = await handler(request)
                if fields is not None and self.config.headers and not response.prepared:
                    response.headers["RateLimit-Policy"], response.headers["RateLimit"] = fields
                return response
            finally:
                if token is not None and store is not None:
                    await store.release(f"{policy.scope}|in-flight|{who}", token)

        return rate_limit

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """A streamed answer (the proxy's relay) sends its head before the middleware sees
        it: the fields go on here, from what the middleware left on the request."""
        fields = request.get(FIELDS)
        if fields is not None and "RateLimit" not in response.headers:
            response.headers["RateLimit-Policy"], response.headers["RateLimit"] = fields

    async def _check(
        self, request: web.Request, policy: LimitPolicy, who: str, identity: Identity | None
    ) -> tuple[str, str] | None:
        plan = identity.plan if identity is not None else ""
        made = self._granted.get((policy.scope, plan))
        if made is None:
            granted = [(limit, limit.requests_for(plan)) for limit in policy.limits]
            args = [(limit.algorithm, requests, limit.window_ms) for limit, requests in granted]
            prefixes = [f"{policy.scope}|{limit.name}|" for limit in policy.limits]
            admitted = [(policy.scope, limit.name, "admitted") for limit in policy.limits]
            made = (args, policy_field(granted), prefixes, admitted)
            self._granted[(policy.scope, plan)] = made
        args, policy_value, prefixes, admitted = made
        keys = [prefixes[0] + who] if len(prefixes) == 1 else [p + who for p in prefixes]
        outcomes = await self._decide(policy, keys, args)
        if outcomes is None:
            return None  # failed open: no counts to show
        refused = (
            not outcomes[0].allowed if len(outcomes) == 1 else not all(o.allowed for o in outcomes)
        )
        if refused:  # nothing was counted: the limits with room still have it all
            outcomes = [o._replace(remaining=o.remaining + 1) if o.allowed else o for o in outcomes]
        fields = (policy_value, state_field(policy.limits, outcomes))
        if not refused:  # nearly every request: each limit admitted it
            for counted in admitted:
                self.by_limit[counted] += 1
        else:  # a limit with room, when another refused, decided nothing
            for limit, outcome in zip(policy.limits, outcomes, strict=True):
                if not outcome.allowed:
                    self.by_limit[(policy.scope, limit.name, "limited")] += 1
        if refused:
            self.counts["limited"] += 1
            wait = max(o.retry_ms for o in outcomes if not o.allowed)
            tight = ", ".join(
                limit.name
                for limit, o in zip(policy.limits, outcomes, strict=True)
                if not o.allowed
            )
            error = TooManyRequests(
                f"over the {tight} limit; try again in {math.ceil(wait / 1000)} s"
            )
            error.headers["Retry-After"] = str(max(1, math.ceil(wait / 1000)))
            if self.config.headers:
                error.headers["RateLimit-Policy"], error.headers["RateLimit"] = fields
            self.refusals.refused(who, policy.scope, tight)
            raise error
        self.counts["admitted"] += 1
        if self.config.headers:
            request[FIELDS] = fields
        return fields

    async def _decide(
        self, policy: LimitPolicy, keys: Sequence[str], args: Sequence[tuple[str, int, float]]
    ) -> list[Outcome] | None:
        try:
            with child("rate limit", self.span_attributes):
                return await self.store.hit(keys, args)
        except StoreUnavailable:
            return await self._degraded(policy, lambda s: s.hit(keys, args))

    async def _acquire(self, policy: LimitPolicy, who: str) -> tuple[str | None, Store | None]:
        assert policy.concurrency is not None
        key, token = f"{policy.scope}|in-flight|{who}", uuid.uuid4().hex
        store: Store = self.store
        try:
            admitted = await store.acquire(key, policy.concurrency, LEASE_MS, token)
        except StoreUnavailable:
            most = policy.concurrency
            degraded = await self._degraded(policy, lambda s: s.acquire(key, most, LEASE_MS, token))
            if degraded is None:
                return None, None  # failed open, no fallback: nothing to give back later
            assert self.fallback is not None  # only the fallback answers a degraded call
            admitted, store = degraded, self.fallback
        if not admitted:
            self.counts["too_many_in_flight"] += 1
            error = TooManyRequests(
                f"{policy.concurrency} requests in flight already; wait for one"
            )
            error.headers["Retry-After"] = "1"
            raise error
        return token, store

    async def _degraded(
        self, policy: LimitPolicy, ask: Callable[[Store], Awaitable[T]]
    ) -> T | None:
        """Redis trouble: the route's failure mode, or the local fallback's answer to `ask`;
        None when the route fails open without a fallback."""
        self.counts["store_unavailable"] += 1
        if policy.failure_mode == "closed":
            error = LimiterUnavailable("the rate limiter cannot decide right now")
            error.headers["Retry-After"] = "1"
            raise error
        if self.fallback is not None:
            self.counts["fallback"] += 1
            return await ask(self.fallback)
        self.counts["failed_open"] += 1
        return None

    def admin_views(self) -> Sequence[AdminView]:
        return (
            AdminView(
                path="/ratelimit",
                show=self._show,
                actions={"/ratelimit/reset": self._forget_key},
            ),
        )

    async def _show(self) -> dict[str, object]:
        """GET /ratelimit: admitted, limited, store trouble; the store (keys, or Redis:
        decisions, errors, breaker) and the local fallback."""
        fallback = None if self.fallback is None else self.fallback.stats()
        store = self.store.stats()
        return {"rate_limit": {"counts": dict(self.counts), "store": store, "fallback": fallback}}

    async def _forget_key(self, request: web.Request) -> web.Response:
        """POST /ratelimit/reset?key=consumer:alice: forget a key's counts everywhere."""
        who = request.query.get("key", "")
        if not who:
            return problem_response(
                400,
                "Bad Request",
                "give ?key=, e.g. consumer:alice or ip:203.0.113.9 (as RateLimit keys are written)",
                instance=request.path,
            )
        forgotten = await self.forget(who)
        return web.json_response({"pid": os.getpid(), "key": who, "forgotten": forgotten})

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        await self.store.close()
