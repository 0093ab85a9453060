"""One upstream target: where it is, how much traffic it should get, how it is doing.

A Target is plain mutable state, owned by one UpstreamPool and changed from three places:

- the pool's leases move `in_flight` up when a request is sent and down when it is done;
- the circuit breaker (breaker.py) counts failures and opens, half-opens or closes it;
- active health (active.py) counts probe results and flips `active_ok`.

The gateway runs one event loop per process, so none of this needs a lock: a strategy
reads the counters and the lease bumps them with no `await` in between, which makes
"pick, then count" atomic. A multi-threaded proxy (Envoy, nginx) keeps these counters per
worker thread and accepts that each worker sees only its own share of the load; so does
`python -m gateway --workers N` here, one event loop per process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# A clock returns seconds from an arbitrary origin (time.monotonic in production). Tests
# pass a fake whose time only moves when the test says so: no sleeps, no flakiness.
Clock = Callable[[], float]


@dataclass(slots=True)
class TargetHealth:
    # Active checks. Targets start healthy: the gateway serves from its first second, and a
    # dead target is found by the first `unhealthy_threshold` probes or the first failed
    # requests. (Envoy can instead hold new hosts back until their first check passes:
    # `ignore_new_hosts_until_first_hc`.)
    active_ok: bool = True
    probe_successes: int = 0  # consecutive, reset by a failed probe
    probe_failures: int = 0  # consecutive, reset by a passed probe
    last_probe_error: str | None = None

    # The circuit breaker (breaker.py), fed by real requests.
    circuit: str = "closed"  # closed | open | half-open
    # Requests the breaker lets it have in flight: None any (closed), 0 none (open), k the
    # probes of a half-open breaker. One field, so `available` stays one comparison.
    admit: int | None = None
    consecutive_failures: int = 0
    opens: int = 0  # the open-time multiplier; decays while the target behaves
    open_until: float | None = None
    closed_at: float | None = None  # when its breaker last closed
    half_open_successes: int = 0


@dataclass(eq=False, slots=True)
class Target:
    """One upstream server. eq=False: two targets are the same only if they are one object."""

    url: str  # origin only, e.g. http://127.0.0.1:9001
    weight: int = 1
    in_flight: int = 0  # requests sent and not yet finished (see UpstreamPool.acquire)
    health: TargetHealth = field(default_factory=TargetHealth)

    @property
    def available(self) -> bool:
        """May a strategy pick it? Both health signals must agree.

        The pool moves breakers whose open time is up to half-open before every pick, so
        `admit` is current. Every strategy reads this for every candidate on every
        request, so it is two field reads and no call.
        """
        health = self.health
        return health.active_ok and (health.admit is None or self.in_flight < health.admit)


def least_loaded(candidates: Sequence[Target]) -> Target:
    """The first candidate with the fewest requests in flight per unit of weight."""
    best = candidates[0]
    for target in candidates[1:]:
        if less_loaded(target, best):
            best = target
    return best


def less_loaded(a: Target, b: Target) -> bool:
    """True when `a` has strictly fewer requests in flight per unit of weight than `b`.

    Cross-multiplied (a.in_flight / a.weight < b.in_flight / b.weight) to stay in integers,
    as nginx's least_conn compares `conns * best->weight < best->conns * weight`.
    """
    return a.in_flight * b.weight < b.in_flight * a.weight
