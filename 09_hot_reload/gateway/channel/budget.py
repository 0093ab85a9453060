"""The retry budget: over any 10 seconds, retries may be at most a share of the requests.

Retries help when one target misbehaves and make things worse when all of them do: each
client request becomes `attempts` upstream requests, the upstream that was overloaded
gets three times the load, and stays down. A budget caps what retries may add, wherever
they come from. This one is Finagle's RetryBudget, a token bucket:

- every request that enters the channel deposits `ratio` of a token (0.2: one retry per
  five requests);
- every retry (and every hedge: a retry sent early, hedge.py) withdraws a whole token,
  and is refused when there is none;
- deposits and withdrawals count for `WINDOW` seconds, then expire; on top of them there
  is a reserve of `min_per_second` x WINDOW tokens, so a quiet gateway can still retry.

So the promise, in the units a reader checks: over any 10 s, retries <= ratio x requests
+ min_per_second x 10. In a storm (every target failing) the upstream sees at most about
1.2 x the client load plus the reserve, however fast the failures come.

Why not Envoy's `retry_budget` (retries *in flight* <= 20% of requests in flight, at
least 3)? This stage used it first, and it fails both ways depending on how long a retry
lives. If the backoff counts as "in flight", a retry holds its place for 25 ms next to a
2 ms request, and at 8 clients a pool with one flaky target had most of its retries
refused (92-96% success where nginx reaches 99.5%). If only the try itself counts, a
retry against a target that fails in a millisecond is almost never in flight, and a storm
goes out at the full 3x. A budget counted in *numbers of retries* does not care how long
each one lives: the same 20% in both cases. gRPC's retry throttling is a token bucket too
(tokens per success, half a token off per failure), per client.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.balancing import Clock

# Deposits and withdrawals expire after WINDOW seconds, tracked in SLOTS slots of one
# second each: recording is O(1), reading the balance O(SLOTS), nothing allocated per
# request. Finagle's default ttl is 10 s too; a real gateway would make it configurable.
WINDOW = 10.0
SLOTS = 10
_SLOT = WINDOW / SLOTS


@dataclass
class RetryBudget:
    ratio: float = 0.2  # a token per 1/ratio requests
    min_per_second: float = 3.0  # the reserve: min_per_second x WINDOW tokens
    clock: Clock = time.monotonic
    requests: int = 0  # requests in the channel now (a gauge, for the admin view)
    retries: int = 0  # retries (and hedges) in flight now (a gauge)
    granted: int = 0  # since start: retries that went out
    denied: int = 0  # since start: retries the budget refused
    _entered: list[int] = field(default_factory=lambda: [0] * SLOTS, repr=False)
    _withdrawn: list[int] = field(default_factory=lambda: [0] * SLOTS, repr=False)
    _tick: int = field(default=-SLOTS, repr=False)  # the slot last written

    def _slot(self) -> int:
        """The current slot, emptying the ones whose second has passed since last time."""
        tick = int(self.clock() / _SLOT)
        if tick != self._tick:
            for passed in range(max(self._tick + 1, tick - SLOTS + 1), tick + 1):
                self._entered[passed % SLOTS] = self._withdrawn[passed % SLOTS] = 0
            self._tick = tick
        return tick % SLOTS

    def enter(self) -> None:
        """A request entered the channel: it deposits `ratio` of a token."""
        self.requests += 1
        self._entered[self._slot()] += 1

    def leave(self) -> None:
        self.requests -= 1

    @property
    def balance(self) -> float:
        """Tokens left now: the reserve, plus what the window's requests deposited, minus
        what its retries withdrew."""
        self._slot()
        reserve = self.min_per_second * WINDOW
        return reserve + self.ratio * sum(self._entered) - sum(self._withdrawn)

    def try_acquire(self) -> bool:
        """One more retry, if a whole token is left; count it either way."""
        if self.balance < 1.0:
            self.denied += 1
            return False
        self._withdrawn[self._slot()] += 1
        self.retries += 1
        self.granted += 1
        return True

    def release(self) -> None:
        """The retry is over (its token stays spent: the upstream saw it)."""
        self.retries -= 1

    def snapshot(self) -> dict[str, int | float]:
        return {
            "ratio": self.ratio,
            "min_per_second": self.min_per_second,
            "window_seconds": WINDOW,
            "balance": round(self.balance, 1),
            "requests_in_flight": self.requests,
            "retries_in_flight": self.retries,
            "granted": self.granted,
            "denied": self.denied,
        }
