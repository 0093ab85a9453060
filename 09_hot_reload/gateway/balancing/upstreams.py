"""Every pool of the gateway, built from config, with its health-check tasks and its
admin views (a Concern, gateway/concern.py).

Each pool's strategy comes from the registry in strategies.py (STRATEGIES), the one place
a later stage adds a strategy to.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence

from aiohttp import ClientSession, DummyCookieJar, web

from gateway.concern import AdminView
from gateway.errors import problem_response

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
    before: Sequence[Target] = (),
) -> UpstreamPool:
    """The pool `config` describes. `before`: the targets this pool had until a reload
    (gateway/reload/): one that stays, by URL, comes back as the same object, or, if
    only its weight changed, as a new object with the same health (its breaker and
    probes). Nothing in `before` is changed."""
    known = {target.url: target for target in before}
    targets = [_kept(known.get(t.url), t.url, t.weight) for t in config.targets]
    strategy = STRATEGIES[config.strategy](config, targets, rng or random.Random())
    breaker = None
    if config.breaker is not None and config.breaker.policy().enabled:
        breaker = CircuitBreaker(name, targets, config.breaker.policy(), clock)
    return UpstreamPool(
        name, targets, strategy, key_source=config.key_source, breaker=breaker, clock=clock
    )


def _kept(old: Target | None, url: str, weight: int) -> Target:
    if old is None:
        return Target(url=url, weight=weight)
    if old.weight == weight:
        return old
    # A new weight changes the strategy's tables, so a new object; the requests in
    # flight on the old one finish there (its own count), the health is shared.
    return Target(url=url, weight=weight, health=old.health)


class Upstreams:
    """The gateway's pools by name, and the lifecycle of their active health checks."""

    def __init__(self, pools: Mapping[str, UpstreamPool], configs: Mapping[str, UpstreamConfig]):
        self.pools = dict(pools)
        self.configs = dict(configs)
        self._checkers: list[ActiveHealthChecker] = []
        self._probes: ClientSession | None = None

    @classmethod
    def from_config(
        cls,
        configs: Mapping[str, UpstreamConfig],
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        previous: Upstreams | None = None,
    ) -> Upstreams:
        """`previous`: the pools before a reload, whose staying targets are kept."""
        before = previous.pools if previous is not None else {}
        pools = {
            name: build_pool(
                name, c, clock=clock, rng=rng, before=before[name].targets if name in before else ()
            )
            for name, c in configs.items()
        }
        return cls(pools, configs)

    def __getitem__(self, name: str) -> UpstreamPool:
        return self.pools[name]

    def __iter__(self) -> Iterator[UpstreamPool]:
        return iter(self.pools.values())

    async def start(self) -> None:
        # Health probes get a small session of their own: a probe must not queue behind
        # proxied requests for a pooled connection (that would be measuring the gateway,
        # not the target), and probes must not use up [connections] max_connections.
        self._probes = ClientSession(cookie_jar=DummyCookieJar())
        self.start_health_checks(self._probes)

    async def close(self) -> None:
        await self.stop_health_checks()
        if self._probes is not None:
            await self._probes.close()

    async def take_over(self, previous: Upstreams) -> None:
        """A reload: the old checks stop and this generation's start, over its own target
        lists (a new target is probed from now on, a removed one no longer), with the
        probe session of the old. A staying target keeps its probe counts: it is the same
        object. Its idle upstream connections close on their own after [connections]
        idle_timeout, as every idle connection does."""
        await previous.stop_health_checks()
        self._probes, previous._probes = previous._probes, None
        if self._probes is not None:
            self.start_health_checks(self._probes)

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

    def admin_views(self) -> Sequence[AdminView]:
        return (
            AdminView(
                path="/upstreams",
                show=self._show,
                actions={"/upstreams/{pool}/reset": self._reset},
            ),
        )

    async def _show(self) -> dict[str, object]:
        """Every pool: its strategy, and each target's state (healthy, unhealthy, open,
        half-open), requests in flight, openings."""
        return {
            "upstreams": {
                pool.name: {
                    "strategy": pool.strategy.name,
                    "targets": pool.snapshot(),
                }
                for pool in self
            }
        }

    async def _reset(self, request: web.Request) -> web.Response:
        """Close every breaker of a pool now (the upstream is fixed: no need to wait for
        open_for and a probe); answers the targets as they were (`before`) and are."""
        name = request.match_info["pool"]
        pool = self.pools.get(name)
        if pool is None:
            return problem_response(
                404, "Not Found", f"no upstream pool named {name!r}", instance=request.path
            )
        before = pool.snapshot()
        if pool.breaker is not None:
            pool.breaker.reset()
        return web.json_response(
            {"pid": os.getpid(), "pool": name, "before": before, "targets": pool.snapshot()}
        )
