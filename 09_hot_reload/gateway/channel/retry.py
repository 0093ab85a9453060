"""When a try that failed is tried again, on which terms, and how long to wait first.

Retrying is only safe when doing a request twice means the same as doing it once:

- *nothing reached the upstream* (the connection was refused, or never established in
  time): any method may go again, POST included, since no server saw it;
- *it reached the upstream* (an answer came back, or the connection broke after the
  request was written): only idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE; RFC
  9110 §9.2.2), and only when the body can be sent again. A streamed body was consumed
  by the first try; bodies up to `replay_bytes` are kept for exactly this reason.

And only on the failures the route names (`retry_on`): by default no connection, a reset,
and 502, 503, 504. A 500 usually means a bug that a retry only repeats; a timeout means a
slow upstream that a retry makes slower, so both are opt-in.

The wait between tries is exponential with *full jitter* (AWS Architecture Blog,
"Exponential Backoff And Jitter", 2015): random(0, min(cap, base × 2^n)). Without the
randomness every client that failed together retries together, and the upstream sees the
same spike again; Envoy's defaults are the same 25 ms base and 250 ms cap. An upstream's
`Retry-After` is honoured when it fits the deadline, and ends the retrying when it does
not: the client gets the 503 with the header, and can decide itself.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.proxy import Body, UpstreamError

from .policy import ChannelPolicy

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy


def condition(failure: UpstreamError) -> str:
    """The retry condition a failure is: connect-failure, reset or timeout."""
    if failure.kind == "refused" or not failure.reached:
        return "connect-failure"
    return "reset" if failure.kind == "broken" else "timeout"


def may_retry_failure(
    failure: UpstreamError, method: str, replayable: bool, policy: ChannelPolicy
) -> bool:
    if condition(failure) not in policy.retry_conditions:
        return False
    if not failure.reached:
        return True  # nobody saw it: any method, any body
    return method in policy.idempotent and replayable


def may_retry_status(status: int, method: str, replayable: bool, policy: ChannelPolicy) -> bool:
    return status in policy.retry_statuses and method in policy.idempotent and replayable


def backoff(retry: int, policy: ChannelPolicy, rng: random.Random) -> float:
    """The wait before retry number `retry` (1, 2, ...): full jitter, capped."""
    return rng.uniform(0, min(policy.backoff_cap, policy.backoff_base * 2 ** (retry - 1)))


def retry_after(headers: CIMultiDictProxy[str]) -> float | None:
    """Retry-After in seconds (delay-seconds or an HTTP-date), None without a valid one."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def replayable_body(request: web.Request, policy: ChannelPolicy) -> tuple[Body, bool]:
    """The body to send on every try, and whether a try that reached the upstream can be
    repeated with it.

    A small body of an idempotent request is read whole (up to `replay_bytes`, when the
    client said its length): the price is a little memory per request, the gain is that
    a PUT can be retried. Everything else streams as in stage 01 and can only be retried
    before the first byte was sent.
    """
    if not request.body_exists:
        return None, True
    length = request.content_length
    if (
        request.method in policy.idempotent
        and policy.attempts > 1
        and length is not None
        and length <= policy.replay_bytes
    ):
        return await request.read(), True
    return request.content, False
