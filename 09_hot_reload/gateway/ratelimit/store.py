"""Where limit state lives: the Store interface, and the memory store.

The memory store is one process's: exact for one process and cheap (a dictionary lookup
and a little arithmetic), and wrong by a factor of N with N workers or N instances,
each of which admits the whole limit on its own (ratelimit-bench measures it). Bounded:
at most `max_keys` states; each expires when it no longer matters (a GCRA key once its
bucket is full again, a window key after two windows), and the least recently used goes
first when the bound is reached, so a flood of new client addresses costs memory up to
the bound and no further.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from .algorithms import DECIDE, Outcome
from .config import RateLimitConfig

Clock = Callable[[], float]


class StoreUnavailable(Exception):
    """The store cannot decide right now (Redis down, slow, or its breaker open)."""


class Store(Protocol):
    name: str

    async def hit(
        self, keys: Sequence[str], limits: Sequence[tuple[str, int, float]]
    ) -> list[Outcome]: ...

    async def acquire(self, key: str, most: int, lease_ms: float, token: str) -> bool: ...

    async def release(self, key: str, token: str) -> None: ...

    async def forget(self, who: str) -> int: ...

    def stats(self) -> dict[str, object]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    name = "memory"

    def __init__(self, max_keys: int, clock: Clock = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        # key -> (state, expires at, ms); oldest use first.
        self.states: OrderedDict[str, tuple[object, float]] = OrderedDict()
        self.in_flight: Counter[str] = Counter()
        self.evicted = 0

    def now_ms(self) -> float:
        return self.clock() * 1000

    async def hit(
        self, keys: Sequence[str], limits: Sequence[tuple[str, int, float]]
    ) -> list[Outcome]:
        """Every limit's answer; the states change only if all of them admit the request."""
        now = self.now_ms()
        self._expire(now)
        if len(keys) == 1:  # one limit, nearly every route: no zips, no generators
            key, (algorithm, requests, window) = keys[0], limits[0]
            held = self.states.get(key)
            outcome = DECIDE[algorithm](
                held[0] if held is not None and held[1] > now else None, now, requests, window
            )
            if outcome.allowed:
                self._keep(key, outcome, now)
            return [outcome]
        outcomes = []
        for key, (algorithm, requests, window) in zip(keys, limits, strict=True):
            held = self.states.get(key)
            state = held[0] if held is not None and held[1] > now else None
            outcomes.append(DECIDE[algorithm](state, now, requests, window))
        if all(o.allowed for o in outcomes):
            for key, outcome in zip(keys, outcomes, strict=True):
                self._keep(key, outcome, now)
        return outcomes

    def _keep(self, key: str, outcome: Outcome, now: float) -> None:
        states = self.states
        states[key] = (outcome.state, now + outcome.ttl_ms)
        states.move_to_end(key)
        if len(states) > self.max_keys:
            states.popitem(last=False)
            self.evicted += 1

    def _expire(self, now: float) -> None:
        """The oldest few, when they have expired: amortised, never a full scan."""
        for _ in range(4):
            if not self.states:
                return
            key, (_, expires) = next(iter(self.states.items()))
            if expires > now:
                return
            del self.states[key]

    async def acquire(self, key: str, most: int, lease_ms: float, token: str) -> bool:
        if self.in_flight[key] >= most:
            return False
        self.in_flight[key] += 1
        return True

    async def release(self, key: str, token: str) -> None:
        self.in_flight[key] -= 1
        if self.in_flight[key] <= 0:
            del self.in_flight[key]

    async def forget(self, who: str) -> int:
        """Every limit's state for the key `who`, dropped (the admin listener's reset):
        a scan, fine for an operator's request, never on the request path."""
        gone = [key for key in self.states if key.endswith("|" + who)]
        for key in gone:
            del self.states[key]
        return len(gone)

    def stats(self) -> dict[str, object]:
        return {
            "store": "memory",
            "keys": len(self.states),
            "max_keys": self.max_keys,
            "evicted": self.evicted,
            "in_flight_keys": len(self.in_flight),
        }

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def open_store(config: RateLimitConfig) -> Store:
    """The store [rate_limit] names; "auto" is Redis only once --redis-url made it so."""
    if config.store == "redis":
        from .redis_store import RedisStore  # redis-py only when it is used

        return RedisStore(
            config.redis.url,
            timeout=config.redis.timeout,
            prefix=config.redis.prefix,
            failures=config.breaker.failures,
            open_for=config.breaker.open_for,
        )
    return MemoryStore(config.max_keys)
