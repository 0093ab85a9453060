"""Upstreams that misbehave on purpose, for the failure half of the proxy contract.

The dummy FastAPI backends are well-behaved HTTP servers; uvicorn will not send half a
body and hang up. These are raw sockets that do exactly that, so a test can check what a
gateway makes of it:

- `BrokenUpstream`: an HTTP server in a thread whose answer depends on the path:
  `/broken/short-body` promises 1000 bytes, sends 10 and closes; `/broken/short-chunked`
  sends one chunk and closes; `/broken/no-answer` reads the request and closes;
  `/broken/garbage` answers with bytes that are not HTTP; `/broken/slow-start` sends a
  chunked head, then nothing until the test sets `release`, then one chunk and the end.
- `refused_port()`: a port that is bound but not listening, so connecting is refused at
  once (and nobody else can take the port while the test runs).
- `unresponsive_port()`: a listening socket whose accept queue is full, so a new
  connection's SYN is dropped and connecting hangs: a connect timeout on loopback.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

HOST = "127.0.0.1"

RESPONSES = {
    b"/broken/short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789",
    b"/broken/short-chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    ),
    b"/broken/no-answer": b"",
    b"/broken/garbage": b"this is not HTTP at all\r\n\r\n",
}
SLOW_START = b"/broken/slow-start"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class BrokenUpstream:
    """A listening socket and one thread per connection; `url` is its base URL."""

    def __init__(self) -> None:
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self._threads: list[threading.Thread] = []
        self.release = threading.Event()  # lets /broken/slow-start send its body
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the listener was closed: stop
                return
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
                target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
                if target == SLOW_START:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    self.release.wait(10)
                    conn.sendall(b"5\r\nhello\r\n0\r\n\r\n")
                    return
                conn.sendall(RESPONSES.get(target.split(b"?")[0], NOT_FOUND))
                # Close without a proper shutdown: the gateway sees the body end early.

    def close(self) -> None:
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def broken_upstream() -> Iterator[BrokenUpstream]:
    upstream = BrokenUpstream()
    try:
        yield upstream
    finally:
        upstream.close()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port where connecting is refused: bound (so nobody else gets it), not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@contextlib.contextmanager
def unresponsive_port() -> Iterator[int]:
    """A port where connecting hangs until the client gives up.

    listen(0) with a connection already waiting in the accept queue: Linux drops further
    SYNs while the queue is full (the client retries after 1 s, 3 s, ...), which is what a
    firewall that silently drops packets, or a host that is down, looks like.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):  # the first fills the queue; the others make sure
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((HOST, port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
