"""Passive health is the circuit breaker: leases count in flight, failures open a target's
circuit, open time grows, half-open probes close it again (gateway/balancing/breaker.py)."""

from __future__ import annotations

import pytest
from gateway.balancing import (
    BreakerPolicy,
    CircuitBreaker,
    Lease,
    NoHealthyTarget,
    RoundRobin,
    Target,
    UpstreamPool,
)
from lbhelpers import FakeClock, make_targets

POLICY = BreakerPolicy(
    consecutive_failures=5, failure_rate=0, open_for=5.0, max_open_for=12.0, max_open_percent=50
)


def make_pool(clock: FakeClock, n: int = 3, policy: BreakerPolicy = POLICY) -> UpstreamPool:
    targets = make_targets(n)
    return UpstreamPool(
        "users",
        targets,
        RoundRobin(targets),
        breaker=CircuitBreaker("users", targets, policy, clock),
        clock=clock,
    )


def fail(pool: UpstreamPool, target: Target, times: int, status: int | None = 503) -> None:
    """`times` finished requests on `target`, each answered with `status`."""
    for _ in range(times):
        with Lease(pool, target) as lease:  # what acquire() returns when it picks `target`
            lease.report(status)


def serves(pool: UpstreamPool, target: Target, picks: int = 12) -> bool:
    return any(pool.pick() is target for _ in range(picks))


def test_a_lease_counts_the_request_in_flight_until_it_ends(clock: FakeClock) -> None:
    pool = make_pool(clock)
    with pool.acquire() as lease:
        assert lease.target.in_flight == 1
        lease.release()  # releasing twice (here and on exit) counts once
    assert all(t.in_flight == 0 for t in pool.targets)


def test_a_lease_ended_by_an_exception_still_releases(clock: FakeClock) -> None:
    pool = make_pool(clock)
    with pytest.raises(RuntimeError), pool.acquire():
        raise RuntimeError("the client went away")
    assert all(t.in_flight == 0 for t in pool.targets)


def test_five_consecutive_failures_open_a_targets_circuit(clock: FakeClock) -> None:
    pool = make_pool(clock)
    bad = pool.targets[1]
    fail(pool, bad, 4)
    assert serves(pool, bad)
    fail(pool, bad, 1, status=None)  # no answer at all counts the same as a 5xx
    assert bad.health.circuit == "open"
    assert not serves(pool, bad)  # fail fast: skipped at once, no request waits on it


def test_a_success_or_a_4xx_resets_the_count(clock: FakeClock) -> None:
    pool = make_pool(clock)
    bad = pool.targets[0]
    fail(pool, bad, 4)
    fail(pool, bad, 1, status=200)
    fail(pool, bad, 4)
    fail(pool, bad, 1, status=404)  # the client's mistake, not the target's
    fail(pool, bad, 4)
    assert bad.health.circuit == "closed"


def test_an_error_rate_opens_a_circuit_that_no_streak_would(clock: FakeClock) -> None:
    policy = BreakerPolicy(consecutive_failures=5, failure_rate=0.3, window=10, min_requests=20)
    pool = make_pool(clock, policy=policy)
    flaky = pool.targets[0]
    for i in range(19):  # every third request fails: never two in a row
        fail(pool, flaky, 1, status=503 if i % 3 == 0 else 200)
        clock.advance(0.1)
    assert flaky.health.circuit == "closed"  # 7 of 19: below min_requests still
    fail(pool, flaky, 1, status=200)
    fail(pool, flaky, 1)  # 8 of 21 requests in the window failed: 38% >= 30%
    assert flaky.health.circuit == "open"


def test_the_rate_only_counts_the_window(clock: FakeClock) -> None:
    policy = BreakerPolicy(consecutive_failures=0, failure_rate=0.5, window=10, min_requests=4)
    pool = make_pool(clock, policy=policy)
    target = pool.targets[0]
    fail(pool, target, 3)  # 3 failures, then 11 s of calm: they fall out of the window
    clock.advance(11)
    for _ in range(4):
        fail(pool, target, 1, status=200)
    fail(pool, target, 1)  # 1 of 5 in the window
    assert target.health.circuit == "closed"


def test_an_open_circuit_goes_half_open_and_admits_one_probe(clock: FakeClock) -> None:
    pool = make_pool(clock)
    bad = pool.targets[2]
    fail(pool, bad, 5)
    clock.advance(4.9)
    assert not serves(pool, bad)
    clock.advance(0.1)
    assert serves(pool, bad)  # half-open: a real request may probe it
    assert bad.health.circuit == "half-open"
    probe = Lease(pool, bad)
    assert not serves(pool, bad)  # one probe at a time: the rest go elsewhere
    probe.report(200)
    probe.release()
    assert bad.health.circuit == "closed"
    assert bad.health.consecutive_failures == 0


