"""A steady trickle of requests, so that a dashboard has something to show.

    python -m common.traffic http://127.0.0.1:8080 /users/1 /products --rate 20 --seconds 3600

`--rate` requests a second in all, the paths taken in turn, one at a time (a trickle, not
a load test: `make bench-all` is that); every 30 s one line says what came back. It stops
by itself after `--seconds`, or at Ctrl-C / SIGTERM. `make observability` starts it beside
the stage (services.toml `[traffic]`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
import time
from collections import Counter

import aiohttp


async def trickle(base: str, paths: list[str], rate: float, seconds: float) -> Counter[str]:
    seen: Counter[str] = Counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    reported = started
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for n, path in enumerate(itertools.cycle(paths)):
            now = time.monotonic()
            if stop.is_set() or now - started >= seconds:
                break
            try:
                async with session.get(base + path) as response:
                    await response.read()
                    seen[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                seen[type(exc).__name__] += 1
            if now - reported >= 30:
                reported = now
                print(
                    f"traffic: {sum(seen.values())} sent: {dict(sorted(seen.items()))}", flush=True
                )
            # The next request at its own time: the rate holds whatever one took.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), max(0.0, started + (n + 1) / rate - time.monotonic())
                )
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.traffic", description=__doc__.splitlines()[0]
    )
    parser.add_argument("url", help="the gateway, e.g. http://127.0.0.1:8080")
    parser.add_argument("paths", nargs="+", help="paths to ask for, in turn")
    parser.add_argument("--rate", type=float, default=20.0, help="requests a second (default 20)")
    parser.add_argument("--seconds", type=float, default=3600.0, help="stop after this long")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    seen = asyncio.run(trickle(args.url.rstrip("/"), args.paths, args.rate, args.seconds))
    print(f"traffic: done, {sum(seen.values())} sent: {dict(sorted(seen.items()))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
