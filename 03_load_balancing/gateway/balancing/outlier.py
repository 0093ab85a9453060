"""Passive health: eject a target that keeps failing real requests, and take it back later.

Active checks (active.py) ask a target "are you alive?" every few seconds; a target can
answer yes and still fail every real request (a broken database behind it, a bad deploy
of one endpoint). Passive checks watch the requests themselves. This is Envoy's outlier
detection, consecutive-5xx flavour (envoyproxy.io, arch_overview/upstream/outlier):

- `consecutive_failures` failures in a row (a 5xx answer, or no answer at all: refused,
  reset, timed out) eject the target. One success resets the count.
- An ejection lasts `base_ejection_time * n`, where n counts this target's recent
  ejections (the first 5 s, then 10 s, 15 s, ...) capped at `max_ejection_time`: a target
  that fails again right after coming back stays out longer each time. The multiplier
  drops by one for every `base_ejection_time` the target then spends in service without
  being ejected (Envoy decrements it once per detection `interval`, 10 s by default; a
  real gateway would make that period its own setting).
- At most `max_ejection_percent` of the pool is ejected at once, but always at least one
  target (older Envoy docs: "will eject at least one host regardless of the value";
  grpc-java matched that): if half the pool "fails" at once, the fault is more likely
  the network or the gateway than the targets, and ejecting them all would turn a partial
  outage into a total one.
- Return is automatic when the time is up, with no probe first: recovery needs no
  operator, and a target still broken is ejected again after `consecutive_failures` more
  failures, for longer.

Envoy also ejects on success-rate and failure-percentage outliers computed over an
interval, and can let a passing active check un-eject a host early
(`successful_active_health_check_uneject_host`); both are left out here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .target import Clock, Target

log = logging.getLogger("gateway.balancing")


@dataclass(frozen=True, slots=True)
class OutlierPolicy:
    consecutive_failures: int = 5  # 0 switches passive health off
    base_ejection_time: float = 5.0  # Envoy: 30 s. Short here so lb-chaos shows a recovery.
    max_ejection_time: float = 60.0  # Envoy: 300 s
    max_ejection_percent: int = 50  # Envoy: 10 %, sized for pools of dozens of hosts


def is_failure(status: int | None) -> bool:
    """What counts against a target: no response (None), or a 5xx response.

    4xx is the client's fault, not the target's. Envoy's `consecutive_gateway_failure`
    variant counts only 502/503/504 and connection errors, for services whose 500s are
    per-request bugs rather than a sick host.
    """
    return status is None or status >= 500


class OutlierDetector:
    """Consecutive-failure ejection for one pool's targets, on an injectable clock."""

    def __init__(
        self, pool: str, targets: Sequence[Target], policy: OutlierPolicy, clock: Clock
    ) -> None:
        self.pool = pool
        self.targets = list(targets)
        self.policy = policy
        self.clock = clock
        self._next_return = math.inf  # earliest ejected_until: refresh() is O(1) until then

    def record(self, target: Target, status: int | None) -> None:
        """Count one finished request; may eject `target`."""
        health = target.health
        if not is_failure(status):
            health.consecutive_failures = 0
            return
        # Requests sent before the ejection keep finishing (and failing) after it: they
        # say nothing new, and must not stretch an ejection that has already started.
        if self.policy.consecutive_failures == 0 or health.ejected:
            return
        health.consecutive_failures += 1
        if health.consecutive_failures >= self.policy.consecutive_failures:
            self._eject(target)

    def refresh(self) -> None:
        """Return every target whose ejection time is up. Called before every pick."""
        now = self.clock()
        if now < self._next_return:
            return
        upcoming = math.inf
        for target in self.targets:
            health = target.health
            if health.ejected_until is None:
                continue
            if health.ejected_until <= now:
                health.returned_at = health.ejected_until
                health.ejected_until = None
                health.consecutive_failures = 0
                log.warning("upstream %r: %s is back in service", self.pool, target.url)
            else:
                upcoming = min(upcoming, health.ejected_until)
        self._next_return = upcoming

    def ejected_count(self) -> int:
        return sum(t.health.ejected for t in self.targets)

    def _eject(self, target: Target) -> None:
        self.refresh()  # targets whose time is up no longer count against the limit
        policy = self.policy
        ejected = self.ejected_count()
        if ejected and 100 * (ejected + 1) > policy.max_ejection_percent * len(self.targets):
            # Not ejected; the failure count stays, so the next failure tries again and
            # succeeds as soon as another target has come back.
            log.warning(
                "upstream %r: %s failed %d times in a row but stays in: %d of %d targets are"
                " already ejected (max_ejection_percent = %d)",
                self.pool,
                target.url,
                target.health.consecutive_failures,
                ejected,
                len(self.targets),
                policy.max_ejection_percent,
            )
            return
        now = self.clock()
        health = target.health
        if health.returned_at is not None:
            calm_periods = int((now - health.returned_at) // policy.base_ejection_time)
            health.ejections = max(0, health.ejections - calm_periods)
        health.ejections += 1
        duration = min(policy.base_ejection_time * health.ejections, policy.max_ejection_time)
        health.ejected_until = now + duration
        self._next_return = min(self._next_return, health.ejected_until)
        log.warning(
            "upstream %r: %s ejected for %g s after %d consecutive failures (ejection #%d)",
            self.pool,
            target.url,
            duration,
            health.consecutive_failures,
            health.ejections,
        )
