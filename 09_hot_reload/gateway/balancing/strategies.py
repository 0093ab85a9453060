"""How a pool chooses one target for one request: the pluggable Strategy interface.

A strategy is built once per pool with the pool's targets, keeps whatever state it needs
(a cursor, running weights, a hash ring), and answers one question per request:

    pick(key) -> Target | None

`key` is the request's hash key (only consistent hashing uses it), None when the request
has none; `avoid` holds targets a retry should not go back to (stage 04: the ones this
request already tried), which the strategy skips like unavailable ones. The answer is
None only when no target is available. Every strategy skips
targets that are not `available` (failed active checks, or an open breaker), so health is
enforced in one place for all of them, and a later stage can add a strategy without
touching health at all.

This module holds the strategies that need no key: round robin, smooth weighted round
robin, least connections (with power-of-two choices), and STRATEGIES, the registry of
every strategy by its name in gateway.toml. Consistent hashing lives in ring.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Protocol

from .ring import ConsistentHash
from .target import Target, least_loaded, less_loaded

if TYPE_CHECKING:  # only for the factories' signature: config.py imports this module
    from .config import UpstreamConfig


class Strategy(Protocol):
    """What UpstreamPool needs from a strategy. Later stages plug in their own."""

    name: str

    def pick(self, key: str | None, avoid: Collection[Target] = ()) -> Target | None: ...


class RoundRobin:
    """Each available target in turn, weights ignored.

    The cursor walks the full target list and skips the unavailable ones, instead of
    taking `counter % len(available)`: when one target drops out, the others keep their
    relative order rather than all shifting by one.
    """

    name = "round_robin"

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self._cursor = 0

    def pick(self, key: str | None, avoid: Collection[Target] = ()) -> Target | None:
        n = len(self.targets)
        for step in range(n):
            target = self.targets[(self._cursor + step) % n]
            if target.available and target not in avoid:
                self._cursor = (self._cursor + step + 1) % n
                return target
        return None


class WeightedRoundRobin:
    """nginx's smooth weighted round robin (ngx_http_upstream_get_peer, 2012).

    Every pick, each available target's running `current` grows by its weight; the target
    with the largest `current` wins and pays back the total weight. For weights a=5, b=1,
    c=1 that gives  a a b a c a a  (nginx's own comment), where a naive "5 a's, then b,
    then c" would send a burst of 5 to one server. Over any window of `total` picks each
    target gets exactly its weight.

    nginx also keeps an `effective_weight` that it lowers after a failure and raises back
    by one per success, so a flaky peer gets less traffic before it is marked down. Here
    failures are handled by the circuit breaker (breaker.py) for every strategy alike.
    """

    name = "weighted_round_robin"

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = list(targets)
        self._current = [0] * len(self.targets)

    def pick(self, key: str | None, avoid: Collection[Target] = ()) -> Target | None:
        best = -1
        total = 0
        for i, target in enumerate(self.targets):
            if not target.available or target in avoid:
                continue
            self._current[i] += target.weight
            total += target.weight
            if best < 0 or self._current[i] > self._current[best]:
                best = i  # strict ">": the first of equals wins, as in nginx
        if best < 0:
            return None
        self._current[best] -= total
        return self.targets[best]


class LeastConnections:
    """The target with the fewest requests in flight per unit of weight.

    choices=None (or 0) scans every available target, as nginx's `least_conn` does, and
    like nginx it shares ties by smooth weighted round robin. Ties are the common case,
    not a corner: with light traffic every target sits at 0 in flight, and "first in the
    list wins ties" would send every request to one target. Sharing them by weight makes
    a quiet pool behave like weighted round robin and a busy one like least connections.

    choices=2 is "the power of two random choices": sample two distinct targets at
    random and take the less loaded (a tie goes to the first drawn). It needs no full
    scan, and it is far better than one random choice: in the balls-into-bins model the
    fullest bin drops from ~log n / log log n above the average to ~log log n / log 2
    (Azar, Broder, Karlin, Upfal 1994; Mitzenmacher 2001). It also fixes least
    connections' herd problem when several balancers share backends: they all see the
    same "least loaded" target and stampede it, while random pairs spread them out.
    Envoy's LEAST_REQUEST uses choice_count = 2 by default; nginx writes it
    `random two least_conn`.
    """

    name = "least_connections"

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        choices: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if choices is not None and choices != 0 and choices < 2:
            raise ValueError("choices must be 0/None (scan every target) or at least 2")
        self.targets = list(targets)
        self.choices = choices or None
        # A seeded Random makes tests and the bench repeatable; production seeds it from
        # the OS (random.Random() does) so that gateways do not pick in lockstep.
        self._rng = rng or random.Random()
        self._current = {id(t): 0 for t in self.targets}  # smooth WRR among ties

    def pick(self, key: str | None, avoid: Collection[Target] = ()) -> Target | None:
        candidates = [t for t in self.targets if t.available and t not in avoid]
        if not candidates:
            return None
        if self.choices is not None and self.choices < len(candidates):
            return least_loaded(self._rng.sample(candidates, self.choices))
        best = least_loaded(candidates)
        tied = [t for t in candidates if not less_loaded(best, t)]
        if len(tied) == 1:
            return best
        total = 0
        winner = tied[0]
        for target in tied:
            self._current[id(target)] += target.weight
            total += target.weight
            if self._current[id(target)] > self._current[id(winner)]:
                winner = target
        self._current[id(winner)] -= total
        return winner


# --- the registry -------------------------------------------------------------------------

StrategyFactory = Callable[["UpstreamConfig", Sequence[Target], random.Random], Strategy]

# The plug-in point, and the only list of strategies: `strategy = "..."` in gateway.toml is
# checked against these names (config.py), and a pool is built with the factory. A later
# stage adds a strategy here and nowhere else; pools, health and the proxy stay as they are.
STRATEGIES: dict[str, StrategyFactory] = {
    "round_robin": lambda config, targets, rng: RoundRobin(targets),
    "weighted_round_robin": lambda config, targets, rng: WeightedRoundRobin(targets),
    "least_connections": lambda config, targets, rng: LeastConnections(
        targets, choices=config.choices, rng=rng
    ),
    "consistent_hash": lambda config, targets, rng: ConsistentHash(
        targets, virtual_nodes=config.virtual_nodes, bounded_load=config.bounded_load
    ),
}
