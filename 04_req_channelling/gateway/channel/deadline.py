"""A request's deadline: the time every try and every backoff together must fit in.

A per-try timeout alone does not bound a request: three tries of 10 s and their backoffs
are 30 s and more, and the client gave up long before. The deadline starts when the
request enters the channel; each try gets what is left of it (or its own per-try limit,
if that is shorter); a backoff that would not fit is not slept, and the retrying stops.

What is left also travels upstream, as `X-Request-Deadline-Ms` on every try, so a service
can stop working on a request nobody will wait for: Envoy sends the same number as
`x-envoy-expected-rq-timeout-ms`, gRPC as `grpc-timeout`. The service's own calls can pass
it on, and a whole call tree then shares one deadline (Google's "deadline propagation").
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

HEADER = "X-Request-Deadline-Ms"


class Deadline:
    """`seconds` from now (None: never), on an injectable clock."""

    __slots__ = ("seconds", "_at", "_clock")

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._at = math.inf if seconds is None else clock() + seconds

    @property
    def remaining(self) -> float:
        return max(0.0, self._at - self._clock())

    @property
    def expired(self) -> bool:
        return self._clock() >= self._at

    def fits(self, delay: float) -> bool:
        """Would `delay` seconds of waiting still leave time for a try after it?"""
        return delay < self._at - self._clock()

    def for_try(self, try_timeout: float | None) -> tuple[float | None, bool]:
        """(the time this try may take, whether the deadline is what limits it)."""
        left = self._at - self._clock()
        if try_timeout is not None and try_timeout < left:
            return try_timeout, False
        return (None, False) if left == math.inf else (max(0.0, left), True)


class TryTimer:
    """One try's time limit: cancel the task that runs it when the time is up.

    What `asyncio.timeout()` does, in one object and one timer handle: the channel sets
    one on every try (a deadline is always there), and asyncio.timeout's state machine
    was a visible part of the channel's cost per request. The same rules hold: the
    CancelledError the timer caused is the caller's to turn into a timeout (`stop()`
    says whether it fired, and takes its cancellation back); any other cancellation (the
    client left) passes through untouched.
    """

    __slots__ = ("_task", "_handle", "_cancelling", "fired")

    def __init__(self, seconds: float) -> None:
        # The loop asked once: on Python 3.11 every get_running_loop() (current_task()
        # without a loop asks it too) is a getpid() system call, its check for a fork.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None, "a try runs in a task"
        self._task = task
        self._cancelling = task.cancelling()  # cancellations already pending, not ours
        self.fired = False
        self._handle = loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        self.fired = True
        self._task.cancel()

    def stop(self) -> bool:
        """Stop the timer; True if it fired and its cancellation was the only one (it is
        taken back): then the try timed out. False: it did not fire, or someone else
        cancelled the task too, and that cancellation must go on."""
        self._handle.cancel()
        if not self.fired:
            return False
        return self._task.uncancel() <= self._cancelling
