"""`python -m common.idp --port P` (or `--fd N`): the demo identity provider."""

from __future__ import annotations

import argparse
import socket
import sys

from aiohttp import web

from .app import Provider, build_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.idp", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    where.add_argument("--port", type=int, help="bind 127.0.0.1:PORT")
    parser.add_argument("--secret", help="the HMAC secret for HS256/384/512 (default: random)")
    args = parser.parse_args(argv)
    try:
        if args.fd is not None:
            sock = socket.socket(fileno=args.fd)
        else:
            sock = socket.create_server(("127.0.0.1", args.port))
    except OSError as exc:
        print(f"idp: cannot listen: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    provider = Provider(f"http://{host}:{port}", args.secret)
    print(f"idp: issuer http://{host}:{port}", flush=True)
    web.run_app(build_app(provider), sock=sock, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
