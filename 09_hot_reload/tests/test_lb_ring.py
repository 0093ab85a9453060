"""The hash ring: stable keys, even shares, only the necessary moves, health-aware walks."""

from __future__ import annotations

import statistics
from collections import Counter

from gateway.balancing import ConsistentHash, HashRing, Target, hash64
from hypothesis import given, settings
from hypothesis import strategies as st
from lbhelpers import make_targets

KEYS = [f"user-{i}" for i in range(3000)]

# Target URLs as hypothesis draws them: distinct ports on loopback.
ports = st.lists(st.integers(min_value=1024, max_value=65535), min_size=1, max_size=8, unique=True)


def ring_of(port_list: list[int], vnodes: int = 20) -> HashRing:
    return HashRing([Target(f"http://127.0.0.1:{p}") for p in port_list], vnodes)


def owners(ring: HashRing, keys: list[str]) -> dict[str, str]:
    # the type ignore below: a ring with targets always has an owner
    return {key: ring.owner(key).url for key in keys}  # type: ignore[union-attr]


def test_the_hash_is_stable_across_processes() -> None:
    # A fixed value: if hash64 ever changed, every key in production would move at once.
    assert hash64("user-42") == 0x6FA0CA4D7BE6EFA6


def test_the_same_key_always_reaches_the_same_target() -> None:
    ch = ConsistentHash(make_targets(6))
    first = [ch.pick(key) for key in KEYS[:200]]
    assert [ch.pick(key) for key in KEYS[:200]] == first
    assert len(set(first)) == 6


def test_the_ring_does_not_depend_on_the_order_targets_are_listed() -> None:
    targets = make_targets(5)
    forward = owners(HashRing(targets), KEYS[:500])
    assert owners(HashRing(list(reversed(targets))), KEYS[:500]) == forward


def test_160_virtual_nodes_share_the_ring_evenly() -> None:
    # 1/sqrt(160) = 7.9% is the expected spread of a target's share; allow for chance.
    shares = list(HashRing(make_targets(20), 160).shares().values())
    assert abs(sum(shares) - 1) < 1e-9
    mean = 1 / 20
    assert statistics.pstdev(shares) / mean < 0.12
    assert max(shares) / mean < 1.3


def test_more_virtual_nodes_mean_a_more_even_ring() -> None:
    spread = {}
    for vnodes in (10, 160, 1000):
        shares = list(HashRing(make_targets(20), vnodes).shares().values())
        spread[vnodes] = statistics.pstdev(shares) * 20
    assert spread[10] > spread[160] > spread[1000]


def test_key_counts_follow_the_ring_shares() -> None:
    ring = HashRing(make_targets(4), 160)
    counts = Counter(owners(ring, KEYS).values())
    for url, share in ring.shares().items():
        assert abs(counts[url] / len(KEYS) - share) < 0.03


def test_a_weight_of_2_owns_twice_the_ring() -> None:
    shares = HashRing(make_targets(3, [2, 1, 1]), 160).shares()
    assert 0.42 < shares["http://127.0.0.1:9001"] < 0.58


@settings(max_examples=60, deadline=None)
@given(existing=ports, new=st.integers(min_value=1024, max_value=65535))
def test_adding_a_target_only_moves_keys_to_it(existing: list[int], new: int) -> None:
    if new in existing:
        return
    before = owners(ring_of(existing), KEYS[:400])
    after = owners(ring_of([*existing, new]), KEYS[:400])
    for key, url in after.items():
        assert url == before[key] or url == f"http://127.0.0.1:{new}"


@settings(max_examples=60, deadline=None)
@given(existing=ports.filter(lambda p: len(p) >= 2), which=st.integers(min_value=0))
def test_removing_a_target_only_moves_the_keys_it_had(existing: list[int], which: int) -> None:
    gone = existing[which % len(existing)]
    before = owners(ring_of(existing), KEYS[:400])
    after = owners(ring_of([p for p in existing if p != gone]), KEYS[:400])
    for key, url in before.items():
        if url != f"http://127.0.0.1:{gone}":
            assert after[key] == url


def test_an_unavailable_owner_hands_its_keys_clockwise_and_nobody_else_moves() -> None:
    targets = make_targets(5)
    ch = ConsistentHash(targets)
    before = {key: ch.pick(key) for key in KEYS[:1000]}
    targets[2].health.active_ok = False
    for key, target in before.items():
        now = ch.pick(key)
        if target is targets[2]:
            assert now is next(t for t in ch.ring.walk(hash64(key)) if t is not targets[2])
        else:
            assert now is target  # its own target is still up: it stays put
    targets[2].health.active_ok = True
    assert {key: ch.pick(key) for key in KEYS[:1000]} == before  # and they come back


def test_requests_without_a_key_are_spread_not_pinned() -> None:
    ch = ConsistentHash(make_targets(3))
    assert len({ch.pick(None) for _ in range(6)}) == 3
