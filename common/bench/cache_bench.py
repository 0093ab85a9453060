"""cache-bench: what stage 05's cache saves, and what it costs, beside stage 04 (no cache).

    make cache-bench                  every scenario (about 1.5 minutes)
    make cache-bench ARGS=--quick     shorter runs
    python -m common.bench.cache_bench --markdown      for ARCHITECTURE.md "Measured"

Every gateway here sits in front of the bench's fast origin (common/bench/origin.py),
whose /c/ paths are cacheable and counted (/count): the dummy FastAPI backends cost
~120 µs a request and would hide the gateway's own cost.

1. CPU per request: stage 04 proxying a small answer; stage 05 on a route whose answers
   are not kept (the miss path: lookup, forward, Cache-Status); stage 05 hits from the
   memory store; stage 05 hits from the Redis store (and what Redis itself spent).
   16 connections, alternating rounds, median. Target: a memory hit costs less CPU than
   04 proxying the same request.
2. Zipf workload: 1,000 keys, s = 1.1 (a few hot keys, a long tail), 16 clients: hit
   ratio, and origin requests saved.
3. Coalescing: 50 concurrent misses for one cold key (the origin takes 300 ms): how many
   requests reached the origin. Target: exactly 1.
4. The memory bound: a store bounded at 32 MiB is offered 64 MiB of 256 KiB objects, and
   2 MiB objects (over max_object_bytes) stream through uncached; the gateway's RSS growth.
   Target: growth <= bound + 20%.

Everything runs on 127.0.0.1, bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from rich.console import Console

from common.bench import cpu, load
from common.bench.compare import compare_main
from common.bench.eventloop import loop_factory
from common.bench.lb_report import Section
from common.bench.run import pin_this_process
from common.bench.workloads import zipf_keys
from common.redisserver import RedisServer, spawn_redis
from common.testing.gateway import stage_render, start_gateway
from common.testing.processes import Proc, rss_kib, spawn
from common.testing.specs import CacheSpec, GatewaySpec, RouteSpec

BOUND = 32 << 20


@dataclass
class World:
    before: Path  # 04
    after: Path  # 05
    tmp: Path
    stack: contextlib.ExitStack
    origin: Proc
    redis: RedisServer | None = None

    def gateway(self, stage: Path, cache: CacheSpec | None = None, *args: str) -> Proc:
        spec = GatewaySpec([RouteSpec("/", self.origin.url)], cache=cache)
        proc = start_gateway(stage, stage_render(stage)(spec), self.tmp, "--no-access-log", *args)
        self.stack.callback(proc.stop)
        return proc


def origin_count(world: World) -> int:
    with urllib.request.urlopen(world.origin.url + "/count", timeout=5) as response:
        return int(response.read())


def cpu_per_request(world: World, seconds: float, rounds: int) -> Section:
    pinning = pin_this_process()
    world.redis = spawn_redis(world.tmp / "redis")
    world.stack.callback(world.redis.stop)
    runs: dict[str, tuple[Proc, str, Callable[[], float] | None]] = {}
    plain = world.gateway(world.before)
    runs[f"{world.before.name}: proxied (no cache)"] = (plain, "/small", None)
    memory = world.gateway(world.after)
    runs[f"{world.after.name}: miss, not kept"] = (memory, "/small", None)
    runs[f"{world.after.name}: hit, memory store"] = (memory, "/c/hot", None)
    redis = world.gateway(world.after, CacheSpec(store="redis", redis_url=world.redis.url))
    redis_pid = world.redis.popen.pid
    runs[f"{world.after.name}: hit, Redis store"] = (
        redis, "/c/hot-redis", lambda: cpu.cpu_us(redis_pid)
    )  # fmt: skip
    for proc in (plain, memory, redis):
        if pinning.proxy_cores is not None:
            cpu.pin_tree(proc.pid, pinning.proxy_cores)
    results: dict[str, list[tuple[load.LoadResult, float]]] = {name: [] for name in runs}
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        for round_no in range(rounds):
            names = list(runs) if round_no % 2 == 0 else list(runs)[::-1]
            for name in names:
                proc, path, extra = runs[name]
                before_extra = extra() if extra else 0.0
                result = runner.run(
                    load.run_builtin(proc.url + path, connections=16, duration=seconds,
                                     warmup=0.3, meter=partial(cpu.tree_cpu_us, proc.pid))
                )  # fmt: skip
                spent = (extra() - before_extra) / result.requests if extra else 0.0
                results[name].append((result, spent))
    out = Section(
        f"1. CPU per request: 16 connections, {rounds} rounds of {seconds:g} s, median",
        ["gateway, request", "rps", "p50", "p99", "CPU µs/request", "+ Redis µs/request"],
    )
    per: dict[str, float] = {}
    for name, pairs in results.items():
        rs = [r for r, _ in pairs]
        # the type ignore below: meter_delta is None only for runs without a meter; these have one
        per[name] = statistics.median(r.meter_delta / r.requests for r in rs)  # type: ignore[operator]
        redis_us = statistics.median(spent for _, spent in pairs)
        out.rows.append(
            [name, f"{statistics.median(r.rps for r in rs):,.0f}",
             f"{statistics.median(r.p50_ms for r in rs):.2f} ms",
             f"{statistics.median(r.p99_ms for r in rs):.2f} ms",
             f"{per[name]:.0f}", f"{redis_us:.0f}" if redis_us else "-"]
        )  # fmt: skip
    names = list(runs)
    hit, proxied = per[names[2]], per[names[0]]
    out.verdicts.append(
        (f"a memory hit costs {hit:.0f} µs of CPU, {hit / proxied - 1:+.0%} against"
         f" {world.before.name} proxying ({proxied:.0f} µs; target: less)", hit < proxied)
    )  # fmt: skip
    out.verdicts.append(
        (f"the miss path costs {per[names[1]] / proxied - 1:+.0%} over {world.before.name}", None)
    )
    out.notes.append(pinning.note)
    return out


async def zipf_run(url: str, keys: list[str], clients: int) -> float:
    queue = iter(keys)
    async with ClientSession(
        connector=TCPConnector(limit=clients), timeout=ClientTimeout(total=30)
    ) as session:

        async def client() -> None:
            for key in queue:
                async with session.get(f"{url}/c/z/{key}") as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"/c/z/{key}: {response.status}")

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - start


def zipf(world: World, runner: asyncio.Runner, requests: int) -> Section:
    gateway = world.gateway(world.after)
    keys = zipf_keys(random.Random(11), requests, n_keys=1000, s=1.1)
    before = origin_count(world)
    seconds = runner.run(zipf_run(gateway.url, keys, 16))
    origin = origin_count(world) - before
    out = Section(
        f"2. Zipf workload: {requests:,} requests over 1,000 keys (s = 1.1), 16 clients",
        ["requests", "distinct keys", "origin requests", "hit ratio", "saved", "rps"],
    )
    out.rows.append([f"{requests:,}", f"{len(set(keys)):,}", f"{origin:,}",
                     f"{1 - origin / requests:.1%}", f"{requests - origin:,}",
                     f"{requests / seconds:,.0f}"])  # fmt: skip
    out.verdicts.append((f"every distinct key reached the origin once: {origin} of"
                         f" {len(set(keys))}", origin == len(set(keys))))  # fmt: skip
    return out


async def cold_misses(url: str, n: int) -> list[int]:
    target = f"{url}/c/slow/{uuid.uuid4().hex}"
    async with ClientSession(connector=TCPConnector(limit=n)) as session:

        async def one() -> int:
            async with session.get(target) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one() for _ in range(n)))


def coalescing(world: World, runner: asyncio.Runner) -> Section:
    out = Section(
        "3. Coalescing: 50 concurrent misses for one cold key, the origin takes 300 ms",
        ["gateway", "answered 200", "origin requests", "wall time"],
    )
    verdict = None
    for stage in (world.before, world.after):
        gateway = world.gateway(stage)
        before = origin_count(world)
        start = time.perf_counter()
        statuses = runner.run(cold_misses(gateway.url, 50))
        wall = time.perf_counter() - start
        origin = origin_count(world) - before
        out.rows.append(
            [stage.name, f"{statuses.count(200)}", f"{origin}", f"{wall * 1000:.0f} ms"]
        )
        verdict = origin
    out.verdicts.append((f"{world.after.name}: 50 misses made {verdict} origin request(s)"
                         " (target: exactly 1)", verdict == 1))  # fmt: skip
    return out


async def offer(url: str, paths: list[str], clients: int = 8) -> None:
    queue = iter(paths)
    async with ClientSession(connector=TCPConnector(limit=clients)) as session:

        async def client() -> None:
            for path in queue:
                async with session.get(url + path) as response:
                    await response.read()

        await asyncio.gather(*(client() for _ in range(clients)))


def memory_bound(world: World, runner: asyncio.Runner, scale: float) -> Section:
    gateway = world.gateway(world.after, CacheSpec(max_bytes=BOUND, max_object_bytes=1 << 20))
    runner.run(offer(gateway.url, ["/c/warm"] * 200))  # aiohttp's own buffers, warmed up
    start_rss = rss_kib(gateway.pid) * 1024
    medium = [f"/c/m/{i}" for i in range(int(256 * scale))]  # 256 KiB each: 64 MiB in all
    big = [f"/c/big/{i}" for i in range(int(40 * scale))]  # 2 MiB each: streamed through
    runner.run(offer(gateway.url, medium + big))
    growth = rss_kib(gateway.pid) * 1024 - start_rss
    with urllib.request.urlopen(gateway.admin_url + "/cache", timeout=5) as response:
        store = json.load(response)["cache"]
    out = Section(
        "4. The memory bound: 32 MiB store, 256 KiB objects offered twice over, 2 MiB ones"
        " streamed through",
        ["offered", "streamed through", "stored bytes", "evictions", "RSS growth", "bound"],
    )
    offered = len(medium) * 256 * 1024
    out.rows.append([f"{offered >> 20} MiB", f"{len(big) * 2} MiB", f"{store['bytes'] >> 20} MiB",
                     f"{store['evictions']}", f"{growth / (1 << 20):.1f} MiB",
                     f"{BOUND >> 20} MiB"])  # fmt: skip
    out.verdicts.append((f"RSS grew {growth / (1 << 20):.1f} MiB for a {BOUND >> 20} MiB bound"
                         " (target: <= bound + 20%)", growth <= BOUND * 1.2))  # fmt: skip
    return out


def run_all(before: Path, after: Path, scale: float, console: Console) -> list[Section]:
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="cache-bench-") as tmp, contextlib.ExitStack() as stack:
        origin = spawn("origin", [sys.executable, "-m", "common.bench.origin"], log_dir=Path(tmp))
        stack.callback(origin.stop)
        world = World(before, after, Path(tmp), stack, origin)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            with console.status("Zipf workload..."):
                sections.append(zipf(world, runner, int(20_000 * scale)))
            with console.status("coalescing..."):
                sections.append(coalescing(world, runner))
            with console.status("the memory bound..."):
                sections.append(memory_bound(world, runner, scale))
        with console.status("CPU per request..."):  # last: it pins this process
            sections.insert(0, cpu_per_request(world, 3.0 * scale, 5))
    return sections


def main(argv: list[str] | None = None) -> int:
    def run(old: Path, new: Path, quick: bool, console: Console) -> list[Section]:
        return run_all(old, new, 0.5 if quick else 1.0, console)

    return compare_main(argv, name="cache-bench", what="a cache", before="04", after="05", run=run)


if __name__ == "__main__":
    sys.exit(main())
