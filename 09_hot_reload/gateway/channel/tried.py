"""One try's outcome, and what becomes of its lease.

Every try ends in exactly one of these, and each says what the target's breaker hears:

    answered   a response head (a timer that fired as it arrived makes it a timeout)
    failed     the upstream's failure: refused, reset, broke off   -> reported
    timed_out  the try's own time, or the deadline, ran out         -> reported
    cancelled  someone else stopped it (a hedge that lost, a client that left): the
               target is freed and hears nothing
    abandon    the client's own body broke off: nothing about the target
    discard    an answer nobody will relay (the hedge that lost): closed, lease freed

Keeping these apart from the loop (channel.py) is what lets the loop read as the policy
it is: admit, try, decide, relay.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import ClientResponse

from gateway.balancing import Lease
from gateway.proxy import UpstreamError

from .deadline import TryTimer


@dataclass(slots=True)
class Tried:
    """One try's outcome: a response head, or a failure (and which limit it hit)."""

    lease: Lease
    response: ClientResponse | None = None
    failure: UpstreamError | None = None
    deadline_passed: bool = False


def cancelled(
    lease: Lease, timer: TryTimer | None, limit: float | None, by_deadline: bool
) -> Tried | None:
    """The try's own timer fired: a timeout. None: someone else cancelled it (a hedge that
    lost, a client that left); the target is freed and the caller re-raises."""
    if timer is None or not timer.stop():
        lease.release()
        return None
    return timed_out(lease, limit, by_deadline)


def abandon(lease: Lease, timer: TryTimer | None) -> None:
    """Neither an answer nor the upstream's failure (the client's body broke off): free
    the target, report nothing about it, and make sure the timer cannot fire later."""
    if timer is not None:
        timer.stop()
    lease.release()


def failed(lease: Lease, timer: TryTimer | None, failure: UpstreamError) -> Tried:
    if timer is not None:
        timer.stop()
    return Tried(lease, failure=failure)


def answered(
    lease: Lease,
    timer: TryTimer | None,
    response: ClientResponse,
    limit: float | None,
    by_deadline: bool,
) -> Tried:
    if timer is not None and timer.stop():
        # The time ran out just as the head arrived: too late, like any other timeout.
        response.close()
        return timed_out(lease, limit, by_deadline)
    return Tried(lease, response=response)


def timed_out(lease: Lease, limit: float | None, by_deadline: bool) -> Tried:
    detail = f"the upstream did not answer within the try's {limit:g} s"
    return Tried(lease, failure=UpstreamError("timeout", True, detail), deadline_passed=by_deadline)


def discard(outcome: Tried) -> None:
    if outcome.response is not None:
        outcome.response.close()
    outcome.lease.release()


def discard_if_answered(task: asyncio.Future[Tried]) -> None:
    """A loser that got its answer before the cancellation reached it: drop the answer."""
    if not task.cancelled() and task.exception() is None:
        discard(task.result())
