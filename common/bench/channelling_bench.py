"""channelling-bench: stage 03 and stage 04 side by side, when upstreams misbehave.

    make channelling-bench                 every scenario (about 2 minutes)
    make channelling-bench ARGS=--quick    shorter runs, same scenarios
    python -m common.bench.channelling_bench --markdown    for ARCHITECTURE.md "Measured"

Real requests, real backends (common/backends, users service), real gateways; each
scenario starts fresh gateways of both stages from one GatewaySpec, so a difference in
the tables is a difference between the stages, not between their configs.

1. Degraded pool: six targets, round robin: three healthy, one refusing connections,
   one failing 30% of its requests (its /health passes), one with a slow tail (2% of its
   requests take 2 s more). Success rate, latency, upstream amplification, and how long
   each stage took to stop sending to the dead and the failing target, and to take the
   failing one back once it healed.
2. Retry storm: the same pool, every target failing. Amplification = requests the
   backends received / requests the clients sent; naive retries (no budget, no breaker)
   for contrast.
3. Fail fast: a pool whose every target is dead, once its breakers (03: ejections) are
   open: how fast the 503 comes.
4. Isolation: a route to a saturated slow upstream (every request 1 s, far more clients
   than places) beside a route to healthy ones; the healthy route's p99 alone and
   meanwhile. Clients honour Retry-After, as well-behaved ones do.
5. Hedging on the slow-tail target: p50/p99 with hedging off and on (after the p95).
6. Happy path CPU: the same one-route gateway of each stage in front of the fast origin
   (common/bench/origin.py), alternating rounds: CPU µs per request of the gateway
   process, as `make bench` measures it.

Counts of upstream requests come from the backends' own /_stats: a refused connection
reached nobody and is not counted. Everything runs on 127.0.0.1, bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector
from rich.console import Console

from common.bench import cpu, load
from common.bench.eventloop import loop_factory
from common.bench.lb_report import Section, report
from common.bench.run import BenchError, find_stage, machine_summary, pin_this_process
from common.contracts.upstreams import refused_port
from common.lb_chaos.observe import upstreams_url
from common.testing.control import control
from common.testing.gateway import stage_render, start_gateway
from common.testing.processes import Proc, spawn, start_backend, wait_healthy
from common.testing.specs import (
    BulkheadSpec,
    ChannelSpec,
    GatewaySpec,
    HealthSpec,
    PoolSpec,
    RouteSpec,
    targets,
)

# Health as a production gateway might set it, a little faster: probes every second,
# five failures in a row eject (03) or open (04) for 5 s; 04 also opens at 25% failed of
# at least 20 requests in 10 s. Stage 03 has no rate trigger and ignores it.
HEALTH = HealthSpec(
    interval=1.0,
    timeout=0.5,
    healthy_threshold=2,
    unhealthy_threshold=2,
    consecutive_failures=5,
    base_ejection_time=5.0,
    max_ejection_time=30.0,
    max_ejection_percent=50,
)
NO_PASSIVE = HealthSpec(active=False, consecutive_failures=0)
FLAKY: dict[str, object] = {"failure_rate": 0.3}
SLOW_TAIL: dict[str, object] = {"slow_rate": 0.02, "slow_ms": 2000}


def with_rate(pool: PoolSpec) -> PoolSpec:
    """`pool` with 04's error-rate trigger: open at 25% failed of at least 20 requests in
    10 s (03 has none, and ignores it)."""
    return replace(pool, failure_rate=0.25, failure_window=10.0, failure_min_requests=20)


HEALTHY = ("a", "b", "c")


# --- driving load -----------------------------------------------------------------------


@dataclass
class Run:
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer at all
    latencies: list[float] = field(default_factory=list)  # seconds, every answer
    ok_latencies: list[float] = field(default_factory=list)  # seconds, 200s only
    seconds: float = 0.0
    upstream: int = 0  # requests the backends received meanwhile

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def success(self) -> float:
        return self.statuses[200] / self.sent if self.sent else 0.0

    @property
    def amplification(self) -> float:
        return self.upstream / self.sent if self.sent else 0.0

    def ms(self, p: float, ok_only: bool = False) -> float:
        values = sorted(self.ok_latencies if ok_only else self.latencies)
        return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else 0.0


async def drive(
    url: str, seconds: float, concurrency: int, *, honour_retry_after: bool = False
) -> Run:
    """`concurrency` closed-loop clients for `seconds`; with `honour_retry_after`, a client
    told to come back later waits as long as it was told."""
    run = Run(seconds=seconds)
    stop = time.perf_counter() + seconds
    connector = TCPConnector(limit=concurrency, force_close=False)
    async with ClientSession(connector=connector, timeout=ClientTimeout(total=30)) as session:

        async def client() -> None:
            while (sent := time.perf_counter()) < stop:
                retry_after = None
                try:
                    async with session.get(url) as response:
                        await response.read()
                        status = response.status
                        retry_after = response.headers.get("Retry-After")
                except (ClientError, TimeoutError):
                    status = 0
                took = time.perf_counter() - sent
                run.statuses[status] += 1
                run.latencies.append(took)
                if status == 200:
                    run.ok_latencies.append(took)
                if honour_retry_after and retry_after and retry_after.isdigit():
                    await asyncio.sleep(
                        min(float(retry_after), max(0.0, stop - time.perf_counter()))
                    )

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return run


async def paced(url: str, rate: float, seconds: float) -> Run:
    """An open loop: a new request every 1/`rate` s for `seconds`, whatever the answers
    (the load a slow upstream meets from many independent clients). Every request is
    waited for, so the run ends when the last one is answered."""
    run = Run(seconds=seconds)
    connector = TCPConnector(limit=0)  # as many connections as requests in flight
    async with ClientSession(connector=connector, timeout=ClientTimeout(total=60)) as session:

        async def one() -> None:
            sent = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    status = response.status
            except (ClientError, TimeoutError):
                status = 0
            run.statuses[status] += 1
            run.latencies.append(time.perf_counter() - sent)

        start = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))  # the pace
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
    return run


def received(backends: dict[str, Proc]) -> int:
    total = 0
    for proc in backends.values():
        with urllib.request.urlopen(proc.url + "/_stats", timeout=5) as response:
            total += json.load(response)["requests"]
    return total


def reset(backends: dict[str, Proc]) -> None:
    for proc in backends.values():
        control(proc, "/_chaos")
        control(proc, "/_stats")


def states(gateway: Proc) -> dict[str, str]:
    """Target URL -> the gateway's verdict (healthy, unhealthy, ejected, open, half-open)."""
    with urllib.request.urlopen(upstreams_url(gateway), timeout=5) as response:
        view = json.load(response)["upstreams"]
    return {t["url"]: t["state"] for pool in view.values() for t in pool["targets"]}


