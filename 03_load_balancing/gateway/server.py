"""Serve the application on a listening socket until SIGTERM, then stop gracefully.

aiohttp's `web.run_app` would do most of this in one call. It is spelled out here for
three reasons: the socket may be inherited (`--fd N`, like systemd socket activation),
the shutdown deadline must be the configured one, and malformed requests must get the
same problem+json answer as every other gateway error (see ProblemRequestHandler).

Graceful shutdown, in the order it happens:

1. stop accepting: the listening socket closes, new connections go to another worker
   (or are refused, which a load balancer in front retries elsewhere);
2. idle keep-alive connections are closed; busy ones get `Connection: close` on their
   current response;
3. requests in flight get up to `shutdown_timeout` seconds to finish, then are cancelled;
4. the upstream connection pool is closed, and the process exits 0.

This is what Kubernetes expects between SIGTERM and SIGKILL, and what nginx's "graceful
shutdown" (`nginx -s quit`) and Envoy's drain do, minus their connection draining
across a hot restart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from gateway import requestid
from gateway.errors import (
    TYPE_BASE,
    BadRequest,
    GatewayError,
    HeaderFieldsTooLarge,
    RequestTimeout,
    UriTooLong,
    problem_body,
    problem_response,
)

log = logging.getLogger("gateway.server")

# Connections not yet accepted that the kernel queues (Linux caps it at somaxconn).
BACKLOG = 1024

# How long an idle client connection stays open between requests. aiohttp's default
# (3630 s) suits a server behind a proxy; at the edge, idle connections are memory and
# file descriptors held for clients that may never come back. nginx uses 75 s. A real
# gateway would make this configurable.
CLIENT_KEEPALIVE_TIMEOUT = 75.0


class ProblemRequestHandler(web.RequestHandler):
    """aiohttp's HTTP/1.1 protocol, plus what a gateway at the edge owes the internet.

    Malformed requests. When the HTTP parser rejects a request (garbage request line,
    invalid header, a line over 8 KiB) no handler or middleware runs: aiohttp calls
    `handle_error` and sends a text/plain 400, logging a full traceback. Overriding that
    one method gives the client the same problem+json as every other error, with the
    status that says what was wrong (414 for a request line over the limit, 431 for a
    header line or too many of them, 400 for the rest) and the path it asked for when the
    request line got that far; the log gets a single line. The connection is closed
    afterwards (the parser cannot know where the next request would start), and the
    process goes on serving every other connection.

    Slow clients. A connection that has started a request head must finish it within
    `header_timeout`, or it is answered 408 and closed: otherwise a client can hold a
    connection (a file descriptor, a buffer) forever by sending one byte of its request
    line every few seconds, the "slowloris" attack. A new connection gets the same time
    to send its first request. nginx calls it `client_header_timeout` (60 s), HAProxy
    `timeout http-request`. It is a separate clock from the keep-alive idle timeout,
    which only runs while a connection is idle *between* requests.
    """

    def __init__(self, manager: web.Server, *, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._head_deadline: float | None = None  # set while a request head is arriving
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_start = b""  # its first bytes: what a 408, 414 or 431 can name

    # --- the header timeout ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_begins(b"")

    def data_received(self, data: bytes) -> None:
        # aiohttp's attributes, read not written: `_current_request` is the request its
        # handler is working on (its body bytes come through here too), `_request_count`
        # counts the heads the parser has completed.
        if self._head_deadline is None:
            if data and self._current_request is None:
                self._head_begins(data)  # the first bytes of the next request
        elif len(self._head_start) < HEAD_START:
            self._head_start += data[: HEAD_START - len(self._head_start)]
        completed = self._request_count
        super().data_received(data)
        if self._request_count != completed:
            self._head_deadline = None  # the timer, when it fires, finds nothing to do
            if self._request_count - completed > 1:
                self._head_start = b""  # pipelined heads: no longer clear which is which

    def _head_begins(self, data: bytes) -> None:
        self._head_deadline = self._loop.time() + self._header_timeout
        self._head_start = data[:HEAD_START]
        # One timer per connection at a time, re-armed only when it fires early (as
        # aiohttp's own keep-alive timer does): a busy keep-alive connection moves the
        # deadline with an attribute write per request, not a timer per request.
        if self._head_timer is None:
            self._head_timer = self._loop.call_at(self._head_deadline, self._head_check)

    def _head_check(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None or self.transport is None:
            return
        if self._loop.time() < deadline:
            self._head_timer = self._loop.call_at(deadline, self._head_check)
            return
        self._head_deadline = None
        if self._head_start:  # part of a head arrived: say why the connection closes
            request_id = requestid.new_id()
            log.info(
                "[%s] closing a connection from %s: no complete request head within %g s",
                request_id,
                self.peername[0] if isinstance(self.peername, tuple) else "unknown",
                self._header_timeout,
            )
            self.transport.write(
                raw_problem(
                    RequestTimeout(
                        f"the request head did not arrive within {self._header_timeout:g} s"
                    ),
                    received_path(self._head_start),
                    request_id,
                )
            )
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    # --- malformed requests ---------------------------------------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # Part of a response went out already: no second one can follow. Raising
            # makes aiohttp drop the connection, the only honest signal left.
            raise ConnectionError("response already started; closing the connection")
        request_id = requestid.new_id()
        requestid.current.set(request_id)  # this task only: the log line below carries it
        reason = _one_line(message or str(exc or "") or HTTPStatus(status).phrase)
        instance = "/"
        error: GatewayError = BadRequest(reason)
        if isinstance(exc, HttpProcessingError):  # the parser refused the request
            error = self._parse_error(exc, reason)
            status, instance = error.status, received_path(self._head_start)
            # aiohttp answers a request it could not parse on behalf of a placeholder
            # request that says HTTP/1.0, and copies that version into the status line.
            # An HTTP/1.1 server answers HTTP/1.1 (RFC 9110 §6.2).
            request._version = HttpVersion11
        if status >= 500:
            log.error("error outside the handler chain: %s", reason, exc_info=exc)
            error = GatewayError("the gateway failed to handle this request")
        else:
            log.info("malformed request from %s: %s", request.remote, reason)
        response = problem_response(
            status,
            HTTPStatus(status).phrase,
            error.detail,
            type_=TYPE_BASE + error.slug,
            instance=instance,
            request_id=request_id,
        )
        response.force_close()  # Connection: close, and the connection is closed
        return response

    def _parse_error(self, exc: HttpProcessingError, reason: str) -> GatewayError:
        if isinstance(exc, LineTooLong):
            # The request line, or a header line? The request line is complete once its
            # CRLF has arrived: a line too long after that is a header.
            if b"\r\n" in self._head_start:
                return HeaderFieldsTooLarge(reason)
            return UriTooLong(reason)
        if "too many headers" in reason.lower():
            return HeaderFieldsTooLarge(reason)
        return BadRequest(reason)


# How much of a request head is kept to name it in an error: the request line's start.
HEAD_START = 512


def received_path(head: bytes) -> str:
    """The path of the request line at the start of `head`, if it got that far; else "/".

    It goes into the problem's `instance`: printable ASCII only, no query (tokens live
    there), at most 200 characters.
    """
    line, crlf, _ = head.partition(b"\r\n")
    parts = line.split(b" ")
    if not crlf or len(parts) != 3 or not parts[1].startswith(b"/"):
        return "/"
    path = parts[1].partition(b"?")[0].decode("ascii", "replace")
    if not path.isprintable() or "\ufffd" in path:
        return "/"
    return path if len(path) <= 200 else path[:197] + "..."


def raw_problem(error: GatewayError, instance: str, request_id: str) -> bytes:
    """A whole problem+json response as bytes, for a connection with no request object
    to answer through (the header timeout). Connection: close, since it is closed next."""
    body = problem_body(
        error.status, error.title, error.detail, TYPE_BASE + error.slug, instance, request_id
    )
    head = (
        f"HTTP/1.1 {error.status} {error.title}\r\n"
        f"Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{requestid.HEADER}: {request_id}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _one_line(message: str, limit: int = 200) -> str:
    """aiohttp's parser errors span lines (message, raw bytes, a ^ marker): keep the text.

    The bytes themselves are never kept, neither a line of them nor a `b'...'` quoted in
    the message ("Got more than 8190 bytes when reading b'Bearer eyJ...'"): they are the
    client's own header lines, credentials included, and the detail goes back in the
    error body and into the log.
    """
    parts = [line.strip() for line in message.splitlines()]
    kept = [p for p in parts if p and set(p) != {"^"} and not p.startswith(("b'", 'b"'))]
    text = " ".join(kept)
    for quote in (" b'", ' b"'):
        if quote in text:
            text = text[: text.index(quote)].rstrip(" :")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def inherited_socket(fd: int) -> socket.socket:
    """The listening TCP socket behind an inherited file descriptor (`--fd N`)."""
    sock = socket.socket(fileno=fd)
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()  # not ours to close
        raise OSError(f"file descriptor {fd} is a socket but not a listening one")
    return sock


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR: a restart may bind while old connections sit in TIME_WAIT. It
        # does not let two processes listen on one port; SO_REUSEPORT does, and is only
        # set for --workers (see workers.py), so a second gateway started by mistake on
        # a busy port still fails loudly instead of silently sharing the traffic.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(
    app: web.Application,
    sock: socket.socket,
    *,
    shutdown_timeout: float,
    header_timeout: float = 10.0,
    ready: Callable[[], Awaitable[None]] | None = None,
    admin: tuple[web.Application, socket.socket] | None = None,
) -> None:
    """Serve `app` on `sock` until SIGTERM or SIGINT, then shut down gracefully.

    `ready`, with --workers: awaited after the application is set up and before the first
    connection is accepted (workers.py: every worker is ready before any serves).
    `admin`: the admin application and its socket (gateway/admin.py), served beside `app`
    from the same moment, and stopped after it, so the health endpoint answers for as
    long as requests are being served.
    """
    loop = asyncio.get_running_loop()
    public = await _Listener.set_up(app, sock, shutdown_timeout, header_timeout)
    own = None
    if admin is not None:
        own = await _Listener.set_up(*admin, ADMIN_SHUTDOWN_TIMEOUT, header_timeout)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if ready is not None:
        waiting = asyncio.ensure_future(ready())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiting, stopping):
            task.cancel()
        if stop.is_set():  # stopped before it ever served
            for listener in (public, own):
                if listener is not None:
                    await listener.runner.cleanup()
            return
    await public.start("serving on")
    if own is not None:
        await own.start("admin listener on")
    try:
        await stop.wait()
    finally:
        log.info("stopping: finishing requests in flight (at most %gs)", shutdown_timeout)
        await public.stop(shutdown_timeout)
        if own is not None:
            await own.stop(ADMIN_SHUTDOWN_TIMEOUT)
        log.info("stopped")


# The admin listener's requests are small and local: a second is plenty to finish them.
ADMIN_SHUTDOWN_TIMEOUT = 1.0


class _Listener:
    """One application on one socket, with this module's protocol and shutdown."""

    def __init__(self, runner: web.AppRunner, sock: socket.socket, protocol: Any) -> None:
        self.runner, self.sock, self.protocol = runner, sock, protocol
        self.server: asyncio.AbstractServer | None = None

    @classmethod
    async def set_up(
        cls,
        app: web.Application,
        sock: socket.socket,
        shutdown_timeout: float,
        header_timeout: float,
    ) -> _Listener:
        # access_log=None: aiohttp's own access log is off; gateway.accesslog replaces it.
        # auto_decompress=False: a gzip request body must reach the upstream as gzip,
        # with the Content-Length the client sent.
        # Typed Any: aiohttp takes these as separate keyword arguments of different types.
        handler_options: dict[str, Any] = {
            "access_log": None,
            "auto_decompress": False,
            "keepalive_timeout": CLIENT_KEEPALIVE_TIMEOUT,
        }
        runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=shutdown_timeout,
            # A client that disconnects cancels its handler, and with it the upstream
            # request: nobody is left to read the answer, so the upstream connection is
            # freed at once (Envoy resets the upstream stream the same way).
            handler_cancellation=True,
            **handler_options,
        )
        await runner.setup()  # application start-up: the upstream ClientSession is created
        loop = asyncio.get_running_loop()
        manager = runner.server
        assert manager is not None

        def protocol() -> ProblemRequestHandler:
            return ProblemRequestHandler(
                manager,
                loop=loop,
                header_timeout=header_timeout,
                **handler_options,
            )

        return cls(runner, sock, protocol)

    async def start(self, what: str) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.protocol, sock=self.sock, backlog=BACKLOG)
        host, port = self.sock.getsockname()[:2]
        log.info("%s http://%s:%d", what, host, port)

    async def stop(self, shutdown_timeout: float) -> None:
        loop = asyncio.get_running_loop()
        if self.server is not None:
            self.server.close()  # 1. no new connections
        # aiohttp waits up to shutdown_timeout for handlers, then up to shutdown_timeout
        # again for them to react to cancellation, which a handler waiting on an upstream
        # never does. Closing the connections still busy at the deadline cancels their
        # handlers (handler_cancellation above), so the deadline is the configured one.
        manager = self.runner.server
        assert manager is not None
        deadline = loop.call_later(shutdown_timeout, _cut_off, manager)
        try:
            await self.runner.cleanup()  # 2.-4. idle connections, in-flight requests, pools
        finally:
            deadline.cancel()


def _cut_off(manager: web.Server) -> None:
    busy = manager.connections
    if busy:
        log.warning("shutdown deadline reached: closing %d busy connections", len(busy))
    for connection in busy:
        connection.force_close()
