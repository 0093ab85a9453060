"""The cache middleware: look up, serve, revalidate, coalesce, store, invalidate.

It sits after routing (a route's policy decides whether and how it caches) and in front
of the channel: a hit never takes a bulkhead place, a retry or a connection, and what
the channel fetches (after its retries, from whichever target) is what gets stored. For
one GET or HEAD:

    key (request-target + route key fields) -> variants -> the one Vary selects
      fresh, or stale within what the request's max-stale allows   -> serve it (hit)
      stale within stale-while-revalidate -> serve it, refresh once in the background
      otherwise -> forward: conditional when it has a validator (fwd=stale), plain
                   (fwd=uri-miss, vary-miss); a 304 refreshes the stored one and the
                   client gets that; a storable answer is teed into the store
      an error on the way, and stale-if-error allows -> serve the stale one
    nothing stored -> misses for one key coalesce behind one origin request (fill.py)

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
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientResponse, hdrs, web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from gateway import requestid
from gateway.accesslog import UPSTREAM
from gateway.auth.identity import IDENTITY
from gateway.errors import GatewayError
from gateway.headers import REQUEST_ID, strip_hop_by_hop
from gateway.pathsafety import UnsafePath, normalise
from gateway.proxy import TAP, Sink
from gateway.routing import ROUTE, RouteMatch

from .config import CacheConfig, CachePolicy
from .directives import Directives, delta_seconds, parse_directives, parse_http_date
from .entry import PER_EXCHANGE, Entry, selecting, storable
from .fill import Fill
from .store import Store

log = logging.getLogger("gateway.cache")

SAFE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CONDITIONALS = ("If-None-Match", "If-Modified-Since")
# A response with none of these has no freshness and no validator (unless the route
# gives it a default_ttl): nothing worth keeping.
FRESHNESS_FIELDS = ("Cache-Control", "Expires", "ETag", "Last-Modified", "CDN-Cache-Control")
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
            if hdrs.UPGRADE in request.headers or any(
                name in request.headers for name in policy.bypass_headers
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
        entry = next((v for v in variants if v.matches(request.headers)), None)
        if entry is not None and "no-store" in asked:
            # §5.2.1.5 allows answering it from the cache; a client that says "keep
            # nothing of this exchange" is better served by the origin, as most caches do.
            entry, variants = None, []
        if entry is not None:
            verdict = self._verdict(entry, asked, now)
            if verdict in ("fresh", "stale-allowed"):
                self.counts["hit"] += 1
                return self.answer(request, entry, "hit" + key_param(key, policy))
            if verdict == "stale-while-revalidate":
                self.counts["hit-stale"] += 1
                self._refresh(request, handler, key, entry, policy)
                return self.answer(request, entry, "hit; detail=stale-while-revalidate")
        if "only-if-cached" in asked:
            raise NotCached("only-if-cached: nothing stored answers this request")
        if entry is not None:
            fwd = "request" if _no_cache(asked) else "stale"
        else:
            fwd = "vary-miss" if variants else "uri-miss"
        return await self._forward(request, handler, key, entry, policy, asked, fwd)

    def _verdict(self, entry: Entry, asked: Directives, now: float) -> str:
        """fresh, stale-allowed (the request's max-stale), stale-while-revalidate, or
        revalidate (§4.2, §5.2.1, RFC 5861 §3)."""
        facts = entry.facts
        if _no_cache(asked) or facts.no_cache:
            return "revalidate"
        age = entry.age(now)
        left = facts.lifetime - age
        if "max-age" in asked:
            limit = delta_seconds(asked["max-age"])
            if limit is None or age > limit:
                return "revalidate"
        if "min-fresh" in asked:
            wanted = delta_seconds(asked["min-fresh"])
            if wanted is None or left < wanted:
                return "revalidate"
        if left > 0:
            return "fresh"
        if facts.no_stale:
            return "revalidate"  # must-revalidate, proxy-revalidate, s-maxage (§4.2.4)
        if "max-stale" in asked:
            allowed = asked["max-stale"]
            limit = delta_seconds(allowed)
            if allowed is None or (limit is not None and -left <= limit):
                return "stale-allowed"
        if -left <= facts.stale_while_revalidate:
            return "stale-while-revalidate"
        return "revalidate"

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
            elif not _no_cache(asked):
                fill = self.fills[key] = Fill(key, self.config.max_object_bytes)
        tap = CacheTap(self, request, key, stored, policy, asked, fwd, fill)
        forwarded = request
        if stored is not None and (stored.facts.etag or stored.facts.last_modified):
            forwarded = request.clone(headers=_conditional(request, stored))
            tap.conditional = True
        forwarded[TAP] = tap
        self.counts["miss" if stored is None else "revalidate"] += 1
        try:
            return await handler(forwarded)
        except GatewayError as error:
            if stored is not None and self._stale_if_error(stored, policy, asked):
                self.counts["stale-if-error"] += 1
                return self.answer(
                    request, stored, f"fwd={fwd}; fwd-status={error.status}; detail=stale-if-error"
                )
            raise
        finally:
            tap.finished()
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

    def _stale_if_error(self, entry: Entry, policy: CachePolicy, asked: Directives) -> bool:
        """May `entry` answer because the origin could not (RFC 5861 §4)?"""
        if entry.facts.no_stale or entry.facts.no_cache:
            return False
        allowed = max(
            entry.facts.stale_if_error,
            policy.stale_if_error,
            float(delta_seconds(asked.get("stale-if-error")) or 0),
        )
        return -entry.ttl(self.clock()) <= allowed

    def _refresh(
        self, request: web.Request, handler: Handler, key: str, entry: Entry, policy: CachePolicy
    ) -> None:
        """stale-while-revalidate: one background revalidation per key at a time.

        The refresh is the client's request again (a clone with the cache's validators),
        sent down the same chain (channel, pool, proxy), with a tap that keeps whatever
        comes back and sends nothing to anyone: nginx's proxy_cache_background_update is
        the same idea, a subrequest.
        """
        if key in self.refreshing:
            return
        self.refreshing.add(key)
        # The client's address, fixed now: the clone outlives the client's connection.
        headers = _conditional(request, entry)
        remote = request.remote
        background = (
            request.clone(headers=headers)
            if remote is None
            else request.clone(headers=headers, remote=remote)
        )
        tap = CacheTap(self, background, key, entry, policy, {}, "stale", None)
        tap.conditional = bool(entry.facts.etag or entry.facts.last_modified)
        tap.background = True
        background[TAP] = tap

        async def refresh() -> None:
            try:
                await handler(background)
            except Exception as exc:  # an error or a timeout: the stale entry stays
                log.info("background refresh of %s failed: %s", key, exc)
            finally:
                tap.finished()
                self.refreshing.discard(key)

        self._spawn(refresh())

    # --- answering from the store --------------------------------------------------------

    def answer(self, request: web.Request, entry: Entry, status: str) -> web.StreamResponse:
        """A stored response for `request`: 304 when the client's own validators match."""
        now = self.clock()
        headers = self._headers(entry, now, status)
        request.setdefault(UPSTREAM, "cache")  # the access log: a hit asked no upstream
        if _not_modified(request, entry):
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

        self._spawn(put())

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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.store.close()


