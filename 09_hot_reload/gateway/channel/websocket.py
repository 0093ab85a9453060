"""WebSocket through the gateway: the upgrade is routed like any request, then every
message is relayed both ways until one side closes.

A route takes upgrades only with `websocket = true` (elsewhere `Upgrade` is a hop-by-hop
header and is dropped, as in stage 01); nginx and Envoy also need it switched on per
location or route. The handshake is the gateway's on both sides: the client's offered
subprotocols go upstream, the one the upstream picks is the one the client gets, and a
refused upgrade is a 502 naming the upstream's status.

Messages, not bytes. After the 101 the gateway could turn the connection into a byte
tunnel (splice the two sockets: cheapest, and every frame passes untouched), or parse
frames on both sides and relay *messages*, which is what it does: text and binary
messages, pings and pongs (passed through, not answered by the gateway, so a client's
ping measures the upstream), and the close code and reason, in both directions. The
price is parsing and a copy per message, and fragment boundaries are not kept (a
fragmented message arrives whole; RFC 6455 lets any intermediary do that). What it buys
is what a gateway is for: it knows when a connection is idle (`websocket_idle`, closed
with 1001 both ways) and could limit, count or inspect messages. Backpressure holds
either way: a message is read from one side only after the previous one was written to
the other, so a slow reader slows its sender, and the gateway holds at most one message
(up to 4 MiB, aiohttp's `max_msg_size`) per direction.

WebSocket connections get a ClientSession of their own: they last minutes, not
milliseconds, and must not hold the places of the request pool (`[connections]`).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import (
    ClientError,
    ClientSession,
    ClientWebSocketResponse,
    ClientWSTimeout,
    DummyCookieJar,
    WSMsgType,
    WSServerHandshakeError,
    web,
)

from gateway import headers, requestid
from gateway.balancing import NoHealthyTarget, Upstreams
from gateway.errors import NoHealthyUpstream, UpstreamUnavailable
from gateway.routing import RouteMatch

GOING_AWAY = 1001  # RFC 6455 §7.4.1: an endpoint going away, here: idle for too long
# The handshake's own headers: aiohttp writes a fresh key, version and protocol list for
# the upstream side; the client's belong to the client's side of the handshake.
HANDSHAKE = (
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
)

WebSocket = web.WebSocketResponse | ClientWebSocketResponse


def is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


class WebSockets:
    def __init__(self, upstreams: Upstreams) -> None:
        self.upstreams = upstreams
        self.open = 0  # connections relayed right now, for the admin view
        self._session: ClientSession | None = None

    async def start(self) -> None:
        self._session = ClientSession(cookie_jar=DummyCookieJar(), auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def take_over(self, previous: WebSockets) -> None:
        """A reload: one session for both (a request routed just before the swap may
        still open its relay on the old generation; only the last generation closes it).
        The `open` count is each generation's: a relay counts where it started."""
        self._session = previous._session

    async def relay(self, request: web.Request, found: RouteMatch) -> web.StreamResponse:
        assert self._session is not None, "WebSockets.start() runs at application start-up"
        route = found.route
        pool = self.upstreams[route.pool]
        try:
            lease = pool.acquire(pool.key_for(request, found.path.path))
        except NoHealthyTarget as exc:
            raise NoHealthyUpstream(exc.reason) from None
        with lease:
            upstream = await self._connect(request, found, lease.target.url)
            lease.report(101)
            client = web.WebSocketResponse(
                protocols=(upstream.protocol,) if upstream.protocol else (),
                autoping=False,
                autoclose=False,
            )
            await client.prepare(request)
            self.open += 1
            try:
                await _relay_both_ways(client, upstream, route.channel.websocket_idle)
            finally:
                self.open -= 1
            return client

    async def _connect(
        self, request: web.Request, found: RouteMatch, origin: str
    ) -> ClientWebSocketResponse:
        assert self._session is not None
        upstream_headers = headers.to_upstream(
            request, preserve_host=found.route.preserve_host, request_id=requestid.current.get()
        )
        for name in HANDSHAKE:
            upstream_headers.popall(name, None)
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        try:
            return await self._session.ws_connect(
                origin + found.request_target,
                protocols=[p.strip() for p in offered.split(",") if p.strip()],
                headers=upstream_headers,
                autoping=False,
                autoclose=False,
                compress=0,  # no permessage-deflate: the gateway would decompress to relay
                timeout=ClientWSTimeout(ws_receive=None, ws_close=5.0),
            )
        except WSServerHandshakeError as exc:
            raise UpstreamUnavailable(
                f"the upstream refused the WebSocket upgrade (HTTP {exc.status})"
            ) from None
        except (ClientError, TimeoutError):
            raise UpstreamUnavailable("the upstream could not be reached for a WebSocket") from None


