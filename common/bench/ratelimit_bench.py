"""ratelimit-bench: how exact stage 07's limits are, what they cost, and what a dead Redis
does, beside stage 06 (no limits).

    make ratelimit-bench                  every section (about 1.5 minutes)
    make ratelimit-bench ARGS=--quick     shorter load runs
    python -m common.bench.ratelimit_bench --markdown      for ARCHITECTURE.md "Measured"

1. Accuracy: a limit of 100 per hour, 2,000 requests at once from one client, for
   algorithm (GCRA, sliding window) x store (memory, Redis) x workers (1, 4), and two
   gateway instances sharing one Redis. Targets: 4 workers + Redis admit exactly 100;
   two instances sharing Redis exactly 100; the memory store with 4 workers shows the
   over-admission of a per-process limiter (measured, not judged).
2. A limit as its config reads: 100 per 10 s, which a user reads as "at most 100 in any
   10 s". A one-second burst of 200, and 12 s of a client sending 20 a second (twice the
   rate): how many each algorithm admits, and the most in any 10 s. GCRA's promise is
   "100 at once, then 10 a second", the sliding-window counter's an estimate; the strict
   window's (the default) is the config's.
3. The fixed window's edge burst: 100 per 2 s; 100 requests just before a window
   boundary and 100 just after (Redis's clock, so the bench knows where the boundary is).
   The fixed window admits both waves; the sliding window and GCRA do not.
4. Overhead: CPU per request and latency, stage 06 (no limits) vs stage 07 with a limit
   that is never reached, memory and Redis. Target: Redis adds < 300 µs at p50.
5. Redis stopped mid-run: 16 clients for a few seconds, Redis killed after the first
   second; route failure mode open, then closed. Target: the failure mode answers within
   one timeout (50 ms), no request hangs.

Every gateway sits in front of the bench's fast origin; everything is on 127.0.0.1 and
bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import redis
from aiohttp import ClientSession, ClientTimeout, TCPConnector
from rich.console import Console

from common.bench import cpu, load
from common.bench.compare import compare_main
from common.bench.eventloop import loop_factory
from common.bench.lb_report import Section
from common.bench.run import pin_this_process
from common.redisserver import RedisServer, spawn_redis
from common.testing.gateway import stage_render, start_gateway
from common.testing.processes import Proc, spawn
from common.testing.specs import (
    CacheSpec,
    GatewaySpec,
    LimitSpec,
    RateLimitSpec,
    RouteLimitSpec,
    RouteSpec,
)

LIMIT = 100
BURST = 2000


@dataclass
class World:
    before: Path  # 06
    after: Path  # 07
    tmp: Path
    stack: contextlib.ExitStack
    origin: Proc
    redis: RedisServer
    gateways: list[Proc] = field(default_factory=list)

    def redis_flush(self) -> None:
        """A clean slate between cases: every limit starts empty."""
        client = redis.Redis.from_url(self.redis.url)
        client.flushall()
        client.close()

    def gateway(self, stage: Path, limits: tuple[LimitSpec, ...], store: str | None,
                *args: str, failure_mode: str | None = None) -> Proc:  # fmt: skip
        route = RouteSpec(
            "/",
            self.origin.url,
            rate_limit=RouteLimitSpec(limits=limits, key="client_ip", failure_mode=failure_mode)
            if limits
            else None,
        )
        rate_limit = RateLimitSpec(store=store, redis_url=self.redis.url, fallback=False,
                                   redis_timeout=0.05) if store else None  # fmt: skip
        spec = GatewaySpec([route], cache=CacheSpec(enabled=False), rate_limit=rate_limit,
                           max_in_flight=8192)  # fmt: skip
        proc = start_gateway(stage, stage_render(stage)(spec), self.tmp, "--no-access-log", *args)
        self.stack.callback(proc.stop)
        return proc


async def wave(ports: list[int], n: int) -> list[int]:
    """`n` requests at once (one connection each), spread over `ports`: their statuses."""
    timeout = ClientTimeout(total=30)
    async with ClientSession(connector=TCPConnector(limit=0), timeout=timeout) as session:

        async def one(i: int) -> int:
            try:
                async with session.get(f"http://127.0.0.1:{ports[i % len(ports)]}/small") as r:
                    await r.read()
                    return r.status
            except Exception:  # noqa: BLE001 - a lost request is a result here, not a crash
                return 0

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def accuracy(world: World, runner: asyncio.Runner) -> Section:
    out = Section(
        f"1. Accuracy: limit {LIMIT} per hour, {BURST:,} requests at once from one client",
        ["algorithm", "store", "gateways x workers", "admitted", "over the limit", "429",
         "other", "seconds"],
    )  # fmt: skip
    cases = []
    for algorithm in ("gcra", "sliding_window"):
        for store in ("memory", "redis"):
            for workers in (1, 4):
                cases.append((algorithm, store, 1, workers))
    cases.append(("gcra", "redis", 2, 1))
    cases.append(("sliding_window", "redis", 2, 1))
    results = {}
    for algorithm, store, instances, workers in cases:
        # An hour: GCRA gives one request back every 36 s, none during the burst.
        limits = (LimitSpec("hour", LIMIT, 3600.0, algorithm),)
        args = ("--workers", str(workers)) if workers > 1 else ()
        world.redis_flush()
        procs = [world.gateway(world.after, limits, store, *args) for _ in range(instances)]
        started = time.perf_counter()
        statuses = runner.run(wave([p.port for p in procs], BURST))
        seconds = time.perf_counter() - started
        for proc in procs:
            proc.stop()
        ok = statuses.count(200)
        results[(algorithm, store, instances, workers)] = ok
        out.rows.append(
            [
                algorithm,
                store,
                f"{instances} x {workers}",
                str(ok),
                f"{ok - LIMIT:+d}",
                str(statuses.count(429)),
                str(len(statuses) - ok - statuses.count(429)),
                f"{seconds:.2f}",
            ]
        )
    for algorithm in ("gcra", "sliding_window"):
        got = results[(algorithm, "redis", 1, 4)]
        out.verdicts.append((f"{algorithm}, 4 workers + Redis: {got} admitted (target: exactly"
                             f" {LIMIT})", got == LIMIT))  # fmt: skip
        got = results[(algorithm, "redis", 2, 1)]
        out.verdicts.append((f"{algorithm}, two instances sharing Redis: {got} admitted (target:"
                             f" exactly {LIMIT})", got == LIMIT))  # fmt: skip
        over = results[(algorithm, "memory", 1, 4)]
        out.verdicts.append((f"{algorithm}, memory store with 4 workers: {over} admitted, "
                             f"{over / LIMIT:.1f}x the limit (each worker limits on its own)",
                             None))  # fmt: skip
    return out


async def paced(port: int, rate: float, seconds: float) -> list[tuple[float, int]]:
    """One request every 1/rate s for `seconds`, each on its own, not waiting for the last:
    (when it was sent, its status)."""
    timeout = ClientTimeout(total=30)
    async with ClientSession(connector=TCPConnector(limit=0), timeout=timeout) as session:
        start = time.perf_counter()

        async def one(i: int) -> tuple[float, int]:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            sent = time.perf_counter() - start
            async with session.get(f"http://127.0.0.1:{port}/small") as reply:
                await reply.read()
                return sent, reply.status

        return list(await asyncio.gather(*(one(i) for i in range(int(rate * seconds)))))


def most_in_any(window: float, admitted: list[float]) -> int:
    """The most admissions inside any `window` seconds (a window starting at each one)."""
    times = sorted(admitted)
    return max((sum(1 for t in times[i:] if t < start + window)
                for i, start in enumerate(times)), default=0)  # fmt: skip


def as_written(world: World, runner: asyncio.Runner) -> Section:
    out = Section(
        f"2. A limit as its config reads: {LIMIT} per 10 s",
        ["algorithm", "promise", "1 s burst of 200: admitted", "12 s at 20/s: admitted",
         "most in any 10 s"],
    )  # fmt: skip
    promise = {"strict_window": f"at most {LIMIT} in any 10 s",
               "gcra": f"{LIMIT} at once, then {LIMIT // 10}/s",
               "sliding_window": f"about {LIMIT} in any 10 s"}  # fmt: skip
    most = {}
    for algorithm in promise:
        counts = []
        for rate, seconds in ((200.0, 1.0), (20.0, 12.0)):
            world.redis_flush()
            proc = world.gateway(world.after, (LimitSpec("ten", LIMIT, 10.0, algorithm),),
                                 "redis")  # fmt: skip
            sent = runner.run(paced(proc.port, rate, seconds))
            proc.stop()
            counts.append([t for t, status in sent if status == 200])
        most[algorithm] = most_in_any(10.0, counts[1])
        out.rows.append([algorithm, promise[algorithm], str(len(counts[0])),
                         str(len(counts[1])), str(most[algorithm])])  # fmt: skip
    out.verdicts.append((f"strict_window (the default): at most {most['strict_window']} in any"
                         f" 10 s (target: at most {LIMIT}, as the config reads)",
                         most["strict_window"] <= LIMIT))  # fmt: skip
    # The counter counts the previous window as if evenly spread: a client whose
    # admissions bunch up in one part of a window gets more in the sliding window that
    # straddles two (how much depends on where the run starts against the windows).
    out.verdicts.append((f"sliding_window: {most['sliding_window']} in 10 s: an estimate",
                         None))  # fmt: skip
    out.verdicts.append((f"gcra: {most['gcra']} in 10 s, {most['gcra'] / LIMIT:.1f}x: its"
                         " promise is the rate, not the window", None))  # fmt: skip
    return out


def edge_burst(world: World, runner: asyncio.Runner) -> Section:
    out = Section(
        "3. The edge of a window: 100 per 2 s, 100 requests just before a boundary, 100 just after",
        ["algorithm", "admitted before", "admitted after", "within ~0.3 s", "of the limit"],
    )
    window = 2.0
    for algorithm in ("fixed_window", "sliding_window", "gcra"):
        world.redis_flush()
        proc = world.gateway(world.after, (LimitSpec("edge", LIMIT, window, algorithm),), "redis")
        runner.run(wave([proc.port], 1))  # connections warm, script loaded (counts: 1)
        world.redis_flush()
        # Redis's clock is this machine's: the next boundary is at a multiple of the window.
        now = time.time()
        boundary = (int(now / window) + 1) * window
        if boundary - now < 0.5:
            boundary += window
        time.sleep(max(0.0, boundary - 0.2 - time.time()))  # timing: the wave *is* a moment
        before = runner.run(wave([proc.port], LIMIT)).count(200)
        time.sleep(max(0.0, boundary + 0.02 - time.time()))
        after = runner.run(wave([proc.port], LIMIT)).count(200)
        proc.stop()
        total = before + after
        out.rows.append([algorithm, str(before), str(after), str(total), f"{total / LIMIT:.1f}x"])
        if algorithm == "fixed_window":
            out.verdicts.append((f"the fixed window admitted {total} in a moment: "
                                 f"{total / LIMIT:.1f}x its limit", None))  # fmt: skip
    return out


def overhead(world: World, runner: asyncio.Runner, seconds: float) -> Section:
    pinning = pin_this_process()
    never = (LimitSpec("huge", 1_000_000_000, 60.0),)
    runs = {
        f"{world.before.name[:2]}: no limits": world.gateway(world.before, (), None),
        f"{world.after.name[:2]}: limit, memory store": world.gateway(world.after, never, "memory"),
        f"{world.after.name[:2]}: limit, Redis store": world.gateway(world.after, never, "redis"),
    }
    for proc in runs.values():
        if pinning.proxy_cores is not None:
            cpu.pin_tree(proc.pid, pinning.proxy_cores)
    redis_pid = world.redis.popen.pid
    results: dict[str, list[tuple[load.LoadResult, float]]] = {name: [] for name in runs}
    # Latency on one connection: at 16 the gateway's core is saturated and p50 is queueing,
    # which measures throughput again; one request at a time, p50 is what a decision adds.
    alone: dict[str, list[float]] = {name: [] for name in runs}
    for round_no in range(3):
        names = list(runs) if round_no % 2 == 0 else list(runs)[::-1]
        for name in names:
            proc = runs[name]
            redis_before = cpu.cpu_us(redis_pid)
            result = runner.run(
                load.run_builtin(
                    proc.url + "/small",
                    connections=16,
                    duration=seconds,
                    warmup=0.3,
                    meter=partial(cpu.tree_cpu_us, proc.pid),
                )
            )
            results[name].append((result, (cpu.cpu_us(redis_pid) - redis_before) / result.requests))
            single = runner.run(load.run_builtin(proc.url + "/small", connections=1,
                                                 duration=seconds / 2, warmup=0.2))  # fmt: skip
            alone[name].append(single.p50_ms)
    out = Section(
        "4. Overhead: 16 connections (and 1 for the latency), 3 rounds, median; a limit that is"
        " never reached",
        ["gateway", "rps", "p50", "p99", "CPU µs/request", "+ Redis µs/request",
         "p50, 1 connection", "vs no limits"],
    )  # fmt: skip
    p50s = {name: statistics.median(values) for name, values in alone.items()}
    for name, pairs in results.items():
        rs = [r for r, _ in pairs]
        # the type ignore below: meter_delta is None only for runs without a meter; these have one
        per = statistics.median(r.meter_delta / r.requests for r in rs)  # type: ignore[operator]
        redis_us = statistics.median(s for _, s in pairs)
        out.rows.append([name, f"{statistics.median(r.rps for r in rs):,.0f}",
                         f"{statistics.median(r.p50_ms for r in rs):.2f} ms",
                         f"{statistics.median(r.p99_ms for r in rs):.2f} ms", f"{per:.0f}",
                         f"{redis_us:.0f}" if "Redis" in name else "-",
                         f"{p50s[name] * 1000:.0f} µs",
                         "-" if name.endswith("no limits") else
                         f"{(p50s[name] - p50s[list(runs)[0]]) * 1000:+.0f} µs"])  # fmt: skip
    added = (p50s[list(runs)[2]] - p50s[list(runs)[0]]) * 1000
    out.verdicts.append((f"Redis adds {added:.0f} µs at p50, one request at a time (target:"
                         f" < 300 µs)", added < 300))  # fmt: skip
    out.notes.append(pinning.note)
    return out


async def clients(port: int, seconds: float, kill_at: float, kill: asyncio.Event
                  ) -> list[tuple[float, int, float]]:  # fmt: skip
    """16 clients in a closed loop for `seconds`: (time sent, status, latency) per request."""
    start = time.perf_counter()
    seen: list[tuple[float, int, float]] = []
    timeout = ClientTimeout(total=10)
    async with ClientSession(connector=TCPConnector(limit=0), timeout=timeout) as session:

        async def client() -> None:
            while (now := time.perf_counter() - start) < seconds:
                if now >= kill_at:
                    kill.set()
                try:
                    async with session.get(f"http://127.0.0.1:{port}/small") as r:
                        await r.read()
                        status = r.status
                except Exception:  # noqa: BLE001 - a lost request is a result
                    status = 0
                seen.append((now, status, time.perf_counter() - start - now))

        await asyncio.gather(*(client() for _ in range(16)))
    return seen


async def _kill_redis_under_load(server: RedisServer, port: int, seconds: float
                                 ) -> list[tuple[float, int, float]]:  # fmt: skip
    kill = asyncio.Event()

    async def killer() -> None:
        await kill.wait()
        server.popen.kill()

    task = asyncio.ensure_future(killer())
    seen = await clients(port, seconds, 1.0, kill)
    await task
    return seen


def redis_outage(world: World, runner: asyncio.Runner, seconds: float) -> Section:
    out = Section(
        f"5. Redis stopped mid-run: 16 clients for {seconds:g} s, Redis killed after 1 s",
        ["failure mode", "requests", "before: 200", "after: answers", "first answer after",
         "slowest after", "over 1 s"],
    )  # fmt: skip
    for mode in ("open", "closed"):
        server = spawn_redis(world.tmp / f"outage-{mode}")
        world.stack.callback(server.stop)
        saved, world.redis = world.redis, server
        proc = world.gateway(world.after, (LimitSpec("minute", 10**9, 60.0),), "redis",
                             failure_mode=mode)  # fmt: skip
        world.redis = saved
        seen = runner.run(_kill_redis_under_load(server, proc.port, seconds))
        proc.stop()
        before = [s for t, s, _ in seen if t < 0.9]
        after = [(t, s, lat) for t, s, lat in seen if t > 1.05]
        statuses: dict[int, int] = {}
        for _, s, _ in after:
            statuses[s] = statuses.get(s, 0) + 1
        expected = 200 if mode == "open" else 503
        first = min((t + lat for t, s, lat in seen if t >= 1.0 and s == expected), default=None)
        slowest = max((lat for _, _, lat in after), default=0.0)
        hung = sum(lat > 1.0 for _, _, lat in seen)
        out.rows.append([mode, f"{len(seen):,}", f"{before.count(200)}/{len(before)}",
                         ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items())),
                         "-" if first is None else f"{(first - 1.0) * 1000:.0f} ms",
                         f"{slowest * 1000:.0f} ms", str(hung)])  # fmt: skip
        ok = statuses.keys() == {expected} and hung == 0 and first is not None
        out.verdicts.append(
            (
                f"failure mode {mode}: every answer after the kill a {expected},"
                f" the slowest {slowest * 1000:.0f} ms, none over 1 s",
                ok,
            )
        )
    return out


def run_all(before: Path, after: Path, scale: float, console: Console) -> list[Section]:
    sections: list[Section] = []
    with (
        tempfile.TemporaryDirectory(prefix="ratelimit-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        where = Path(tmp)
        origin = spawn("origin", [sys.executable, "-m", "common.bench.origin"], log_dir=where)
        stack.callback(origin.stop)
        server = spawn_redis(where / "redis")
        stack.callback(server.stop)
        world = World(before, after, where, stack, origin, server)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            with console.status("accuracy..."):
                sections.append(accuracy(world, runner))
            with console.status("a limit as written..."):
                sections.append(as_written(world, runner))
            with console.status("the window's edge..."):
                sections.append(edge_burst(world, runner))
            with console.status("Redis stopped mid-run..."):
                sections.append(redis_outage(world, runner, 3.0))
            with console.status("overhead..."):  # last: it pins this process
                sections.insert(3, overhead(world, runner, 2.0 * scale))
    return sections


def main(argv: list[str] | None = None) -> int:
    def run(old: Path, new: Path, quick: bool, console: Console) -> list[Section]:
        return run_all(old, new, 0.5 if quick else 1.0, console)

    return compare_main(
        argv, name="ratelimit-bench", what="limits", before="06", after="07", run=run
    )


if __name__ == "__main__":
    sys.exit(main())
