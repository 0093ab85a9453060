"""The yardstick: the smallest aiohttp reverse proxy that streams, and nothing more.

    python -m common.bench.baseline_proxy --upstream http://127.0.0.1:P --fd N

What it does is what every aiohttp proxy must do: one ClientSession (one connection pool,
so upstream requests reuse keep-alive connections), copy method, path and headers, copy the
status and headers back, stream the body. What it leaves out is exactly what a correct
gateway adds: no hop-by-hop header handling, no X-Forwarded-*/Forwarded/Via, no request
id, no timeouts, no problem+json errors. The bench compares a stage's gateway with this, so
"gateway / baseline" is the price of that correctness. Do not use this proxy for real.
"""

from __future__ import annotations

import argparse
import socket
import sys

from aiohttp import ClientSession, web

from common.bench.eventloop import loop_factory


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    # the type ignore below: aiohttp's cleanup_ctx: an async generator it drives itself
    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        # auto_decompress=False: bytes pass through as the origin sent them.
        async with ClientSession(auto_decompress=False) as session:
            app["session"] = session
            yield

    async def proxy(request: web.Request) -> web.StreamResponse:
        session: ClientSession = request.app["session"]
        async with session.request(
            request.method,
            upstream + request.raw_path,
            headers=request.headers,
            data=request.content if request.body_exists else None,
            allow_redirects=False,
        ) as upstream_response:
            response = web.StreamResponse(
                status=upstream_response.status, headers=upstream_response.headers
            )
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.bench.baseline_proxy")
    parser.add_argument(
        "--upstream", required=True, help="origin base URL, e.g. http://127.0.0.1:9000"
    )
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    args = parser.parse_args(argv)
    try:
        sock = socket.socket(fileno=args.fd)
    except OSError as exc:
        parser.error(f"--fd {args.fd}: {exc}")
    web.run_app(
        make_app(args.upstream.rstrip("/")),
        sock=sock,
        access_log=None,
        print=None,
        loop=loop_factory()(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
