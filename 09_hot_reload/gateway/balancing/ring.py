"""Consistent hashing: a hash ring with virtual nodes, and bounded loads.

Hashing a key straight to `targets[hash % n]` sends the same user to the same target
(good for its caches) until n changes; then almost every key moves ((n-1)/n of them).
A ring moves only the keys that must move: every target owns many points on a circle of
2**64 positions, a key goes to the first point clockwise from its own hash, and removing
a target hands its arcs to its clockwise neighbours while every other key stays put.
Adding a target only takes keys *to* the new target. tests/test_lb_ring.py checks both
with hypothesis, and `make lb-bench` measures them.

Virtual nodes: with one point per target the arcs are wildly uneven (one target can own
half the circle). With k points per target each share is a sum of k random arcs, and its
spread shrinks like 1/sqrt(k): ~25% at k = 16, ~7.9% at k = 160, ~3% at k = 1000 (the
lb-bench table measures it). 160 points per unit of weight is nginx's choice
(`hash ... consistent`, after libketama); the cost is memory (n * k points) and a
slower build, never a slower lookup, which is one bisect: O(log(n * k)).

Bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with Bounded Loads",
SODA 2018, arXiv:1608.01350; contributed to HAProxy by Vimeo as `hash-balance-factor`,
later in Envoy's ring hash as `hash_balance_factor`, both as a percentage, 125 = 1.25):
a hot key (one celebrity user, one viral video) would
otherwise pile all its requests on one target. With factor c > 1, a request is placed
only where it fits under the cap

    cap(t) = ceil(c * m * weight(t) / W)

where m counts the requests in flight on the available targets *including the one being
placed*, and W is those targets' total weight. With equal weights that is ceil(c * avg),
avg = m / n. The request's first owner on the ring gets it if it has room, otherwise it
walks clockwise to the next target with room. A target always has room: the caps add up
to at least c * m > m - 1, the requests already in flight. The cap holds at the moment a
request is placed; when other requests finish, the average falls and a target may sit
above the new cap until its own requests finish (requests in flight are never moved).
c near 1 balances almost perfectly but sends many requests away from their key's own
target (lost cache affinity); a large c keeps affinity and lets hot keys pile up. 1.25
(Vimeo's choice) caps any target at a quarter above the average.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Collection, Iterator, Sequence
from fractions import Fraction

from .target import Target, least_loaded

RING_SIZE = 2**64
DEFAULT_VIRTUAL_NODES = 160


def hash64(text: str) -> int:
    """A stable 64-bit hash: the same on every run, process and machine.

    Python's hash() is salted per process (PYTHONHASHSEED), so two gateway workers would
    disagree about every key. BLAKE2b is in hashlib, fast, and uniformly spread; nginx uses
    CRC32 and libketama MD5. Any well-mixed hash will do, but it must never change: a new
    hash function remaps every key at once.
    """
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    """The sorted points of every target: `virtual_nodes * weight` points each."""

    def __init__(
        self, targets: Sequence[Target], virtual_nodes: int = DEFAULT_VIRTUAL_NODES
    ) -> None:
        # A point is named "url#i", so it depends only on the target's own URL: adding or
        # removing another target never moves it. Sorting on (hash, url) keeps the ring
        # the same whatever order the config lists the targets in.
        points = sorted(
            (
                (hash64(f"{t.url}#{i}"), t.url, t)
                for t in targets
                for i in range(virtual_nodes * t.weight)
            ),
            key=lambda point: (point[0], point[1]),
        )
        self._hashes = [point[0] for point in points]
        self._owners = [point[2] for point in points]
        self._distinct = len({id(t) for t in self._owners})

    def __len__(self) -> int:
        return len(self._hashes)

    def walk(self, key_hash: int) -> Iterator[Target]:
        """Every target once, in ring order, starting with the owner of `key_hash`."""
        if not self._hashes:
            return
        start = bisect_right(self._hashes, key_hash)  # the first point after the key
        seen: set[int] = set()
        n = len(self._owners)
        for step in range(n):
            owner = self._owners[(start + step) % n]
            if id(owner) not in seen:
                seen.add(id(owner))
                yield owner
                if len(seen) == self._distinct:
                    return

    def owner(self, key: str) -> Target | None:
        """The key's target on a ring where every target is up (for tests and the bench)."""
        return self.owner_at(hash64(key))

    def owner_at(self, key_hash: int) -> Target | None:
        """The owner of the first point after `key_hash`: one bisect, no walk."""
        if not self._hashes:
            return None
        return self._owners[bisect_right(self._hashes, key_hash) % len(self._hashes)]

    def shares(self) -> dict[str, float]:
        """Exact share of the hash space each target owns, by URL (sums to 1).

        A key hashing into [previous point, this point) belongs to this point's owner,
        so each owner's share is the sum of the arcs that end at its points.
        """
        shares: dict[str, float] = {t.url: 0.0 for t in self._owners}
        previous = self._hashes[-1] - RING_SIZE if self._hashes else 0
        for point, owner in zip(self._hashes, self._owners, strict=True):
            shares[owner.url] += (point - previous) / RING_SIZE
            previous = point
        return shares