async def watch(gateway: Proc, urls: list[str], log: dict[str, list[tuple[float, str]]],
                start: float, stop: asyncio.Event) -> None:  # fmt: skip
    """Every 50 ms, each watched target's state, as (seconds since start, state) changes."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            now = await loop.run_in_executor(None, states, gateway)
        except OSError:
            now = {}
        for url in urls:
            if url in now and (not log[url] or log[url][-1][1] != now[url]):
                log[url].append((time.perf_counter() - start, now[url]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


def first(log: list[tuple[float, str]], healthy: bool, after: float = 0.0) -> float | None:
    for t, state in log:
        if t >= after and (state == "healthy") == healthy:
            return t
    return None


# --- the world -------------------------------------------------------------------------


class World:
    """Five backends and a dead port; gateways of both stages started per scenario."""

    def __init__(self, before: Path, after: Path, tmp: Path, stack: contextlib.ExitStack):
        self.before, self.after, self.tmp, self.stack = before, after, tmp, stack
        names = ("a", "b", "c", "d", "e")  # d: fails 30%; e: the slow tail
        procs = [start_backend("users", n, log_dir=tmp, wait=False) for n in names]
        for proc in procs:
            stack.callback(proc.stop)
        for proc in procs:
            wait_healthy(proc)
        self.backends = dict(zip(names, procs, strict=True))
        self.dead = f"http://127.0.0.1:{stack.enter_context(refused_port())}"

    def url(self, name: str) -> str:
        return self.dead if name == "dead" else self.backends[name].url

    @contextlib.contextmanager
    def gateway(self, stage: Path, spec: GatewaySpec) -> Iterator[Proc]:
        proc = start_gateway(stage, stage_render(stage)(spec), self.tmp, "--no-access-log")
        try:
            yield proc
        finally:
            proc.stop()

    def chaos(self, name: str, settings: dict[str, object]) -> None:
        control(self.backends[name], "/_chaos", settings)


def six(world: World) -> tuple[str, ...]:
    return tuple(world.url(n) for n in ("a", "b", "c", "dead", "d", "e"))


# --- scenarios -------------------------------------------------------------------------


def degraded(world: World, runner: asyncio.Runner, seconds: float) -> Section:
    pool = with_rate(PoolSpec(targets(*six(world)), health=HEALTH))
    spec = GatewaySpec([RouteSpec("/", "users")], {"users": pool}, channel=ChannelSpec(3))
    out = Section(
        f"1. Degraded pool: 3 healthy, 1 refusing, 1 failing 30%, 1 slow tail (2% +2 s);"
        f" round robin, 16 clients, {seconds:g} s",
        ["stage", "sent", "success", "failed", "p50", "p99", "amplification", "dead out",
         "30% out", "30% back"],
    )  # fmt: skip
    results = {}
    for stage in (world.before, world.after):
        reset(world.backends)
        world.chaos("d", FLAKY)
        world.chaos("e", SLOW_TAIL)
        with world.gateway(stage, spec) as gateway:
            run, log, back = runner.run(degraded_run(world, gateway, seconds))
            results[stage.name] = run
            failed = ", ".join(
                f"{status or 'no answer'}: {n}" for status, n in sorted(run.statuses.items())
                if status != 200
            )  # fmt: skip
            dead_out = first(log[world.dead], healthy=False)
            flaky_out = first(log[world.url("d")], healthy=False)
            out.rows.append(
                [stage.name, f"{run.sent:,}", f"{run.success:.2%}", failed or "-",
                 f"{run.ms(0.5):.1f} ms",
                 f"{run.ms(0.99):.0f} ms", f"{run.amplification:.2f}", _s(dead_out),
                 _s(flaky_out), _s(back)]
            )  # fmt: skip
    after = results[world.after.name]
    out.verdicts.append(
        (f"{world.after.name}: GET success {after.success:.2%} with a dead and a 30%-failing"
         f" target (target >= 99.9%; {world.before.name}:"
         f" {results[world.before.name].success:.2%})", after.success >= 0.999)
    )  # fmt: skip
    out.notes.append(
        "dead/30% out: seconds from the start to the gateway's first non-healthy verdict on"
        " that target (03: unhealthy or ejected; 04: unhealthy or open). 30% back: from its"
        " heal to healthy again. amplification: requests the live backends received per"
        " client request (a refused connection reached nobody)."
    )
    return out


async def degraded_run(
    world: World, gateway: Proc, seconds: float
) -> tuple[Run, dict[str, list[tuple[float, str]]], float | None]:
    """The load, the watched states of the dead and the flaky target, and how long the
    flaky one took to be healthy again once it healed (None: not within 20 s)."""
    flaky = world.url("d")
    log: dict[str, list[tuple[float, str]]] = {world.dead: [], flaky: []}
    start = time.perf_counter()
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(watch(gateway, list(log), log, start, stop))
    run = await drive(gateway.url + "/users/1", seconds, 16)
    run.upstream = received(world.backends)
    world.chaos("d", {"failure_rate": 0.0})  # d heals; nobody tells the gateway
    healed = time.perf_counter() - start
    back = None
    give_up = time.perf_counter() + 20
    while back is None and time.perf_counter() < give_up:
        await drive(gateway.url + "/users/1", 0.5, 4)  # requests to probe it with
        back = first(log[flaky], healthy=True, after=healed)
    stop.set()
    await watcher
    return run, log, None if back is None else back - healed


def storm(world: World, runner: asyncio.Runner, seconds: float) -> Section:
    pool = with_rate(PoolSpec(targets(*six(world)), health=HEALTH))
    naive_pool = PoolSpec(targets(*six(world)), health=NO_PASSIVE)
    channel = ChannelSpec(3)
    runs = [
        (world.before.name, world.before, GatewaySpec([RouteSpec("/", "users")], {"users": pool})),
        (world.after.name, world.after,
         GatewaySpec([RouteSpec("/", "users")], {"users": pool}, channel=channel)),
        (f"{world.after.name}, naive (no budget, no breaker)", world.after,
         GatewaySpec([RouteSpec("/", "users")], {"users": naive_pool}, channel=channel,
                     retry_budget=(1.0, 10_000.0))),
    ]  # fmt: skip
    out = Section(
        f"2. Retry storm: every target failing (503), 32 clients, {seconds:g} s",
        ["gateway", "sent", "p50", "p99", "upstream requests", "amplification"],
    )
    amplification = {}
    for label, stage, spec in runs:
        reset(world.backends)
        for name in world.backends:
            world.chaos(name, {"failure_rate": 1.0})
        with world.gateway(stage, spec) as gateway:
            run = runner.run(drive(gateway.url + "/users/1", seconds, 32))
            run.upstream = received(world.backends)
        amplification[label] = run.amplification
        out.rows.append(
            [label, f"{run.sent:,}", f"{run.ms(0.5):.1f} ms", f"{run.ms(0.99):.1f} ms",
             f"{run.upstream:,}", f"{run.amplification:.2f}"]
        )  # fmt: skip
    ours = amplification[world.after.name]
    out.verdicts.append(
        (f"{world.after.name}: amplification {ours:.2f} in the storm (target <= 1.5; naive"
         f" retries: {amplification[runs[2][0]]:.2f})", ours <= 1.5)
    )  # fmt: skip
    out.notes.append(
        "Over any 10 s, retries are capped at 20% of the requests plus 3 a second (a token"
        " bucket, Finagle's RetryBudget), and open breakers stop the tries before they"
        " start. 03 has no retries: 1.00 is its floor, and its clients got every failure."
    )
    return out


def fail_fast(world: World, runner: asyncio.Runner, seconds: float) -> Section:
    with refused_port() as other:
        dead = (world.dead, f"http://127.0.0.1:{other}")
        health = HealthSpec(
            active=False, consecutive_failures=2, base_ejection_time=60.0,
            max_ejection_time=60.0, max_ejection_percent=100,
        )  # fmt: skip
        spec = GatewaySpec(
            [RouteSpec("/", "gone")], {"gone": PoolSpec(targets(*dead), health=health)}
        )
        out = Section(
            f"3. Fail fast: every target dead, breakers open; 8 clients, {seconds:g} s",
            ["stage", "sent", "status", "p50", "p99"],
        )
        p99 = {}
        for stage in (world.before, world.after):
            with world.gateway(stage, spec) as gateway:
                for _ in range(6):  # two failures per target open (03: eject) both
                    runner.run(drive(gateway.url + "/x", 0.05, 1))
                run = runner.run(drive(gateway.url + "/x", seconds, 8))
            p99[stage.name] = run.ms(0.99)
            statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(run.statuses.items()))
            out.rows.append(
                [stage.name, f"{run.sent:,}", statuses, f"{run.ms(0.5):.2f} ms",
                 f"{run.ms(0.99):.2f} ms"]
            )  # fmt: skip
    ours = p99[world.after.name]
    out.verdicts.append(
        (f"{world.after.name}: fail-fast p99 {ours:.2f} ms with breakers open (target < 5 ms)",
         ours < 5.0)
    )  # fmt: skip
    return out


HAPPY_PATH = "/small"  # the origin's 20-byte answer
ISOLATION_RATE = 200  # requests/s to the slow route...
ISOLATION_MS = 6000  # ...each taking 6 s: 1,200 would be in flight after 6 s


def isolation(world: World, runner: asyncio.Runner, seconds: float) -> Section:
    """The slow upstream takes 6 s per request and gets 200 requests/s: 1,200 would be in
    flight, more than the gateway's 1,024 upstream connections ([connections]). 03
    lets them all in, and the fast route's requests queue for a connection behind them.
    04's bulkhead gives the slow upstream 32 connections and sheds the rest."""
    fast_pool = PoolSpec(targets(*(world.url(n) for n in HEALTHY)), health=NO_PASSIVE)
    slow_pool = PoolSpec(
        targets(world.url("e")), health=NO_PASSIVE, bulkhead=BulkheadSpec(16, 16, 0.5)
    )
    spec = GatewaySpec(
        [
            RouteSpec("/fast", "fast", strip_prefix=True),
            RouteSpec("/slow", "slow", strip_prefix=True),
        ],
        {"fast": fast_pool, "slow": slow_pool},
        channel=ChannelSpec(1),
    )
    out = Section(
        f"4. Isolation: /fast (3 healthy targets, 8 clients) alone, then while /slow (one"
        f" target, {ISOLATION_MS / 1000:g} s per request) gets {ISOLATION_RATE} requests/s;"
        f" {seconds:g} s each",
        ["stage", "/fast p50 alone", "p99 alone", "p50 beside", "p99 beside", "p99 change",
         "/fast errors", "/slow answered", "/slow shed"],
    )  # fmt: skip
    change = {}
    for stage in (world.before, world.after):
        reset(world.backends)
        world.chaos("e", {"latency_ms": ISOLATION_MS})
        with world.gateway(stage, spec) as gateway:
            alone = runner.run(drive(gateway.url + "/fast/users/1", seconds, 8))
            fast, slow = runner.run(beside(gateway, seconds))
        change[stage.name] = fast.ms(0.99) / alone.ms(0.99) - 1
        errors = fast.sent - fast.statuses[200]
        out.rows.append(
            [stage.name, f"{alone.ms(0.5):.1f} ms", f"{alone.ms(0.99):.1f} ms",
             f"{fast.ms(0.5):.1f} ms", f"{fast.ms(0.99):.1f} ms",
             f"{change[stage.name]:+.0%}", f"{errors:,}", f"{slow.statuses[200]:,}",
             f"{slow.statuses[503]:,}"]
        )  # fmt: skip
    ours = change[world.after.name]
    out.verdicts.append(
        (f"{world.after.name}: a saturated slow upstream moves another route's p99 by"
         f" {ours:+.0%} (target < +10%; {world.before.name}:"
         f" {change[world.before.name]:+.0%})", ours < 0.10)
    )  # fmt: skip
    out.notes.append(
        "04's slow pool has 16 places and 16 queued for 0.5 s, then 503 with Retry-After."
        " What remains of the change is CPU: the shed requests still cost the gateway and"
        " the load generator, on the same 2 cores. Latency is the client's."
    )
    return out