class CacheTap:
    """The cache's ear on proxy.relay for one forwarded request (see proxy.Tap)."""

    def __init__(
        self,
        cache: Cache,
        request: web.Request,
        key: str,
        stored: Entry | None,
        policy: CachePolicy,
        asked: Directives,
        fwd: str,
        fill: Fill | None,
    ) -> None:
        self.cache = cache
        self.request = request
        self.key = key
        self.stored = stored
        self.policy = policy
        self.asked = asked
        self.fwd = fwd
        self.fill = fill
        self.sent = cache.clock()  # request_time (§4.2.3)
        self.conditional = False  # the cache sent its own validators
        self.background = False  # a stale-while-revalidate refresh: nobody is waiting

    async def instead(self, upstream: ClientResponse) -> web.StreamResponse | None:
        cache, stored = self.cache, self.stored
        status = upstream.status
        if stored is not None and status == 304 and self.conditional:
            fresh = CIMultiDict(upstream.headers)
            strip_hop_by_hop(fresh)
            updated = stored.updated(fresh, self.sent, cache.clock())
            await cache.store.put(self.key, updated, cache.keep_for(updated))
            cache.counts["revalidated"] += 1
            return cache.answer(self.request, updated, f"fwd={self.fwd}; fwd-status=304")
        if (
            stored is not None
            and status >= 500
            and cache._stale_if_error(stored, self.policy, self.asked)
        ):
            cache.counts["stale-if-error"] += 1
            return cache.answer(
                self.request, stored, f"fwd={self.fwd}; fwd-status={status}; detail=stale-if-error"
            )
        if self.background:
            await self._keep_in_background(upstream)
            return web.Response(status=204)  # goes nowhere: there is no client
        return None

    def copy(self, upstream: ClientResponse, client_headers: CIMultiDict[str]) -> Sink | None:
        cache, status = self.cache, upstream.status
        if self.request.method == "HEAD" and self.stored is not None and status == 200:
            self._freshen(client_headers)
        why = self._refused(status, client_headers)
        name = cache.name
        if why is not None:
            client_headers.add(
                "Cache-Status", f"{name}; fwd={self.fwd}; fwd-status={status}; detail={why}"
            )
            self._not_kept()
            return None
        head = self._entry(status, upstream.reason or "", client_headers)
        if not _worth_keeping(head):
            client_headers.add(
                "Cache-Status", f"{name}; fwd={self.fwd}; fwd-status={status}; detail=no-freshness"
            )
            self._not_kept()
            return None
        ttl = int(head.ttl(cache.clock()))
        client_headers.add(
            "Cache-Status",
            f"{name}; fwd={self.fwd}; fwd-status={status}; stored; ttl={ttl}"
            + key_param(self.key, self.policy),
        )
        fill = self.fill or Fill(self.key, cache.config.max_object_bytes)
        self.fill = fill
        length = client_headers.get(hdrs.CONTENT_LENGTH)
        fill.begin(
            head,
            lambda done, entry: cache.stored(done, entry, cache.keep_for(entry)),
            int(length) if length is not None and length.isdigit() else None,
        )
        return fill

    def _not_kept(self) -> None:
        if self.fill is not None:
            self.fill.decline()
        if self.request.method == "GET" and "no-store" not in self.asked:
            self.cache.not_kept(self.key)

    def _freshen(self, headers: CIMultiDict[str]) -> None:
        """§4.3.5: a 200 to a HEAD updates the stored GET response it describes (same
        validators), as a 304 would; the body stays."""
        stored, cache = self.stored, self.cache
        assert stored is not None
        if headers.get("ETag") != stored.facts.etag or (
            headers.get("Last-Modified") != stored.facts.last_modified
        ):
            return  # a different representation now: the stored one may no longer be right
        fresh = CIMultiDict(headers)
        for name in PER_EXCHANGE:
            fresh.popall(name, None)
        updated = stored.updated(fresh, self.sent, cache.clock())
        cache._spawn(cache.store.put(self.key, updated, cache.keep_for(updated)))

    def finished(self) -> None:
        """The forwarded request is over: whatever did not reach copy() is not shared."""
        if self.fill is not None:
            self.fill.decline()
            if self.fill.state != "done" and self.cache.fills.get(self.key) is self.fill:
                del self.cache.fills[self.key]

    def _refused(self, status: int, headers: CIMultiDict[str]) -> str | None:
        if self.request.method != "GET":
            return "method"  # a HEAD has no body to store
        if not self.policy.heuristics.default_ttl and not any(
            name in headers for name in FRESHNESS_FIELDS
        ):
            return "no-freshness"  # most API answers: decided without parsing anything
        if "no-store" in self.asked:
            return "request-no-store"
        why = storable(status, headers, self._authorized())
        if why is not None:
            return why
        length = headers.get(hdrs.CONTENT_LENGTH)
        if (
            length is not None
            and length.isdigit()
            and int(length) > self.cache.config.max_object_bytes
        ):
            return "too-large"
        return None

    def _authorized(self) -> bool:
        """§3.5's "request with Authorization": a verified identity counts (the gateway
        may have removed the credential itself), unless the key is this consumer's own."""
        if self.request.get(IDENTITY) is not None:
            return not self.policy.per_consumer
        return hdrs.AUTHORIZATION in self.request.headers

    def _entry(self, status: int, reason: str, client_headers: CIMultiDict[str]) -> Entry:
        headers = CIMultiDict(client_headers)
        for name in PER_EXCHANGE:
            headers.popall(name, None)
        return Entry(
            status,
            reason,
            headers,
            b"",
            self.sent,
            self.cache.clock(),
            selecting(headers, self.request.headers),
            self.policy.heuristics,
        )

    async def _keep_in_background(self, upstream: ClientResponse) -> None:
        """A background refresh's full answer: read it (bounded) and store it."""
        headers = CIMultiDict(upstream.headers)
        strip_hop_by_hop(headers)
        if self._refused(upstream.status, headers) is not None:
            return
        head = self._entry(upstream.status, upstream.reason or "", headers)
        body = bytearray()
        async for chunk in upstream.content.iter_any():
            body += chunk
            if len(body) > self.cache.config.max_object_bytes:
                return
        head.body = bytes(body)
        await self.cache.store.put(self.key, head, self.cache.keep_for(head))
        self.cache.counts["refreshed"] += 1


