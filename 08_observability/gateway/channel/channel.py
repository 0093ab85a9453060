"""The channel: one request's way to its upstream, try by try, under one deadline.

    shed? -> bulkhead place -> ( lease a target -> open, within the try's time -> report )+
          -> relay the answer that was kept

Stage 03's handler made one try: lease, open, relay, report. This is the same try in a
loop, and everything around the loop that keeps a gateway standing when upstreams
misbehave: the load shedder and the upstream's bulkhead admit the request (503 when
full), a deadline bounds all tries together (504 when it passes), each try reports to
the target's circuit breaker, and a failed try is retried (retry.py: only when it is
safe, only on the route's conditions, within the retry budget, on another target,
after a jittered backoff). Nothing reaches the client before the last try's answer is
chosen: the proxy's two steps (open, then relay) are what make that possible.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from gateway.accesslog import UPSTREAM
from gateway.balancing import Clock, Lease, NoHealthyTarget, Target, UpstreamPool, Upstreams
from gateway.concern import AdminView
from gateway.errors import GatewayError, NoHealthyUpstream
from gateway.observability.tracing import child, end_child, inject, start_child, traced
from gateway.proxy import Body, Proxy, UpstreamError, UpstreamRequest
from gateway.routing import RouteMatch

from . import deadline as deadlines
from . import tried as outcomes
from .budget import RetryBudget
from .bulkhead import Bulkhead, LoadShedder
from .deadline import Deadline, TryTimer
from .hedge import LatencyTracker, first_answer
from .policy import ChannelPolicy
from .retry import backoff, may_retry_failure, may_retry_status, replayable_body, retry_after
from .tried import Tried
from .websocket import WebSockets

# Which try this is (to the upstream), how many it took (to the client): Envoy's
# x-envoy-attempt-count, which it sends both ways when asked to. A service can tell a
# retry from a first try; a client (and demo.http) sees what the channel did.
ATTEMPT_HEADER = "X-Attempt-Count"


_COUNTS = tuple(str(n) for n in range(16))


def _count(n: int) -> str:
    return _COUNTS[n] if n < len(_COUNTS) else str(n)


TryObserver = Callable[[str, float], None]  # (pool, seconds): one try's time upstream


def _unobserved(pool: str, seconds: float) -> None:
    pass


class DeadlineExceeded(GatewayError):
    status, title, slug = 504, "Gateway Timeout", "deadline-exceeded"


class Channel:
    def __init__(
        self,
        upstreams: Upstreams,
        proxy: Proxy,
        bulkheads: Mapping[str, Bulkhead],
        shedder: LoadShedder,
        budget: RetryBudget,
        *,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
        observe: TryObserver | None = None,
    ) -> None:
        self.upstreams = upstreams
        self.proxy = proxy
        self.bulkheads = dict(bulkheads)
        self.shedder = shedder
        self.budget = budget
        self.rng = rng or random.Random()
        self.clock = clock
        self.latencies: dict[int, LatencyTracker] = {}  # by id(route): for hedging's p95
        self.websockets = WebSockets(upstreams)  # upgrades leave the tries at the handler
        # Each try's time to its response head, by pool: the metrics' upstream histogram.
        self.observe = observe or _unobserved
        # Retries by why (the status, or refused, timeout, broken) and hedges sent, for
        # the metrics: plain counts, read when Prometheus scrapes (observability/state.py).
        self.retried: Counter[str] = Counter()
        self.hedges = 0

    async def start(self) -> None:
        await self.websockets.start()

    async def close(self) -> None:
        await self.websockets.close()

    def admin_views(self) -> Sequence[AdminView]:
        return (AdminView(path="/channel", show=self._show),)

    async def _show(self) -> dict[str, object]:
        """The retry budget, the load shedder, each pool's bulkhead, WebSocket relays."""
        return {
            "retry_budget": self.budget.snapshot(),
            "load_shedder": self.shedder.snapshot(),
            "bulkheads": {name: bulkhead.snapshot() for name, bulkhead in self.bulkheads.items()},
            "websockets": self.websockets.open,
        }

    async def forward(self, request: web.Request, found: RouteMatch) -> web.StreamResponse:
        route = found.route
        policy = route.channel
        # Admission: plain counters on the happy path, a coroutine only to queue.
        self.shedder.enter()
        bulkhead = self.bulkheads[route.pool]
        try:
            if not bulkhead.try_enter():
                await bulkhead.wait()
        except BaseException:
            self.shedder.leave()
            raise
        self.budget.enter()
        try:
            # One coroutine for the whole loop, on purpose: every coroutine between the
            # handler and the proxy is resumed again at each of the proxy's awaits, and
            # on the happy path that was most of this layer's cost (channelling-bench).
            pool = self.upstreams[route.pool]
            key = pool.key_for(request, found.path.path)
            deadline = Deadline(policy.deadline, self.clock)
            # Most requests have no body: no coroutine for them.
            body, replayable = (
                await replayable_body(request, policy) if request.body_exists else (None, True)
            )
            tried: list[Target] = []
            retries = 0
            why: str | None = None  # what the last try got that made this one a retry
            while True:
                try:
                    # Inside the try: a retry that finds no target left (every breaker
                    # open) must still give its place in the retry budget back.
                    lease = self._lease(pool, key, tried)
                    request[UPSTREAM] = lease.target.url  # the access log names the last
                    if policy.hedge_after is None:
                        # _open's steps, inline: no coroutine between here and the proxy.
                        upstream_request, limit, by_deadline, span = self._prepare(
                            request, found, lease, body, deadline, retries + 1, why
                        )
                        timer = None if limit is None else TryTimer(limit)
                        started = time.perf_counter()
                        try:
                            response = await self.proxy.open(upstream_request)
                        except asyncio.CancelledError:
                            outcome = outcomes.cancelled(lease, timer, limit, by_deadline)
                            if outcome is None:
                                raise  # the client left
                        except UpstreamError as failure:
                            outcome = outcomes.failed(lease, timer, failure)
                        except BaseException:  # the client's body broke off (BadRequest)
                            outcomes.abandon(lease, timer)
                            raise
                        else:
                            outcome = outcomes.answered(lease, timer, response, limit, by_deadline)
                        self._tried(route.pool, time.perf_counter() - started, span, outcome)
                    else:
                        outcome = await self._hedged(
                            request, found, pool, key, tried, lease, body, deadline
                        )
                finally:
                    if retries:
                        self.budget.release()  # this retry is no longer in flight
                # Retry or not, asked in the order Envoy's router filter asks it: is this
                # outcome a retry condition at all (a 503 on an idempotent method, a refused
                # connection on any), is a try left, does the wait fit the deadline, and
                # only then, may the budget spare one. The budget is shared by every request
                # of the gateway, so it is asked last: a denial is counted only for a retry
                # that would really have gone out.
                lease, method = outcome.lease, request.method
                answer = outcome.response
                if answer is not None:
                    wait = None
                    if retries + 1 < policy.attempts and may_retry_status(
                        answer.status, method, replayable, policy
                    ):
                        asked = retry_after(answer.headers)
                        wait = self._wait(retries + 1, policy, deadline, asked)
                    if wait is None or not self.budget.try_acquire():
                        with lease:  # in flight until the last byte went out, or the client left
                            counted = {ATTEMPT_HEADER: _count(len(tried))}
                            relayed = await self.proxy.relay(request, answer, counted)
                            lease.report(answer.status if relayed.complete else None)
                            return relayed.response
                    lease.report(answer.status)  # a 503 we retry still counts against it
                    answer.close()
                    why = str(answer.status)
                    self.retried[why] += 1
                else:
                    failed = outcome.failure
                    assert failed is not None
                    lease.report(None)
                    # A try cut short by the route's deadline ends the request: there is no
                    # time left for another, and the client gets the 504 that says which
                    # limit passed (a try's own timeout may be retried, if `on` lists it).
                    if outcome.deadline_passed:
                        lease.release()
                        raise DeadlineExceeded(
                            f"the route's deadline of {policy.deadline:g} s passed"
                            f" after {retries + 1} {'try' if retries == 0 else 'tries'}"
                        )
                    wait = None
                    if retries + 1 < policy.attempts and may_retry_failure(
                        failed, method, replayable, policy
                    ):
                        wait = self._wait(retries + 1, policy, deadline, None)
                    if wait is None or not self.budget.try_acquire():
                        lease.release()
                        raise failed.problem()
                    why = failed.kind
                    self.retried[why] += 1
                # The failed target is let go before the backoff: a retry asleep is no load
                # on it (least-connections counts the leases in flight). The request keeps
                # its bulkhead place and its retry counts as in flight: it is coming.
                lease.release()
                retries += 1
                try:
                    with child("backoff", {"gateway.backoff_s": wait, "gateway.retry_of": why}):
                        await asyncio.sleep(wait)
                except BaseException:
                    self.budget.release()  # the client left during the backoff
                    raise
        finally:
            self.budget.leave()
            bulkhead.leave()
            self.shedder.leave()

    def _wait(
        self, retry: int, policy: ChannelPolicy, deadline: Deadline, asked: float | None
    ) -> float | None:
        """Seconds to wait before retry number `retry`; None: it would not fit the deadline."""
        wait = backoff(retry, policy, self.rng)
        if asked is not None:
            wait = max(wait, asked)  # the upstream said when: not sooner
        return wait if deadline.fits(wait) else None

    async def _hedged(
        self,
        request: web.Request,
        found: RouteMatch,
        pool: UpstreamPool,
        key: str | None,
        tried: list[Target],
        lease: Lease,
        body: Body,
        deadline: Deadline,
    ) -> Tried:
        """One try on a hedged route: a second one elsewhere if the first is slow."""
        policy = found.route.channel
        tracker = self.latencies.setdefault(id(found.route), LatencyTracker())
        first = asyncio.ensure_future(
            self._open(request, found, lease, body, deadline, len(tried), tracker)
        )
        hedge_after = tracker.delay(policy.hedge_after)
        if hedge_after is None or body is not None and not isinstance(body, bytes):
            return await first  # no estimate yet, or a streamed body: it cannot go twice
        done, _ = await asyncio.wait({first}, timeout=hedge_after)
        if done or request.method not in policy.idempotent or not self.budget.try_acquire():
            return await first
        try:
            second_lease = pool.acquire(key, avoid=tried)
        except NoHealthyTarget:
            self.budget.release()
            return await first
        tried.append(second_lease.target)
        self.hedges += 1
        second = asyncio.ensure_future(
            self._open(request, found, second_lease, body, deadline, len(tried), tracker)
        )
        try:
            return await first_answer(first, second)
        finally:
            self.budget.release()

    def _lease(self, pool: UpstreamPool, key: str | None, tried: list[Target]) -> Lease:
        try:
            lease = pool.acquire(key, avoid=tried)
        except NoHealthyTarget as exc:
            raise NoHealthyUpstream(exc.reason) from None
        tried.append(lease.target)
        return lease

    def _prepare(
        self,
        request: web.Request,
        found: RouteMatch,
        lease: Lease,
        body: Body,
        deadline: Deadline,
        attempt: int,
        retry_of: str | None = None,
    ) -> tuple[UpstreamRequest, float | None, bool, Span | None]:
        """One try's upstream request, its time limit, whether the deadline sets it, and
        its span (None when the request is not traced), whose trace context it carries."""
        route = found.route
        limit, by_deadline = deadline.for_try(route.channel.try_timeout)
        upstream_request = UpstreamRequest.from_client(
            request,
            lease.target.url + found.request_target,
            preserve_host=route.preserve_host,
            timeouts=route.timeouts,
            replay=body if isinstance(body, bytes) else None,
        )
        if limit is not None:
            upstream_request.headers[deadlines.HEADER] = str(int(limit * 1000))
        upstream_request.headers[ATTEMPT_HEADER] = _count(attempt)
        span = None
        if traced():  # a sampled request: most are not, and pay only the header below
            attributes: dict[str, AttributeValue] = {"gateway.attempt": attempt}
            attributes["gateway.upstream"], attributes["url.full"] = route.pool, lease.target.url
            if retry_of is not None:
                attributes["gateway.retry_of"] = retry_of
            span = start_child("upstream try", attributes)
        inject(upstream_request.headers, span)  # the upstream's spans hang under this try
        return upstream_request, limit, by_deadline, span

    def _tried(self, pool: str, seconds: float, span: Span | None, outcome: Tried) -> None:
        """One try is over: its time to the metrics, its span ended with what it got."""
        self.observe(pool, seconds)
        if span is None:  # not traced: most tries
            return
        failure = outcome.failure
        status = None if outcome.response is None else outcome.response.status
        end_child(span, status, None if failure is None else failure.kind)

    async def _open(
        self,
        request: web.Request,
        found: RouteMatch,
        lease: Lease,
        body: Body,
        deadline: Deadline,
        attempt: int,
        tracker: LatencyTracker,
    ) -> Tried:
        """One try as a task of its own: a hedged route runs two of these at once."""
        upstream_request, limit, by_deadline, span = self._prepare(
            request, found, lease, body, deadline, attempt
        )
        started = self.clock()
        timer = None if limit is None else TryTimer(limit)
        try:
            response = await self.proxy.open(upstream_request)
        except asyncio.CancelledError:
            outcome = outcomes.cancelled(lease, timer, limit, by_deadline)
            if outcome is None:
                raise  # a hedge that lost, or a client that left
            return outcome
        except UpstreamError as failure:
            failed = outcomes.failed(lease, timer, failure)
            self._tried(found.route.pool, self.clock() - started, span, failed)
            return failed
        except BaseException:
            outcomes.abandon(lease, timer)
            raise
        outcome = outcomes.answered(lease, timer, response, limit, by_deadline)
        if outcome.response is not None:
            tracker.record(self.clock() - started)  # the route's p95 comes from these
        self._tried(found.route.pool, self.clock() - started, span, outcome)
        return outcome


# How a try ended, the same whether it ran inline (Channel.forward) or as a hedge's task.
