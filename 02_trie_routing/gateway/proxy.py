"""Forward one request to one upstream and stream the answer back.

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
handshake. A production gateway also caps the pool per host and adds circuit breaking,
retries with budgets and outlier detection (Envoy); stages 03 and 04 add some of that.
"""

from __future__ import annotations

import logging

from aiohttp import (
    ClientConnectorError,
    ClientError,
    ClientPayloadError,
    ClientSession,
    ClientTimeout,
    ConnectionTimeoutError,
    DummyCookieJar,
    ServerDisconnectedError,
    TCPConnector,
    hdrs,
    web,
)
from yarl import URL

from gateway import headers, requestid
from gateway.config import PoolConfig, TimeoutsConfig
from gateway.errors import BadRequest, GatewayError, UpstreamTimeout, UpstreamUnavailable
from gateway.routing import Route

log = logging.getLogger("gateway.proxy")

# Headers aiohttp's client would add to every request if the client had not sent them.
# A proxy forwards what the client said, nothing more: an Accept-Encoding the client
# never sent would make upstreams compress for a client that may not decompress.
NO_AUTO_HEADERS = (hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE)


class Proxy:
    """The upstream side of the gateway: one pooled ClientSession and `forward`."""

    def __init__(self, timeouts: TimeoutsConfig, pool: PoolConfig) -> None:
        self.timeouts = timeouts
        self.pool = pool
        self._session: ClientSession | None = None

    async def start(self) -> None:
        connector = TCPConnector(
            limit=self.pool.max_connections,
            keepalive_timeout=self.pool.idle_timeout,
        )
        self._session = ClientSession(
            connector=connector,
            # sock_connect: the TCP handshake. sock_read: every wait for upstream bytes,
            # the response head and each body chunk alike. No total: a 1 GiB download
            # that keeps moving is fine; one that stalls for `read` seconds is not.
            timeout=ClientTimeout(
                total=None, sock_connect=self.timeouts.connect, sock_read=self.timeouts.read
            ),
            auto_decompress=False,  # gzip in, gzip out: the client asked for it, not us
            cookie_jar=DummyCookieJar(),  # cookies belong to the client, never to the gateway
            skip_auto_headers=NO_AUTO_HEADERS,
            # trust_env stays False: an HTTP_PROXY variable in the gateway's environment
            # must not silently reroute traffic meant for the upstreams.
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def forward(self, request: web.Request, route: Route, target: str) -> web.StreamResponse:
        """Send `request` to `route`'s upstream as `target` (path + query, still encoded).

        The router decides `target`, not the proxy: stage 01 forwards the client's raw
        request-target (minus a stripped prefix), stage 02 on the normalised path it
        matched. Keeping that decision out of here keeps this file the same in both.
        """
        session = self._session
        assert session is not None, "Proxy.start() runs at application start-up"
        request_id = requestid.current.get()
        url = URL(route.origin + target, encoded=True)
        upstream_headers = headers.to_upstream(
            request, preserve_host=route.preserve_host, request_id=request_id
        )
        try:
            # data=request.content streams the body: Content-Length when the client sent
            # one (the header is forwarded), chunked when it did not know the length.
            upstream = await session.request(
                request.method,
                url,
                headers=upstream_headers,
                data=request.content if request.body_exists else None,
                allow_redirects=False,  # a redirect is the client's business, not ours
            )
        except (TimeoutError, ClientError) as exc:
            raise self._failure(request, route, exc) from None

        try:
            response = web.StreamResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=headers.to_client(
                    upstream.headers, upstream.version, request_id=request_id
                ),
            )
            # prepare() sends the status line and headers. aiohttp then frames the body
            # for *our* connection: Content-Length if the upstream sent one (kept above),
            # chunked otherwise, and nothing at all for HEAD, 204 and 304.
            await response.prepare(request)
            content = upstream.content
            while True:
                try:
                    chunk = await content.readany()
                except (TimeoutError, ClientError) as exc:
                    self._abort(request, route, exc)
                    return response
                if not chunk:
                    break
                # If the *client* leaves, this write raises (or aiohttp cancels the whole
                # handler, see handler_cancellation in server.py); either way `finally`
                # drops the upstream connection, its body unread, instead of pooling it.
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            upstream.release()  # back to the pool if the body was read to the end

    def _failure(self, request: web.Request, route: Route, exc: BaseException) -> GatewayError:
        """Map an upstream failure before any response byte was sent to a gateway error."""
        error = self._classify(request, exc)
        log.warning(
            "%s %s -> %s: %s (%s)",
            request.method,
            request.raw_path,
            route.upstream,
            error.detail,
            _one_line(exc),
        )
        return error

    def _classify(self, request: web.Request, exc: BaseException) -> GatewayError:
        if request.content.exception() is not None:
            # Not the upstream's fault: the client's own body broke off (it disconnected
            # mid-upload, or sent broken chunked framing) while we were forwarding it.
            return BadRequest("the request body ended before it was complete")
        if isinstance(exc, ConnectionTimeoutError):
            return UpstreamTimeout(
                f"the upstream did not accept a connection within {self.timeouts.connect:g} s"
            )
        if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
            return UpstreamTimeout(f"the upstream did not answer within {self.timeouts.read:g} s")
        if isinstance(exc, ClientConnectorError):
            return UpstreamUnavailable("the upstream refused the connection or is unreachable")
        if isinstance(exc, ServerDisconnectedError):
            return UpstreamUnavailable("the upstream closed the connection without answering")
        return UpstreamUnavailable("the upstream sent no valid HTTP response")

    def _abort(self, request: web.Request, route: Route, exc: BaseException) -> None:
        """The upstream failed mid-body: cut the client connection, do not fake an end."""
        what = "stalled" if isinstance(exc, TimeoutError) else "broke off"
        if isinstance(exc, ClientPayloadError):
            what = "ended early"
        log.warning(
            "%s %s -> %s: the response body %s; closing the client connection (%s)",
            request.method,
            request.raw_path,
            route.upstream,
            what,
            _one_line(exc),
        )
        if request.transport is not None:
            request.transport.close()


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """`ExceptionType: message` on one line: aiohttp's parser errors span several."""
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
