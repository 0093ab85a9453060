"""Consistent hashing with bounded loads: no target above ceil(c x average), hot keys spill.

The cap is recomputed here from its definition, independently of ring.py: when a request
is placed, m = requests in flight on the available targets including this one, W = their
total weight, and the chosen target t must then hold at most ceil(c * m * weight(t) / W).
"""

from __future__ import annotations

import heapq
import math
import random
from fractions import Fraction

from gateway.balancing import ConsistentHash, Lease, Target, UpstreamPool, hash64
from hypothesis import given, settings
from hypothesis import strategies as st
from lbhelpers import make_targets


def cap_for(chosen: Target, targets: list[Target], c: float) -> int:
    """The bound, from the definition, for a request just placed on `chosen`."""
    available = [t for t in targets if t.available]
    m = sum(t.in_flight for t in available)  # the new request is already counted
    weight = sum(t.weight for t in available)
    return math.ceil(Fraction(str(c)) * m * chosen.weight / weight)


def zipf_keys(rng: random.Random, count: int, n_keys: int = 1000, s: float = 1.1) -> list[str]:
    """Keys with Zipf popularity: key-0 alone is ~18% of the traffic at s = 1.1."""
    weights = [1 / (rank + 1) ** s for rank in range(n_keys)]
    return rng.choices([f"key-{i}" for i in range(n_keys)], weights=weights, k=count)


def run_hot_key_workload(
    bounded_load: float | None, requests: int = 20_000, concurrency: int = 60
) -> tuple[float, float, ConsistentHash]:
    """Poisson arrivals, exponential service times: ~`concurrency` requests in flight.

    Returns (worst load/cap ratio at any placement, share of requests on their key's own
    target, the strategy). The clock is simulated: no sleeping.
    """
    rng = random.Random(2024)
    targets = make_targets(6)
    strategy = ConsistentHash(targets, bounded_load=bounded_load)
    pool = UpstreamPool("users", targets, strategy)
    in_flight: list[tuple[float, int, Lease]] = []
    now = 0.0
    worst = 0.0
    at_home = 0
    for i, key in enumerate(zipf_keys(rng, requests)):
        now += rng.expovariate(concurrency)
        while in_flight and in_flight[0][0] <= now:
            heapq.heappop(in_flight)[2].release()
        lease = pool.acquire(key)
        worst = max(worst, lease.target.in_flight / cap_for(lease.target, targets, 1.25))
        at_home += lease.target is strategy.ring.owner(key)
        heapq.heappush(in_flight, (now + rng.expovariate(1.0), i, lease))
    return worst, at_home / requests, strategy


def test_a_hot_key_overloads_its_target_on_a_plain_ring() -> None:
    # The problem bounded loads solve: without them the hot key's target runs far above
    # ceil(1.25 x average). (If it did not, the next test would prove nothing.)
    worst, at_home, _ = run_hot_key_workload(bounded_load=None)
    assert worst > 1.5
    assert at_home == 1.0


def test_bounded_loads_keep_every_placement_under_the_cap_on_a_hot_key_workload() -> None:
    worst, at_home, strategy = run_hot_key_workload(bounded_load=1.25)
    assert worst <= 1.0
    assert strategy.spills > 0  # the hot key did spill...
    assert at_home > 0.6  # ...but most requests still reach their own target


@settings(max_examples=150, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=4), min_size=2, max_size=7),
    down=st.sets(st.integers(min_value=0, max_value=6), max_size=2),
    c=st.sampled_from([1.05, 1.1, 1.25, 1.5, 2.0]),
    ops=st.lists(
        st.one_of(st.integers(min_value=0, max_value=9), st.none(), st.just(-1)), max_size=150
    ),
)
def test_no_placement_ever_exceeds_the_cap(
    weights: list[int], down: set[int], c: float, ops: list[int | None]
) -> None:
    """Any mix of weights, unavailable targets, keyed and keyless requests and departures.

    An op is a key number (a request for hot-ish key k), None (a request without a key)
    or -1 (the oldest request in flight finishes).
    """
    targets = make_targets(len(weights), weights)
    for i in down:
        if i < len(targets) - 1:  # keep at least one target available
            targets[i].health.active_ok = False
    pool = UpstreamPool("p", targets, ConsistentHash(targets, virtual_nodes=20, bounded_load=c))
    leases: list[Lease] = []
    for op in ops:
        if op == -1:
            if leases:
                leases.pop(0).release()
            continue
        lease = pool.acquire(None if op is None else f"key-{op % 3}")  # 3 keys: all hot
        assert lease.target.available
        assert lease.target.in_flight <= cap_for(lease.target, targets, c)
        leases.append(lease)


def test_a_full_owner_spills_clockwise_to_the_next_target_with_room() -> None:
    targets = make_targets(4)
    strategy = ConsistentHash(targets, bounded_load=1.25)
    pool = UpstreamPool("p", targets, strategy)
    walk = list(strategy.ring.walk(hash64("hot")))
    placed = [pool.acquire("hot").target for _ in range(8)]
    # Requests 1-3: m = 1, 2, 3 gives a cap of ceil(1.25 m / 4) = 1, so the owner takes
    # one and the overflow walks clockwise, one target further each time. From m = 4 the
    # cap is 2, from m = 7 it is 3: the owner fills up first again. The overflow always
    # goes to the next targets in ring order; the last one gets nothing yet.
    assert placed[:3] == walk[:3]
    assert [placed.count(t) for t in walk] == [3, 3, 2, 0]


def test_bounded_load_must_be_above_1() -> None:
    try:
        ConsistentHash(make_targets(2), bounded_load=1.0)
    except ValueError as exc:
        assert "greater than 1" in str(exc)
    else:
        raise AssertionError("bounded_load = 1.0 was accepted")
