"""Command line: `python -m gateway --config gateway.toml [options]`, or `keygen`.

    --host H / --port P        listen address (default: [server] in the config)
    --fd N                     serve on an inherited listening socket instead of binding
    --admin-fd N               the admin listener on an inherited socket (default: bind
                               [admin] host and port)
    --workers N                N processes on one port (see workers.py)
    --access-log / --no-access-log   override [server] access_log
    --redis-url URL            every concern that can share its state keeps it in Redis
                               at URL (GatewayConfig.with_redis says which)
    --check                    validate the config file and exit
    --watch                    reload the config whenever its file changes

SIGHUP (to the gateway, or to the --workers parent) reloads the config file, as POST
/reload on the admin listener does (gateway/reload/).

    python -m gateway keygen [--consumer ID]    a new API key and its gateway.toml line

Exit status: 0 after a clean (graceful) stop, 2 for bad input (config file, arguments,
a port already in use), 1 if a worker died.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import socket
import sys
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.text import Text

import gateway
from gateway.app import build_apps
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.observability.workers import shared_metrics
from gateway.reload.workers import status_dir
from gateway.requestid import RequestIdFilter
from gateway.server import bind_socket, inherited_socket, serve
from gateway.workers import supervise, wait_for_siblings

try:  # uvloop (libuv underneath) roughly halves asyncio's own per-request cost
    import uvloop
except ImportError:  # not on Windows; the standard loop works, only slower
    uvloop = None  # type: ignore[assignment]  # the name is the module or None

LOG_FORMAT = "%(asctime)s %(levelname)s %(process)d [%(request_id)s] %(name)s: %(message)s"

log = logging.getLogger("gateway")
stderr = Console(stderr=True, soft_wrap=True, highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description=gateway.__doc__.partition("\n")[0] if gateway.__doc__ else None,
    )
    parser.add_argument("--config", default="gateway.toml", help="config file (gateway.toml)")
    parser.add_argument("--host", help="listen address (default: [server] host)")
    parser.add_argument("--port", type=int, help="listen port (default: [server] port)")
    parser.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    parser.add_argument("--admin-fd", type=int, help="the admin listener's inherited socket")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        help="log one line per request (default: [server] access_log)",
    )
    parser.add_argument(
        "--redis-url",
        help="every concern's shared state in Redis at this URL, e.g. redis://127.0.0.1:6379/0",
    )
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    parser.add_argument(
        "--watch", action="store_true", help="reload the config whenever its file changes"
    )
    # Internal: how the --workers parent tells each worker to bind with SO_REUSEPORT, and
    # where a worker says it is ready (workers.py).
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.port is not None and not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: expected 0..65535")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: expected at least 1")
    if args.redis_url is not None and not args.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        parser.error(f"--redis-url {args.redis_url}: expected redis://host:port/db")
    if args.workers > 1 and args.fd is None and args.port == 0:
        parser.error("--workers with --port 0 would give each worker its own port; use --fd")
    return args


def print_error(message: str) -> None:
    """Every line of `message` as an `error:` line. The message is data, never rich
    markup: a config value such as `[/]` or `[upstreams.order]` prints as written."""
    for line in message.splitlines():
        stderr.print(Text.assemble(("error:", "red"), " ", line))


def configure_logging(json_access: bool = False) -> None:
    # Plain one-line records on stderr, not rich: log lines are grepped, shipped and
    # interleaved across workers, and each must stay one line with the request id in it.
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    if json_access:  # access lines are JSON objects: alone on their line, no prefix
        plain = logging.StreamHandler()
        plain.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("gateway.access")
        access.addHandler(plain)
        access.propagate = False


def with_overrides(config: GatewayConfig, args: argparse.Namespace) -> GatewayConfig:
    update: dict[str, object] = {}
    if args.host is not None:
        update["host"] = args.host
    if args.port is not None:
        update["port"] = args.port
    if args.access_log is not None:
        update["access_log"] = args.access_log
    config = config.model_copy(update={"server": config.server.model_copy(update=update)})
    return config if args.redis_url is None else config.with_redis(args.redis_url)


def worker_argv(args: argparse.Namespace, config: GatewayConfig) -> list[str]:
    argv = ["--config", args.config, "--workers", "1"]
    if args.watch:
        argv.append("--watch")
    argv.append("--access-log" if config.server.access_log else "--no-access-log")
    if args.redis_url is not None:
        argv += ["--redis-url", args.redis_url]
    if args.admin_fd is not None:
        argv += ["--admin-fd", str(args.admin_fd)]
    if args.fd is not None:
        return [*argv, "--fd", str(args.fd)]
    return [*argv, "--host", config.server.host, "--port", str(config.server.port), "--reuse-port"]


def listen(fd: int | None, host: str, port: int, reuse_port: bool) -> socket.socket:
    """An inherited socket (`--fd`, `--admin-fd`) or a new one on host:port."""
    return (
        inherited_socket(fd) if fd is not None else bind_socket(host, port, reuse_port=reuse_port)
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keygen"]:
        from gateway.auth import keygen  # a tool, not part of serving

        return keygen.main(argv[1:])
    args = parse_args(argv)
    try:
        config = with_overrides(load_config(Path(args.config), shown=args.config), args)
    except ConfigError as exc:
        print_error(str(exc))
        return 2
    if args.check:
        stderr.print(Text(f"{args.config}: ok, {len(config.routes)} routes"))
        return 0

    # SIGHUP reloads the configuration (gateway/reload/); until the handler is installed
    # at start-up, one that arrives must not end the process (its default action).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    configure_logging(json_access=config.observability.access_log_format == "json")
    for level, note in config.startup_notes(args.workers):
        log.log(level, "%s", note)
    if args.workers > 1:
        inherited = tuple(fd for fd in (args.fd, args.admin_fd) if fd is not None)
        # One scrape adds up every worker (observability/workers.py); POST /reload answers
        # for every worker (reload/workers.py).
        with shared_metrics(), status_dir():
            return supervise(args.workers, worker_argv(args, config), pass_fds=inherited)

    server, admin = config.server, config.admin
    sockets = []
    for fd, host, port in (
        (args.fd, server.host, server.port),
        (args.admin_fd, admin.host, admin.port),
    ):
        try:
            sockets.append(listen(fd, host, port, args.reuse_port))
        except OSError as exc:
            where = f"fd {fd}" if fd is not None else f"{host}:{port}"
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            print_error(f"cannot listen on {where}: {reason or exc}")
            return 2
    sock, admin_sock = sockets

    for route in config.routes:
        log.info("route %s", route.describe())

    def load() -> GatewayConfig:  # a reload reads the file again, with the same options
        return with_overrides(load_config(Path(args.config), shown=args.config), args)

    app, admin_app = build_apps(config, load, shown=args.config, watch=args.watch)
    loop_factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(
            serve(
                app,
                sock,
                shutdown_timeout=server.shutdown_timeout,
                header_timeout=server.header_timeout,
                ready=None if args.ready_fd is None else partial(wait_for_siblings, args.ready_fd),
                admin=(admin_app, admin_sock),
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
