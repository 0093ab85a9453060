"""Serve the application on a listening socket until SIGTERM, then stop gracefully.

aiohttp's `web.run_app` would do most of this in one call. It is spelled out here for
three reasons: the socket may be inherited (`--fd N`, like systemd socket activation),
the shutdown deadline must be the configured one, and malformed requests must get the
same problem+json answer as every other gateway error (gateway/protocol.py).

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
import gc
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.protocol import MAX_FIELD_BYTES, ProblemRequestHandler

log = logging.getLogger("gateway.server")

# Connections not yet accepted that the kernel queues (Linux caps it at somaxconn).
BACKLOG = 1024

# How long an idle client connection stays open between requests. aiohttp's default
# (3630 s) suits a server behind a proxy; at the edge, idle connections are memory and
# file descriptors held for clients that may never come back. nginx uses 75 s. A real
# gateway would make this configurable.
CLIENT_KEEPALIVE_TIMEOUT = 75.0


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
    settle_the_heap()
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
            "max_field_size": MAX_FIELD_BYTES,
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


# CPython's collector walks its young generation every 700 container allocations, and a
# request through every concern allocates a few thousand objects (headers, frames,
# futures): several walks per request, nearly all finding nothing, since reference
# counting already freed the garbage. 10,000 makes it one walk per few requests.
GC_YOUNG_THRESHOLD = 10_000


def settle_the_heap() -> None:
    """Start-up is over: freeze what it built, and walk young objects less often.

    `gc.freeze()` moves everything alive now (modules, the config, the routes, the pools)
    into a generation the collector never walks again, so the occasional full collection
    no longer re-checks objects that live as long as the process (Instagram's reason for
    it). Cycles made while serving are still found, only later; memory stays bounded.
    Measured with `make bench-all`: stage 07 spends about 15 µs less per request, 01 about
    3 µs. A production gateway in Go or Rust has no such knob to turn; Python servers
    that care (Instagram's Django, gunicorn users) turn exactly this one.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _cut_off(manager: web.Server) -> None:
    busy = manager.connections
    if busy:
        log.warning("shutdown deadline reached: closing %d busy connections", len(busy))
    for connection in busy:
        connection.force_close()
