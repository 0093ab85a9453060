"""Round robin, smooth weighted round robin, least connections and power of two choices."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from gateway.balancing import (
    ConsistentHash,
    LeastConnections,
    RoundRobin,
    Strategy,
    Target,
    WeightedRoundRobin,
)
from hypothesis import given
from hypothesis import strategies as st
from lbhelpers import make_targets


def names(picks: Sequence[Target | None]) -> str:
    """Targets as letters a, b, c... by port, for sequences that read like nginx's docs."""
    return " ".join("-" if t is None else "abcdefgh"[int(t.url[-4:]) - 9001] for t in picks)


def test_round_robin_takes_each_target_in_turn() -> None:
    rr = RoundRobin(make_targets(3))
    assert names([rr.pick(None) for _ in range(7)]) == "a b c a b c a"


def test_round_robin_skips_an_unavailable_target_and_keeps_the_order() -> None:
    targets = make_targets(4)
    rr = RoundRobin(targets)
    assert names([rr.pick(None) for _ in range(2)]) == "a b"
    targets[2].health.active_ok = False
    assert names([rr.pick(None) for _ in range(6)]) == "d a b d a b"
    targets[2].health.active_ok = True
    assert names([rr.pick(None) for _ in range(4)]) == "c d a b"


def test_every_strategy_answers_none_when_no_target_is_available() -> None:
    targets = make_targets(3)
    for target in targets:
        target.health.admit = 0  # its circuit is open
    for strategy in (
        RoundRobin(targets),
        WeightedRoundRobin(targets),
        LeastConnections(targets),
        LeastConnections(targets, choices=2, rng=random.Random(1)),
    ):
        assert strategy.pick(None) is None


def test_smooth_weighted_round_robin_matches_nginx_for_5_1_1() -> None:
    # The sequence in nginx's ngx_http_upstream_round_robin.c comment for weights 5, 1, 1.
    wrr = WeightedRoundRobin(make_targets(3, [5, 1, 1]))
    assert names([wrr.pick(None) for _ in range(7)]) == "a a b a c a a"
    assert names([wrr.pick(None) for _ in range(7)]) == "a a b a c a a"  # and it repeats


@given(st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=6))
def test_smooth_weighted_round_robin_gives_exact_weights_every_cycle(weights: list[int]) -> None:
    wrr = WeightedRoundRobin(make_targets(len(weights), weights))
    total = sum(weights)
    for _ in range(2):
        counts = Counter(wrr.pick(None) for _ in range(total))
        assert [counts[t] for t in wrr.targets] == weights


def test_weighted_round_robin_shares_among_the_available_only() -> None:
    targets = make_targets(3, [5, 1, 1])
    wrr = WeightedRoundRobin(targets)
    targets[0].health.active_ok = False
    picks = Counter(wrr.pick(None) for _ in range(10))
    assert picks == {targets[1]: 5, targets[2]: 5}


def test_least_connections_prefers_the_idle_target() -> None:
    targets = make_targets(3)
    targets[0].in_flight, targets[1].in_flight, targets[2].in_flight = 4, 0, 2
    lc = LeastConnections(targets)
    assert lc.pick(None) is targets[1]
    targets[1].in_flight = 5
    assert lc.pick(None) is targets[2]


def test_least_connections_spreads_sequential_requests_when_all_are_idle() -> None:
    # Each request finishes before the next: every target is at 0 in flight every time.
    # Ties must be shared, or the first target would get them all.
    lc = LeastConnections(make_targets(3))
    assert names([lc.pick(None) for _ in range(6)]) == "a b c a b c"


def test_least_connections_shares_ties_by_weight_as_nginx_does() -> None:
    lc = LeastConnections(make_targets(3, [5, 1, 1]))
    assert names([lc.pick(None) for _ in range(7)]) == "a a b a c a a"


def test_least_connections_weighs_in_flight_by_weight() -> None:
    targets = make_targets(2, [4, 1])
    lc = LeastConnections(targets)
    # Simulate requests that never finish: the weight-4 target takes four of every five.
    for _ in range(50):
        chosen = lc.pick(None)
        assert chosen is not None
        chosen.in_flight += 1
    assert (targets[0].in_flight, targets[1].in_flight) == (40, 10)


class RecordingRandom(random.Random):
    """A seeded Random that remembers each sample it drew."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.samples: list[list[Target]] = []

    def sample(self, population, k, *, counts=None):  # type: ignore[no-untyped-def]  # as random
        drawn = super().sample(population, k, counts=counts)
        self.samples.append(list(drawn))
        return drawn


@given(
    loads=st.lists(st.integers(min_value=0, max_value=20), min_size=3, max_size=12),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_p2c_never_picks_the_more_loaded_of_its_two(loads: list[int], seed: int) -> None:
    targets = make_targets(len(loads))
    for target, load in zip(targets, loads, strict=True):
        target.in_flight = load
    rng = RecordingRandom(seed)
    p2c = LeastConnections(targets, choices=2, rng=rng)
    for _ in range(20):
        chosen = p2c.pick(None)
        first, second = rng.samples[-1]
        assert chosen in (first, second)
        assert chosen.in_flight == min(first.in_flight, second.in_flight)
    # So the one target more loaded than all others is never picked at all.
    if loads.count(max(loads)) == 1:
        busiest = targets[loads.index(max(loads))]
        assert all(p2c.pick(None) is not busiest for _ in range(50))


def test_p2c_keeps_the_busiest_target_near_the_average_unlike_one_random_choice() -> None:
    # Balls into bins: a thousand requests in flight at once on ten targets, none finished.
    targets = make_targets(10)
    p2c = LeastConnections(targets, choices=2, rng=random.Random(7))
    for _ in range(1000):
        chosen = p2c.pick(None)
        assert chosen is not None
        chosen.in_flight += 1
    p2c_excess = max(t.in_flight for t in targets) - 100

    rng = random.Random(7)
    one_choice = Counter(rng.choice(targets) for _ in range(1000))
    random_excess = max(one_choice.values()) - 100

    assert p2c_excess <= 3
    assert random_excess >= 3 * p2c_excess


def test_p2c_with_two_choices_among_two_targets_is_a_full_scan() -> None:
    targets = make_targets(2)
    targets[0].in_flight = 3
    p2c = LeastConnections(targets, choices=2, rng=random.Random(3))
    assert all(p2c.pick(None) is targets[1] for _ in range(20))


def every_strategy(targets: list[Target]) -> list[tuple[str, Strategy]]:
    return [
        ("round_robin", RoundRobin(targets)),
        ("weighted_round_robin", WeightedRoundRobin(targets)),
        ("least_connections", LeastConnections(targets)),
        ("p2c", LeastConnections(targets, choices=2, rng=random.Random(5))),
        ("consistent_hash", ConsistentHash(targets)),
        ("bounded_loads", ConsistentHash(targets, bounded_load=1.25)),
    ]


def test_no_strategy_ever_picks_an_unhealthy_or_open_target() -> None:
    targets = make_targets(5, [3, 1, 2, 1, 1])
    targets[0].health.active_ok = False  # failed its active checks
    targets[3].health.admit = 0  # its circuit breaker is open
    for name, strategy in every_strategy(targets):
        picked = {strategy.pick(f"key-{i}" if i % 3 else None) for i in range(300)}
        assert picked == {targets[1], targets[2], targets[4]}, name
