"""Is a child up? One HTTP GET of its health path, judged by the status line alone.

A hand-written request over asyncio streams rather than an HTTP client library: a probe
needs the status code and nothing else, and the launcher should start fast and depend
on little. Kubernetes' kubelet judges its httpGet probes the same way: any status from
200 to 399 within the timeout is healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from common.launch.output import describe_exit
from common.launch.sockets import HOST


async def probe(port: int, path: str, timeout: float) -> bool:
    """True if GET http://127.0.0.1:<port><path> answers 2xx or 3xx within `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
                writer.write(request.encode("ascii"))
                await writer.drain()
                status_line = await reader.readline()  # b"HTTP/1.1 200 OK\r\n"
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError):
        return False
    parts = status_line.split()
    return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400


async def wait_healthy(port: int, path: str, exited: asyncio.Future[int], timeout: float) -> str:
    """Probe until healthy; return "" on success, else why not (timeout or exit).

    The listening socket was bound before the child started, so connect() succeeds at once
    and the probe's request waits in the kernel's backlog until the server accepts it:
    usually the first probe is simply answered the moment the child is up. Retries (with
    a growing pause) only matter for a server that answers "not ready yet" (503) first.
    Every wait races `exited`, so a child that crashes at start is reported at once, not
    after the timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.05
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return f"did not answer GET {path} with 2xx/3xx within {timeout:g} s"
        attempt = asyncio.ensure_future(probe(port, path, min(remaining, 5.0)))
        racing: set[asyncio.Future[Any]] = {attempt, exited}
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            attempt.cancel()
            return f"{describe_exit(exited.result())} before it answered GET {path}"
        if attempt.result():
            return ""
        # Not an ordering sleep: a pause between probes that ends early if the child exits.
        await asyncio.wait({exited}, timeout=min(pause, max(deadline - loop.time(), 0)))
        pause = min(pause * 2, 0.5)