# How a pump ended. CLOSED: it relayed a Close and finished the closing handshake on both
# sides. CLOSING: its source was woken because the *other* pump is closing that socket
# (aiohttp ends a pending receive() when close() is called from another task): the other
# pump is mid-handshake and must be let finish. IDLE and GONE: the caller closes both.
CLOSED, CLOSING, IDLE, GONE = "closed", "closing", "idle", "gone"
# How long a pump that relays a Close may take for the handshake on both sides (each
# side's own close timeout is 5 s, ClientWSTimeout.ws_close and aiohttp's default).
CLOSE_HANDSHAKE = 10.0


async def _relay_both_ways(client: WebSocket, upstream: WebSocket, idle: float) -> None:
    activity = [time.monotonic()]  # either direction's last message
    tasks = {
        asyncio.ensure_future(_pump(client, upstream, idle, activity)),
        asyncio.ensure_future(_pump(upstream, client, idle, activity)),
    }
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if pending and any(_ended(task) == CLOSING for task in done):
            # The other pump is relaying a Close: cancelling it now would cut the
            # handshake toward its sender, who would then hear our 1001 instead of the
            # code it was answered with (RFC 6455 §5.5.1, §7.4).
            await asyncio.wait(pending, timeout=CLOSE_HANDSHAKE)
    finally:
        for task in tasks:
            task.cancel()
        for ws in (client, upstream):
            if not ws.closed:
                await ws.close(code=GOING_AWAY)


def _ended(task: asyncio.Future[str]) -> str:
    """How a finished pump ended; a pump that raised (a socket reset mid-send) is GONE."""
    if task.cancelled() or task.exception() is not None:
        return GONE
    return task.result()


async def _pump(source: WebSocket, sink: WebSocket, idle: float, activity: list[float]) -> str:
    """Relay `source`'s messages to `sink` until a close, an error, or `idle` seconds
    without a message in either direction; say which (CLOSED, CLOSING, IDLE, GONE)."""
    while True:
        try:
            message = await source.receive(timeout=idle)
        except TimeoutError:
            if time.monotonic() - activity[0] < idle:
                continue  # quiet this way, busy the other: not idle
            return IDLE  # both ways quiet for `idle`: the caller closes both with 1001
        activity[0] = time.monotonic()
        kind = message.type
        if kind is WSMsgType.TEXT:
            await sink.send_str(message.data)  # waits while sink's socket is full
        elif kind is WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif kind is WSMsgType.PING:
            await sink.ping(message.data)
        elif kind is WSMsgType.PONG:
            await sink.pong(message.data)
        elif kind is WSMsgType.CLOSE:
            # The code and reason go on as they came, and once the far side has answered,
            # the same code goes back to the side that closed: the closing handshake ends
            # on both sides with the code the closer chose.
            reason = (message.extra or "").encode()
            await sink.close(code=message.data, message=reason)
            await source.close(code=message.data, message=reason)
            return CLOSED
        elif kind is WSMsgType.CLOSING:
            return CLOSING  # the other pump called close() on this socket
        else:  # CLOSED, ERROR: this side is gone
            return GONE
