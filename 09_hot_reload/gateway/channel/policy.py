"""One route's channel policy, resolved once at start-up from [timeouts], [retries] and
the route's own tables: what every try of a request on that route does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import (
    HedgeConfig,
    RetriesConfig,
    RouteRetries,
    RouteTimeouts,
    TimeoutsConfig,
)


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    connect: float  # one TCP connect
    read: float  # between two reads of the upstream
    try_timeout: float | None  # one try, until its head; None: only the deadline bounds it
    deadline: float | None  # every try and backoff; None: no overall limit
    websocket_idle: float
    attempts: int  # tries in all
    retry_statuses: frozenset[int]  # e.g. {502, 503, 504}
    retry_conditions: frozenset[str]  # connect-failure, reset, timeout
    idempotent: frozenset[str]  # methods retried after they reached the upstream
    backoff_base: float
    backoff_cap: float
    replay_bytes: int
    hedge_after: float | str | None  # seconds, "p95", or None: no hedging
    websocket: bool

    @classmethod
    def resolve(
        cls,
        timeouts: TimeoutsConfig,
        retries: RetriesConfig,
        route_timeouts: RouteTimeouts | None = None,
        route_retries: RouteRetries | None = None,
        hedge: HedgeConfig | None = None,
        websocket: bool = False,
    ) -> ChannelPolicy:
        t = _merge(timeouts, route_timeouts)
        r = _merge(retries, route_retries)
        on = set(r["on"])
        return cls(
            connect=t["connect"],
            read=t["read"],
            try_timeout=t["try_"],
            deadline=t["deadline"],
            websocket_idle=t["websocket_idle"],
            attempts=r["attempts"],
            retry_statuses=frozenset(int(c) for c in on if c.isdigit()),
            retry_conditions=frozenset(c for c in on if not c.isdigit()),
            idempotent=frozenset(r["methods"]),
            backoff_base=r["backoff_base"],
            backoff_cap=r["backoff_cap"],
            replay_bytes=r["replay_bytes"],
            hedge_after=None if hedge is None else hedge.after,
            websocket=websocket,
        )


def _merge(defaults: TimeoutsConfig | RetriesConfig, override: object | None) -> dict[str, Any]:
    """The defaults, with every key the route's table sets (explicitly) replaced."""
    merged = defaults.model_dump()
    if override is not None:
        # the type ignore below: `override` is one of the route's pydantic tables
        merged.update(override.model_dump(include=override.model_fields_set))  # type: ignore[attr-defined]
    return merged
