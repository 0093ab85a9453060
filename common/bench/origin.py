"""The bench's origin: a raw asyncio HTTP/1.1 server that costs almost nothing per request.

The dummy FastAPI backends spend ~120 µs of CPU on every request (routing, pydantic,
uvicorn's ASGI plumbing). Behind a gateway that spends ~100 µs, that noise would hide the
very number the bench is after, so the bench talks to this instead: responses are bytes
built once at start-up, and a request costs a buffer search and a `transport.write`.

    python -m common.bench.origin --fd N     # serve on an inherited listening socket
    python -m common.bench.origin --port P   # or bind 127.0.0.1:P itself

GET /health -> 200 "ok", GET /small -> 20 bytes, GET /16k -> 16384 bytes, anything else
-> 404. For the cache bench, anything under /c/ is cacheable (`max-age=3600`, an ETag):
/c/... 20 bytes, /c/m/... 256 KiB, /c/big/... 2 MiB, /c/slow/... 20 bytes after 300 ms;
/count says how many /c/ requests it answered.

Keep-alive, pipelining (several requests in one read) and partial reads (one request
over several reads) are handled; a production server would also cap the head
size, time out idle clients and answer 400 with more care.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys

from common.bench.eventloop import loop_factory
from common.bench.http1 import HEAD_END, FramingError, header_value, message_end

SMALL_BODY = b"hello from origin!!\n"  # 20 bytes: the "tiny JSON answer" case
BODY_16K = bytes(ord("a") + i % 26 for i in range(16 * 1024))
MAX_HEAD = 64 * 1024  # a head this long without an end is not a bench client


def _response(status: str, body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Content-Type: text/plain\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode("ascii") + body


ROUTES: dict[bytes, bytes] = {
    b"/health": _response("200 OK", b"ok\n"),
    b"/small": _response("200 OK", SMALL_BODY),
    b"/16k": _response("200 OK", BODY_16K),
}
NOT_FOUND = _response("404 Not Found", b"not found\n")


def _cacheable(body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n"
        'Cache-Control: max-age=3600\r\nETag: "v1"\r\n\r\n'
    )
    return head.encode("ascii") + body


CACHEABLE = {
    b"/c/m/": _cacheable(bytes(256 * 1024)),
    b"/c/big/": _cacheable(bytes(2 * 1024 * 1024)),
}
CACHEABLE_SMALL = _cacheable(SMALL_BODY)
SLOW_SECONDS = 0.3
counted = 0  # /c/ requests answered: how many misses reached the origin
BAD_REQUEST = _response("400 Bad Request", b"bad request\n", close=True)


def _cached_route(path: bytes) -> bytes:
    global counted
    counted += 1
    for prefix, response in CACHEABLE.items():
        if path.startswith(prefix):
            return response
    return CACHEABLE_SMALL


class OriginProtocol(asyncio.Protocol):
    """One client connection. Answers every complete request in the buffer, in order."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the type ignore below: asyncio hands the base type; this protocol only runs on TCP
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        buf = self._buf + data if self._buf else data
        pos = 0
        out: list[bytes] = []  # pipelined answers leave in one write, in request order
        close = slow = False
        while not close:
            head_end = buf.find(HEAD_END, pos)
            if head_end < 0:
                if len(buf) - pos > MAX_HEAD:
                    out.append(BAD_REQUEST)
                    close = True
                break
            head = buf[pos:head_end]
            line_end = head.find(b"\r\n")
            request_line = head if line_end < 0 else head[:line_end]
            parts = request_line.split(b" ")
            try:
                if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                    raise FramingError(f"bad request line {request_line[:80]!r}")
                head_lower = head[len(request_line) :].lower()
                end = message_end(buf, head_end, head_lower)
            except FramingError:
                out.append(BAD_REQUEST)
                close = True
                break
            if end is None:  # the body has not fully arrived yet
                break
            method, target, version = parts
            path = target.split(b"?", 1)[0]
            response = ROUTES.get(path, NOT_FOUND) if method in (b"GET", b"HEAD") else NOT_FOUND
            if path.startswith(b"/c/"):
                response = _cached_route(path)
                slow = slow or path.startswith(b"/c/slow/")
            elif path == b"/count":
                response = _response("200 OK", str(counted).encode())
            if method == b"HEAD":
                response = response[: response.index(HEAD_END) + len(HEAD_END)]
            out.append(response)
            connection = header_value(head_lower, b"connection") or b""
            close = b"close" in connection or (
                version == b"HTTP/1.0" and b"keep-alive" not in connection
            )
            pos = end
        self._buf = buf[pos:]
        if slow:  # a slow miss: the whole batch answers later, in order
            asyncio.get_running_loop().call_later(SLOW_SECONDS, self._send_later, out, close)
            return
        self._send(out, close)

    def _send_later(self, out: list[bytes], close: bool) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._send(out, close)

    def _send(self, out: list[bytes], close: bool) -> None:
        transport = self._transport
        assert transport is not None
        if out:
            transport.write(b"".join(out) if len(out) > 1 else out[0])
        if close:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._buf = b""


async def serve(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(OriginProtocol, sock=sock, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()  # SIGTERM from Proc.stop, or Ctrl-C: close the listener and go


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.bench.origin", description="The bench's fast HTTP origin."
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    where.add_argument("--port", type=int, help="bind 127.0.0.1:PORT")
    args = parser.parse_args(argv)
    try:
        if args.fd is not None:
            sock = socket.socket(fileno=args.fd)
        else:
            sock = socket.create_server(("127.0.0.1", args.port), backlog=1024)
    except OSError as exc:
        where_text = f"fd {args.fd}" if args.fd is not None else f"port {args.port}"
        print(f"origin: cannot listen on {where_text}: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    print(f"origin: serving on http://{host}:{port}", flush=True)
    with (
        asyncio.Runner(loop_factory=loop_factory()) as runner,
        contextlib.suppress(KeyboardInterrupt),
    ):
        runner.run(serve(sock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
