"""The rate-limit package piece by piece: the three algorithms on a clock the test moves,
the memory store's bound and all-or-nothing rule, the Lua script against the Python
arithmetic on a real Redis, the header fields, the client address, config errors. The
contract (test_ratelimit_contract.py) checks the same end to end."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Any

import http_sf
import pytest
from aiohttp.test_utils import make_mocked_request
from gateway.config import ConfigError, load_config
from gateway.ratelimit.algorithms import fixed_window, gcra, sliding_window, strict_window
from gateway.ratelimit.config import Limit
from gateway.ratelimit.fields import policy_field, state_field
from gateway.ratelimit.keys import ClientAddress
from gateway.ratelimit.redis_store import RedisStore
from gateway.ratelimit.store import MemoryStore

from common.redisserver import RedisServer

SECOND = 1000.0


# the type ignore below: any of the algorithms, each with its own state type
def run(decide, requests: int, window: float, times: list[float]) -> list[bool]:  # type: ignore[no-untyped-def]
    state, allowed = None, []
    for now in times:
        outcome = decide(state, now, requests, window)
        allowed.append(outcome.allowed)
        if outcome.allowed:
            state = outcome.state
    return allowed


def test_gcra_allows_a_burst_then_one_per_interval() -> None:
    # 10 per second: a burst of 10 at t=0, then one every 100 ms.
    assert run(gcra, 10, SECOND, [0.0] * 11) == [True] * 10 + [False]
    assert run(gcra, 10, SECOND, [0.0] * 10 + [99.0, 100.0, 150.0, 200.0]) == (
        [True] * 10 + [False, True, False, True]
    )
    refused = gcra(10 * SECOND / 10 + 0.0, 0.0, 10, SECOND)  # TAT a full window ahead
    assert not refused.allowed and refused.retry_ms == pytest.approx(100.0)


def test_gcra_counts_remaining_down() -> None:
    state: Any = None
    remaining = []
    for _ in range(5):
        outcome = gcra(state, 0.0, 5, SECOND)
        state = outcome.state
        remaining.append(outcome.remaining)
    assert remaining == [4, 3, 2, 1, 0]


def test_the_fixed_window_admits_twice_the_limit_around_its_edge() -> None:
    # 10 at 999 ms, 10 at 1001 ms: all admitted by the fixed window...
    times = [999.0] * 10 + [1001.0] * 10
    assert sum(run(fixed_window, 10, SECOND, times)) == 20
    # ...and not by the sliding-window counter or GCRA.
    assert sum(run(sliding_window, 10, SECOND, times)) == 10
    assert sum(run(gcra, 10, SECOND, times)) == 10


def test_the_sliding_window_weights_the_previous_window() -> None:
    state: Any = None
    for _ in range(10):  # a full previous window
        state = sliding_window(state, 500.0, 10, SECOND).state
    # 250 ms into the next window, 75% of the previous one still counts: 7.5 -> 2 more.
    outcomes = []
    for _ in range(3):
        outcome = sliding_window(state, 1250.0, 10, SECOND)
        outcomes.append(outcome.allowed)
        state = outcome.state if outcome.allowed else state
    assert outcomes == [True, True, False]
    refused = sliding_window(state, 1250.0, 10, SECOND)
    # admitted again once the previous window weighs 7 or less: at 1300 ms.
    assert refused.retry_ms == pytest.approx(50.0)


def test_the_memory_store_counts_all_or_nothing_and_stays_bounded() -> None:
    async def scenario() -> None:
        store = MemoryStore(max_keys=100, clock=lambda: 0.0)
        limits = [("gcra", 2, SECOND), ("gcra", 5, SECOND)]
        outcomes = [await store.hit(["a1", "a2"], limits) for _ in range(3)]
        assert [all(o.allowed for o in out) for out in outcomes] == [True, True, False]
        # the refused third did not consume from the roomier limit: 5 - 2 = 3 left
        assert outcomes[1][1].remaining == 3
        for i in range(150):
            await store.hit([f"k{i}"], [("gcra", 1, SECOND)])
        assert len(store.states) == 100 and store.evicted >= 50

    asyncio.run(scenario())


@pytest.mark.parametrize("algorithm", ["strict_window", "gcra", "sliding_window", "fixed_window"])
def test_the_lua_script_decides_like_the_python(redis_server: RedisServer, algorithm: str) -> None:
    async def scenario() -> tuple[list[tuple[bool, int]], list[tuple[bool, int]]]:
        store = RedisStore(redis_server.url, timeout=1.0, prefix=f"unit-{algorithm}:",
                           failures=3, open_for=1.0)  # fmt: skip
        memory = MemoryStore(1000)
        limits = [(algorithm, 10, 600 * SECOND)]
        lua = [(o.allowed, o.remaining) for _ in range(13) for o in await store.hit(["k"], limits)]
        py = [(o.allowed, o.remaining) for _ in range(13) for o in await memory.hit(["k"], limits)]
        await store.close()
        return lua, py

    lua, py = asyncio.run(scenario())
    assert lua == py
    assert [a for a, _ in lua] == [True] * 10 + [False] * 3


def test_the_header_fields_are_structured_field_lists() -> None:
    burst = Limit("burst", 10, SECOND, "gcra")
    hourly = Limit("hourly", 1000, 3600 * SECOND, "sliding_window")
    policy = policy_field([(burst, 10), (hourly, 1000)])
    assert http_sf.parse(policy.encode(), tltype="list") == [
        ("burst", {"q": 10, "w": 1}), ("hourly", {"q": 1000, "w": 3600})
    ]  # fmt: skip
    outcomes = [gcra(None, 0.0, 10, SECOND), sliding_window(None, 0.0, 1000, 3600 * SECOND)]
    state = http_sf.parse(state_field([burst, hourly], outcomes).encode(), tltype="list")
    assert state == [("burst", {"r": 9, "t": 1}), ("hourly", {"r": 999, "t": 3600})]


def test_the_client_address_behind_trusted_proxies() -> None:
    addresses = ClientAddress(["127.0.0.1/32", "10.0.0.0/8"])

    def of(xff: str | None) -> str:
        headers = {"X-Forwarded-For": xff} if xff is not None else {}
        request = make_mocked_request("GET", "/", headers=headers)
        request._transport_peername = ("127.0.0.1", 1)
        return addresses.of(request)

    assert of("203.0.113.5") == "203.0.113.5"
    assert of("6.6.6.6, 203.0.113.5, 10.1.2.3") == "203.0.113.5"  # rightmost untrusted
    assert of("10.1.2.3") == "10.1.2.3"  # every hop trusted: the leftmost
    assert of(None) == "127.0.0.1"
    untrusting = ClientAddress([])
    request = make_mocked_request("GET", "/", headers={"X-Forwarded-For": "203.0.113.5"})
    request._transport_peername = ("127.0.0.1", 1)
    assert untrusting.of(request) == "127.0.0.1"  # nobody's X-Forwarded-For is believed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('rate_limit = { limits = [{ name = "a", requests = 0, window = 1.0 }] }',
         "routes[0].rate_limit.limits[0].requests"),
        ('rate_limit = { limits = [{ name = "a", requests = 5, window = 1.0,'
         ' algorithm = "leaky" }] }',
         "routes[0].rate_limit.limits[0].algorithm"),
        ('rate_limit = { limits = [{ name = "a", requests = 5, window = 1.0 },'
         ' { name = "a", requests = 9, window = 9.0 }] }', "two limits with one name"),
        ('rate_limit = { key = "cookie:x" }', "routes[0].rate_limit.key"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[[routes]]\nprefix = "/"\nupstream = "http://127.0.0.1:9"\n{text}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, shown="gateway.toml")
    assert message in str(caught.value), str(caught.value)


def test_trusted_proxies_must_be_networks(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[rate_limit]\ntrusted_proxies = ["localhost"]\n'
                    '[[routes]]\nprefix = "/"\nupstream = "http://127.0.0.1:9"\n')  # fmt: skip
    with pytest.raises(ConfigError, match="rate_limit.trusted_proxies"):
        load_config(path, shown="gateway.toml")


def test_redis_url_makes_auto_limits_shared_and_the_log_says_where(tmp_path: Path) -> None:
    """`store = "auto"` is memory until --redis-url gives a URL (GatewayConfig.with_redis);
    an explicit `store = "memory"` stays memory. The start-up log says where each
    concern's state is, and warns when N workers would each admit the whole limit."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[[routes]]\nprefix = "/"\nupstream = "http://127.0.0.1:9"\n'
        'rate_limit = { limits = [{ name = "a", requests = 5, window = 1.0 }] }\n'
    )
    config = load_config(path)
    assert [message for _, message in config.startup_notes(workers=1)] == [
        "state: cache in memory (per process), rate limits in memory (per process)"
    ]
    assert any("each worker admits the whole limit" in m for _, m in config.startup_notes(2))
    shared = config.with_redis("redis://127.0.0.1:7000/0")
    assert shared.rate_limit.store == "redis" and shared.cache.store == "redis"
    notes = shared.startup_notes(workers=2)
    assert notes == [
        (
            logging.INFO,
            "state: cache in redis redis://127.0.0.1:7000/0,"
            " rate limits in redis redis://127.0.0.1:7000/0",
        )
    ]
    pinned = config.model_copy(
        update={"rate_limit": config.rate_limit.model_copy(update={"store": "memory"})}
    )
    assert pinned.with_redis("redis://127.0.0.1:7000/0").rate_limit.store == "memory"


