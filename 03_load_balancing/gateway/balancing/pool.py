"""An upstream pool: named targets, one strategy, health, and leases that count in-flight.

The gateway's handler (app.py) uses a pool in three steps:

    lease = pool.acquire(pool.key_for(request, path))  # pick + count, or NoHealthyTarget
    with lease:                                   # in_flight - 1 on the way out
        ... open and relay to lease.target.url ...
        lease.report(status)                      # the status, or None: no response

`acquire` picks and counts in one step with no `await` in between, so on one event loop
no other request can slip in between "choose the least loaded" and "it is now loaded":
least-connections and bounded loads see every request that has been placed. `report`
feeds passive health; a lease that ends without a report (the client went away) counts
neither way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from .keys import KeyedRequest, KeySource
from .outlier import OutlierDetector
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
            if self._pool.outlier is not None:
                self._pool.outlier.record(self.target, status)

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
        outlier: OutlierDetector | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.targets = list(targets)
        self.strategy = strategy
        self.key_source = key_source
        self.outlier = outlier
        self.clock = clock

    def key_for(self, request: KeyedRequest, path: str) -> str | None:
        """The request's hash key, if this pool hashes (consistent_hash), else None.

        `path`: the normalised path the request was routed by (keys.py: `path`)."""
        return None if self.key_source is None else self.key_source.extract(request, path)

    def pick(self, key: str | None = None) -> Target | None:
        """The target for a request with `key`, without counting it (see acquire)."""
        if self.outlier is not None:
            self.outlier.refresh()  # ejections whose time is up end here, lazily
        return self.strategy.pick(key)

    def acquire(self, key: str | None = None) -> Lease:
        """Pick a target and count the request on it; NoHealthyTarget when none can."""
        target = self.pick(key)
        if target is None:
            raise NoHealthyTarget(self.unavailable_reason())
        return Lease(self, target)

    def unavailable_reason(self) -> str:
        """Why no target is available, for the 503 detail and the log.

        e.g. "upstream 'users': all 3 targets unhealthy (2 failed active checks,
        1 ejected after 5 consecutive failures)". It names the upstream and the causes,
        never a target's address: internal topology is none of the client's business.
        """
        if self.outlier is not None:
            self.outlier.refresh()
        failed = sum(not t.health.active_ok for t in self.targets)
        ejected = sum(t.health.active_ok and t.health.ejected for t in self.targets)
        n = len(self.targets)
        streak = self.outlier.policy.consecutive_failures if self.outlier else 0
        single = n == 1
        causes = []
        if failed:
            causes.append("failed active checks" if single else f"{failed} failed active checks")
        if ejected:
            causes.append(
                ("ejected" if single else f"{ejected} ejected")
                + f" after {streak} consecutive failures"
            )
        head = "its only target is unhealthy" if single else f"all {n} targets unhealthy"
        if failed + ejected < n:  # only while a strategy reports "none" for another reason
            head = f"{n - failed - ejected} of {n} targets available but none could be picked"
        return f"upstream {self.name!r}: {head}" + (f" ({', '.join(causes)})" if causes else "")

    def snapshot(self) -> list[dict[str, Any]]:
        """Every target's state, for an admin endpoint, the logs or lb-chaos's live view."""
        if self.outlier is not None:
            self.outlier.refresh()
        now = self.clock()
        rows = []
        for t in self.targets:
            h = t.health
            state = "unhealthy" if not h.active_ok else "ejected" if h.ejected else "healthy"
            rows.append(
                {
                    "url": t.url,
                    "weight": t.weight,
                    "state": state,
                    "in_flight": t.in_flight,
                    "ejected_for": None if h.ejected_until is None else h.ejected_until - now,
                    "ejections": h.ejections,
                    "consecutive_failures": h.consecutive_failures,
                    "last_probe_error": h.last_probe_error,
                }
            )
        return rows
