"""The observability contract: what every stage from 08 on tells the people who run it.

A stage runs it from `tests/test_observability_contract.py`:

    from common.contracts.observability import *  # noqa: F403

with the `stage_dir` and `render` fixtures of its conftest.py. Real gateway processes; the
scrapes are parsed with prometheus-client's parser, and the numbers are compared with the
traffic the test sent.

- GET /metrics on the admin listener, Prometheus text (OpenMetrics when asked);
- gateway_requests_total counts every answer by route as configured (never the raw path;
  one value for no route), method, code, and source (upstream relayed it, or the gateway
  made it): an upstream's 404 and the gateway's 404 are two series;
- the duration histograms count the same requests, per route and per upstream pool;
- cardinality is bounded: 10,000 random paths and 1,000 random API keys add no series;
- a consumer label only when asked for, and then only configured consumers' ids;
- each concern's decisions: retries by why, a target's breaker open, rate-limit
  decisions, auth outcomes by method, cache results;
- with --workers 2, one scrape adds up both workers;
- a real Prometheus server scrapes it and computes from it (`increase`,
  `histogram_quantile`): skipped without a `prometheus` binary, failed so under CI;
- GET /dashboard in a real browser (headless Chromium): the charts draw non-zero data,
  the traces show, the console stays clean.

Run against stage 07 it fails: 07's admin listener has no /metrics (404).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.contracts.upstreams import refused_port
from common.contracts.wire import send
from common.testing.browser import browser_page
from common.testing.gateway import Render, start_gateway
from common.testing.processes import Proc, start_backend
from common.testing.prometheus import prometheus
from common.testing.specs import (
    AuthSpec,
    ChannelSpec,
    ConsumerSpec,
    GatewaySpec,
    HealthSpec,
    LimitSpec,
    ObservabilitySpec,
    PoolSpec,
    RouteAuthSpec,
    RouteLimitSpec,
    RouteSpec,
    targets,
)

UNMATCHED = "(unmatched)"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_backend("users", "a", log_dir=tmp_path_factory.mktemp("obs-origin"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def dead_port() -> Iterator[int]:
    with refused_port() as port:
        yield port


def routes(origin: Proc, dead_port: int) -> list[RouteSpec]:
    return [
        RouteSpec("/users", origin.url),
        RouteSpec("/keyed", origin.url, strip_prefix=True, auth=RouteAuthSpec(mode="key")),
        RouteSpec("/dead", f"http://127.0.0.1:{dead_port}", strip_prefix=True),
        RouteSpec("/plain", origin.url, strip_prefix=True),
    ]


@pytest.fixture(scope="module")
def gateway(origin: Proc, dead_port: int, stage_dir: Path, render: Render,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:  # fmt: skip
    spec = GatewaySpec(routes(origin, dead_port))
    proc = start_gateway(stage_dir, render(spec), tmp_path_factory.mktemp("obs-gateway"))
    yield proc
    proc.stop()


def scrape(gateway: Proc, accept: str | None = None) -> tuple[str, str]:
    """(content type, body) of GET /metrics on the admin listener."""
    request = urllib.request.Request(gateway.admin_url + "/metrics")
    if accept is not None:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.headers.get("Content-Type", ""), reply.read().decode()


def samples(gateway: Proc) -> Samples:
    """Every sample of one scrape, by (name, labels)."""
    found: Samples = {}
    for family in text_string_to_metric_families(scrape(gateway)[1]):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= ls)


def requests(found: Samples, route: str, code: str, source: str, method: str = "GET") -> float:
    return value(
        found, "gateway_requests_total", route=route, method=method, code=code, source=source
    )


def test_metrics_is_prometheus_text_on_the_admin_listener(gateway: Proc) -> None:
    content_type, body = scrape(gateway)
    assert content_type.startswith("text/plain"), content_type
    assert "# TYPE gateway_requests_total counter" in body
    assert "# TYPE gateway_request_duration_seconds histogram" in body
    found = samples(gateway)
    assert value(found, "gateway_requests_in_flight") == 0
    build = [ls for (n, ls), v in found.items() if n == "gateway_build_info" and v == 1]
    assert len(build) == 1 and dict(build[0])["stage"] == Path.cwd().name
    assert re.fullmatch(r"[0-9a-f]{12}", dict(build[0])["config_hash"])
    # The public port has no such page: it answers routes only.
    assert send(gateway.port, "GET", "/metrics").status == 404


def test_openmetrics_when_the_scraper_asks(gateway: Proc) -> None:
    content_type, body = scrape(gateway, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text"), content_type
    assert body.rstrip().endswith("# EOF")


def test_each_answer_counts_by_route_method_code_and_source(gateway: Proc) -> None:
    before = samples(gateway)
    for _ in range(3):
        assert send(gateway.port, "GET", "/users/1").status == 200
    for _ in range(2):
        assert send(gateway.port, "GET", "/users/987654").status == 404  # the service's 404
    assert send(gateway.port, "GET", "/nowhere/at/all").status == 404  # no route: ours
    assert send(gateway.port, "HEAD", "/users/1").status == 200
    assert send(gateway.port, "BREW", "/users/1").status in (400, 405, 501)
    assert send(gateway.port, "GET", "/keyed/users/1").status == 401
    dead = send(gateway.port, "GET", "/dead/x").status
    assert dead in (502, 503)
    after = samples(gateway)

    def grew(route: str, code: str, source: str, method: str = "GET") -> float:
        return requests(after, route, code, source, method) - requests(
            before, route, code, source, method
        )

    assert grew("/users", "200", "upstream") == 3
    assert grew("/users", "404", "upstream") == 2
    assert grew(UNMATCHED, "404", "gateway") == 1
    assert grew("/users", "200", "upstream", method="HEAD") == 1
    assert grew("/keyed", "401", "gateway") == 1
    assert grew("/dead", str(dead), "gateway") == 1
    # A method nobody registered is not a label value of its own.
    methods = {dict(ls)["method"] for (n, ls) in after if n == "gateway_requests_total"}
    assert "BREW" not in methods and methods <= {"GET", "HEAD", "_OTHER"}
    # No consumer label unless asked for (it multiplies the series by the consumers).
    assert all("consumer" not in dict(ls) for (n, ls) in after if n == "gateway_requests_total")
    # No raw path anywhere: route values are the configured ones.
    routes = {dict(ls)["route"] for (n, ls) in after if n == "gateway_requests_total"}
    assert routes <= {"/users", "/keyed", "/dead", "/plain", UNMATCHED}


def test_durations_count_the_same_requests(gateway: Proc) -> None:
    before = samples(gateway)
    for _ in range(5):
        assert send(gateway.port, "GET", "/users/2").status == 200
    after = samples(gateway)
    name = "gateway_request_duration_seconds_count"
    assert value(after, name, route="/users") - value(before, name, route="/users") == 5
    upstream = "gateway_upstream_duration_seconds_count"
    tries = total(after, upstream) - total(before, upstream)
    assert tries == 5  # one try each, on the route's pool
    # Every request took some time, and no more than the 10 s bucket.
    inf = value(after, "gateway_request_duration_seconds_bucket", route="/users", le="+Inf")
    ten = value(after, "gateway_request_duration_seconds_bucket", route="/users", le="10.0")
    assert inf == ten == value(after, name, route="/users")
    assert value(after, "gateway_request_duration_seconds_sum", route="/users") > 0


def test_each_concern_shows_its_decisions(
    origin: Proc, dead_port: int, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{dead_port}"
    # The dead target first in the ring, no active checks: its breaker opens on the first
    # refused try, which the channel retries on the live one.
    once = HealthSpec(
        active=False, consecutive_failures=1, base_ejection_time=60.0, max_ejection_time=60.0
    )
    pool = PoolSpec(targets(dead, origin.url), health=once)
    spec = GatewaySpec(
        [
            RouteSpec("/mixed", "mixed", strip_prefix=True, channel=ChannelSpec(attempts=2)),
            RouteSpec("/limited", origin.url, strip_prefix=True, rate_limit=RouteLimitSpec(
                limits=(LimitSpec("minute", 2, 60.0),), key="client_ip")),
            RouteSpec("/keyed", origin.url, strip_prefix=True, auth=RouteAuthSpec(mode="key")),
        ],
        pools={"mixed": pool},
    )  # fmt: skip
    proc = start_gateway(stage_dir, render(spec), tmp_path)
    try:
        before = samples(proc)
        assert [send(proc.port, "GET", "/mixed/users/1").status for _ in range(4)] == [200] * 4
        upgrade = [("Upgrade", "h2c")]  # an upgrade is never answered from the cache
        assert send(proc.port, "GET", "/mixed/users/1", upgrade).status == 200
        assert [send(proc.port, "GET", "/limited/users/1").status for _ in range(3)] == [
            200, 200, 429]  # fmt: skip
        assert send(proc.port, "GET", "/keyed/users/1").status == 401
        assert send(proc.port, "GET", "/keyed/users/1", [("X-API-Key", "gwk_x")]).status == 401
        after = samples(proc)
    finally:
        proc.stop()

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("gateway_retries_total", reason="refused") == 1  # then the breaker is open
    broken = {"upstream": "mixed", "target": dead}
    assert value(after, "gateway_upstream_breaker_state", **broken, state="open") == 1
    assert value(after, "gateway_upstream_breaker_state", **broken, state="closed") == 0
    assert value(after, "gateway_upstream_breaker_openings_total", **broken) == 1
    assert grew("gateway_upstream_duration_seconds_count", upstream="mixed") == 6  # 5 + 1
    assert grew("gateway_ratelimit_decisions_total", decision="admitted") == 2
    assert grew("gateway_ratelimit_decisions_total", decision="limited") == 1
    minute = {"route": "* /limited", "limit": "minute"}
    assert grew("gateway_ratelimit_limit_decisions_total", **minute, decision="limited") == 1
    assert grew("gateway_auth_results_total", method="none", outcome="missing") == 1
    assert grew("gateway_auth_results_total", method="key", outcome="invalid") == 1
    assert grew("gateway_cache_results_total", result="bypass") == 1
    assert grew("gateway_cache_results_total", result="miss") >= 4  # the others looked up


async def _storm(port: int, targets: list[tuple[str, dict[str, str]]]) -> set[int]:
    """Every target once over 16 keep-alive connections; the statuses seen."""
    seen: set[int] = set()
    queue = list(targets)
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while queue:
                path, headers = queue.pop()
                async with session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as r:
                    await r.read()
                    seen.add(r.status)

        await asyncio.gather(*(worker() for _ in range(16)))
    return seen


def test_random_paths_and_keys_add_no_series(gateway: Proc) -> None:
    # One of each kind first, so that every series the storm can touch exists.
    assert send(gateway.port, "GET", "/users/99999999").status == 404
    assert send(gateway.port, "GET", "/zz").status == 404
    assert send(gateway.port, "GET", "/keyed/users/1", [("X-API-Key", "nope")]).status == 401
    series = set(samples(gateway))
    rng = random.Random(8)
    targets: list[tuple[str, dict[str, str]]] = []
    for i in range(10_000):
        number = rng.randrange(10**6, 10**12)  # no such user: the service's 404
        targets.append((f"/users/{number}" if i % 2 else f"/{number:x}/{i}", {}))
    for _ in range(1_000):
        targets.append(("/keyed/users/1", {"X-API-Key": "gwk_" + secrets.token_urlsafe(40)}))
    seen = asyncio.run(_storm(gateway.port, targets))
    assert seen <= {401, 404}, seen
    assert set(samples(gateway)) == series


def test_one_scrape_adds_up_every_worker(
    origin: Proc, dead_port: int, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    spec = GatewaySpec(routes(origin, dead_port), access_log=True)
    proc = start_gateway(stage_dir, render(spec), tmp_path, "--workers", "2")
    try:
        sent, pids = 0, set()
        # Fresh connections, several at once: the kernel hands them out to the workers.
        # Both must have served some (the access log's pid field), or this proves nothing;
        # on a busy machine one worker may win every accept of a round: go on, up to 20.
        for _ in range(20):
            seen = asyncio.run(_storm(proc.port, [("/users/1", {})] * 60))
            assert seen == {200}
            sent += 60
            # A worker writes its line after the answer left: wait for the last ones.
            lines = wait_for(lambda: access_lines(proc, "GET /users/1 "), sent)
            pids = {line.split()[3] for line in lines}
            if sent >= 240 and len(pids) == 2:
                break
        assert len(pids) == 2, pids
        # The other worker adds its numbers into the shared files once a second (and the
        # one answering, as it answers): a scrape a second later has every request.
        deadline = time.monotonic() + 5
        while requests(samples(proc), "/users", "200", "upstream") < sent:
            assert time.monotonic() < deadline, "a scrape never added up every worker"
            time.sleep(0.05)
        for _ in range(3):  # whichever worker answers the scrape, the same sum
            found = samples(proc)
            assert requests(found, "/users", "200", "upstream") == sent
            assert value(found, "gateway_request_duration_seconds_count", route="/users") == sent
            assert len([k for k in found if k[0] == "gateway_build_info"]) == 1
    finally:
        proc.stop()


def access_lines(proc: Proc, request: str) -> list[str]:
    log = proc.log_path.read_text().splitlines()
    return [line for line in log if f"gateway.access: {request}" in line]


def wait_for(read: Callable[[], list[str]], count: int, timeout: float = 5.0) -> list[str]:
    """`read()` once it returns `count` items (it only grows); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while len(found := read()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(found) == count, f"{len(found)} of {count}"
    return found


def test_a_real_prometheus_scrapes_and_computes(
    origin: Proc, dead_port: int, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    proc = start_gateway(stage_dir, render(GatewaySpec(routes(origin, dead_port))), tmp_path)
    try:
        with prometheus(f"127.0.0.1:{proc.admin_port}", tmp_path) as server:
            assert server.wait_for('up{job="gateway"}', 1) == 1, server.log.read_text()[-2000:]
            # One request first: a series' first sample is where `increase` starts from.
            assert send(proc.port, "GET", "/users/2").status == 200
            served = 'gateway_requests_total{route="/users",code="200",source="upstream"}'
            assert server.wait_for(f"sum({served})", 1) == 1
            for _ in range(20):
                assert send(proc.port, "GET", "/users/2").status == 200
            assert server.wait_for(f"sum({served})", 21) == 21
            # The last minute saw the 20 (Prometheus extrapolates to the window: at least).
            grown = server.value(f"sum(increase({served}[1m]))")
            assert grown is not None and grown >= 20
            # The median of the route's latency, from its buckets, as a dashboard asks.
            buckets = 'gateway_request_duration_seconds_bucket{route="/users"}'
            median = server.value(f"histogram_quantile(0.5, sum by (le) ({buckets}))")
            assert median is not None and 0 < median <= 10
            assert server.value('gateway_build_info{job="gateway"}') == 1
    finally:
        proc.stop()


def test_the_dashboard_draws_in_a_real_browser(
    origin: Proc, dead_port: int, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    spec = GatewaySpec(routes(origin, dead_port), observability=ObservabilitySpec())
    proc = start_gateway(stage_dir, render(spec), tmp_path)
    stop = threading.Event()

    def traffic() -> None:  # steady, and bounded: until the test is done, or 3,000 requests
        for i in range(3000):
            if stop.is_set():
                return
            send(proc.port, "GET", "/users/1" if i % 3 else "/keyed/users/1")
            stop.wait(0.01)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        with browser_page(proc.admin_url + "/dashboard", tmp_path) as page:
            moving = (
                "window.dashboard.draws >= 2 && window.dashboard.last.times.length >= 2"
                " && window.dashboard.charts.rps.plot.data[1].some(v => v > 0)"
            )
            assert page.wait_for(moving), page.evaluate("JSON.stringify(window.dashboard.last)")
            charts = page.evaluate("document.querySelectorAll('.uplot canvas').length")
            assert charts >= 4, charts
            latency = "window.dashboard.charts.latency.plot.data.slice(1).flat().some(v => v > 0)"
            assert page.evaluate(latency)
            assert page.wait_for("document.querySelectorAll('#traces .trace .bar').length > 0")
            rows = page.evaluate("document.querySelectorAll('#pools tr').length")
            assert rows >= 2  # a header and a target (/dead's address)
            page.screenshot(tmp_path / "dashboard.png")
            assert (tmp_path / "dashboard.png").stat().st_size > 10_000
            assert page.errors == [], page.errors
    finally:
        stop.set()
        sender.join()
        proc.stop()


def test_open_event_streams_are_a_gauge(gateway: Proc) -> None:
    """Server-Sent Events relayed right now: up while a stream is open, down after."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request("GET", "/plain/sse/ticker?count=100&interval_ms=100")
        reply = connection.getresponse()
        assert reply.status == 200
        assert reply.getheader("Content-Type", "").startswith("text/event-stream")
        assert reply.readline()  # the first event arrived: the stream is open
        assert value(samples(gateway), "gateway_event_streams_open") == 1
    finally:
        connection.close()  # the client leaves; the gateway notices on its next write
    deadline = time.monotonic() + 10
    while value(samples(gateway), "gateway_event_streams_open") != 0:
        assert time.monotonic() < deadline, "the stream was never counted closed"
        time.sleep(0.05)


def test_the_consumer_label_is_opt_in_and_bounded(
    origin: Proc, dead_port: int, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    keys = {"alice": "gwk_obsalice_" + "a" * 43, "bob": "gwk_obsbob12_" + "b" * 43}

    def hashed(key: str) -> str:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()

    consumers = AuthSpec(consumers=tuple(
        ConsumerSpec(name, api_keys=((key[4:12], hashed(key)),)) for name, key in keys.items()
    ))  # fmt: skip
    spec = GatewaySpec(routes(origin, dead_port), auth=consumers,
                       observability=ObservabilitySpec(consumer_label=True))  # fmt: skip
    proc = start_gateway(stage_dir, render(spec), tmp_path)
    try:
        for name, times in (("alice", 3), ("bob", 2)):
            for _ in range(times):
                reply = send(proc.port, "GET", "/keyed/users/1", [("X-API-Key", keys[name])])
                assert reply.status == 200
        for _ in range(50):  # strangers: no caller, whatever key they make up
            made_up = [("X-API-Key", "gwk_" + secrets.token_urlsafe(40))]
            assert send(proc.port, "GET", "/keyed/users/1", made_up).status == 401
        found = samples(proc)
    finally:
        proc.stop()
    served = "gateway_requests_total"
    assert total(found, served, route="/keyed", code="200", consumer="alice") == 3
    assert total(found, served, route="/keyed", code="200", consumer="bob") == 2
    assert total(found, served, route="/keyed", code="401", consumer="") == 50
    values = {dict(ls)["consumer"] for (n, ls) in found if n == served}
    assert values <= {"alice", "bob", "", "(other)"}, values
