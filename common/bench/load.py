"""Load generation: wrk when it is installed, a built-in asyncio generator otherwise.

Both keep C keep-alive connections busy with the same GET, each connection sending its
next request as soon as the previous answer is complete (a closed loop: offered load adapts
to what the server can do, so nothing queues without bound). Both are bounded in time and
talk to 127.0.0.1 only. A warm-up comes first and is not measured: it opens connections
and lets the proxy fill its upstream pool, which a long-running gateway has done long ago.

`meter` is any reading (the bench passes "CPU µs of the proxy") taken at both edges of
the measured window; the result carries the difference.

wrk is a C program with its own event loop and costs a fraction of what this Python
generator does; on a 2-core machine that leaves more of the load generator's core to the
origin. The CPU-per-request figure does not depend on which one ran.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from common.bench.http1 import HEAD_END, FramingError, message_end

Meter = Callable[[], float]
MAX_SECONDS = 120.0  # a bench run is bounded; anything longer is a typo


@dataclass(frozen=True)
class LoadResult:
    tool: str  # "wrk" or "built-in"
    requests: int  # complete 200 answers inside the measured window
    errors: int  # other statuses, broken framing, lost connections
    seconds: float
    p50_ms: float
    p99_ms: float
    meter_delta: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


class LoadError(RuntimeError):
    """The load could not run at all (server down, wrk failed, output unreadable)."""


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list (q in 0..1)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def loopback_target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
        raise LoadError(f"{url}: the bench loads only http://127.0.0.1")
    path = parts.path or "/"
    return parts.hostname, parts.port or 80, path + (f"?{parts.query}" if parts.query else "")


# --- the built-in generator ---------------------------------------------------------------


class _Window:
    """Shared by all connections: are we recording, and what was recorded."""

    def __init__(self) -> None:
        self.running = True
        self.recording = False
        self.latencies_ns: list[int] = []
        self.errors = 0


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send, wait for the full answer, record, send again.

    asyncio.Protocol rather than streams: callbacks on bytes cost a few µs per request
    instead of a coroutine switch per read, and this generator shares a core with the
    origin.
    """

    def __init__(self, request: bytes, window: _Window, lost: asyncio.Future[None]) -> None:
        self._request = request
        self._window = window
        self._lost = lost
        self._buf = b""
        self._sent_ns = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the type ignore below: asyncio hands the base type; this protocol only runs on TCP
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self._sent_ns = time.perf_counter_ns()
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        head_end = buf.find(HEAD_END)
        try:
            end = None if head_end < 0 else message_end(buf, head_end, buf[:head_end].lower())
        except FramingError:
            end = -1
        if end is None:
            self._buf = buf
            return
        self._buf = b""
        window = self._window
        if end != len(buf):  # broken framing, or bytes nobody asked for: drop the connection
            assert self.transport is not None
            self.transport.close()  # counted as an error when the loss is noticed
            return
        if window.recording:
            if buf.startswith(b"HTTP/1.1 200 "):
                window.latencies_ns.append(time.perf_counter_ns() - self._sent_ns)
            else:
                window.errors += 1  # a 502 from a proxy: keep-alive goes on, the count grows
        if window.running:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)


async def _keep_connected(host: str, port: int, request: bytes, window: _Window) -> None:
    """Hold one connection open for the whole run; reconnect (and count it) if it drops."""
    loop = asyncio.get_running_loop()
    while window.running:
        lost: asyncio.Future[None] = loop.create_future()
        try:
            transport, _ = await loop.create_connection(
                functools.partial(_Connection, request, window, lost), host, port
            )
        except OSError:
            if window.recording:
                window.errors += 1
            await asyncio.sleep(0.05)  # back off: the server is refusing connections
            continue
        try:
            await lost
        finally:
            transport.abort()
        if window.running and window.recording:
            window.errors += 1


async def run_builtin(
    url: str,
    *,
    connections: int,
    duration: float,
    warmup: float,
    meter: Meter | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> LoadResult:
    """Load `url` from this process's event loop (uvloop in `python -m common.bench`);
    every request carries `headers` too (auth-bench: a key or a bearer token)."""
    host, port, path = loopback_target(url)
    if not 0 < duration <= MAX_SECONDS:
        raise LoadError(f"duration {duration}s: expected 0 < duration <= {MAX_SECONDS}")
    # A quick check that the server is there, so a dead one fails loudly, not as errors.
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        writer.close()
        await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        raise LoadError(f"cannot connect to {url}: {exc}") from exc
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
    window = _Window()
    tasks = [
        asyncio.create_task(_keep_connected(host, port, request, window))
        for _ in range(connections)
    ]
    try:
        # Timing, not synchronisation: the warm-up and the window *are* durations.
        await asyncio.sleep(warmup)
        window.recording = True
        before = meter() if meter else None
        started = time.perf_counter()
        await asyncio.sleep(duration)
        window.recording = False
        seconds = time.perf_counter() - started
        after = meter() if meter else None
    finally:
        window.running = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = sorted(window.latencies_ns)
    if not latencies:
        raise LoadError(f"no successful answer from {url} in {duration}s ({window.errors} errors)")
    return LoadResult(
        tool="built-in",
        requests=len(latencies),
        errors=window.errors,
        seconds=seconds,
        p50_ms=percentile(latencies, 0.50) / 1e6,
        p99_ms=percentile(latencies, 0.99) / 1e6,
        meter_delta=None if before is None or after is None else after - before,
    )


# --- wrk ----------------------------------------------------------------------------------


def wrk_path() -> str | None:
    return shutil.which("wrk")


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(output: str) -> tuple[int, int, float, float, float]:
    """(requests, errors, seconds, p50 ms, p99 ms) from `wrk --latency` output."""

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if not match:
            raise LoadError(f"no {label}% latency line in wrk output:\n{output}")
        return float(match.group(1)) * _UNITS_MS[match.group(2)]

    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", output, re.MULTILINE)
    if not total:
        raise LoadError(f"no 'N requests in' line in wrk output:\n{output}")
    seconds = float(total.group(2)) * _UNITS_MS[total.group(3)] / 1e3
    errors = 0
    socket_errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    requests = int(total.group(1)) - (int(non_2xx.group(1)) if non_2xx else 0)
    return requests, errors, seconds, latency("50"), latency("99")


def run_wrk(
    url: str, *, connections: int, duration: float, warmup: float, meter: Meter | None = None
) -> LoadResult:
    """One warm-up wrk run (discarded), then the measured one. wrk counts whole seconds."""
    loopback_target(url)
    wrk = wrk_path()
    if wrk is None:
        raise LoadError("wrk is not on PATH")

    def wrk_run(seconds: float) -> str:
        argv = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=seconds + 30, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise LoadError(f"wrk did not finish: {' '.join(argv)}") from exc
        if done.returncode != 0:
            raise LoadError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        return done.stdout

    if warmup > 0:
        wrk_run(warmup)
    before = meter() if meter else None
    output = wrk_run(duration)
    after = meter() if meter else None
    requests, errors, seconds, p50, p99 = parse_wrk(output)
    return LoadResult(
        tool="wrk",
        requests=requests,
        errors=errors,
        seconds=seconds,
        p50_ms=p50,
        p99_ms=p99,
        meter_delta=None if before is None or after is None else after - before,
    )