async def beside(gateway: Proc, seconds: float) -> tuple[Run, Run]:
    """/fast measured while /slow is paced, the slow load started a little over one slow
    answer earlier: nothing has come back yet, and the pile-up is at its height."""
    ramp = ISOLATION_MS / 1000 + 0.5
    slow = asyncio.ensure_future(
        paced(gateway.url + "/slow/users/1", ISOLATION_RATE, seconds + ramp)
    )
    await asyncio.sleep(ramp)  # a duration: the slow route fills up
    fast = await drive(gateway.url + "/fast/users/1", seconds, 8)
    return fast, await slow


def hedging(world: World, runner: asyncio.Runner, seconds: float) -> Section:
    pool = PoolSpec(targets(world.url("a"), world.url("e")), health=NO_PASSIVE)
    tail: dict[str, object] = {"slow_rate": 0.05, "slow_ms": 1000}
    runs = [
        (world.before.name, world.before, ChannelSpec(1)),
        (f"{world.after.name}, no hedge", world.after, ChannelSpec(1)),
        (f"{world.after.name}, hedge after p95", world.after, ChannelSpec(2, hedge_after="p95")),
        (f"{world.after.name}, hedge after 50 ms", world.after, ChannelSpec(2, hedge_after=0.05)),
    ]
    out = Section(
        f"5. Hedging: a (fast) and e (5% of requests +1 s), round robin, 8 clients, {seconds:g} s",
        ["gateway", "sent", "p50", "p90", "p99", "amplification"],
    )
    p99 = {}
    for label, stage, channel in runs:
        reset(world.backends)
        world.chaos("e", tail)
        # Hedging is a route's setting: the channel goes on the route, not the defaults.
        spec = GatewaySpec([RouteSpec("/", "tail", channel=channel)], {"tail": pool})
        with world.gateway(stage, spec) as gateway:
            runner.run(drive(gateway.url + "/users/1", 1.0, 8))  # p95 needs samples first
            control(world.backends["a"], "/_stats")
            control(world.backends["e"], "/_stats")
            run = runner.run(drive(gateway.url + "/users/1", seconds, 8))
            run.upstream = received(world.backends)
        p99[label] = run.ms(0.99)
        out.rows.append(
            [label, f"{run.sent:,}", f"{run.ms(0.5):.1f} ms", f"{run.ms(0.9):.1f} ms",
             f"{run.ms(0.99):.0f} ms", f"{run.amplification:.2f}"]
        )  # fmt: skip
    out.verdicts.append(
        (f"hedging after the p95 takes p99 from {p99[runs[1][0]]:.0f} ms to"
         f" {p99[runs[2][0]]:.0f} ms", None)
    )  # fmt: skip
    out.notes.append(
        "A hedge is a second try on the other target once the first has taken longer than"
        " the route's recent p95 (or a fixed delay); the first answer wins and the other is"
        " cancelled. Hedges draw on the retry budget."
    )
    return out


