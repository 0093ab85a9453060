"""Three ways to decide "may this caller make one more request?", each on a tiny state.

All three are written twice, here (for the memory store) and in the Lua script of
redis_store.py, with the same arithmetic, in milliseconds, so that a limit means the same
whichever store keeps it. A request consumes from *every* limit of its route or from none:
a request refused by the 10-per-second limit does not use up the hourly one.

**GCRA** (the generic cell rate algorithm, from ATM networks; what Stripe, Shopify and
redis-cell use): a token bucket of `requests` tokens refilled evenly over `window`, kept
as one number per key, the *theoretical arrival time* (TAT): when the bucket would be full
again. Each request moves it one emission interval T = window / requests later; a request
whose new TAT would lie more than `window` ahead is refused. No counters, no windows,
smooth: a full bucket allows a burst of `requests`, then one request every T.

**Sliding-window counter** (Cloudflare's): two fixed-window counts, this window's and
the previous one's, the previous one weighted by how much of it still overlaps the
sliding window: `estimate = previous × (1 - elapsed / window) + current`. Two numbers per
key, an error of a few percent when traffic is uneven (Cloudflare measured 0.003% of
requests wrongly allowed or limited over 400 million requests), none of the fixed
window's edge bursts.

**Strict window** (the default): "at most `requests` in any `window`", kept exactly, on
eleven counters per key. The window is cut into SLOTS (10) buckets; any window that ends
now reaches into at most the last 11 of them, so a request is admitted only if those 11
hold fewer than `requests`. Whatever window a client picks afterwards, it covers buckets
that were counted together when its last request was admitted: it can never hold more.
The price is on the other side: a client sending as fast as it may gets at least 10/11 of
the rate (the oldest bucket counts whole while only part of it is in the window), never
more than the limit. GCRA and the counter above promise something else (the rate, or an
estimate); a sliding *log* (every timestamp) is exact too, at a timestamp per request.

**Fixed window** (only in the bench, to show why not): a count per calendar window. A
client can spend its whole quota in the last millisecond of one window and again in the
first of the next: twice the limit within a moment.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

EPSILON = 1e-9
ALGORITHMS = ("strict_window", "gcra", "sliding_window", "fixed_window")
# A strict window's buckets: more is closer to the full rate for a client at the limit
# (SLOTS / (SLOTS + 1) of it at worst) and more state; 10 is a real gateway's knob.
SLOTS = 10


class Outcome(NamedTuple):
    """One limit's answer for one request (times in milliseconds). A NamedTuple, not a
    frozen dataclass: one is made per limit per request, and a frozen dataclass sets
    each field through object.__setattr__ (some 6,700 instructions a request, counted)."""

    allowed: bool
    remaining: int
    reset_ms: float  # until the quota is whole again (RateLimit's t)
    retry_ms: float  # until a request would be allowed again (0 when allowed)
    state: object  # the new state to keep, when the request is admitted
    ttl_ms: float  # how long that state matters


def admitted(*, remaining: int, reset_ms: float, state: object, ttl_ms: float) -> Outcome:
    return Outcome(
        allowed=True,
        remaining=remaining,
        reset_ms=reset_ms,
        retry_ms=0.0,
        state=state,
        ttl_ms=ttl_ms,
    )


def refused(*, reset_ms: float, retry_ms: float) -> Outcome:
    """Nothing is counted and nothing kept: a refused request leaves the state as it was."""
    return Outcome(
        allowed=False, remaining=0, reset_ms=reset_ms, retry_ms=retry_ms, state=None, ttl_ms=0.0
    )


def gcra(tat: float | None, now: float, requests: int, window: float) -> Outcome:
    interval = window / requests
    tat = now if tat is None or tat < now else tat
    new_tat = tat + interval
    allow_at = new_tat - window
    if now < allow_at:
        return refused(reset_ms=tat - now, retry_ms=allow_at - now)
    remaining = math.floor((window - (new_tat - now)) / interval + EPSILON)
    return admitted(
        remaining=remaining, reset_ms=new_tat - now, state=new_tat, ttl_ms=new_tat - now
    )


def sliding_window(
    state: tuple[int, int, int] | None, now: float, requests: int, window: float
) -> Outcome:
    index = math.floor(now / window)
    elapsed = now - index * window
    current = previous = 0
    if state is not None:
        seen, seen_current, seen_previous = state
        if seen == index:
            current, previous = seen_current, seen_previous
        elif seen == index - 1:
            previous = seen_current
    weight = (window - elapsed) / window
    if previous * weight + current + 1 > requests + EPSILON:
        if current + 1 <= requests and previous > 0:
            # Later in this window the previous one's weight has fallen far enough.
            retry = window * (1 - (requests - current - 1) / previous) - elapsed
        else:  # not before the next window, and then this one's count weighs on it
            later = window * (1 - (requests - 1) / current) if current > requests - 1 else 0.0
            retry = window - elapsed + later
        return refused(reset_ms=window - elapsed, retry_ms=max(retry, 1.0))
    current += 1
    remaining = math.floor(requests - (previous * weight + current) + EPSILON)
    return admitted(
        remaining=max(remaining, 0),
        reset_ms=window - elapsed,
        state=(index, current, previous),
        ttl_ms=2 * window,
    )


def strict_window(
    state: tuple[int, ...] | None, now: float, requests: int, window: float
) -> Outcome:
    width = window / SLOTS
    index = math.floor(now / width)
    counts = [0] * (SLOTS + 1)  # the buckets index - SLOTS .. index, oldest first
    if state is not None:
        seen, *held = state
        shift = max(0, index - seen)
        if shift <= SLOTS:
            counts[: SLOTS + 1 - shift] = held[shift:]
    total = sum(counts)
    if total + 1 > requests:
        # Bucket j (oldest first) leaves every window once the current bucket is
        # index + j + 1: the soonest moment enough counts have left is the retry.
        need, left = total + 1 - requests, 0
        retry = window
        for j, count in enumerate(counts):
            left += count
            if left >= need:
                retry = (index + j + 1) * width - now
                break
        last = max((j for j, c in enumerate(counts) if c), default=SLOTS)
        return refused(reset_ms=(index + last + 1) * width - now, retry_ms=retry)
    counts[-1] += 1
    until_empty = (index + SLOTS + 1) * width - now
    return admitted(
        remaining=requests - total - 1,
        reset_ms=until_empty,
        state=(index, *counts),
        ttl_ms=until_empty,
    )


def fixed_window(
    state: tuple[int, int] | None, now: float, requests: int, window: float
) -> Outcome:
    index = math.floor(now / window)
    elapsed = now - index * window
    count = state[1] if state is not None and state[0] == index else 0
    if count + 1 > requests:
        return refused(reset_ms=window - elapsed, retry_ms=window - elapsed)
    return admitted(
        remaining=requests - count - 1,
        reset_ms=window - elapsed,
        state=(index, count + 1),
        ttl_ms=window - elapsed,
    )


# Each takes its own state's shape (a float, a tuple): Any here, where the store keeps it.
Decide = Callable[[Any, float, int, float], Outcome]
DECIDE: dict[str, Decide] = {
    "strict_window": strict_window,
    "gcra": gcra,
    "sliding_window": sliding_window,
    "fixed_window": fixed_window,
}
