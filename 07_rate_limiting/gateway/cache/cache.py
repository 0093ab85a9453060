"""The cache middleware: look up, serve, coalesce, forward, invalidate.

It sits after routing (a route's policy decides whether and how it caches) and in front
of the channel: a hit never takes a bulkhead place, a retry or a connection, and what
the channel fetches (after its retries, from whichever target) is what gets stored. For
one GET or HEAD:

    key (request-target + route key fields) -> variants -> the one Vary selects
      fresh, or stale within what the request's max-stale allows   -> serve it (hit)
      stale within stale-while-revalidate -> serve it, refresh once in the background
      otherwise -> forward: conditional when it has a validator (fwd=stale), plain
                   (fwd=uri-miss, vary-miss); what comes back is the tap's (tap.py):
                   a 304 refreshes the stored one, a storable answer is teed into the store
      an error on the way, and stale-if-error allows -> serve the stale one
    nothing stored -> misses for one key coalesce behind one origin request (fill.py)

This file is the request's side; verdict.py judges a stored response, validators.py
writes and checks conditionals, tap.py and refresh.py handle what the origin sends back.

Unsafe methods pass through, and a non-error answer to one invalidates the target URI
and the Location and Content-Location it names on the same origin (§4.4). Every response
that touched the cache says what happened in Cache-Status (RFC 9211), and a stored
response carries its Age.

Authenticated requests (stage 06: the auth middleware runs first and leaves the
identity on the request) are what RFC 9111 §3.5 means by "a request with
Authorization", even when the gateway removed the credential before forwarding: their
answers are stored and shared only when the response says `public`, `s-maxage` or
`must-revalidate`, so consumer B is never served what the origin told consumer A alone.
A route with `cache = { per_consumer = true }` puts the consumer into the key instead:
each consumer has entries of its own, and then an answer the origin did not mark
`private` may be kept for that consumer (and only for them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from gateway import requestid
from gateway.accesslog import UPSTREAM
from gateway.auth.identity import IDENTITY
from gateway.concern import AdminView
from gateway.errors import GatewayError
from gateway.headers import REQUEST_ID
from gateway.pathsafety import UnsafePath, normalise
from gateway.proxy import TAP
from gateway.routing import ROUTE, RouteMatch

from . import admin
from .config import CacheConfig, CachePolicy
from .directives import Directives
from .entry import Entry
from .fill import Fill
from .refresh import refresh
from .store import Store
from .tap import CacheTap, key_param
from .validators import conditional, not_modified
from .verdict import no_cache, request_directives, stale_if_error, verdict

log = logging.getLogger("gateway.cache")

SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
PASS_SECONDS = 30.0  # how long a key that was not kept skips coalescing
MAX_PASSES = 10_000
Clock = Callable[[], float]


class NotCached(GatewayError):
    """only-if-cached, and nothing stored could answer (RFC 9111 §5.2.1.7)."""

    status, title, slug = 504, "Gateway Timeout", "not-cached"


class Cache:
    def __init__(self, store: Store, config: CacheConfig, *, clock: Clock = time.time) -> None:
        self.store = store
        self.config = config
        self.name = config.name
        self.clock = clock
        self.fills: dict[str, Fill] = {}
        self.refreshing: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()
        # Keys whose last answer was not kept: their misses do not coalesce for a while
        # (Varnish's hit-for-miss), so that concurrent requests for an uncacheable slow
        # resource are not queued behind one another on every wave.
        self.passes: OrderedDict[str, float] = OrderedDict()

    def middleware(self) -> Middleware:
        @web.middleware
        async def cache(request: web.Request, handler: Handler) -> web.StreamResponse:
            found = request[ROUTE]  # every request on the public port is routed
            policy = found.route.cache
            if policy is None:
                return await handler(request)
            method = request.method
            if method not in ("GET", "HEAD"):
                response = await handler(request)
                if method not in SAFE and response.status < 400:
                    await self._invalidate(request, found, policy, response)
                return response
            if hdrs.UPGRADE in request.headers or (
                policy.bypass_headers  # most routes name none: no generator for them
                and any(name in request.headers for name in policy.bypass_headers)
            ):
                return await handler(request)
            return await self._lookup(request, handler, found, policy)

        return cache

    # --- GET and HEAD ------------------------------------------------------------------

    async def _lookup(
        self, request: web.Request, handler: Handler, found: RouteMatch, policy: CachePolicy
    ) -> web.StreamResponse:
        asked = request_directives(request)
        key = self.key(found.path.path + found.path.query, request, policy)
        variants = await self.store.get(key)
        now = self.clock()
        entry = None
        for variant in variants:  # most lookups find none or one: a loop, no generator
            if variant.matches(request.headers):
                entry = variant
                break
        if entry is not None and "no-store" in asked:
            # §5.2.1.5 allows answering it from the cache; a client that says "keep
            # nothing of this exchange" is better served by the origin, as most caches do.
            entry, variants = None, []
        if entry is not None:
            judged = verdict(entry, asked, now)
            if judged in ("fresh", "stale-allowed"):
                self.counts["hit"] += 1
                return self.answer(request, entry, "hit" + key_param(key, policy))
            if judged == "stale-while-revalidate":
                self.counts["hit-stale"] += 1
                refresh(self, request, handler, key, entry, policy)
                return self.answer(request, entry, "hit; detail=stale-while-revalidate")
        if "only-if-cached" in asked:
            raise NotCached("only-if-cached: nothing stored answers this request")
        if entry is not None:
            fwd = "request" if no_cache(asked) else "stale"
        else:
            fwd = "vary-miss" if variants else "uri-miss"
        return await self._forward(request, handler, key, entry, policy, asked, fwd)

    async def _forward(
        self,
        request: web.Request,
        handler: Handler,
        key: str,
        stored: Entry | None,
        policy: CachePolicy,
        asked: Directives,
        fwd: str,
    ) -> web.StreamResponse:
        fill: Fill | None = None
        if (
            stored is None
            and request.method == "GET"
            and "no-store" not in asked
            and (not self._passing(key))
        ):
            fill = self.fills.get(key)
            if fill is not None:
                followed = await self._follow(request, fill)
                if followed is not None:
                    return followed
                fill = None  # not for us: go to the origin ourselves, alone
            elif not no_cache(asked):
                fill = self.fills[key] = Fill(key, self.config.max_object_bytes)
        tap = CacheTap(self, request, key, stored, policy, asked, fwd, fill)
        forwarded = request
        if stored is not None and (stored.facts.etag or stored.facts.last_modified):
            forwarded = request.clone(headers=conditional(request, stored))
            tap.conditional = True
        forwarded[TAP] = tap
        self.counts["miss" if stored is None else "revalidate"] += 1
        try:
            return await handler(forwarded)
        except GatewayError as error:  # no answer at all: refused, open breaker, deadline
            stale = None
            if stored is not None:
                stale = self.stale_on_error(request, stored, policy, asked, fwd, error.status)
            if stale is None:
                raise
            return stale
        finally:
            tap.finished()
            # The tap and the request refer to each other: left so, every forwarded request
            # (its headers, its match, its writer) would wait for the cycle collector instead
            # of being freed as it ends (stage 07: some 12,000 instructions a request, counted).
            del forwarded[TAP]
            if forwarded is not request and UPSTREAM in forwarded:
                request.setdefault(UPSTREAM, forwarded[UPSTREAM])  # a clone's, for the log

    async def _follow(self, request: web.Request, fill: Fill) -> web.StreamResponse | None:
        """Coalescing: the leader's response, streamed from its fill; None: go yourself."""
        try:
            head = await asyncio.wait_for(asyncio.shield(fill.head), self.config.lock_timeout)
        except TimeoutError:
            self.counts["lock-timeout"] += 1
            return None
        if head is None or not head.matches(request.headers):
            return None
        self.counts["collapsed"] += 1
        response = web.StreamResponse(
            status=head.status,
            reason=head.reason or None,
            headers=self._headers(head, self.clock(), "fwd=miss; collapsed"),
        )
        await response.prepare(request)
        sent = 0
        while True:
            if sent < fill.size:
                chunk = fill.read(sent)
                sent += len(chunk)
                await response.write(chunk)
                continue
            if fill.state == "done":
                break
            if fill.state == "broken":
                if request.transport is not None:
                    request.transport.close()  # the leader's body broke off: so does ours
                return response
            await fill.more()
        await response.write_eof()
        return response

    def _passing(self, key: str) -> bool:
        until = self.passes.get(key)
        if until is None:
            return False
        if until > self.clock():
            return True
        del self.passes[key]
        return False

    def not_kept(self, key: str) -> None:
        """The answer for `key` was not stored: its next misses go to the origin
        side by side instead of queueing behind a leader (PASS_SECONDS)."""
        self.passes[key] = self.clock() + PASS_SECONDS
        self.passes.move_to_end(key)
        while len(self.passes) > MAX_PASSES:
            self.passes.popitem(last=False)

    def stale_on_error(
        self,
        request: web.Request,
        stored: Entry,
        policy: CachePolicy,
        asked: Directives,
        fwd: str,
        status: int,
    ) -> web.StreamResponse | None:
        """stale-if-error (RFC 5861 §4), decided here for both ways an origin fails: it
        answered with a 5xx (the tap sees it) or gave no answer (the channel raised)."""
        if not stale_if_error(stored, policy, asked, self.clock()):
            return None
        self.counts["stale-if-error"] += 1
        return self.answer(
            request, stored, f"fwd={fwd}; fwd-status={status}; detail=stale-if-error"
        )

    # --- answering from the store --------------------------------------------------------

    def answer(self, request: web.Request, entry: Entry, status: str) -> web.StreamResponse:
        """A stored response for `request`: 304 when the client's own validators match."""
        now = self.clock()
        headers = self._headers(entry, now, status)
        request.setdefault(UPSTREAM, "cache")  # the access log: a hit asked no upstream
        if not_modified(request, entry):
            return web.Response(status=304, reason="Not Modified", headers=headers)
        # web.Response: head and body leave in one write, Content-Length from the body
        # (which is the stored one), and no body at all for a HEAD.
        return web.Response(
            status=entry.status, reason=entry.reason or None, headers=headers, body=entry.body
        )

    def _headers(self, entry: Entry, now: float, status: str) -> CIMultiDict[str]:
        headers = CIMultiDict(entry.headers)
        for name in entry.facts.hidden:
            headers.popall(name, None)
        headers["Age"] = str(int(entry.age(now)))
        headers[REQUEST_ID] = requestid.current.get()
        headers.add("Cache-Status", f"{self.name}; {status}; ttl={int(entry.ttl(now))}")
        return headers

    def key(self, target: str, request: web.Request, policy: CachePolicy) -> str:
        """The primary key: the request-target as routed (normalised path and query),
        plus the values of the route's key_headers. The method is not part of it: a
        HEAD is answered from a stored GET."""
        if not policy.key_headers and not policy.per_consumer:
            return target
        extra = "".join(f"\n{n}: {request.headers.get(n, '')}" for n in policy.key_headers)
        if policy.per_consumer and (identity := request.get(IDENTITY)) is not None:
            extra += f"\nconsumer: {identity.consumer_id}"
        return target + extra

    # --- storing -----------------------------------------------------------------------

    def stored(self, fill: Fill, entry: Entry, keep: float) -> None:
        """A fill completed: into the store (the fill stays visible until it is there)."""

        async def put() -> None:
            try:
                await self.store.put(fill.key, entry, keep)
                self.counts["stored"] += 1
                self.passes.pop(fill.key, None)
            finally:
                if self.fills.get(fill.key) is fill:
                    del self.fills[fill.key]

        self.spawn(put())

    def keep_for(self, entry: Entry) -> float:
        """How long the store keeps `entry`: its freshness, then keep_stale more, so that
        it can still be revalidated (or served stale where that is allowed)."""
        return max(0.0, entry.ttl(self.clock())) + max(
            self.config.keep_stale, entry.facts.stale_while_revalidate, entry.facts.stale_if_error
        )

    async def _invalidate(
        self,
        request: web.Request,
        found: RouteMatch,
        policy: CachePolicy,
        response: web.StreamResponse,
    ) -> None:
        """§4.4: the target URI, and Location / Content-Location on the same origin."""
        targets = [found.path.path + found.path.query]
        for name in (hdrs.LOCATION, hdrs.CONTENT_LOCATION):
            value = response.headers.get(name)
            if value and (target := _same_origin_target(request, value)) is not None:
                targets.append(target)
        for target in targets:
            if await self.store.delete(self.key(target, request, policy)):
                self.counts["invalidated"] += 1
            if policy.per_consumer:  # every consumer's copy of it, not only the writer's
                self.counts["invalidated"] += await self.store.purge(target + "\n")

    async def purge(self, url: str, prefix: bool) -> int:
        """The admin listener's purge: one target (every variant), or every key under a
        path prefix."""
        if prefix:
            return await self.store.purge(url)
        # The target's key, and the keys a route's key_headers extend it to.
        return await self.store.delete(url) + await self.store.purge(url + "\n")

    def stats(self) -> dict[str, object]:
        return {
            "counts": dict(self.counts),
            "in_flight_fills": len(self.fills),
            **self.store.stats(),
        }

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as the cache's own task: a store write, a background refresh. Kept
        (asyncio holds tasks only weakly) and cancelled by close()."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self) -> None:
        """Nothing to open: the Redis store connects on its first command."""

    def admin_views(self) -> Sequence[AdminView]:
        return admin.views(self)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.store.close()


def _same_origin_target(request: web.Request, value: str) -> str | None:
    """Location / Content-Location as a key target, when it names this origin."""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        if parts.netloc.lower() != (request.host or "").lower():
            return None
    path = parts.path
    if not path.startswith("/"):
        base = request.path.rsplit("/", 1)[0]
        path = f"{base}/{path}"
    try:
        safe = normalise(path + (f"?{parts.query}" if parts.query else ""))
    except UnsafePath:
        return None
    return safe.path + safe.query