def key_param(key: str, policy: CachePolicy) -> str:
    """RFC 9211's `key` parameter, where it is safe to show: a key that is only the
    request-target the client sent. A key with a route's key_headers in it (Host, or a
    header carrying a token) is not repeated back, nor one with a consumer in it."""
    if policy.key_headers or policy.per_consumer or not (key.isascii() and key.isprintable()):
        return ""
    return '; key="' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _worth_keeping(entry: Entry) -> bool:
    """Storable is not enough: an answer with no freshness and no validator could only
    ever be served with a client's max-stale, and would cost a copy on every request
    (most API responses: no Cache-Control, no ETag). Those are not kept."""
    facts = entry.facts
    return bool(
        facts.lifetime > 0
        or facts.etag
        or facts.last_modified
        or facts.stale_while_revalidate
        or facts.stale_if_error
    )


def request_directives(request: web.Request) -> Directives:
    """The request's Cache-Control; `Pragma: no-cache` counts as no-cache when there is
    no Cache-Control at all (RFC 9111 §5.4)."""
    lines = request.headers.getall(hdrs.CACHE_CONTROL, [])
    if lines:
        return parse_directives(lines)
    if any("no-cache" in p.lower() for p in request.headers.getall(hdrs.PRAGMA, [])):
        return {"no-cache": None}
    return {}