def test_a_failed_probe_opens_it_again_for_longer(clock: FakeClock) -> None:
    pool = make_pool(clock)
    bad = pool.targets[0]
    durations = []
    fail(pool, bad, 5)
    for _ in range(4):
        assert bad.health.open_until is not None
        durations.append(bad.health.open_until - clock.now)
        clock.advance(durations[-1])
        pool.pick()  # the pool notices the time is up on its next pick: half-open
        fail(pool, bad, 1)  # the probe fails
    assert durations == [5.0, 10.0, 12.0, 12.0]  # open_for x 1, x 2, then max_open_for


def test_the_multiplier_decays_while_the_target_behaves(clock: FakeClock) -> None:
    pool = make_pool(clock)
    bad = pool.targets[0]
    fail(pool, bad, 5)
    clock.advance(5)
    pool.pick()
    fail(pool, bad, 1)  # the probe fails: opening 2, 10 s
    clock.advance(10)
    pool.pick()
    fail(pool, bad, 1, status=200)  # closed again
    clock.advance(10)  # two open_for periods closed: multiplier 2 -> 0
    fail(pool, bad, 5)
    assert bad.health.open_until == clock.now + 5.0


def test_failures_of_requests_sent_before_the_opening_do_not_extend_it(
    clock: FakeClock,
) -> None:
    pool = make_pool(clock)
    bad = pool.targets[0]
    stragglers = [Lease(pool, bad) for _ in range(3)]  # sent, not yet answered
    fail(pool, bad, 5)
    until = bad.health.open_until
    for lease in stragglers:
        lease.report(503)
        lease.release()
    assert bad.health.open_until == until
    assert bad.health.opens == 1


def test_at_most_max_open_percent_of_the_pool_is_open(clock: FakeClock) -> None:
    pool = make_pool(clock, n=6)  # 50% of 6: three may be open at once
    for target in pool.targets[:4]:
        fail(pool, target, 5)
    assert [t.health.circuit for t in pool.targets] == ["open"] * 3 + ["closed"] * 3
    # The fourth keeps its failure count: once a slot frees up, its next failure opens it.
    clock.advance(5)
    fail(pool, pool.targets[3], 1)
    assert pool.targets[3].health.circuit == "open"


def test_one_target_may_always_open_even_in_a_tiny_pool(clock: FakeClock) -> None:
    policy = BreakerPolicy(consecutive_failures=2, max_open_percent=10)
    pool = make_pool(clock, n=2, policy=policy)  # 10% of 2 is 0.2 of a target
    fail(pool, pool.targets[0], 2)
    fail(pool, pool.targets[1], 2)
    assert [t.health.circuit for t in pool.targets] == ["open", "closed"]


def test_no_triggers_turn_the_breaker_off(clock: FakeClock) -> None:
    pool = make_pool(clock, policy=BreakerPolicy(consecutive_failures=0, failure_rate=0))
    fail(pool, pool.targets[0], 50)
    assert pool.targets[0].health.circuit == "closed"


def test_when_every_target_is_down_acquire_says_which_upstream_and_why(clock: FakeClock) -> None:
    policy = BreakerPolicy(max_open_percent=100)
    pool = make_pool(clock, policy=policy)
    pool.targets[0].health.active_ok = False
    pool.targets[1].health.active_ok = False
    fail(pool, pool.targets[2], 5)
    with pytest.raises(NoHealthyTarget) as caught:
        pool.acquire()
    assert caught.value.reason == (
        "upstream 'users': all 3 targets unhealthy (2 failed active checks, 1 open circuit)"
    )
    assert "127.0.0.1" not in caught.value.reason  # no internal addresses for clients


def test_the_reason_for_a_single_target_pool_reads_naturally(clock: FakeClock) -> None:
    pool = make_pool(clock, n=1)
    fail(pool, pool.targets[0], 5)
    assert pool.unavailable_reason() == (
        "upstream 'users': its only target is unhealthy (open circuit)"
    )


def test_the_snapshot_shows_state_time_left_and_load(clock: FakeClock) -> None:
    pool = make_pool(clock)
    fail(pool, pool.targets[0], 5)
    pool.targets[1].health.active_ok = False
    lease = pool.acquire()
    clock.advance(2)
    rows = pool.snapshot()
    assert [r["state"] for r in rows] == ["open", "unhealthy", "healthy"]
    assert rows[0]["open_for"] == pytest.approx(3.0)
    assert rows[2]["in_flight"] == 1
    lease.release()
