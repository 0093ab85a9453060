"""The channelling contract: what every stage from 04 on does on the way to its upstreams.

A stage runs it from `tests/test_channelling_contract.py`:

    from common.contracts.channelling import *  # noqa: F403

with the `stage_dir` and `render` fixtures of its conftest.py, like the other contracts.
The gateways here are `GatewaySpec`s whose routes carry a `ChannelSpec` (tries, time
limits, hedging, WebSocket) and whose pools carry breaker and bulkhead settings
(common/testing/specs.py). Everything is end to end: three real backends (each stamps
`X-Served-By`, takes `/_chaos` orders, and counts what it was sent at `/_stats`), a real
gateway, requests on the wire, and the admin listener's JSON for what the gateway thinks.

- retries: a GET is retried on another target; a POST that reached the upstream is
  not, one that was refused is; a body too large to keep is not replayed; Retry-After
  is honoured when it fits the deadline and ends the retries when it does not;
- deadlines: 504 naming the limit that passed, and the time left sent upstream;
- the retry budget: a storm on every target costs far less than `attempts` x the load;
- circuit breakers: an error rate opens one, an open pool fails fast, a healed target
  closes again after a half-open probe;
- bulkheads and load shedding: a full upstream answers 503 with Retry-After and leaves
  the other upstreams alone; past the gateway's in-flight cap, 503 at once;
- hedging: a slow first try is overtaken by a second one elsewhere;
- channels: WebSocket both ways (subprotocol, text, binary, fragmented, 1 MiB, ping/pong,
  close codes either way, idle timeout, backpressure) and Server-Sent Events unbuffered and uncut;
- the admin listener: the gateway's own endpoints are there, never on the public port.

Run against stage 03 it fails: 03 has no admin listener, and renders no channel at all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.contracts.upstreams import refused_port
from common.contracts.wire import PROBLEM_KEYS, Reply, send
from common.testing.control import control
from common.testing.gateway import Render, start_gateway
from common.testing.processes import Proc, rss_kib, start_backend, wait_healthy
from common.testing.specs import (
    BulkheadSpec,
    ChannelSpec,
    GatewaySpec,
    HealthSpec,
    PathRoute,
    PoolSpec,
    RouteSpec,
    targets,
)

# No active checks and no breaker: only the channel decides what happens to a request.
PLAIN = HealthSpec(active=False, consecutive_failures=0)
# Every route's default here: three tries, short backoffs (tests wait milliseconds, not
# the 25-250 ms a real gateway would), the stage's default conditions.
DEFAULTS = ChannelSpec(attempts=3, backoff_base=0.005)
DEADLINE = 8.0  # seconds a breaker may take to open or close before the test fails


# --- helpers ----------------------------------------------------------------------------


def get(gateway: Proc, target: str, **kwargs: Any) -> Reply:
    return send(gateway.port, "GET", target, **kwargs)


def timed(call: Callable[[], Reply]) -> tuple[Reply, float]:
    start = time.monotonic()
    reply = call()
    return reply, time.monotonic() - start


def served_by(reply: Reply) -> str:
    return (reply.header("X-Served-By") or "-").partition("@")[0]


def attempts(reply: Reply) -> int:
    return int(reply.header("X-Attempt-Count") or 0)


def chaos(backend: Proc, settings: dict[str, object] | None) -> None:
    control(backend, "/_chaos", settings)


def sent_to(*backends: Proc) -> dict[str, int]:
    """Requests each backend received since its last /_stats reset, by method."""
    totals: dict[str, int] = {}
    for backend in backends:
        with urllib.request.urlopen(backend.url + "/_stats", timeout=5) as response:
            for method, count in json.load(response)["by_method"].items():
                totals[method] = totals.get(method, 0) + count
    return totals


def admin(gateway: Proc, path: str) -> Any:
    with urllib.request.urlopen(gateway.admin_url + path, timeout=5) as response:
        return json.load(response)


def target_states(gateway: Proc, pool: str) -> list[str]:
    return [t["state"] for t in admin(gateway, "/upstreams")["upstreams"][pool]["targets"]]


def until(what: str, check: Callable[[], bool], timeout: float = DEADLINE) -> None:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)  # between polls of an observable state, not a wait for one


def problem(reply: Reply, status: int, slug: str) -> dict[str, Any]:
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.header("Content-Type") == "application/problem+json"
    body: dict[str, Any] = reply.json()
    assert set(body) >= PROBLEM_KEYS and body["type"].endswith("/" + slug), body
    return body


def concurrently(n: int, call: Callable[[], Reply]) -> list[Reply]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return [f.result() for f in [pool.submit(call) for _ in range(n)]]


# --- fixtures: three backends and one gateway with a pool and a route per behaviour ----


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Proc]]:
    log_dir = tmp_path_factory.mktemp("channel-backends")
    procs = [start_backend("users", name, log_dir=log_dir, wait=False) for name in "abc"]
    try:
        for proc in procs:
            wait_healthy(proc)
        yield procs
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture
def calm(trio: list[Proc]) -> Iterator[list[Proc]]:
    """The three backends with their counters reset, and their chaos reset afterwards."""
    for proc in trio:
        control(proc, "/_stats")
    yield trio
    for proc in trio:
        chaos(proc, None)


@pytest.fixture(scope="module")
def channel_gateway(
    trio: list[Proc], stage_dir: Path, render: Render, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proc]:
    a, b, c = (proc.url for proc in trio)
    with contextlib.ExitStack() as stack:
        dead = [f"http://127.0.0.1:{stack.enter_context(refused_port())}" for _ in range(2)]
        pools = {
            "mixed": PoolSpec(targets(dead[0], a), health=PLAIN),  # refused, then a
            "pair": PoolSpec(targets(a, b), health=PLAIN),
            "solo": PoolSpec(targets(a), health=PLAIN),
            "breaking": PoolSpec(
                targets(a, b),
                health=HealthSpec(active=False, consecutive_failures=0, base_ejection_time=1.0),
                failure_rate=0.3,
                failure_min_requests=10,
            ),
            "down": PoolSpec(
                targets(*dead),
                health=HealthSpec(active=False, consecutive_failures=2, max_ejection_percent=100),
            ),
            # One dead target whose breaker opens at its first failure: a retry finds
            # nothing left to try.
            "fragile": PoolSpec(
                targets(dead[1]),
                health=HealthSpec(active=False, consecutive_failures=1, max_ejection_percent=100),
            ),
            "narrow": PoolSpec(
                targets(c), health=PLAIN, bulkhead=BulkheadSpec(2, 1, queue_timeout=0.2)
            ),
        }
        once = ChannelSpec(attempts=1)
        routes: list[RouteSpec | PathRoute] = [
            RouteSpec(f"/{name}", name, strip_prefix=True) for name in pools
        ]
        routes += [
            RouteSpec(
                "/deadline",
                "pair",
                strip_prefix=True,
                channel=ChannelSpec(
                    attempts=3,
                    try_timeout=0.5,
                    deadline=1.2,
                    retry_on=("connect-failure", "timeout", "503"),
                    backoff_base=0.005,
                ),
            ),
            RouteSpec("/trylimit", "pair", strip_prefix=True, channel=ChannelSpec(try_timeout=0.3)),
            RouteSpec(
                "/hedged",
                "pair",
                strip_prefix=True,
                channel=ChannelSpec(attempts=2, hedge_after=0.1, backoff_base=0.005),
            ),
            RouteSpec(
                "/ws",
                "pair",
                channel=ChannelSpec(attempts=1, websocket=True, websocket_idle=30.0),
            ),
            RouteSpec(
                "/idle",
                "pair",
                strip_prefix=True,
                channel=ChannelSpec(attempts=1, websocket=True, websocket_idle=0.5),
            ),
            RouteSpec("/solows", "solo", strip_prefix=True, channel=ChannelSpec(1, websocket=True)),
            RouteSpec("/plain", "pair", strip_prefix=True, channel=once),  # no WebSocket
            RouteSpec("/sse", "pair", channel=ChannelSpec(attempts=1, try_timeout=0.3)),
        ]
        spec = GatewaySpec(routes, pools, channel=DEFAULTS)
        proc = start_gateway(stage_dir, render(spec), tmp_path_factory.mktemp("channel-gw"))
        try:
            yield proc
        finally:
            proc.stop()


# --- retries --------------------------------------------------------------------------


def test_a_get_that_meets_a_refused_target_is_retried_on_another(
    channel_gateway: Proc, calm: list[Proc]
) -> None:
    replies = [get(channel_gateway, "/mixed/users") for _ in range(6)]
    assert [r.status for r in replies] == [200] * 6
    assert {served_by(r) for r in replies} == {"users/a"}
    # Round robin sends each request to the refused target first (the retry's pick moves
    # the rotation on too): two tries each, and the client saw none of it.
    assert [attempts(r) for r in replies] == [2] * 6


def test_a_refused_post_is_retried_since_nothing_reached_anyone(
    channel_gateway: Proc, calm: list[Proc]
) -> None:
    for _ in range(4):
        reply = send(channel_gateway.port, "POST", "/mixed/echo", body=b'{"n": 1}')
        assert reply.status == 200 and reply.json()["body"] == '{"n": 1}', reply.body[:200]
    assert sent_to(calm[0]) == {"POST": 4}  # each POST arrived exactly once


def test_a_post_that_reached_the_upstream_is_not_retried(
    channel_gateway: Proc, calm: list[Proc]
) -> None:
    for proc in calm[:2]:
        chaos(proc, {"failure_rate": 1.0})
    post = send(channel_gateway.port, "POST", "/pair/echo", body=b"charge me once")
    assert post.status == 503 and attempts(post) == 1
    assert post.json()["error"] == "chaos"  # the upstream's own answer, passed on
    assert sent_to(*calm[:2]) == {"POST": 1}
    # The same failure on a GET is retried, on the other target first.
    got = get(channel_gateway, "/pair/users")
    assert got.status == 503 and attempts(got) == 3
    assert sent_to(*calm[:2]) == {"POST": 1, "GET": 3}


def test_a_body_too_large_to_keep_is_not_replayed(channel_gateway: Proc, calm: list[Proc]) -> None:
    """PUT is idempotent, but a body past replay_bytes (64 KiB) streams: one try only."""
    for proc in calm[:2]:
        chaos(proc, {"failure_rate": 1.0})
    small = send(channel_gateway.port, "PUT", "/pair/echo", body=b"x" * 1024)
    assert small.status == 503 and attempts(small) == 3
    large = send(channel_gateway.port, "PUT", "/pair/echo", body=b"x" * (256 * 1024))
    assert large.status == 503 and attempts(large) == 1
    assert sent_to(*calm[:2]) == {"PUT": 4}


def test_retry_after_that_fits_the_deadline_is_honoured(
    channel_gateway: Proc, calm: list[Proc]
) -> None:
    chaos(calm[0], {"failure_rate": 1.0, "retry_after": 1})  # a: 503, "come back in 1 s"
    retried = []
    for _ in range(2):  # round robin: a request meets a first
        reply, seconds = timed(lambda: get(channel_gateway, "/pair/users"))
        assert reply.status == 200 and served_by(reply) == "users/b", reply.status
        if attempts(reply) == 2:
            retried.append(seconds)
    assert retried and all(s >= 1.0 for s in retried), retried


def test_retry_after_beyond_the_deadline_ends_the_retries(
    channel_gateway: Proc, calm: list[Proc]
) -> None:
    chaos(calm[0], {"failure_rate": 1.0, "retry_after": 3600})
    reply, seconds = timed(lambda: get(channel_gateway, "/solo/users"))
    # The client gets the upstream's 503 and its Retry-After at once, and decides itself.
    assert reply.status == 503 and attempts(reply) == 1 and seconds < 1.0
    assert reply.header("Retry-After") == "3600"


def test_a_client_that_leaves_mid_upload_gives_every_place_back(channel_gateway: Proc) -> None:
    """A streamed PUT in flight upstream, and the client goes away: every count the
    request held goes back to zero (the target's lease, the bulkhead's place, the
    gateway's in-flight count). A leak here would skew least-connections and shrink the
    bulkhead and the shedder's cap a little with every client that hangs up."""

    def held() -> tuple[int, int, int]:
        solo = admin(channel_gateway, "/upstreams")["upstreams"]["solo"]
        channel = admin(channel_gateway, "/channel")
        in_use = channel["bulkheads"]["solo"]["in_use"]
        return solo["targets"][0]["in_flight"], in_use, channel["load_shedder"]["in_flight"]

    with socket.create_connection(("127.0.0.1", channel_gateway.port), timeout=10) as sock:
        sock.sendall(
            b"PUT /solo/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"5\r\nhello\r\n"  # no length: it streams, and the upload waits for more
        )
        until("the PUT is in flight upstream", lambda: held() == (1, 1, 1))
    until("the abandoned request holds nothing", lambda: held() == (0, 0, 0))


# --- deadlines ------------------------------------------------------------------------


def test_the_deadline_bounds_every_try_together(channel_gateway: Proc) -> None:
    """0.5 s per try, 1.2 s in all, timeouts retried: two tries and a third cut short."""
    reply, seconds = timed(lambda: get(channel_gateway, "/deadline/delay/3000"))
    body = problem(reply, 504, "deadline-exceeded")
    assert "deadline" in body["detail"] and "1.2 s" in body["detail"], body
    assert 1.1 <= seconds < 2.5, seconds


def test_a_try_timeout_names_the_try(channel_gateway: Proc) -> None:
    reply, seconds = timed(lambda: get(channel_gateway, "/trylimit/delay/2000"))
    body = problem(reply, 504, "upstream-timeout")
    assert "0.3 s" in body["detail"] and "try" in body["detail"], body
    assert seconds < 1.5, seconds  # timeouts are not retried by default


def test_the_time_left_goes_upstream(channel_gateway: Proc) -> None:
    reply = get(channel_gateway, "/deadline/delay/10")
    assert reply.status == 200
    assert reply.json()["deadline_ms"] == 500  # the try's limit: shorter than the deadline
    reply = get(channel_gateway, "/deadline/echo")
    sent = {name: value for name, value in reply.json()["headers"]}
    assert sent["x-request-deadline-ms"] == "500" and sent["x-attempt-count"] == "1"


# --- the retry budget -----------------------------------------------------------------


def test_a_storm_on_every_target_is_not_multiplied_by_the_retries(
    calm: list[Proc], stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    """Every target fails, slowly, and no breaker opens: naive retries would send 3
    upstream requests per client request. The budget (over any 10 s, 20% of the requests
    and 3 a second) keeps it within 1.5x. A gateway of its own: a storm spends the
    budget, and the module's other tests need theirs."""
    pool = PoolSpec(targets(*(p.url for p in calm)), health=PLAIN)
    spec = GatewaySpec([RouteSpec("/", "storm")], {"storm": pool}, channel=DEFAULTS)
    gateway = start_gateway(stage_dir, render(spec), tmp_path)
    try:
        for proc in calm:
            chaos(proc, {"failure_rate": 1.0, "latency_ms": 40})
        clients, rounds = 40, 4

        def client(n: int) -> list[int]:
            return [get(gateway, f"/users?n={n}-{i}").status for i in range(rounds)]

        with ThreadPoolExecutor(max_workers=clients) as threads:
            futures = [threads.submit(client, n) for n in range(clients)]
            statuses = [s for f in futures for s in f.result()]
        assert set(statuses) == {503}
        upstream = sent_to(*calm)["GET"]
        assert upstream / len(statuses) <= 1.5, (upstream, len(statuses))
        assert admin(gateway, "/channel")["retry_budget"]["denied"] > 0
    finally:
        gateway.stop()


# The stage's own defaults (gateway.toml with nothing set): active checks every 2 s, a
# breaker at 5 failures in a row or 50% of 20 in 10 s, open 5 s, at most half the pool.
STAGE_HEALTH = HealthSpec(
    interval=2.0,
    timeout=1.0,
    healthy_threshold=2,
    unhealthy_threshold=2,
    consecutive_failures=5,
    base_ejection_time=5.0,
    max_ejection_time=60.0,
    max_ejection_percent=50,
)


@contextlib.contextmanager
def default_gateway(stage_dir: Path, render: Render, tmp_path: Path, *urls: str) -> Iterator[Proc]:
    """One route `/` to a pool of `urls` with every setting at the stage's default."""
    pool = PoolSpec(targets(*urls), health=STAGE_HEALTH, failure_rate=0.5)
    spec = GatewaySpec([RouteSpec("/", "pool")], {"pool": pool}, channel=ChannelSpec(attempts=3))
    gateway = start_gateway(stage_dir, render(spec), tmp_path)
    try:
        yield gateway
    finally:
        gateway.stop()


def hammer(gateway: Proc, clients: int, each: int) -> list[int]:
    """`clients` threads sending `each` GETs one after another; distinct targets, so that
    a cache in front (05 on) coalesces nothing."""

    def client(n: int) -> list[int]:
        return [get(gateway, f"/users?n={n * each + i}").status for i in range(each)]

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return [s for f in [pool.submit(client, n) for n in range(clients)] for s in f.result()]


def test_retries_cover_a_partly_failing_pool_at_the_default_settings(
    calm: list[Proc], stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    """One target refuses connections, one answers 503 to 30% of requests, one is healthy;
    8 clients, 400 GETs, nothing tuned. nginx (max_fails=1) gets >= 99.5% here: a retry
    budget that refuses the retries this needs is a budget that fails the clients."""
    _, flaky, healthy = calm
    chaos(flaky, {"failure_rate": 0.3})
    with refused_port() as dead:
        urls = (f"http://127.0.0.1:{dead}", flaky.url, healthy.url)
        with default_gateway(stage_dir, render, tmp_path, *urls) as gateway:
            statuses = hammer(gateway, 8, 50)
            budget = admin(gateway, "/channel")["retry_budget"]
    ok = statuses.count(200) / len(statuses)
    assert ok >= 0.995, (ok, sorted(set(statuses)), budget)


def test_a_storm_at_the_default_settings_costs_at_most_half_again(
    calm: list[Proc], stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    """Every target answers 503 at once (the hardest case for a budget that counts only
    what is in flight: a failed try is over in a millisecond). Three tries per request
    would triple the load on a sick upstream; the budget keeps it within 1.5x."""
    for proc in calm:
        chaos(proc, {"failure_rate": 1.0})
    with default_gateway(stage_dir, render, tmp_path, *(p.url for p in calm)) as gateway:
        statuses = hammer(gateway, 8, 50)
    assert set(statuses) <= {502, 503}, set(statuses)
    upstream = sent_to(*calm)["GET"]
    assert upstream / len(statuses) <= 1.5, (upstream, len(statuses))


def test_a_retry_that_finds_no_target_left_gives_its_budget_back(
    channel_gateway: Proc,
) -> None:
    """The first try is refused and opens the only breaker; the retry the budget granted
    finds every target open: 503 at once, and the retry is no longer counted in flight
    (a leak here would shrink the budget for good, one request at a time)."""
    reply = get(channel_gateway, "/fragile/users")
    body = problem(reply, 503, "no-healthy-upstream")
    assert "open circuit" in body["detail"], body
    budget = admin(channel_gateway, "/channel")["retry_budget"]
    assert budget["retries_in_flight"] == 0 and budget["granted"] >= 1, budget


# --- circuit breakers -----------------------------------------------------------------


def test_an_error_rate_opens_the_breaker_and_retries_hide_it(
    channel_gateway: Proc, calm: list[Proc]
) -> None:
    """a fails half its requests, never many in a row: the rate opens its breaker."""
    chaos(calm[0], {"failure_rate": 0.5})
    replies = [get(channel_gateway, "/breaking/users") for _ in range(40)]
    assert [r.status for r in replies] == [200] * 40  # a retry on b covered each failure
    # Traffic while polling: on a slow machine the 40 can take longer than open_for, and a
    # breaker that opened, half-opened and closed again in the meantime needs more
    # failures to be seen open.
    until(
        "a's breaker is open",
        lambda: (
            get(channel_gateway, "/breaking/users").status == 200
            and target_states(channel_gateway, "breaking")[0] != "healthy"
        ),
    )
    chaos(calm[0], None)
    # open_for 1 s, then a half-open probe; it succeeds, and the breaker closes.
    until(
        "a's breaker closes again",
        lambda: (
            get(channel_gateway, "/breaking/users").status == 200
            and target_states(channel_gateway, "breaking") == ["healthy", "healthy"]
        ),
    )


def test_an_open_pool_fails_fast_with_a_503(channel_gateway: Proc) -> None:
    until(
        "both breakers of the dead pool are open",
        lambda: get(channel_gateway, "/down/users").status == 503,
    )
    reply, seconds = timed(lambda: get(channel_gateway, "/down/users"))
    body = problem(reply, 503, "no-healthy-upstream")
    assert "open circuit" in body["detail"] and "127.0.0.1" not in body["detail"], body
    assert seconds < 0.5, seconds  # no connect attempt, no backoff: an answer at once
    assert target_states(channel_gateway, "down") == ["open", "open"]


# --- bulkheads, isolation, load shedding ----------------------------------------------


def test_a_full_upstream_sheds_with_retry_after_and_others_are_untouched(
    channel_gateway: Proc,
) -> None:
    """narrow: 2 places and 1 queued, for 0.2 s. Six 1 s requests at once: 2 are served,
    the rest get 503 at once or after the queue timeout; meanwhile another upstream answers."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Six distinct targets: a cache in front (stage 05) coalesces identical misses,
        # and this test is about the bulkhead, not about the cache.
        slow = [pool.submit(get, channel_gateway, f"/narrow/delay/1000?n={n}") for n in range(6)]
        until(
            "the narrow pool is full",
            lambda: admin(channel_gateway, "/channel")["bulkheads"]["narrow"]["in_use"] == 2,
        )
        other, seconds = timed(lambda: get(channel_gateway, "/pair/users"))
        replies = [f.result() for f in slow]
    assert other.status == 200 and seconds < 0.5, seconds
    assert sorted(r.status for r in replies) == [200, 200, 503, 503, 503, 503]
    shed = next(r for r in replies if r.status == 503)
    problem(shed, 503, "upstream-busy")
    assert shed.header("Retry-After") is not None
    bulkhead = admin(channel_gateway, "/channel")["bulkheads"]["narrow"]
    assert bulkhead["rejected"] >= 4 and bulkhead["in_use"] == 0


def test_past_max_in_flight_the_gateway_sheds_at_once(
    trio: list[Proc], stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    spec = GatewaySpec([RouteSpec("/", trio[2].url)], max_in_flight=3)
    gateway = start_gateway(stage_dir, render(spec), tmp_path)
    try:
        numbers = iter(range(8))  # distinct targets, as above: nothing to coalesce
        replies = concurrently(8, lambda: get(gateway, f"/delay/800?n={next(numbers)}"))
        assert sorted(r.status for r in replies) == [200] * 3 + [503] * 5
        shed = next(r for r in replies if r.status == 503)
        problem(shed, 503, "gateway-overloaded")
        assert shed.header("Retry-After") is not None
        assert admin(gateway, "/channel")["load_shedder"]["shed"] == 5
        assert get(gateway, "/users").status == 200  # and it serves again right after
    finally:
        gateway.stop()


# --- hedging ----------------------------------------------------------------------------


def test_a_slow_first_try_is_overtaken_by_a_hedge(channel_gateway: Proc, calm: list[Proc]) -> None:
    chaos(calm[0], {"latency_ms": 2000})  # a: every request takes 2 s
    for _ in range(2):  # round robin: one of the two starts on a
        reply, seconds = timed(lambda: get(channel_gateway, "/hedged/users"))
        assert reply.status == 200 and served_by(reply) == "users/b"
        assert seconds < 1.0, seconds  # not the 2 s a would have taken
    assert sent_to(calm[0]).get("GET") == 1  # the hedged try on a was sent, then cancelled


# --- WebSocket and Server-Sent Events -------------------------------------------------


def ws_url(gateway: Proc, path: str) -> str:
    return f"ws://127.0.0.1:{gateway.port}{path}"


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_websocket_messages_go_both_ways_with_the_subprotocol(channel_gateway: Proc) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                ws_url(channel_gateway, "/ws/echo"),
                protocols=("chat.v2", "chat.v1"),
                autoping=False,  # hand us the pong: the upstream's, relayed
            ) as ws:
                assert ws.protocol == "chat.v2"  # the upstream's choice, passed through
                await ws.send_str("hello")
                assert (await ws.receive_str()) == "hello"
                await ws.send_bytes(b"\x00\x01\xff")
                assert (await ws.receive_bytes()) == b"\x00\x01\xff"
                big = bytes(range(256)) * 4096  # 1 MiB
                await ws.send_bytes(big)
                assert (await ws.receive_bytes()) == big
                await ws.ping(b"are you there")
                pong = await ws.receive()
                assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"are you there")

    run(scenario())


def test_websocket_close_codes_pass_through(channel_gateway: Proc) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(channel_gateway, "/ws/echo")) as ws:
                await ws.send_str("close:4001:going home")
                message = await ws.receive()
                assert message.type is aiohttp.WSMsgType.CLOSE
                assert (message.data, message.extra) == (4001, "going home")

    run(scenario())


def test_a_client_close_code_reaches_the_upstream(channel_gateway: Proc) -> None:
    async def scenario() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session:
            url = ws_url(channel_gateway, "/solows/ws/echo")  # one target: a
            async with session.ws_connect(url) as ws:
                await ws.close(code=4003, message=b"client done")
            deadline = time.monotonic() + 5
            async with session.ws_connect(url) as ws:
                while True:  # until the upstream has handled that close (a state, polled)
                    await ws.send_str("last-close")  # the upstream says what it was sent
                    seen: dict[str, Any] = json.loads(await ws.receive_str())
                    if seen["code"] == 4003 or time.monotonic() > deadline:
                        return seen

    assert run(scenario()) == {"code": 4003, "reason": "client done"}


def test_the_closing_handshake_carries_the_code_both_ways_every_time(
    channel_gateway: Proc,
) -> None:
    """RFC 6455 §5.5.1: the side that receives a Close answers with one, usually echoing
    the code. Through the gateway, the client that closes with 4001 hears 4001 back (not
    the gateway's own 1001) and the upstream hears 4001; the same when the upstream
    closes. A race, so in a loop: one close in a run can pass by luck."""

    async def scenario() -> list[tuple[str, object, object]]:
        wrong: list[tuple[str, object, object]] = []
        async with aiohttp.ClientSession() as session:
            url = ws_url(channel_gateway, "/solows/ws/echo")  # one target: a
            for n in range(20):
                async with session.ws_connect(url) as ws:
                    await ws.send_str("warm")
                    await ws.receive_str()
                    await ws.close(code=4001, message=f"bye {n}".encode())
                    if ws.close_code != 4001:
                        wrong.append(("client closed, heard back", n, ws.close_code))
                async with session.ws_connect(url) as ws:
                    deadline = time.monotonic() + 5
                    while True:  # until the upstream has handled that close (a state, polled)
                        await ws.send_str("last-close")
                        seen = json.loads(await ws.receive_str())
                        if seen["reason"] == f"bye {n}" or time.monotonic() > deadline:
                            break
                    if seen != {"code": 4001, "reason": f"bye {n}"}:
                        wrong.append(("client closed, upstream heard", n, seen))
                async with session.ws_connect(url, autoclose=False) as ws:
                    await ws.send_str(f"close:4002:done {n}")
                    message = await ws.receive()
                    if (message.type, message.data, message.extra) != (
                        aiohttp.WSMsgType.CLOSE,
                        4002,
                        f"done {n}",
                    ):
                        wrong.append(("upstream closed, client heard", n, message))
                    await ws.close(code=4002)
        return wrong

    wrong = run(scenario())
    assert wrong == [], wrong


def test_a_fragmented_message_arrives_whole(channel_gateway: Proc) -> None:
    """Raw frames, since no client library sends fragments on request: "frag" (FIN=0),
    then "mented" (a continuation, FIN=1). The gateway relays messages, so the upstream,
    and the echo back, see one text message (RFC 6455 §5.4 lets an intermediary do that)."""
    with raw_websocket(channel_gateway.port, "/ws/echo") as sock:
        sock.sendall(client_frame(0x1, b"frag", fin=False) + client_frame(0x0, b"mented"))
        opcode, payload = read_frame(sock)
    assert (opcode, payload) == (0x1, b"fragmented")


@contextlib.contextmanager
def raw_websocket(port: int, path: str) -> Iterator[socket.socket]:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, f"closed during the handshake: {head!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        yield sock


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """One masked client frame (RFC 6455 §5.2), payload under 126 bytes."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + mask + masked


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One unmasked server frame, payload under 126 bytes: (opcode, payload)."""
    first, second = _read_exactly(sock, 2)
    return first & 0x0F, _read_exactly(sock, second & 0x7F)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the connection closed mid-frame"
        data += chunk
    return data


def test_an_idle_websocket_is_closed_with_1001(channel_gateway: Proc) -> None:
    async def scenario() -> float:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(channel_gateway, "/idle/ws/echo")) as ws:
                await ws.send_str("hi")
                assert (await ws.receive_str()) == "hi"
                start = time.monotonic()
                message = await ws.receive()
                assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1001
                return time.monotonic() - start

    assert 0.4 <= run(scenario()) < 3.0


def test_a_route_without_websocket_does_not_upgrade(channel_gateway: Proc) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(ws_url(channel_gateway, "/plain/ws/echo"))

    run(scenario())


def test_a_slow_websocket_reader_slows_the_sender_instead_of_filling_memory(
    channel_gateway: Proc,
) -> None:
    """The backend floods 64 MiB as fast as its socket takes it; the client reads nothing
    for a while. The gateway holds a message per direction, not the flood."""

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                ws_url(channel_gateway, "/ws/echo"), max_msg_size=0
            ) as ws:
                before = rss_kib(channel_gateway.pid)
                await ws.send_str("flood:1024:65536")
                await asyncio.sleep(1.5)  # the slow reader: not a synchronisation
                grown = rss_kib(channel_gateway.pid) - before
                assert grown < 24 * 1024, f"the gateway grew by {grown} KiB"
                received = 0
                while received < 1024:
                    message = await ws.receive()
                    assert message.type is aiohttp.WSMsgType.BINARY
                    received += 1

    run(scenario())


def test_server_sent_events_arrive_unbuffered_and_are_not_cut_by_the_try_timeout(
    channel_gateway: Proc,
) -> None:
    """The route's try timeout is 0.3 s; the stream lasts 1.2 s, one event every 0.4 s."""

    async def scenario() -> list[float]:
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"{channel_gateway.url}/sse/ticker?count=4&interval_ms=400"
            ) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/event-stream")
                arrivals = []
                async for line in response.content:
                    if line.startswith(b"data:"):
                        arrivals.append(time.monotonic())
                return arrivals

    arrivals = run(scenario())
    assert len(arrivals) == 4, arrivals  # all of them: 1.2 s of stream, 0.3 s try timeout
    # Each event came when it was sent, 0.4 s apart, not all together at the end: the
    # spread between the first and the last is the stream's own 1.2 s (buffered: ~0).
    assert arrivals[-1] - arrivals[0] >= 0.9, [round(t - arrivals[0], 2) for t in arrivals]


# --- the admin listener ---------------------------------------------------------------


def test_the_gateways_own_endpoints_are_on_the_admin_listener_only(
    channel_gateway: Proc,
) -> None:
    assert admin(channel_gateway, "/health")["status"] == "ok"
    view = admin(channel_gateway, "/upstreams")["upstreams"]
    assert set(view["pair"]) >= {"strategy", "targets"}
    assert set(view["pair"]["targets"][0]) >= {"url", "state", "in_flight", "opens"}
    channel = admin(channel_gateway, "/channel")
    assert set(channel) >= {"retry_budget", "load_shedder", "bulkheads", "websockets"}
    assert set(channel["bulkheads"]["pair"]) >= {"in_use", "queued", "rejected"}
    for path in ("/_gateway/health", "/_gateway/upstreams", "/health", "/upstreams"):
        problem(get(channel_gateway, path), 404, "no-route")  # routed like any path
