"""The cache's ear on proxy.relay: what happens to an answer that came from the origin.

A forwarded miss or revalidation carries a CacheTap (`request[TAP]`); proxy.relay asks it
twice, before the client hears anything:

    tap.instead(upstream)             -> a response that replaces the upstream's, or None:
        a 304 to the cache's own validators: the stored entry, refreshed (§4.3.4)
        a 5xx where stale-if-error allows: the stale entry (Cache.stale_on_error)
        a background refresh: kept, and nothing goes to anyone
    tap.copy(upstream, client_headers) -> a Sink for the body, or None:
        decides whether the answer may be stored (§3), says so in Cache-Status, and hands
        relay the fill (fill.py) that copies the body while the client receives it

So the whole story of one origin answer is in this file, in the order relay meets it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import ClientResponse, hdrs, web
from multidict import CIMultiDict

from gateway.auth.identity import IDENTITY
from gateway.headers import strip_hop_by_hop
from gateway.proxy import Sink

from .config import CachePolicy
from .directives import Directives
from .entry import PER_EXCHANGE, Entry, selecting, storable
from .fill import Fill

if TYPE_CHECKING:
    from .cache import Cache

# A response with none of these has no freshness and no validator (unless the route
# gives it a default_ttl): nothing worth keeping.
FRESHNESS_FIELDS = ("Cache-Control", "Expires", "ETag", "Last-Modified", "CDN-Cache-Control")


class CacheTap:
    """The cache's ear on proxy.relay for one forwarded request (see proxy.Tap)."""

    # One per forwarded request: slots make it a small fixed record, not a dict.
    __slots__ = (
        *("cache", "request", "key", "stored", "policy", "asked", "fwd", "fill"),
        *("sent", "conditional", "background"),
    )

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

    @property
    def may_answer(self) -> bool:
        """Only a stored entry (a revalidation, a stale one) or a background refresh has
        an answer of its own to give."""
        return self.stored is not None or self.background

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
        if stored is not None and status >= 500:
            stale = cache.stale_on_error(
                self.request, stored, self.policy, self.asked, self.fwd, status
            )
            if stale is not None:
                return stale
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
        if not worth_keeping(head):
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
        cache.spawn(cache.store.put(self.key, updated, cache.keep_for(updated)))

    def finished(self) -> None:
        """The forwarded request is over: whatever did not reach copy() is not shared."""
        if self.fill is not None:
            self.fill.decline()
            if self.fill.state != "done" and self.cache.fills.get(self.key) is self.fill:
                del self.cache.fills[self.key]

    def _refused(self, status: int, headers: CIMultiDict[str]) -> str | None:
        if self.request.method != "GET":
            return "method"  # a HEAD has no body to store
        if not self.policy.heuristics.default_ttl and headers.keys().isdisjoint(FRESHNESS_FIELDS):
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
            status=status,
            reason=reason,
            headers=headers,
            body=b"",
            request_time=self.sent,
            response_time=self.cache.clock(),
            vary=selecting(headers, self.request.headers),
            heuristics=self.policy.heuristics,
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


def worth_keeping(entry: Entry) -> bool:
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
