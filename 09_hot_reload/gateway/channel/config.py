"""The channel's settings in gateway.toml: timeouts, retries, hedging, the retry budget,
bulkheads.

    [timeouts]                      # every route's defaults
    connect = 2.0                   # one TCP connect
    read = 30.0                     # between two reads: the head, each body chunk (idle)
    try = 10.0                      # one try, until its response head (absent: no limit)
    deadline = 30.0                 # every try and backoff together, until a response head
    websocket_idle = 300.0          # a WebSocket with no message either way is closed

    [retries]                       # every route's defaults
    attempts = 3                    # tries in all; 1 = never retry
    on = ["connect-failure", "reset", "502", "503", "504"]   # also "timeout", any 5xx
    methods = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]    # retried after they were sent
    backoff_base = 0.025            # full jitter: sleep random(0, min(cap, base * 2^n))
    backoff_cap = 0.25
    replay_bytes = 65536            # request bodies up to this are kept to send again

    [retry_budget]                  # over any 10 s: retries <= ratio x requests + reserve
    ratio = 0.2                     # one retry per five requests...
    min_per_second = 3.0            # ...plus a reserve of 3 per second (30 per 10 s)

    [[routes]]                      # any of the above, per route, and hedging
    timeouts = { try = 1.0, deadline = 3.0 }
    retries = { attempts = 2, on = ["connect-failure"] }
    hedge = { after = 0.05 }        # or after = "p95": a second try when the first is slow
    websocket = true                # take WebSocket upgrades on this route

    [upstreams.users.bulkhead]      # how much of the gateway one upstream may take
    max_concurrent = 256            # requests in flight to it at once
    max_queue = 128                 # requests waiting for one of those places
    queue_timeout = 1.0             # a place, or 503 with Retry-After

A route's table overrides the defaults key by key; what it leaves out, it inherits.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from gateway.headers import TOKEN
from gateway.validation import Seconds, Strict

CONDITIONS = ("connect-failure", "reset", "timeout")  # besides 5xx status codes
IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")  # RFC 9110 §9.2.2 (TRACE aside)
_STATUS = re.compile(r"5[0-9][0-9]")


class RouteTimeouts(Strict):
    """A route's timeouts; None inherits [timeouts]."""

    connect: Seconds | None = None
    read: Seconds | None = None
    try_: Seconds | None = Field(None, alias="try")  # `try` is a Python keyword
    deadline: Seconds | None = None
    websocket_idle: Seconds | None = None


class TimeoutsConfig(RouteTimeouts):
    connect: Seconds = 2.0
    read: Seconds = 30.0
    try_: Seconds | None = Field(None, alias="try")
    deadline: Seconds | None = 30.0
    websocket_idle: Seconds = 300.0


class RouteRetries(Strict):
    """A route's retry policy; None inherits [retries]."""

    attempts: Annotated[int, Field(ge=1, le=10)] | None = None
    on: list[str] | None = None
    methods: list[str] | None = None
    backoff_base: Seconds | None = None
    backoff_cap: Seconds | None = None
    replay_bytes: Annotated[int, Field(ge=0, le=16 * 1024 * 1024)] | None = None

    @field_validator("on")
    @classmethod
    def _check_on(cls, value: list[str]) -> list[str]:
        for condition in value:
            if condition not in CONDITIONS and not _STATUS.fullmatch(condition):
                raise ValueError(
                    f"{condition!r} is not a retry condition: "
                    f"{', '.join(CONDITIONS)} or a 5xx status such as '503'"
                )
        return value

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, value: list[str]) -> list[str]:
        for method in value:
            if not TOKEN.fullmatch(method):
                raise ValueError(f"{method!r} is not an HTTP method name")
        return sorted({method.upper() for method in value})


class RetriesConfig(RouteRetries):
    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    on: list[str] = ["connect-failure", "reset", "502", "503", "504"]
    methods: list[str] = list(IDEMPOTENT)
    backoff_base: Seconds = 0.025
    backoff_cap: Seconds = 0.25
    replay_bytes: Annotated[int, Field(ge=0, le=16 * 1024 * 1024)] = 64 * 1024


class HedgeConfig(Strict):
    """A second try, on another target, when the first has not answered after `after`:
    seconds, or "p95" (the route's recent 95th percentile). The first answer wins."""

    after: Seconds | Literal["p95"] = "p95"


class RetryBudgetConfig(Strict):
    ratio: Annotated[float, Field(ge=0, le=1)] = 0.2
    min_per_second: Annotated[float, Field(ge=0, le=100_000)] = 3.0


class BulkheadConfig(Strict):
    """How much of the gateway one upstream may take (bulkhead.py). A section of the
    pool's, [upstreams.NAME.bulkhead]: gateway/config.py's PoolConfig adds it."""

    max_concurrent: Annotated[int, Field(ge=1, le=100_000)] = 256
    max_queue: Annotated[int, Field(ge=0, le=100_000)] = 128
    queue_timeout: Seconds = 1.0
