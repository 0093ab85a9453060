"""The retry budget: retries in flight may be at most a share of the requests in flight.

Retries help when one target misbehaves and make things worse when all of them do: each
client request becomes `attempts` upstream requests, the upstream that was overloaded
gets three times the load, and stays down. A budget caps what retries may add, wherever
they come from: at most `ratio` (20%) of the requests in flight may be retries at any
moment, plus `min_retries` (3) that are always allowed so a quiet gateway can still retry.
In a storm the upstream sees at most about 1.2 × the client load, not 3 ×.

Finagle's RetryBudget (20% over a window) and Envoy's `retry_budget` (budget_percent 20,
min_retry_concurrency 3) are the same idea; gRPC's retry throttling keeps a token count
per client instead. Hedged tries (hedge.py) draw on the same budget: they are retries
sent early.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RetryBudget:
    ratio: float = 0.2
    min_retries: int = 3
    requests: int = 0  # requests in the channel now
    retries: int = 0  # retries (and hedges) in flight now
    granted: int = 0  # since start: retries that went out
    denied: int = 0  # since start: retries the budget refused

    @property
    def limit(self) -> int:
        return max(self.min_retries, int(self.ratio * self.requests))

    def try_acquire(self) -> bool:
        """One more retry in flight, if the budget has room; count it either way."""
        if self.retries >= self.limit:
            self.denied += 1
            return False
        self.retries += 1
        self.granted += 1
        return True

    def release(self) -> None:
        self.retries -= 1

    def snapshot(self) -> dict[str, int | float]:
        return {
            "ratio": self.ratio,
            "min_retries": self.min_retries,
            "requests_in_flight": self.requests,
            "retries_in_flight": self.retries,
            "limit": self.limit,
            "granted": self.granted,
            "denied": self.denied,
        }
