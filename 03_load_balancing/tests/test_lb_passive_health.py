"""Passive health: leases count in-flight, failures eject, ejections grow, targets return."""

from __future__ import annotations

import pytest
from gateway.balancing import (
    Lease,
    NoHealthyTarget,
    OutlierDetector,
    OutlierPolicy,
    RoundRobin,
    Target,
    UpstreamPool,
)
from lbhelpers import FakeClock, make_targets

POLICY = OutlierPolicy(
    consecutive_failures=5, base_ejection_time=5.0, max_ejection_time=12.0, max_ejection_percent=50
)


def make_pool(clock: FakeClock, n: int = 3, policy: OutlierPolicy = POLICY) -> UpstreamPool:
    targets = make_targets(n)
    return UpstreamPool(
        "users",
        targets,
        RoundRobin(targets),
        outlier=OutlierDetector("users", targets, policy, clock),
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


def test_five_consecutive_failures_eject_a_target(clock: FakeClock) -> None:
    pool = make_pool(clock)
    bad = pool.targets[1]
    fail(pool, bad, 4)
    assert serves(pool, bad)
    fail(pool, bad, 1, status=None)  # no answer at all counts the same as a 5xx
    assert bad.health.ejected
    assert not serves(pool, bad)


def test_a_success_or_a_4xx_resets_the_count(clock: FakeClock) -> None:
    pool = make_pool(clock)
    bad = pool.targets[0]
    fail(pool, bad, 4)
    fail(pool, bad, 1, status=200)
    fail(pool, bad, 4)
    fail(pool, bad, 1, status=404)  # the client's mistake, not the target's
    fail(pool, bad, 4)
    assert not bad.health.ejected


def test_an_ejected_target_returns_when_its_time_is_up(clock: FakeClock) -> None:
    pool = make_pool(clock)
    bad = pool.targets[2]
    fail(pool, bad, 5)
    clock.advance(4.9)
    assert not serves(pool, bad)
    clock.advance(0.1)
    assert serves(pool, bad)  # no operator, no probe: back in rotation
    assert bad.health.consecutive_failures == 0


def test_each_new_ejection_lasts_longer_up_to_the_cap(clock: FakeClock) -> None:
    pool = make_pool(clock)
    bad = pool.targets[0]
    durations = []
    for _ in range(4):
        fail(pool, bad, 5)  # fails again straight after coming back
        assert bad.health.ejected_until is not None
        durations.append(bad.health.ejected_until - clock.now)
        clock.advance(durations[-1])
        pool.pick()  # the pool notices the return on its next pick
    assert durations == [5.0, 10.0, 12.0, 12.0]  # base x 1, x 2, then max_ejection_time


def test_the_multiplier_decays_while_the_target_behaves(clock: FakeClock) -> None:
    pool = make_pool(clock)
    bad = pool.targets[0]
    fail(pool, bad, 5)
    clock.advance(5)
    fail(pool, bad, 5)  # ejection 2: 10 s
    clock.advance(10)
    pool.pick()
    clock.advance(10)  # two base_ejection_time periods in service: multiplier 2 -> 0
    fail(pool, bad, 5)
    assert bad.health.ejected_until == clock.now + 5.0


def test_failures_of_requests_sent_before_the_ejection_do_not_extend_it(
    clock: FakeClock,
) -> None:
    pool = make_pool(clock)
    bad = pool.targets[0]
    stragglers = [Lease(pool, bad) for _ in range(3)]  # sent, not yet answered
    fail(pool, bad, 5)
    until = bad.health.ejected_until
    for lease in stragglers:
        lease.report(503)
        lease.release()
    assert bad.health.ejected_until == until
    assert bad.health.ejections == 1


def test_at_most_max_ejection_percent_of_the_pool_is_ejected(clock: FakeClock) -> None:
    pool = make_pool(clock, n=6)  # 50% of 6: three may be ejected at once
    for target in pool.targets[:4]:
        fail(pool, target, 5)
    assert [t.health.ejected for t in pool.targets] == [True, True, True, False, False, False]
    # The fourth keeps its failure count: once a slot frees up, its next failure ejects it.
    clock.advance(5)
    fail(pool, pool.targets[3], 1)
    assert pool.targets[3].health.ejected


def test_one_target_is_always_ejectable_even_in_a_tiny_pool(clock: FakeClock) -> None:
    policy = OutlierPolicy(consecutive_failures=2, max_ejection_percent=10)
    pool = make_pool(clock, n=2, policy=policy)  # 10% of 2 is 0.2 of a target
    fail(pool, pool.targets[0], 2)
    fail(pool, pool.targets[1], 2)
    assert [t.health.ejected for t in pool.targets] == [True, False]


def test_consecutive_failures_0_turns_passive_health_off(clock: FakeClock) -> None:
    pool = make_pool(clock, policy=OutlierPolicy(consecutive_failures=0))
    fail(pool, pool.targets[0], 50)
    assert not pool.targets[0].health.ejected


def test_when_every_target_is_down_acquire_says_which_upstream_and_why(clock: FakeClock) -> None:
    policy = OutlierPolicy(max_ejection_percent=100)
    pool = make_pool(clock, policy=policy)
    pool.targets[0].health.active_ok = False
    pool.targets[1].health.active_ok = False
    fail(pool, pool.targets[2], 5)
    with pytest.raises(NoHealthyTarget) as caught:
        pool.acquire()
    assert caught.value.reason == (
        "upstream 'users': all 3 targets unhealthy"
        " (2 failed active checks, 1 ejected after 5 consecutive failures)"
    )
    assert "127.0.0.1" not in caught.value.reason  # no internal addresses for clients


def test_the_reason_for_a_single_target_pool_reads_naturally(clock: FakeClock) -> None:
    pool = make_pool(clock, n=1)
    fail(pool, pool.targets[0], 5)
    assert pool.unavailable_reason() == (
        "upstream 'users': its only target is unhealthy (ejected after 5 consecutive failures)"
    )


def test_the_snapshot_shows_state_time_left_and_load(clock: FakeClock) -> None:
    pool = make_pool(clock)
    fail(pool, pool.targets[0], 5)
    pool.targets[1].health.active_ok = False
    lease = pool.acquire()
    clock.advance(2)
    rows = pool.snapshot()
    assert [r["state"] for r in rows] == ["ejected", "unhealthy", "healthy"]
    assert rows[0]["ejected_for"] == pytest.approx(3.0)
    assert rows[2]["in_flight"] == 1
    lease.release()