def admitted_by(decide: Any, arrivals: list[float], requests: int, window: float) -> list[float]:
    state: Any = None
    admitted = []
    for now in arrivals:
        outcome = decide(state, now, requests, window)
        if outcome.allowed:
            state = outcome.state
            admitted.append(now)
    return admitted


def most_in_any(window: float, times: list[float]) -> int:
    return max((sum(1 for t in times if start <= t < start + window) for start in times), default=0)


def test_a_limit_without_an_algorithm_keeps_the_window_its_config_names() -> None:
    """`requests = 100, window = 10` reads "at most 100 in any 10 s". A client sending 20
    a second (twice the rate) for 12 s, starting 7 s into a window: the default keeps it
    exactly; GCRA keeps its own promise (100 at once, then 10/s: ~200 in the first 10 s)
    and the sliding-window counter its estimate (~140 here)."""
    from gateway.ratelimit.config import LimitConfig

    limit = LimitConfig.model_validate({"name": "ten", "requests": 100, "window": 10.0})
    assert limit.algorithm == "strict_window"
    arrivals = [7_000.0 + i * 50.0 for i in range(240)]  # ms
    strict = admitted_by(strict_window, arrivals, 100, 10_000.0)
    assert most_in_any(10_000.0, strict) == 100
    assert len(strict) >= 100 + 10 * 2 * 10 / 11 * 0.9  # still close to the rate after
    assert most_in_any(10_000.0, admitted_by(gcra, arrivals, 100, 10_000.0)) > 150
    assert most_in_any(10_000.0, admitted_by(sliding_window, arrivals, 100, 10_000.0)) > 120


