"""Passive health as a circuit breaker: stop sending requests to a target that keeps
failing them, then test it with one.

Active checks (active.py) ask a target every few seconds; passive health watches the
outcome of real requests, so it reacts within a handful of them. The classic form is
outlier ejection (nginx's max_fails, HAProxy's observe): eject after N failures in a row,
let the target back when a timer runs out. Here it grows the two things that form lacks,
and becomes a circuit breaker:

    closed --(5 failures in a row, or >= 50% of >= 20 requests in the last 10 s fail)--> open
    open --(open_for seconds: 5 s, then 10 s, 15 s, ... up to max_open_for)--> half-open
    half-open --(half_open_requests probes succeed)--> closed
    half-open --(a probe fails)--> open, for longer

- *Open* targets are skipped by every strategy at once: no request waits to fail on them
  (fail fast), and when a whole pool is open the answer is an immediate 503.
- *Half-open* admits `half_open_requests` real requests at a time, as probes. Their
  outcome decides: closed again, or open for longer. Plain ejection lets a target back
  with its full share of traffic at once; a half-open breaker risks one request.
- An error *rate* opens it too, not only a streak: a target failing 30% of requests may
  never fail five in a row, and still ruins every third request.
- Open time grows with each opening (`open_for × n`, n decaying while the target
  behaves), and at most `max_open_percent` of a pool is open at once (but always one):
  when half the pool "fails" together the fault is more likely the network or the gateway.

Names elsewhere: Envoy calls this outlier detection (consecutive_5xx, failure_percentage,
ejection time growing with `base_ejection_time`), and keeps the word *circuit breaker*
for limits on connections and requests in flight, which stage 04 calls bulkheads.
resilience4j and Hystrix call it a circuit breaker, with the same closed/open/half-open
states, per service rather than per host.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .target import Clock, Target, TargetHealth

log = logging.getLogger("gateway.balancing")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
BUCKETS = 10  # the rolling window's resolution: window / BUCKETS seconds per bucket


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    consecutive_failures: int = 5  # 0: no streak trigger
    failure_rate: float = 0.5  # 0: no rate trigger; else open at this share of failures...
    window: float = 10.0  # ...over the last `window` seconds...
    min_requests: int = 20  # ...once at least this many requests were seen in it
    open_for: float = 5.0  # the first opening; later ones last n times this
    max_open_for: float = 60.0
    half_open_requests: int = 1  # probes admitted at once, and successes needed to close
    max_open_percent: int = 50

    @property
    def enabled(self) -> bool:
        return bool(self.consecutive_failures or self.failure_rate)


def is_failure(status: int | None) -> bool:
    """What counts against a target: no response (None), or a 5xx response.

    4xx is the client's fault, not the target's. Envoy's `consecutive_gateway_failure`
    variant counts only 502/503/504 and connection errors, for services whose 500s are
    per-request bugs rather than a sick host.
    """
    return status is None or status >= 500


class RollingWindow:
    """Requests and failures over the last `window` seconds, in BUCKETS buckets.

    A bucket is reused once its time has passed (reset on first touch), so recording and
    reading are O(BUCKETS) at worst and nothing is ever allocated per request.
    """

    __slots__ = ("span", "starts", "requests", "failures")

    def __init__(self, window: float) -> None:
        self.span = window / BUCKETS
        self.starts = [-math.inf] * BUCKETS
        self.requests = [0] * BUCKETS
        self.failures = [0] * BUCKETS

    def record(self, now: float, failed: bool) -> None:
        slot = int(now // self.span)
        i = slot % BUCKETS
        if self.starts[i] != slot:
            self.starts[i], self.requests[i], self.failures[i] = slot, 0, 0
        self.requests[i] += 1
        self.failures[i] += failed

    def totals(self, now: float) -> tuple[int, int]:
        oldest = int(now // self.span) - BUCKETS + 1
        requests = failures = 0
        for i in range(BUCKETS):
            if self.starts[i] >= oldest:
                requests += self.requests[i]
                failures += self.failures[i]
        return requests, failures

    def clear(self) -> None:
        self.starts = [-math.inf] * BUCKETS


class CircuitBreaker:
    """The breakers of one pool's targets, on an injectable clock."""

    def __init__(
        self, pool: str, targets: Sequence[Target], policy: BreakerPolicy, clock: Clock
    ) -> None:
        self.pool = pool
        self.targets = list(targets)
        self.policy = policy
        self.clock = clock
        self.windows = {id(t): RollingWindow(policy.window) for t in self.targets}
        # The earliest open_until: refresh() is O(1) until then. Targets kept by a reload
        # (gateway/reload/) arrive with their breakers as they were, some open.
        self._next_half_open = min(
            (t.health.open_until for t in self.targets if t.health.open_until is not None),
            default=math.inf,
        )

    def record(self, target: Target, status: int | None) -> None:
        """One finished request on `target`; may open or close its breaker."""
        health = target.health
        failed = is_failure(status)
        if health.circuit == OPEN:
            # Requests sent before it opened keep finishing (and failing): they say
            # nothing new, and must not stretch an opening that has already started.
            return
        if health.circuit == HALF_OPEN:
            if failed:
                self._open(target, "a probe failed")
            else:
                health.half_open_successes += 1
                if health.half_open_successes >= self.policy.half_open_requests:
                    self._close(target)
            return
        now = self.clock()
        window = self.windows[id(target)]
        window.record(now, failed)
        if not failed:
            health.consecutive_failures = 0
            return
        health.consecutive_failures += 1
        streak = self.policy.consecutive_failures
        if streak and health.consecutive_failures >= streak:
            self._open(target, f"{health.consecutive_failures} consecutive failures")
            return
        if self.policy.failure_rate:
            requests, failures = window.totals(now)
            if requests >= self.policy.min_requests:
                if failures >= self.policy.failure_rate * requests:
                    self._open(target, f"{failures} of {requests} requests failed")

    def refresh(self) -> None:
        """Open breakers whose time is up go half-open. Called before every pick."""
        now = self.clock()
        if now < self._next_half_open:
            return
        upcoming = math.inf
        for target in self.targets:
            health = target.health
            if health.open_until is None:
                continue
            if health.open_until <= now:
                health.open_until = None
                health.circuit = HALF_OPEN
                health.half_open_successes = 0
                health.admit = self.policy.half_open_requests
                log.warning("upstream %r: %s is half-open: probing it", self.pool, target.url)
            else:
                upcoming = min(upcoming, health.open_until)
        self._next_half_open = upcoming

    def open_count(self) -> int:
        return sum(t.health.circuit == OPEN for t in self.targets)

    def reset(self) -> None:
        """Every breaker closed and its history forgotten: an operator's word that the
        upstream is fixed (POST /upstreams/NAME/reset), instead of waiting out open_for
        and a probe. HAProxy's runtime API has the same lever (`set server ... state
        ready`); Envoy has none, an ejection runs its course. A reset to a still-broken
        target only costs the failures it takes to open again."""
        for target in self.targets:
            health = target.health
            health.circuit, health.admit, health.open_until = CLOSED, None, None
            health.consecutive_failures = health.opens = 0
            health.closed_at = None
            self.windows[id(target)].clear()
        self._next_half_open = math.inf
        log.warning("upstream %r: every breaker reset (closed) by the admin listener", self.pool)

    def _open(self, target: Target, why: str) -> None:
        self.refresh()  # breakers whose time is up no longer count against the limit
        policy, health = self.policy, target.health
        already = self.open_count()
        if (
            health.circuit == CLOSED
            and already
            and 100 * (already + 1) > policy.max_open_percent * len(self.targets)
        ):
            # Stays closed; the count stays too, so the next failure tries again and
            # succeeds as soon as another target has closed.
            log.warning(
                "upstream %r: %s would open (%s) but %d of %d targets are open already"
                " (max_open_percent = %d)",
                self.pool,
                target.url,
                why,
                already,
                len(self.targets),
                policy.max_open_percent,
            )
            return
        now = self.clock()
        if health.closed_at is not None:
            calm_periods = int((now - health.closed_at) // policy.open_for)
            health.opens = max(0, health.opens - calm_periods)
        health.opens += 1
        duration = min(policy.open_for * health.opens, policy.max_open_for)
        health.circuit, health.admit = OPEN, 0
        health.open_until = now + duration
        self._next_half_open = min(self._next_half_open, health.open_until)
        log.warning(
            "upstream %r: %s is open for %g s: %s (opening #%d)",
            self.pool,
            target.url,
            duration,
            why,
            health.opens,
        )

    def _close(self, target: Target) -> None:
        health = target.health
        health.circuit, health.admit = CLOSED, None
        health.consecutive_failures = 0
        health.closed_at = self.clock()
        self.windows[id(target)].clear()
        log.warning("upstream %r: %s is closed again: its probes succeeded", self.pool, target.url)


def describe(health: TargetHealth) -> str:
    """A target's state for the admin view: healthy, unhealthy, open or half-open."""
    if not health.active_ok:
        return "unhealthy"
    return "healthy" if health.circuit == CLOSED else health.circuit
