"""The HTTP/1.1 protocol each client connection speaks: aiohttp's, plus what a gateway at
the edge owes the internet (ProblemRequestHandler).

aiohttp's parser answers a malformed request itself, as text/plain with a traceback in
the log, and never times out a request head that arrives a byte at a time. Both happen
below the application, where no middleware runs, so the fix is here, in the protocol
object server.py hands to the event loop for every connection: the same problem+json as
every other error, and a header timeout.
"""

from __future__ import annotations

import asyncio
import logging
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


# One header line, at most (aiohttp's default is 8190 bytes). Stage 06 raised it: a bearer
# token carrying many groups or claims can pass 8 KiB, and such a token deserves the
# auth layer's own answer (401, `[auth] max_token_bytes`) rather than the parser's 431.
# All header lines together are still held to `[server] max_header_bytes` (limits.py).
MAX_FIELD_BYTES = 16 * 1024

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
