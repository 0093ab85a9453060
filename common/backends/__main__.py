"""Command line: `python -m common.backends --service users --instance a [--fd N]`.

The backend serves on a listening socket it is *given* (`--fd N`, inherited from the
parent: the launcher and the tests bind 127.0.0.1:0 themselves, so there is no race for
a free port) or one it binds from `--host`/`--port`. Either way the socket exists before
the application, so the application can be told its real port for X-Served-By.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import signal
import socket
import sys
from types import FrameType

import uvicorn
from rich.console import Console

from common.backends.app import create_app
from common.backends.resources import SERVICES

INSTANCE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")  # it ends up in a header value
LOG_LEVELS = ["critical", "error", "warning", "info", "debug", "trace"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m common.backends",
        description="A dummy FastAPI backend: one service's resources plus diagnostic "
        "endpoints (echo, stream, bytes, upload, delay, status, cache, whoami, chaos).",
    )
    parser.add_argument("--service", required=True, choices=SERVICES, help="which service")
    parser.add_argument("--instance", default="a", help="instance name, e.g. a, b (default a)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9001, help="bind port, 0 = any (default 9001)")
    parser.add_argument(
        "--fd", type=int, help="serve on this inherited listening socket (ignores --host/--port)"
    )
    parser.add_argument("--log-level", default="warning", choices=LOG_LEVELS)
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if not INSTANCE.match(args.instance):
        parser.error(f"--instance {args.instance!r}: 1-32 letters, digits, '.', '_' or '-'")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: expected 0..65535")
    if args.fd is not None:
        try:
            args.socket = inherited_socket(args.fd)
        except OSError as exc:
            parser.error(f"--fd {args.fd}: {exc.strerror or exc}")
    return args


def inherited_socket(fd: int) -> socket.socket:
    """The listening TCP socket behind `fd`.

    Not uvicorn's own `fd=` option: it wraps the descriptor as an AF_UNIX socket, and
    our parent hands over AF_INET. `socket.socket(fileno=fd)` asks the kernel instead.
    """
    sock = socket.socket(fileno=fd)
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()  # not ours to close
        raise OSError(f"descriptor {fd} is a socket but not a listening one")
    return sock


def bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR: a restart can bind while the old process's connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    err = Console(stderr=True)
    if args.fd is not None:
        sock = args.socket
    else:
        try:
            sock = bound_socket(args.host, args.port)
        except OSError as exc:
            err.print(f"[red]error:[/] cannot listen on {args.host}:{args.port}: {exc.strerror}")
            return 1
    host, port = sock.getsockname()[:2]

    config = uvicorn.Config(
        create_app(args.service, args.instance, port),
        # httptools (llhttp, the parser Node.js uses) is several times faster than the
        # pure-Python h11; uvloop likewise beats the default asyncio loop. Both are C
        # extensions, so fall back when a platform lacks them (uvloop: not on Windows).
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        lifespan="off",  # nothing to set up: all state is created by create_app
        # The sans-I/O implementation of the websockets library: the /ws/echo endpoint.
        ws="websockets-sansio",
        log_level=args.log_level,
        access_log=args.access_log,
        # Off: with it on, uvicorn would replace the client address with the gateway's
        # X-Forwarded-For, and /echo must report the TCP peer that really connected.
        proxy_headers=False,
        # A stop should not wait a minute for a /delay/60000 or a long /stream.
        timeout_graceful_shutdown=3,
    )
    # One line on stdout, for a human or a launcher's log: the port is real even for --port 0.
    Console(soft_wrap=True).print(
        f"{args.service}/{args.instance} listening on http://{host}:{port}"
    )
    # uvicorn handles SIGTERM/SIGINT itself: stop accepting, finish requests in flight,
    # then re-raise the signal with the handler it found. These handlers turn that
    # re-raise into exit status 0, instead of death by SIGTERM or a KeyboardInterrupt
    # traceback, so a launcher can tell "stopped as asked" from "crashed".
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
