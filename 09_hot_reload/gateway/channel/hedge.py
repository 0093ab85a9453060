"""Hedged requests: when a try is slow, send a second one elsewhere and take the first answer.

A few slow targets (a GC pause, a cold cache, a noisy neighbour) make a route's p99 while
its p50 is fine. For an idempotent read, waiting for the slow target is a choice: after
the time by which most answers have arrived (the recent p95, or a fixed delay), the
channel sends the same request to another target, takes whichever head comes first, and
cancels the other (Dean and Barroso, "The Tail at Scale", 2013). The price is extra load:
about 5% more requests with a p95 trigger, drawn from the retry budget, so a storm cannot
turn every request into two. Off by default; per route, `hedge = { after = "p95" }`.

The p95 comes from the last 200 response heads of the route's successful tries: small,
recent, and free of a sort per request (it is recomputed every 50 samples).
"""

from __future__ import annotations

import asyncio
from collections import deque

from .tried import Tried, discard, discard_if_answered

SAMPLES = 200
RECOMPUTE_EVERY = 50
MIN_SAMPLES = 20  # below this, no estimate: no hedge on a p95 trigger


class LatencyTracker:
    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=SAMPLES)
        self._since = 0
        self._p95: float | None = None

    def record(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._since += 1
        if self._since >= RECOMPUTE_EVERY or (
            self._p95 is None and len(self._samples) >= MIN_SAMPLES
        ):
            ordered = sorted(self._samples)
            self._p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            self._since = 0

    @property
    def p95(self) -> float | None:
        return self._p95

    def delay(self, after: float | str | None) -> float | None:
        """How long to wait before hedging: a fixed `after`, the p95, or None (no hedge)."""
        if after is None:
            return None
        if isinstance(after, str):
            return self._p95
        return after


async def first_answer(first: asyncio.Future[Tried], second: asyncio.Future[Tried]) -> Tried:
    """The first try with a response head wins; the other is cancelled, and its target
    hears nothing (a cancelled try says nothing about it). If both fail, the first try's
    failure is the answer and both failures count against their targets."""
    pending = {first, second}
    failed: list[Tried] = []
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            answers = [t.result() for t in (first, second) if t in done]
            winner = next((a for a in answers if a.response is not None), None)
            failed += [a for a in answers if a.response is None]
            if winner is not None:
                for other in answers:
                    if other is not winner:
                        discard(other)
                for loser in failed:
                    loser.lease.report(None)
                    loser.lease.release()
                return winner
        kept, *others = failed  # `first` completes first or together: its failure leads
        for other in others:
            other.lease.report(None)
            other.lease.release()
        return kept
    finally:
        for task in pending:
            task.cancel()  # _open releases its lease when cancelled
            task.add_done_callback(discard_if_answered)