def happy_path_cpu(world: World, seconds: float, rounds: int) -> Section:
    """Last: it pins this process (the load generator) off the gateway's core."""
    pinning = pin_this_process()
    origin = spawn("origin", [sys.executable, "-m", "common.bench.origin"], log_dir=world.tmp)
    world.stack.callback(origin.stop)
    gateways = {}
    for stage in (world.before, world.after):
        spec = GatewaySpec([RouteSpec("/", origin.url)])
        proc = start_gateway(stage, stage_render(stage)(spec), world.tmp, "--no-access-log")
        world.stack.callback(proc.stop)
        if pinning.proxy_cores is not None:
            cpu.pin_tree(proc.pid, pinning.proxy_cores)
        gateways[stage.name] = proc
    results: dict[str, list[load.LoadResult]] = {name: [] for name in gateways}
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        for round_no in range(rounds):
            order = list(gateways) if round_no % 2 == 0 else list(gateways)[::-1]
            for name in order:
                proc = gateways[name]
                results[name].append(
                    runner.run(
                        load.run_builtin(
                            proc.url + HAPPY_PATH, connections=16, duration=seconds, warmup=0.5,
                            meter=partial(cpu.tree_cpu_us, proc.pid),
                        )
                    )
                )  # fmt: skip
    out = Section(
        f"6. Happy path: one route to the fast origin, 16 connections, {rounds} rounds of"
        f" {seconds:g} s, median",
        ["gateway", "rps", "p50", "p99", "CPU µs/request"],
    )
    per_request = {}
    for name, rs in results.items():
        # the type ignore below: meter_delta is None only for runs without a meter; these have one
        per_request[name] = statistics.median(r.meter_delta / r.requests for r in rs)  # type: ignore[operator]
        out.rows.append(
            [name, f"{statistics.median(r.rps for r in rs):,.0f}",
             f"{statistics.median(r.p50_ms for r in rs):.2f} ms",
             f"{statistics.median(r.p99_ms for r in rs):.2f} ms",
             f"{per_request[name]:.0f}"]
        )  # fmt: skip
    ratio = per_request[world.after.name] / per_request[world.before.name]
    out.verdicts.append(
        (f"{world.after.name}: {ratio - 1:+.1%} CPU per request over {world.before.name}"
         f" (target < +10%)", ratio < 1.10)
    )  # fmt: skip
    out.notes.append(pinning.note)
    return out


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


