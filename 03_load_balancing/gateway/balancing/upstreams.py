"""Every pool of the gateway, built from config, with its health-check tasks.

Each pool's strategy comes from the registry in strategies.py (STRATEGIES), the one place
a later stage adds a strategy to.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping

from aiohttp import ClientSession

from .active import ActiveHealthChecker, http_probe
from .breaker import CircuitBreaker
from .config import UpstreamConfig
from .pool import UpstreamPool
from .strategies import STRATEGIES
from .target import Clock, Target


def build_pool(
    name: str,
    config: UpstreamConfig,
    *,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
) -> UpstreamPool:
    targets = [Target(t.url, t.weight) for t in config.targets]
    strategy = STRATEGIES[config.strategy](config, targets, rng or random.Random())
    breaker = None
    if config.breaker is not None and config.breaker.policy().enabled:
        breaker = CircuitBreaker(name, targets, config.breaker.policy(), clock)
    return UpstreamPool(
        name, targets, strategy, key_source=config.key_source, breaker=breaker, clock=clock
    )


class Upstreams:
    """The gateway's pools by name, and the lifecycle of their active health checks."""

    def __init__(self, pools: Mapping[str, UpstreamPool], configs: Mapping[str, UpstreamConfig]):
        self.pools = dict(pools)
        self.configs = dict(configs)
        self._checkers: list[ActiveHealthChecker] = []

    @classmethod
    def from_config(
        cls,
        configs: Mapping[str, UpstreamConfig],
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> Upstreams:
        pools = {name: build_pool(name, c, clock=clock, rng=rng) for name, c in configs.items()}
        return cls(pools, configs)

    def __getitem__(self, name: str) -> UpstreamPool:
        return self.pools[name]

    def __iter__(self) -> Iterator[UpstreamPool]:
        return iter(self.pools.values())

    def start_health_checks(self, session: ClientSession) -> None:
        """One task per pool with active checks; call inside the running loop."""
        for name, pool in self.pools.items():
            health = self.configs[name].health
            if health.active:
                checker = ActiveHealthChecker(
                    name, pool.targets, http_probe(session, health.path), health.active_policy()
                )
                checker.start()
                self._checkers.append(checker)

    async def stop_health_checks(self) -> None:
        for checker in self._checkers:
            await checker.stop()
        self._checkers.clear()
