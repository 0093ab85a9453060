"""The load-balancing contract: what every stage from 03 on does with a pool of targets.

A stage runs it from `tests/test_lb_contract.py`:

    from common.contracts.lb import *  # noqa: F403

and its conftest.py provides the fixtures `stage_dir` and `render` (the stage's
`tests/stage_config.render(spec) -> str`). The gateways here are `GatewaySpec`s with
`pools` (common/testing/specs.py): a route's `upstream` names one of them.

Everything here is end to end: real backends (each stamps `X-Served-By`, and takes
`/_chaos` orders to fail or slow down), a real gateway, requests on the wire. Health
checks run every 0.2 s, and every wait polls an observable event (a backend answering
again, a 503 appearing) against a deadline, never a fixed sleep.

- distribution: round robin spreads evenly, weights are respected exactly;
- consistent hashing: a header's value always reaches the same target, and a hashed
  path is the routed (normalised) one;
- bounded loads: a hot key held in flight never puts more than ceil(c·avg) on a target;
- passive health: a target failing every request is ejected after a few failures, and
  takes traffic again on its own once it behaves;
- active health: a target failing its health checks is taken out, and back in;
- a killed target is routed around, and used again when it is restarted;
- no healthy target at all: 503 problem+json that names the upstream and why.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.contracts.upstreams import refused_port
from common.contracts.wire import PROBLEM_KEYS, Reply, send
from common.testing.gateway import Render, start_gateway
from common.testing.processes import Proc, restart_backend, start_backend, wait_healthy
from common.testing.specs import GatewaySpec, HealthSpec, PoolSpec, RouteSpec, targets

# Pools whose only job is to balance: no health checks, so nothing but the strategy
# decides where a request goes, and the counts below are exact.
NO_HEALTH = HealthSpec(active=False, consecutive_failures=0)
PASSIVE_ONLY = HealthSpec(active=False, consecutive_failures=3, base_ejection_time=2.0)
ACTIVE_ONLY = HealthSpec(active=True, interval=0.2, timeout=0.2, consecutive_failures=0)
BOTH = HealthSpec(interval=0.2, timeout=0.2, consecutive_failures=3, base_ejection_time=1.0)
BOUND = 1.25  # the bounded-loads factor c under test
DEADLINE = 8.0  # seconds an ejection or a recovery may take before the test fails


# --- helpers ----------------------------------------------------------------------------


def get(gateway: Proc, target: str, headers: dict[str, str] | None = None) -> Reply:
    return send(gateway.port, "GET", target, list((headers or {}).items()), timeout=10)


def served_by(reply: Reply) -> str:
    """`users/b@41234` -> `users/b`: which backend answered ("-" for the gateway itself)."""
    return (reply.header("X-Served-By") or "-").partition("@")[0]


def tally(
    gateway: Proc, target: str, n: int, headers: dict[str, str] | None = None
) -> Counter[str]:
    """`n` requests one after another; how many each backend answered (only 200s count)."""
    counts: Counter[str] = Counter()
    for _ in range(n):
        reply = get(gateway, target, headers)
        counts[served_by(reply) if reply.status == 200 else f"HTTP {reply.status}"] += 1
    return counts


def chaos(backend: Proc, settings: dict[str, object] | None) -> None:
    """Set a backend's chaos (POST /_chaos), or reset it (None: DELETE /_chaos)."""
    data = None if settings is None else json.dumps(settings).encode()
    request = urllib.request.Request(
        backend.url + "/_chaos",
        data=data,
        method="DELETE" if settings is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def until(what: str, check: Callable[[], bool], timeout: float = DEADLINE) -> float:
    """Poll `check` (each call sends real requests) until it holds; the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)  # between polls of an observable event, not a wait for one
    return time.monotonic() - start


def routed_around(gateway: Proc, target: str, avoided: str, window: int = 12) -> Callable[[], bool]:
    """True once `window` requests in a row succeed and none reaches `avoided`."""

    def check() -> bool:
        counts = tally(gateway, target, window)
        return counts[avoided] == 0 and not any(k.startswith("HTTP") for k in counts)

    return check


def serves_again(
    gateway: Proc, target: str, backend: str, errors: Counter[str]
) -> Callable[[], bool]:
    """True once `backend` answers a request again; counts every failure meanwhile."""

    def check() -> bool:
        counts = tally(gateway, target, 6)
        errors.update({k: v for k, v in counts.items() if k.startswith("HTTP")})
        return counts[backend] > 0

    return check


def start_backends(log_dir: Path, *names: str) -> list[Proc]:
    """Backends side by side (each import is slow), then wait for all of them."""
    procs = [start_backend("users", name, log_dir=log_dir, wait=False) for name in names]
    try:
        for proc in procs:
            wait_healthy(proc)
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
    return procs


# --- fixtures: three backends and one gateway with a pool per behaviour ---------------------


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Proc]]:
    procs = start_backends(tmp_path_factory.mktemp("lb-backends"), "a", "b", "c")
    yield procs
    for proc in procs:
        proc.stop()


@pytest.fixture(scope="module")
def lb_gateway(
    trio: list[Proc],
    stage_dir: Path,
    render: Render,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    urls = [proc.url for proc in trio]
    with contextlib.ExitStack() as stack:
        down = [f"http://127.0.0.1:{stack.enter_context(refused_port())}" for _ in range(2)]
        pools = {
            "rr": PoolSpec(targets(*urls), "round_robin", health=NO_HEALTH),
            "wrr": PoolSpec(
                targets(*urls, weights=(3, 1, 1)), "weighted_round_robin", health=NO_HEALTH
            ),
            "hash": PoolSpec(
                targets(*urls), "consistent_hash", hash_key="header:X-User-ID", health=NO_HEALTH
            ),
            "pathhash": PoolSpec(
                targets(*urls), "consistent_hash", hash_key="path", health=NO_HEALTH
            ),
            "bounded": PoolSpec(
                targets(*urls),
                "consistent_hash",
                hash_key="header:X-User-ID",
                bounded_load=BOUND,
                health=NO_HEALTH,
            ),
            "passive": PoolSpec(targets(*urls), "round_robin", health=PASSIVE_ONLY),
            "active": PoolSpec(targets(*urls), "round_robin", health=ACTIVE_ONLY),
            "down": PoolSpec(targets(*down), "round_robin", health=BOTH),
        }
        routes = [RouteSpec(f"/{name}", name, strip_prefix=True) for name in pools]
        proc = start_gateway(
            stage_dir, render(GatewaySpec(routes, pools)), tmp_path_factory.mktemp("lb-gateway")
        )
        yield proc
        proc.stop()


@pytest.fixture
def calm(trio: list[Proc]) -> Iterator[list[Proc]]:
    """The three backends, with every chaos setting reset after the test, pass or fail."""
    yield trio
    for proc in trio:
        chaos(proc, None)


# --- distribution -------------------------------------------------------------------------


def test_round_robin_spreads_requests_evenly(lb_gateway: Proc) -> None:
    assert tally(lb_gateway, "/rr/users", 30) == {"users/a": 10, "users/b": 10, "users/c": 10}


def test_weighted_round_robin_respects_the_weights(lb_gateway: Proc) -> None:
    # Smooth weighted round robin gives each target exactly its weight in every window
    # of 3 + 1 + 1 requests, so 50 requests are 30/10/10 exactly, not roughly.
    assert tally(lb_gateway, "/wrr/users", 50) == {"users/a": 30, "users/b": 10, "users/c": 10}


def test_consistent_hashing_sends_a_key_to_the_same_target_every_time(lb_gateway: Proc) -> None:
    homes: dict[str, set[str]] = {}
    for round_ in range(3):
        for user in range(30):
            reply = get(lb_gateway, "/hash/users", {"X-User-ID": f"user-{user}"})
            assert reply.status == 200, (round_, user, reply.status)
            homes.setdefault(f"user-{user}", set()).add(served_by(reply))
    assert all(len(home) == 1 for home in homes.values()), homes
    # ...and the keys are spread over the pool, not all hashed to one target.
    assert len(set().union(*homes.values())) == 3


def test_hashing_the_path_hashes_the_path_that_was_routed(lb_gateway: Proc) -> None:
    """`/a//b` and `/a/./b` are `/a/b` to the router, so they are one key for the ring
    too: a per-resource cache behind the ring must not be split by how a path is spelt."""
    homes = set()
    seen = []  # what each answer said, for the message if the keys do not spread
    for key in range(12):
        reply = get(lb_gateway, f"/pathhash/echo/k{key}")
        plain = served_by(reply)
        seen.append((key, reply.status, plain, reply.header("X-Attempt-Count") or "-"))
        assert served_by(get(lb_gateway, f"/pathhash//echo//k{key}")) == plain, key
        assert served_by(get(lb_gateway, f"/pathhash/echo/./x/../k{key}")) == plain, key
        homes.add(plain)
    # The keys do spread: this is not one target for all. Should they not, the message
    # tells a ring that put them together from tries that failed over to one target: each
    # answer's status and X-Attempt-Count, and the gateway's log.
    assert len(homes) > 1, f"{homes} {seen}\n{lb_gateway.log_tail()}"


def test_bounded_loads_cap_a_hot_key_at_c_times_the_average(lb_gateway: Proc) -> None:
    """12 requests for one key, each held 1 s in flight, on a plain ring and a bounded one.

    The plain ring sends all 12 to the key's owner. With c = 1.25 no target may take a
    request that would put it above ceil(1.25 x in-flight / 3); with all 12 in flight at
    once that is ceil(1.25 x 12 / 3) = 5, and the rest spill to the next targets.
    """
    n = 12
    hot = {"X-User-ID": "celebrity"}
    with ThreadPoolExecutor(max_workers=2 * n) as pool:
        # Distinct targets with one hash key: the ring sees one hot user, and a cache in
        # front (stage 05) has no identical misses to coalesce.
        plain = [pool.submit(get, lb_gateway, f"/hash/delay/1000?n={i}", hot) for i in range(n)]
        bounded = [
            pool.submit(get, lb_gateway, f"/bounded/delay/1000?n={i}", hot) for i in range(n)
        ]
        plain_replies = [f.result() for f in plain]
        bounded_replies = [f.result() for f in bounded]
    assert all(r.status == 200 for r in plain_replies + bounded_replies)
    plain_counts = Counter(served_by(r) for r in plain_replies)
    bounded_counts = Counter(served_by(r) for r in bounded_replies)
    assert len(plain_counts) == 1, plain_counts  # the hot key's owner took everything
    cap = math.ceil(BOUND * n / 3)
    assert max(bounded_counts.values()) <= cap, bounded_counts
    # The owner is filled first: a bounded ring still keeps as much affinity as it may.
    assert bounded_counts.most_common(1)[0][1] == cap, bounded_counts


# --- health: ejection and recovery --------------------------------------------------------


def test_a_target_failing_every_request_is_ejected_then_taken_back(
    lb_gateway: Proc, calm: list[Proc]
) -> None:
    """Passive health only: the gateway learns from the requests themselves."""
    chaos(calm[1], {"failure_rate": 1.0})  # users/b: 503 for every request, /health too
    counts = tally(lb_gateway, "/passive/users", 30)
    # b failed 3 requests in a row (every third request is b's) and was ejected: its
    # 503s passed through to those clients, and nobody else's request reached it.
    assert counts == {"HTTP 503": 3, "users/a": 14, "users/c": 13}, counts
    chaos(calm[1], None)  # b behaves again; the gateway is not told
    errors: Counter[str] = Counter()
    until(
        "users/b serves again after its ejection",
        serves_again(lb_gateway, "/passive/users", "users/b", errors),
    )
    assert not errors, errors


def test_a_target_failing_its_health_checks_is_taken_out_then_back_in(
    lb_gateway: Proc, calm: list[Proc]
) -> None:
    """Active health only: probes of /health decide, every 0.2 s."""
    chaos(calm[2], {"failure_rate": 1.0, "include_health": True})  # users/c fails /health
    until("users/c is routed around", routed_around(lb_gateway, "/active/users", "users/c"))
    chaos(calm[2], None)
    errors: Counter[str] = Counter()
    until(
        "users/c serves again once its checks pass",
        serves_again(lb_gateway, "/active/users", "users/c", errors),
    )
    assert not errors, errors


def test_a_killed_target_is_routed_around_and_used_again_when_it_restarts(
    stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    x, y = start_backends(tmp_path, "x", "y")
    procs = [x, y]
    try:
        pools = {"pair": PoolSpec(targets(x.url, y.url), "round_robin", health=BOTH)}
        config = render(GatewaySpec([RouteSpec("/pair", "pair", strip_prefix=True)], pools))
        gateway = start_gateway(stage_dir, config, tmp_path)
        procs.append(gateway)
        assert tally(gateway, "/pair/users", 4) == {"users/x": 2, "users/y": 2}
        y.stop(sig=signal.SIGKILL)  # a crash: no goodbye, connections just refused
        errors = tally(gateway, "/pair/users", 20)
        # Until a health check or 3 failed requests take y out, its requests fail (502):
        # never more than the passive threshold, and then only x answers.
        assert errors["users/y"] == 0 and errors["HTTP 502"] <= 3, errors
        until("users/y is routed around", routed_around(gateway, "/pair/users", "users/y"))
        procs[1] = y = restart_backend(y, log_dir=tmp_path)
        failures: Counter[str] = Counter()
        until("users/y serves again", serves_again(gateway, "/pair/users", "users/y", failures))
        assert not failures, failures
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_no_healthy_target_is_a_503_problem_naming_the_upstream(lb_gateway: Proc) -> None:
    """Both targets of `down` refuse connections: the checks mark them, then 503s."""
    replies: list[Reply] = []

    def answered_503() -> bool:
        replies.append(get(lb_gateway, "/down/users/1"))
        return replies[-1].status == 503

    until("the gateway answers 503 for a pool with no healthy target", answered_503)
    reply = replies[-1]
    assert reply.header("Content-Type") == "application/problem+json"
    problem = reply.json()
    assert set(problem) >= PROBLEM_KEYS
    assert problem["status"] == 503 and problem["type"].endswith("/no-healthy-upstream")
    assert problem["request_id"] == reply.header("X-Request-ID")
    detail = problem["detail"]
    assert "'down'" in detail and "unhealthy" in detail, detail
    # Which upstream and why, never where: addresses are none of the client's business.
    assert b"127.0.0.1" not in reply.body, reply.body
    # Before the checks caught up, the connection failures were 502s, not something else.
    assert {r.status for r in replies[:-1]} <= {502}