@pytest.mark.parametrize("seed", range(20))
def test_the_strict_window_never_admits_more_than_its_limit_in_any_window(seed: int) -> None:
    rng = random.Random(seed)
    now, arrivals = 0.0, []
    for _ in range(600):  # bursts and pauses at random, over about 40 windows
        now += rng.choice([0.0, 1.0, 5.0, 50.0, 400.0])
        arrivals.append(now)
    requests, window = rng.choice([(5, 1000.0), (20, 3000.0), (3, 700.0)])
    admitted = admitted_by(strict_window, arrivals, requests, window)
    assert most_in_any(window, admitted) <= requests
    assert admitted  # and it does admit


def test_a_strict_windows_retry_after_is_when_a_request_would_be_admitted() -> None:
    state: Any = None
    for now in (0.0, 10.0, 20.0):  # three in the first bucket of a 3-per-1000 ms window
        outcome = strict_window(state, now, 3, 1000.0)
        state = outcome.state
    refused = strict_window(state, 500.0, 3, 1000.0)
    assert not refused.allowed and refused.retry_ms == pytest.approx(
        600.0
    )  # bucket 0 leaves at 1100
    assert not strict_window(state, 1099.0, 3, 1000.0).allowed
    assert strict_window(state, 1100.0, 3, 1000.0).allowed
