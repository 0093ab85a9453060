"""lb-bench part 3: least connections and P2C vs round robin, with one slow backend.

Real requests through the stage's gateway: three users backends, one of them made slow
with its chaos setting (every request waits `SLOW_MS` first), and three pools over the
same three backends: round robin, least connections (scan every target) and the power of
two random choices. A closed-loop client keeps `CONCURRENCY` requests in flight on each
pool in turn for `SECONDS`, and reads who answered from `X-Served-By`.

Round robin sends the slow backend its third of the requests whatever happens, so a
third of the clients wait for it. Least connections sees the requests pile up there
(they take longer, so more of them are in flight at once) and sends new ones elsewhere:
the slow backend's share falls to what it can actually serve. P2C gets most of that
benefit from two random samples instead of a full scan.

Health checks are off in these pools: the slow backend is slow, not failing, and the
point is what the strategy alone does with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

from common.bench.eventloop import loop_factory
from common.bench.lb_report import Section, bar
from common.testing.gateway import stage_render, start_gateway
from common.testing.processes import Proc, start_backend, wait_healthy
from common.testing.specs import GatewaySpec, HealthSpec, PoolSpec, RouteSpec, targets

SLOW_MS = 40  # the slow backend's added latency; the others answer in ~1-3 ms here
CONCURRENCY = 12  # requests in flight, closed loop
SECONDS = 4.0  # measured per pool, after WARMUP
WARMUP = 0.5
NO_HEALTH = HealthSpec(active=False, consecutive_failures=0)
POOLS = {
    "rr": ("round robin", "round_robin", None),
    "lc": ("least conns", "least_connections", None),
    "p2c": ("P2C", "least_connections", 2),
}


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)  # seconds, 200s only
    served: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    seconds: float = SECONDS

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


async def drive(url: str, seconds: float = SECONDS, concurrency: int = CONCURRENCY) -> Run:
    """`concurrency` workers, each sending its next GET as soon as the last one is done."""
    run = Run(seconds=seconds)
    start = time.perf_counter()
    measure_from, stop = start + WARMUP, start + WARMUP + seconds
    connector = TCPConnector(limit=concurrency)
    async with ClientSession(connector=connector, timeout=ClientTimeout(total=10)) as session:

        async def worker() -> None:
            while (sent := time.perf_counter()) < stop:
                try:
                    async with session.get(url) as response:
                        await response.read()
                        ok = response.status == 200
                        who = response.headers.get("X-Served-By", "-").partition("@")[0]
                except (ClientError, TimeoutError):
                    ok, who = False, "-"
                if sent < measure_from:
                    continue
                if ok:
                    run.latencies.append(time.perf_counter() - sent)
                    run.served[who] += 1
                else:
                    run.errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return run


def set_latency(backend: Proc, ms: int) -> None:
    request = urllib.request.Request(
        backend.url + "/_chaos",
        data=json.dumps({"latency_ms": ms}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def measure() -> dict[str, Run]:
    """Start the backends and the gateway, run every pool in turn, stop everything."""
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="lb-bench-") as tmp, contextlib.ExitStack() as stack:
        logs = Path(tmp)
        backends = [start_backend("users", name, log_dir=logs, wait=False) for name in "abc"]
        for proc in backends:
            stack.callback(proc.stop)
        for proc in backends:
            wait_healthy(proc)
        set_latency(backends[2], SLOW_MS)  # users/c is the slow one
        urls = [proc.url for proc in backends]
        pools = {
            name: PoolSpec(targets(*urls), strategy, choices=choices, health=NO_HEALTH)
            for name, (_, strategy, choices) in POOLS.items()
        }
        routes = [RouteSpec(f"/{name}", name, strip_prefix=True) for name in pools]
        config = stage_render(Path.cwd())(GatewaySpec(routes, pools))
        gateway = start_gateway(Path.cwd(), config, logs)
        stack.callback(gateway.stop)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            for name in POOLS:
                runs[name] = runner.run(drive(f"{gateway.url}/{name}/users/1"))
    return runs


def section(runs: dict[str, Run]) -> Section:
    out = Section(
        f"3. One slow backend (users/c, +{SLOW_MS} ms): {CONCURRENCY} requests in flight,"
        f" {SECONDS:g} s per strategy",
        ["strategy", "req/s", "p50", "p90", "p99", "a", "b", "c (slow)", "errors", ""],
    )
    rr = runs["rr"]
    for name, (label, _, _) in POOLS.items():
        run = runs[name]
        total = sum(run.served.values()) or 1
        share = {who: run.served[f"users/{who}"] / total for who in "abc"}
        out.rows.append(
            [label, f"{total / run.seconds:,.0f}", f"{run.percentile(0.5):.1f} ms",
             f"{run.percentile(0.9):.1f} ms", f"{run.percentile(0.99):.1f} ms",
             f"{share['a']:.0%}", f"{share['b']:.0%}", f"{share['c']:.1%}", f"{run.errors}",
             bar(share["c"], 1 / 3, 12)]
        )  # fmt: skip
    rr_slow = rr.served["users/c"] / (sum(rr.served.values()) or 1)
    for name in ("lc", "p2c"):
        run, label = runs[name], POOLS[name][0]
        slow = run.served["users/c"] / (sum(run.served.values()) or 1)
        faster = run.percentile(0.9) < rr.percentile(0.9)
        out.verdicts.append(
            (f"{label}: the slow backend got {slow:.1%} of the requests (round robin:"
             f" {rr_slow:.0%}); p90 {run.percentile(0.9):.1f} ms vs {rr.percentile(0.9):.1f} ms",
             slow < rr_slow / 2 and faster)
        )  # fmt: skip
    out.notes += [
        "least conns: least_connections scanning every target; P2C: choices = 2. a, b, c:"
        " share of the answered requests, from X-Served-By. bar: the slow backend's share (a"
        " full bar is a third). Latency: client side, through the gateway, shared cores.",
        "p99 stays near the slow backend's latency for every strategy as long as it gets more"
        " than 1% of the requests; what least connections changes is p90 and the throughput.",
    ]
    return out
