"""Bulkheads and load shedding: how much of the gateway one upstream, and everyone, may take.

A ship's bulkheads keep one flooded compartment from sinking the ship. Here each upstream
pool gets `max_concurrent` places for requests in flight; when they are taken, up to
`max_queue` more wait at most `queue_timeout` for one, and the rest are answered at once
with 503 and `Retry-After`. So a slow upstream, whose requests pile up, fills its own
compartment and no other: routes to the other upstreams keep their sockets, their share
of the event loop and their latency (channelling-bench measures it).

The gateway as a whole has one more limit, `[server] max_in_flight`: past it every new
request is shed with a 503 before any work is spent on it. A Python event loop does not
slow down gracefully: past its capacity every request in flight gets slower together, and
timeouts fire everywhere at once. Shedding early keeps the requests that were admitted
fast. Envoy has both: circuit breakers `max_requests`/`max_pending_requests` per cluster
(what it calls circuit breaking), and the overload manager for the process.
"""

from __future__ import annotations

import asyncio
from collections import deque

from gateway.errors import GatewayError

RETRY_AFTER = "1"  # seconds: a real gateway would derive it from the queue's drain rate


class UpstreamBusy(GatewayError):
    status, title, slug = 503, "Service Unavailable", "upstream-busy"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = RETRY_AFTER


class Overloaded(GatewayError):
    status, title, slug = 503, "Service Unavailable", "gateway-overloaded"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = RETRY_AFTER


class Bulkhead:
    """`max_concurrent` places and a queue of `max_queue` waiters for one upstream."""

    def __init__(self, name: str, max_concurrent: int, max_queue: int, queue_timeout: float):
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.in_use = 0
        self.rejected = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def try_enter(self) -> bool:
        """Take a free place at once, if there is one and nobody is waiting for it.

        The channel calls this first and awaits `wait()` only when it fails: on the happy
        path a request pays two comparisons, not a coroutine and a context manager.
        """
        if self.in_use < self.max_concurrent and not self._waiting:
            self.in_use += 1
            return True
        return False

    async def wait(self) -> None:
        """Queue for a place (at most `max_queue` waiters, `queue_timeout` each), or 503."""
        if len(self._waiting) >= self.max_queue:
            self.rejected += 1
            raise UpstreamBusy(
                f"upstream {self.name!r} has {self.in_use} requests in flight and"
                f" {len(self._waiting)} waiting, its limits"
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(self.queue_timeout):
                await waiter  # leave() hands its place over: in_use stays as it is
        except TimeoutError:
            self._waiting.remove(waiter)
            self.rejected += 1
            raise UpstreamBusy(
                f"upstream {self.name!r} had no free place within {self.queue_timeout:g} s"
            ) from None
        except asyncio.CancelledError:  # the client left while it waited
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self.leave()  # the place was handed over just now: pass it on
            raise

    def leave(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the place goes straight to the next in line
                return
        self.in_use -= 1

    def snapshot(self) -> dict[str, int | float]:
        return {
            "in_use": self.in_use,
            "max_concurrent": self.max_concurrent,
            "queued": self.queued,
            "max_queue": self.max_queue,
            "rejected": self.rejected,
        }


class LoadShedder:
    """The gateway-wide cap on requests in flight: past it, 503 at once."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0

    def enter(self) -> None:
        """Count one more request in flight, or raise Overloaded (503) past the cap."""
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            raise Overloaded(
                f"the gateway is at its limit of {self.max_in_flight} requests in flight"
            )
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1

    def snapshot(self) -> dict[str, int]:
        return {"in_flight": self.in_flight, "max_in_flight": self.max_in_flight, "shed": self.shed}