def _no_cache(asked: Directives) -> bool:
    return "no-cache" in asked


def _conditional(request: web.Request, entry: Entry) -> CIMultiDict[str]:
    """The request's headers with the cache's validators instead of the client's
    (§4.3.1): the stored ETag and Last-Modified are what the origin must compare."""
    headers = CIMultiDict(request.headers)
    for name in CONDITIONALS:
        headers.popall(name, None)
    if entry.facts.etag:
        headers["If-None-Match"] = _quoted(entry.facts.etag)
    if entry.facts.last_modified:
        headers["If-Modified-Since"] = entry.facts.last_modified
    return headers


def _not_modified(request: web.Request, entry: Entry) -> bool:
    """The client's own conditional, evaluated against the stored response (RFC 9110
    §13.2.2): If-None-Match (weak comparison) wins over If-Modified-Since."""
    if entry.status != 200:
        return False
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        etag = entry.facts.etag
        if if_none_match.strip() == "*":
            return True
        if etag is None:
            return False
        # Weak comparison (§8.8.3.2), and lenient about quotes: `abc` and `"abc"` name
        # the same tag (origins and clients both get this wrong).
        wanted = {_opaque(t) for t in if_none_match.split(",")}
        return _opaque(etag) in wanted
    since = request.headers.get("If-Modified-Since")
    if since is not None:
        now = time.time()
        since_at = parse_http_date(since, now)
        modified = entry.facts.last_modified or entry.headers.get("Date")
        modified_at = parse_http_date(modified, now) if modified else entry.response_time
        return since_at is not None and modified_at is not None and modified_at <= since_at
    return False


def _opaque(tag: str) -> str:
    return tag.strip().removeprefix("W/").strip('"')


def _quoted(tag: str) -> str:
    """An entity-tag as it must be sent: `abc` (which some origins send) as `"abc"`."""
    return tag if tag.startswith(('"', 'W/"')) else f'"{tag}"'


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