class ConsistentHash:
    """Strategy: the key's target on the ring, skipping unavailable ones, within bounds."""

    name = "consistent_hash"

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        virtual_nodes: int = DEFAULT_VIRTUAL_NODES,
        bounded_load: float | None = None,
    ) -> None:
        if bounded_load is not None and bounded_load <= 1:
            raise ValueError("bounded_load must be greater than 1")
        self.targets = list(targets)
        self.ring = HashRing(self.targets, virtual_nodes)
        # Exact rational arithmetic: 1.1 * 10 is 11.000000000000002 in floats, and
        # ceil() of that is 12, one request more than the cap the user asked for.
        self.factor = None if bounded_load is None else Fraction(str(bounded_load))
        self.spills = 0  # requests placed past their key's owner because it was full
        self._start = 0

    def capacity(self, target: Target) -> int | None:
        """The in-flight cap `target` must stay within if it takes the next request."""
        if self.factor is None:
            return None
        return self._cap(target, *self._load())

    def pick(self, key: str | None, avoid: Collection[Target] = ()) -> Target | None:
        available = [t for t in self.targets if t.available and t not in avoid]
        if not available:
            return None
        if key is None:
            return self._keyless(available)
        owners = (t for t in self.ring.walk(hash64(key)) if t.available and t not in avoid)
        if self.factor is None:
            return next(owners, None)
        load = self._load()
        for rank, target in enumerate(owners):
            if target.in_flight < self._cap(target, *load):  # then in_flight + 1 <= cap
                self.spills += rank > 0
                return target
        return None  # unreachable: the caps add up to more than the requests in flight

    def _load(self) -> tuple[int, int]:
        """(requests in flight on available targets + the one being placed, their weight)."""
        placed = weight = 0
        for t in self.targets:
            if t.available:
                placed += t.in_flight
                weight += t.weight
        return placed + 1, weight

    def _cap(self, target: Target, placed: int, weight: int) -> int:
        assert self.factor is not None
        numerator = self.factor.numerator * placed * target.weight
        return -(-numerator // (self.factor.denominator * weight))  # ceil, in integers

    def _keyless(self, available: list[Target]) -> Target:
        # No header/cookie to hash: hashing "" would pin every such request to one target.
        # Envoy picks a random host; least loaded (ties rotating) spreads them as well, and
        # only targets with room are considered, so the bounded-load cap holds here too.
        if self.factor is not None:
            load = self._load()
            available = [t for t in available if t.in_flight < self._cap(t, *load)]
        self._start = (self._start + 1) % len(available)
        return least_loaded(available[self._start :] + available[: self._start])
