"""An upstream pool: named targets, one strategy, health, and leases that count in-flight.

The gateway's handler uses a pool in three steps (stage 04's channel: once per try):

    lease = pool.acquire(key, avoid=tried)        # pick + count, or NoHealthyTarget
    with lease:                                   # in_flight - 1 on the way out
        ... open and relay to lease.target.url ...
        lease.report(status)                      # the status, or None: no response

`acquire` picks and counts in one step with no `await` in between, so on one event loop
no other request can slip in between "choose the least loaded" and "it is now loaded":
least-connections and bounded loads see every request that has been placed. `report`
feeds the circuit breaker; a lease that ends without a report (the client went away)
counts neither way. `avoid` keeps a retry (stage 04) off the targets the request already
tried, when there is any other.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from types import TracebackType
from typing import Any

from .breaker import CircuitBreaker, describe
from .keys import KeyedRequest, KeySource
from .strategies import Strategy
from .target import Clock, Target


class NoHealthyTarget(Exception):
    """No target can take the request. `reason` is ready for a 503 problem's detail."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Lease:
    """One request's claim on one target, from pick until the response is done."""

    __slots__ = ("target", "_pool", "_released", "_reported")

    def __init__(self, pool: UpstreamPool, target: Target) -> None:
        self.target = target
        self._pool = pool
        self._released = False
        self._reported = False
        target.in_flight += 1

    def report(self, status: int | None) -> None:
        """The outcome: the upstream's status code, or None when it gave no response
        (refused, reset, timed out, or broke off mid-body). The first report counts."""
        if not self._reported:
            self._reported = True
            if self._pool.breaker is not None:
                self._pool.breaker.record(self.target, status)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.target.in_flight -= 1

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class UpstreamPool:
    def __init__(
        self,
        name: str,
        targets: Sequence[Target],
        strategy: Strategy,
        *,
        key_source: KeySource | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.targets = list(targets)
        self.strategy = strategy
        self.key_source = key_source
        self.breaker = breaker
        self.clock = clock

    def key_for(self, request: KeyedRequest, path: str) -> str | None:
        """The request's hash key, if this pool hashes (consistent_hash), else None.

        `path`: the normalised path the request was routed by (keys.py: `path`)."""
        return None if self.key_source is None else self.key_source.extract(request, path)

    def pick(self, key: str | None = None, avoid: Collection[Target] = ()) -> Target | None:
        """The target for a request with `key`, without counting it (see acquire)."""
        if self.breaker is not None:
            self.breaker.refresh()  # open breakers whose time is up go half-open, lazily
        return self.strategy.pick(key, avoid)

    def acquire(self, key: str | None = None, avoid: Collection[Target] = ()) -> Lease:
        """Pick a target and count the request on it; NoHealthyTarget when none can.

        With `avoid` (the targets a request already tried) a target outside it is
        preferred; when there is none, any available target will do: a retry on the
        same target beats no retry.
        """
        target = self.pick(key, avoid)
        if target is None and avoid:
            target = self.strategy.pick(key)
        if target is None:
            raise NoHealthyTarget(self.unavailable_reason())
        return Lease(self, target)

    def unavailable_reason(self) -> str:
        """Why no target is available, for the 503 detail and the log.

        e.g. "upstream 'users': all 3 targets unhealthy (2 failed active checks,
        1 open circuit)". It names the upstream and the causes, never a target's address:
        internal topology is none of the client's business.
        """
        if self.breaker is not None:
            self.breaker.refresh()
        failed = sum(not t.health.active_ok for t in self.targets)
        tripped = sum(t.health.active_ok and t.health.circuit != "closed" for t in self.targets)
        n = len(self.targets)
        single = n == 1
        causes = []
        if failed:
            causes.append("failed active checks" if single else f"{failed} failed active checks")
        if tripped:
            causes.append(
                "open circuit" if single else f"{tripped} open circuit" + "s" * (tripped > 1)
            )
        head = "its only target is unhealthy" if single else f"all {n} targets unhealthy"
        if failed + tripped < n:  # only while a strategy reports "none" for another reason
            head = f"{n - failed - tripped} of {n} targets available but none could be picked"
        return f"upstream {self.name!r}: {head}" + (f" ({', '.join(causes)})" if causes else "")

    def snapshot(self) -> list[dict[str, Any]]:
        """Every target's state, for the admin listener, the logs or lb-chaos's live view."""
        if self.breaker is not None:
            self.breaker.refresh()
        now = self.clock()
        rows = []
        for t in self.targets:
            h = t.health
            rows.append(
                {
                    "url": t.url,
                    "weight": t.weight,
                    "state": describe(h),
                    "circuit": h.circuit,
                    "in_flight": t.in_flight,
                    "open_for": None if h.open_until is None else h.open_until - now,
                    "opens": h.opens,
                    "consecutive_failures": h.consecutive_failures,
                    "last_probe_error": h.last_probe_error,
                }
            )
        return rows
