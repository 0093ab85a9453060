"""Active health: ask every target "are you alive?" on a timer, one asyncio task per pool.

Every `interval` seconds each target gets a GET `path` (concurrently, so one slow target
does not delay the verdict on the others); a 2xx within `timeout` passes, anything else
fails. Thresholds stop one lost packet from flapping a target in and out:
`unhealthy_threshold` failures in a row take a healthy target out, `healthy_threshold`
passes in a row bring it back. nginx Plus calls them `fails`/`passes`, HAProxy
`fall`/`rise`, Envoy `unhealthy_threshold`/`healthy_threshold`.

Detection time is roughly `unhealthy_threshold * interval` (plus the timeout for a target
that hangs instead of refusing), which is why the circuit breaker (breaker.py) exists
too: it reacts within a handful of failed requests. Active checks are what bring a target back
that receives no traffic at all, and what keeps traffic away from a target that is down
before any request has to fail on it.

Production checkers add jitter to the interval (Envoy: `interval_jitter`) so a fleet of
gateways does not probe in lockstep, and often check less often while a target is down
(Envoy: `unhealthy_interval`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import ClientConnectorError, ClientError, ClientSession, ServerDisconnectedError

from .target import Target

log = logging.getLogger("gateway.balancing")

# A probe checks one target: None when it passed, else a short reason for the logs.
Probe = Callable[[Target], Awaitable[str | None]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ActivePolicy:
    path: str = "/health"
    interval: float = 2.0
    timeout: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2


def http_probe(session: ClientSession, path: str) -> Probe:
    """A probe that GETs `path` on a target through `session`; 2xx passes.

    The session is the caller's (one per gateway, created in the running loop). The
    checker applies the timeout, so a probe never needs one of its own.
    """

    async def probe(target: Target) -> str | None:
        try:
            async with session.get(target.url + path, allow_redirects=False) as response:
                await response.read()  # drain it, so the connection can be reused
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except ClientConnectorError:
            return "connection refused or unreachable"
        except ServerDisconnectedError:
            return "connection closed without an answer"
        except ClientError as exc:
            return f"invalid answer ({type(exc).__name__})"

    return probe


class ActiveHealthChecker:
    def __init__(
        self,
        pool: str,
        targets: Sequence[Target],
        probe: Probe,
        policy: ActivePolicy,
        *,
        sleep: Sleep = asyncio.sleep,  # tests pass a fake: rounds without waiting
    ) -> None:
        self.pool = pool
        self.targets = list(targets)
        self.probe = probe
        self.policy = policy
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the checks in the background until stop(); the first round starts now."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"health-check:{self.pool}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def check_once(self) -> None:
        """One round: probe every target concurrently, then apply every verdict."""
        verdicts = await asyncio.gather(*(self._probe(t) for t in self.targets))
        for target, error in zip(self.targets, verdicts, strict=True):
            self.record(target, error)

    def record(self, target: Target, error: str | None) -> None:
        """Apply one probe result, with the thresholds."""
        health = target.health
        if error is None:
            health.probe_failures = 0
            health.probe_successes += 1
            if not health.active_ok and health.probe_successes >= self.policy.healthy_threshold:
                health.active_ok = True
                health.last_probe_error = None
                log.warning("upstream %r: %s passes its health checks again", self.pool, target.url)
            return
        health.probe_successes = 0
        health.probe_failures += 1
        health.last_probe_error = error
        if health.active_ok and health.probe_failures >= self.policy.unhealthy_threshold:
            health.active_ok = False
            log.warning(
                "upstream %r: %s marked unhealthy after %d failed health checks (%s)",
                self.pool,
                target.url,
                health.probe_failures,
                error,
            )

    async def _probe(self, target: Target) -> str | None:
        try:
            async with asyncio.timeout(self.policy.timeout):
                return await self.probe(target)
        except TimeoutError:
            return f"no answer within {self.policy.timeout:g} s"

    async def _run(self) -> None:
        while True:
            try:
                await self.check_once()
            except Exception:  # a checker bug must not silently end all health checking
                log.exception("upstream %r: health check round failed", self.pool)
            await self._sleep(self.policy.interval)
