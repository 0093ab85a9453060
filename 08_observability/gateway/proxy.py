"""Forward one request to one upstream and stream the answer back, in two steps.

    upstream_request = UpstreamRequest.from_client(request, url, ...)
    upstream_response = await proxy.open(upstream_request)   # or UpstreamError
    relayed = await proxy.relay(request, upstream_response)  # the client gets it now

`open` sends one plain request value (method, URL, headers, body, timeouts) and returns
the upstream's response head; `relay` streams that response to the client. Nothing has
been written to the client until `relay`, so whoever calls `open` may still decide to do
something else with a failure or an answer: try another server (stage 04 retries around
`open`), or keep a copy of what is relayed (stage 05's cache). The proxy knows nothing of
routes, pools or leases; its caller says where to go, and the caller hears how it went:
`open` raises `UpstreamError` (did anything reach the upstream; a timeout, a refusal or a
broken answer), `relay` says whether the body went through to its end.

Stage 05 lets one more party listen in on `relay`: a `Tap` on the request (the cache puts
it there, `request[TAP]`) sees each response head before the client does. It may answer
instead (a 304 to the cache's own revalidation becomes the stored response) or take a
copy of the body as it streams past (the store fills while the client reads, never the
other way round: nothing is held back from the client to be cached first).

This is the part every later stage inherits, so it is written for correctness first:

- Bodies stream both ways. The request body goes upstream as it arrives, the response
  body goes to the client as it arrives; neither is ever held whole in memory. A
  100 MiB upload costs the gateway a few 64 KiB buffers, and a chunked response (server-
  sent events, a long report) reaches the client chunk by chunk instead of when it ends.
  Backpressure is automatic: when one side's socket is full, aiohttp stops reading the
  other. (nginx buffers responses by default, `proxy_buffering on`, to free upstream
  connections early from slow clients; Envoy streams, with per-connection buffer limits.)
- Bytes pass untouched: no decompression (auto_decompress=False), no re-encoding of the
  path (yarl `encoded=True`), no header aiohttp would add on its own (User-Agent, Accept,
  Accept-Encoding, a guessed Content-Type).
- Every failure maps to one answer: 502 if the upstream could not be reached or broke
  before its response head, 504 if it was too slow, and if it dies *after* the head was
  forwarded, the client connection is closed mid-body. The status line has gone out by
  then; closing is the only honest signal left (a truncated body with a clean ending
  would look complete).

One ClientSession serves the whole process: it owns the connection pool, so an upstream
request after the first reuses a keep-alive connection instead of paying a TCP
handshake. Timeouts travel with each request instead of being fixed in the session, so a
route (or a retry) can have its own without a second session and a second pool.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal, NamedTuple, Protocol

from aiohttp import (
    ClientConnectorError,
    ClientError,
    ClientPayloadError,
    ClientRequest,
    ClientResponse,
    ClientSession,
    ClientTimeout,
    ConnectionTimeoutError,
    DummyCookieJar,
    ServerDisconnectedError,
    StreamReader,
    TCPConnector,
    hdrs,
    web,
)
from multidict import CIMultiDict
from yarl import URL

from gateway import headers, requestid
from gateway.config import ConnectionsConfig
from gateway.errors import BadRequest, GatewayError, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("gateway.proxy")

# Headers aiohttp's client would add to every request if the client had not sent them.
# A proxy forwards what the client said, nothing more: an Accept-Encoding the client
# never sent would make upstreams compress for a client that may not decompress.
NO_AUTO_HEADERS = (hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE)
_SKIPPED: CIMultiDict[None] = CIMultiDict((name, None) for name in NO_AUTO_HEADERS)


class _ProxiedRequest(ClientRequest):
    """aiohttp's client request, minus the headers it would invent.

    `ClientSession(skip_auto_headers=...)` does the same, but rebuilds the list for every
    request (a sort, a new CIMultiDict and a copy of all the request's headers, about 2 µs
    of the ~100 a proxied request costs). A proxy skips those headers always, so the list
    is built once, here.
    """

    def update_auto_headers(self, skip_auto_headers: object) -> None:
        self._skip_auto_headers = _SKIPPED  # read again when the body is set up


Body = StreamReader | bytes | None


class Timeouts(NamedTuple):
    """connect: the TCP handshake. read: every wait for upstream bytes, the response head
    and each body chunk alike. No total: a 1 GiB download that keeps moving is fine; one
    that stalls for `read` seconds is not. (A total deadline is stage 04's.)"""

    connect: float
    read: float


@lru_cache(maxsize=64)  # a handful of distinct values per gateway: build each once
def _client_timeout(timeouts: Timeouts) -> ClientTimeout:
    return ClientTimeout(total=None, sock_connect=timeouts.connect, sock_read=timeouts.read)


class UpstreamRequest(NamedTuple):
    """One request to send upstream, complete: nothing in it refers to the client's."""

    method: str
    url: URL  # origin + request-target, still percent-encoded
    headers: CIMultiDict[str]
    body: Body  # the client's body as a stream, bytes (a copy kept for replay), or None
    timeouts: Timeouts

    @classmethod
    def from_client(
        cls,
        request: web.Request,
        url: str,
        *,
        preserve_host: bool,
        timeouts: Timeouts,
        replay: bytes | None = None,
    ) -> UpstreamRequest:
        """`request` as it goes to `url`: hop-by-hop headers out, forwarding headers in.

        The caller decides `url` (the router the request-target, a pool the origin), so
        this file stays the same in every stage that routes or balances differently.
        `replay`: the body read whole and kept, to be sent again by a retry (stage 04).
        """
        return cls(
            request.method,
            URL(url, encoded=True),  # %2F, + and %20 stay exactly as the client sent them
            headers.to_upstream(
                request, preserve_host=preserve_host, request_id=requestid.current.get()
            ),
            # The body streams: Content-Length when the client sent one (the header is
            # forwarded), chunked when it did not know the length.
            replay if replay is not None else request.content if request.body_exists else None,
            timeouts,
        )


Failure = Literal["refused", "timeout", "broken"]


class UpstreamError(Exception):
    """`open` failed: no response head came back.

    `kind`: "refused" (no connection: refused, unreachable), "timeout" (no connection or
    no answer in time) or "broken" (closed or answered something that is not HTTP).
    `reached`: whether the request may have reached the upstream. False means nothing was
    sent, so trying again elsewhere is safe even for a POST; True means the upstream may
    have acted on it (stage 04's retry rules start from exactly this distinction).
    """

    def __init__(self, kind: Failure, reached: bool, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.reached, self.detail = kind, reached, detail

    def problem(self) -> GatewayError:
        """The answer for the client when nobody tries again: 504 for a timeout, else 502."""
        if self.kind == "timeout":
            return UpstreamTimeout(self.detail)
        return UpstreamUnavailable(self.detail)


class RelayedResponse(web.StreamResponse):
    """A StreamResponse whose head waits for the first body bytes, to leave with them.

    aiohttp's StreamResponse sends its head in a write of its own at prepare(); its
    web.Response keeps the head back and sends head and body in one. For the small answers
    that most API calls are, that is one send() system call instead of two per response,
    about 5% of the gateway's CPU per request. relay() still sends the head at once when
    no body bytes are waiting, so the client of a slow stream sees the status right away.
    Its class is also what tells an upstream's answer from one the gateway made (the
    metrics' `source` label, gateway/observability/metrics.py).
    """

    _send_headers_immediately = False  # aiohttp's own switch (web.Response sets it too)


class Sink(Protocol):
    """A copy of one relayed body, chunk by chunk, as the client gets it."""

    def write(self, chunk: bytes) -> None: ...

    def close(self, complete: bool) -> None:
        """The body ended (complete) or broke off, or the client left (not complete)."""


class Tap(Protocol):
    """Whoever listens in on `relay` for one request: stage 05's cache."""

    @property
    def may_answer(self) -> bool:
        """Whether `instead` may answer at all; when not, relay does not ask (the cache's
        plain miss, the common case: no coroutine is made for it)."""

    async def instead(self, upstream_response: ClientResponse) -> web.StreamResponse | None:
        """An answer of the tap's own, not yet sent, to go to the client in place of this
        response; None: relay it. The tap may read the upstream body itself."""

    def copy(
        self, upstream_response: ClientResponse, client_headers: CIMultiDict[str]
    ) -> Sink | None:
        """A sink for the body about to be relayed with this head, or None. The tap may
        add fields of its own to `client_headers` (the cache's Cache-Status)."""


TAP = web.RequestKey("tap", Tap)


class Relayed(NamedTuple):
    response: web.StreamResponse
    complete: bool  # False: the upstream broke off mid-body and the client was cut off


class Proxy:
    """The upstream side of the gateway: one pooled ClientSession, `open` and `relay`."""

    def __init__(self, connections: ConnectionsConfig) -> None:
        self.connections = connections
        self._session: ClientSession | None = None
        self.event_streams = 0  # Server-Sent Events relayed right now, for the metrics

    async def start(self) -> None:
        connector = TCPConnector(
            limit=self.connections.max_connections,
            keepalive_timeout=self.connections.idle_timeout,
        )
        self._session = ClientSession(
            connector=connector,
            timeout=ClientTimeout(total=None),  # each request brings its own (Timeouts)
            auto_decompress=False,  # gzip in, gzip out: the client asked for it, not us
            cookie_jar=DummyCookieJar(),  # cookies belong to the client, never to the gateway
            request_class=_ProxiedRequest,  # adds no User-Agent, Accept, ... (NO_AUTO_HEADERS)
            # trust_env stays False: an HTTP_PROXY variable in the gateway's environment
            # must not silently reroute traffic meant for the upstreams.
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(self, upstream_request: UpstreamRequest) -> ClientResponse:
        """Send `upstream_request`; return the upstream's response with its head read.

        Raises UpstreamError when no head came back, or BadRequest when the client's own
        body broke off while it was being forwarded (the client's fault, not the server's).
        The caller owns the returned response: `relay` it, or `release()` it.
        """
        session = self._session
        assert session is not None, "Proxy.start() runs at application start-up"
        method, url, upstream_headers, body, timeouts = upstream_request
        try:
            return await session.request(
                method,
                url,
                headers=upstream_headers,
                data=body,
                allow_redirects=False,  # a redirect is the client's business, not ours
                timeout=_client_timeout(timeouts),
            )
        except (TimeoutError, ClientError) as exc:
            if isinstance(body, StreamReader) and body.exception() is not None:
                # The client disconnected mid-upload, or sent broken chunked framing,
                # while we were forwarding its body.
                raise BadRequest("the request body ended before it was complete") from None
            failure = _classify(exc, timeouts)
            log.warning("%s %s: %s (%s)", method, url, failure.detail, _one_line(exc))
            raise failure from None

    async def relay(
        self,
        request: web.Request,
        upstream_response: ClientResponse,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Relayed:
        """Stream `upstream_response` to the client of `request`, head then body; with
        `extra_headers`, the gateway's own fields added to the head (e.g. X-Attempt-Count)."""
        tap = request.get(TAP)
        sink: Sink | None = None
        complete = False
        content_type = upstream_response.headers.get("Content-Type", "")
        events = content_type.startswith("text/event-stream")
        self.event_streams += events
        try:
            if tap is not None and tap.may_answer:
                answer = await tap.instead(upstream_response)
                if answer is not None:
                    return Relayed(answer, complete=True)
            client_headers = headers.to_client(
                upstream_response.headers,
                upstream_response.version,
                request_id=requestid.current.get(),
            )
            if extra_headers:
                client_headers.update(extra_headers)
            if tap is not None:
                sink = tap.copy(upstream_response, client_headers)
            response = RelayedResponse(
                status=upstream_response.status,
                reason=upstream_response.reason,
                headers=client_headers,
            )
            # prepare() writes the status line and headers (to a buffer, see above). aiohttp
            # then frames the body for *our* connection: Content-Length if the upstream sent
            # one (kept above), chunked otherwise, and nothing at all for HEAD, 204 and 304.
            await response.prepare(request)
            content = upstream_response.content
            if not (content.total_bytes or content.is_eof()):
                await response.write(b"")  # no body bytes yet: the head goes now, alone
            while True:
                try:
                    chunk = await content.readany()
                except (TimeoutError, ClientError) as exc:
                    _abort(request, upstream_response, exc)
                    return Relayed(response, complete=False)
                if not chunk:
                    break
                if sink is not None:
                    sink.write(chunk)
                # If the *client* leaves, this write raises (or aiohttp cancels the whole
                # handler, see handler_cancellation in server.py); either way `finally`
                # drops the upstream connection, its body unread, instead of pooling it.
                await response.write(chunk)
            await response.write_eof()
            complete = True
            return Relayed(response, complete=True)
        finally:
            self.event_streams -= events
            if sink is not None:
                sink.close(complete)
            upstream_response.release()  # back to the pool if the body was read to the end


def _classify(exc: BaseException, timeouts: Timeouts) -> UpstreamError:
    """What went wrong before a response head arrived, for the caller and the client."""
    if isinstance(exc, ConnectionTimeoutError):
        detail = f"the upstream did not accept a connection within {timeouts.connect:g} s"
        return UpstreamError("timeout", False, detail)
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return UpstreamError(
            "timeout", True, f"the upstream did not answer within {timeouts.read:g} s"
        )
    if isinstance(exc, ClientConnectorError):
        return UpstreamError(
            "refused", False, "the upstream refused the connection or is unreachable"
        )
    if isinstance(exc, ServerDisconnectedError):
        return UpstreamError("broken", True, "the upstream closed the connection without answering")
    return UpstreamError("broken", True, "the upstream sent no valid HTTP response")


def _abort(request: web.Request, upstream_response: ClientResponse, exc: BaseException) -> None:
    """The upstream failed mid-body: cut the client connection, do not fake an end."""
    what = "stalled" if isinstance(exc, TimeoutError) else "broke off"
    if isinstance(exc, ClientPayloadError):
        what = "ended early"
    log.warning(
        "%s %s: the response body %s; closing the client connection (%s)",
        request.method,
        upstream_response.url,
        what,
        _one_line(exc),
    )
    if request.transport is not None:
        request.transport.close()


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """`ExceptionType: message` on one line: aiohttp's parser errors span several."""
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