SCENARIOS = (
    ("degraded pool", degraded, 6.0),
    ("retry storm", storm, 4.0),
    ("fail fast", fail_fast, 3.0),
    ("isolation", isolation, 4.0),
    ("hedging", hedging, 5.0),
)  # and 6, the happy path's CPU, last


def run_all(
    before: Path, after: Path, scale: float, console: Console, only: set[int]
) -> list[Section]:
    sections: list[Section] = []
    with (
        tempfile.TemporaryDirectory(prefix="channelling-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        with console.status("starting five backends..."):
            world = World(before, after, Path(tmp), stack)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            for number, (title, scenario, seconds) in enumerate(SCENARIOS, 1):
                if not only or number in only:
                    with console.status(f"{title}..."):
                        sections.append(scenario(world, runner, seconds * scale))
        if not only or len(SCENARIOS) + 1 in only:
            with console.status("happy path CPU..."):
                sections.append(happy_path_cpu(world, 3.0 * scale, 5))
    return sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.bench.channelling_bench")
    parser.add_argument("--before", default="03", help="the stage to compare with (03)")
    parser.add_argument("--after", default="04", help="the stage with the channel (04)")
    parser.add_argument("--quick", action="store_true", help="shorter runs (about half)")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    parser.add_argument(
        "--write", action="store_true", help="--markdown, also written into the stage's MEASURED.md"
    )
    parser.add_argument(
        "--only", type=int, action="append", choices=range(1, 7), default=[],
        metavar="N", help="run scenario N only (1-6; repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.markdown = args.markdown or args.write
    try:
        before, after = find_stage(args.before, "--before"), find_stage(args.after, "--after")
    except BenchError as exc:
        parser.error(str(exc))
    assert before is not None and after is not None  # names given: a stage or an error
    console = Console(stderr=args.markdown)
    try:
        sections = run_all(before, after, 0.5 if args.quick else 1.0, console, set(args.only))
    except (RuntimeError, OSError) as exc:  # a child that would not start, a dead load
        Console(stderr=True, soft_wrap=True).print(
            f"[red]channelling-bench:[/] {exc}", highlight=False
        )
        return 2
    measured = (after, "channelling-bench") if args.write else None
    return report(sections, machine_summary(), console, args.markdown, measured)


if __name__ == "__main__":
    sys.exit(main())
