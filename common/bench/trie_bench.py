"""trie-bench: route lookup cost as the route table grows, for three ways of routing.

    make trie-bench [ARGS=--quick | ARGS=--markdown]
    (cd 02_trie_routing && PYTHONPATH=.. ../.venv/bin/python -m common.bench.trie_bench)

It runs from a stage folder and measures that stage's own router (`gateway.trie`), next to
two baselines (common/bench/routers.py):

- dict scan: stage 01's router, verbatim: every lookup visits every route to find the
  longest matching prefix, so its cost grows with the number of routes.
- regex list: one compiled regex per route, first match wins, as Starlette and Django
  route (`{id}` becomes `(?P<id>[^/]+)`). A hit costs the routes before it; a miss all.
- trie: the stage's radix trie: one dict lookup per path segment, whatever the count.

Method: each sample times one path looked up `reps` times in a row with perf_counter_ns
(enough reps for a sample to last ~20 µs, far above the timer's resolution) and reports
time/reps; p50 and p99 are over samples. A sample repeats one path, so caches are warm:
these are best-case CPU numbers for the lookup alone, not request latencies. Routes are
built with the garbage collector paused and then frozen (gc.freeze(), as a gateway can do
after loading its config) so that a collection walking a million route objects does not
land in someone else's sample. Slow rows stop sampling after a time budget (the `n`
column says how many samples they got).

One more line measures what the gateway really does per request at 1,000 routes: the
path normalised (gateway/pathsafety.py) and then looked up, the way gateway/app.py calls
them.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.pathsafety import normalise
from gateway.trie import Router
from rich.console import Console

from common.bench.measured import write as write_measured
from common.bench.routers import DictScan, RegexList, route_patterns, workload
from common.bench.trie_report import LEGEND, Row, bars, machine, markdown, ns, pct, table, verdicts

SIZES = (10, 100, 1_000, 10_000, 100_000)
SAMPLE_NS = 20_000  # each sample lasts about this long
STEP_AT = 1_000  # routes, for the normalise + lookup line

Lookup = Callable[[str, str], Any]


def trie(patterns: list[str]) -> Router[str]:
    router: Router[str] = Router()
    for pattern in patterns:
        router.add(pattern, None, pattern)
    router.compile()
    return router


BUILDERS: dict[str, Callable[[list[str]], Any]] = {
    "dict scan": DictScan,
    "regex list": RegexList,
    "trie": trie,
}


def build(builder: Callable[[list[str]], Any], patterns: list[str]) -> tuple[Any, float]:
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    router = builder(patterns)
    elapsed = (time.perf_counter() - start) * 1000
    gc.enable()
    gc.freeze()
    return router, elapsed


def traced_memory(builder: Callable[[list[str]], Any], patterns: list[str]) -> int:
    gc.collect()
    gc.disable()  # as in build(): and a collection under tracemalloc is slower still
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    router = builder(patterns)
    gc.collect()  # count what the router keeps, not the garbage its build left
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    gc.enable()
    del router
    return used


def sample(match: Lookup, paths: list[str], budget_s: float) -> list[float]:
    clock = time.perf_counter_ns
    for path in paths[:5]:  # warm up
        match(path, "GET")
    start = clock()
    for path in paths[:5]:  # calibrate: how many reps make a sample last SAMPLE_NS
        match(path, "GET")
    reps = max(1, min(100, SAMPLE_NS * 5 // max(1, clock() - start)))
    deadline = clock() + int(budget_s * 1e9)
    out = []
    for path in paths:
        start = clock()
        for _ in range(reps):
            match(path, "GET")
        end = clock()
        out.append((end - start) / reps)
        if end > deadline and len(out) >= 20:
            break
    return sorted(out)


def run(quick: bool, progress: Callable[[str], object]) -> list[Row]:
    rows = []
    for size in SIZES:
        patterns = route_patterns(size)
        hits, misses = workload(patterns, 1_000 if quick else 4_000)
        for name, builder in BUILDERS.items():
            slow = name != "trie"
            if quick and slow and size > 10_000:
                continue  # 100k routes of regexes take seconds to compile
            progress(f"{size:,} routes: {name}")
            router, build_ms = build(builder, patterns)
            if name == "trie":
                assert all(isinstance(router.match(p, "GET"), tuple) for p in hits[:300])
                assert all(router.match(p, "GET") is None for p in misses[:300])
            budget = (0.1 if quick else 0.4) if slow else (0.15 if quick else 0.5)
            hit, miss = sample(router.match, hits, budget), sample(router.match, misses, budget)
            del router
            gc.unfreeze()
            # tracemalloc slows allocation several times over: skip the builds where it
            # would cost the most (100k regexes; with --quick, everything above 10k).
            skip = size > 10_000 and (quick or name == "regex list")
            memory = None if skip else traced_memory(builder, patterns)
            rows.append(Row(name, size, build_ms, memory, hit, miss))
    return rows


def routing_step(quick: bool) -> str:
    """The gateway's whole routing step, as gateway/app.py runs it: normalise, then look up."""
    patterns = route_patterns(STEP_AT)
    hits, _ = workload(patterns, 1_000 if quick else 4_000)
    router = trie(patterns)

    def step(target: str, method: str) -> object:
        path = normalise(target)
        return router.match_segments(path.match_segments, method, path.segments)

    samples = sample(step, hits, 0.15 if quick else 0.5)
    return (
        f"The gateway's routing step at {STEP_AT:,} routes (normalise + trie lookup, hits):"
        f" p50 {ns(pct(samples, 0.5))}, p99 {ns(pct(samples, 0.99))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, ≤ 10 s")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    parser.add_argument(
        "--write", action="store_true", help="--markdown, also written into 02's MEASURED.md"
    )
    args = parser.parse_args()
    # 110 columns when the output goes to a file or a pipe (rich would use 80); with
    # --markdown, stdout is the table alone and the progress goes to stderr.
    args.markdown = args.markdown or args.write
    if args.markdown:
        console = Console(stderr=True)
    else:
        console = Console() if sys.stdout.isatty() else Console(width=110)
    started = time.perf_counter()
    with console.status("measuring") as status:
        rows = run(args.quick, status.update)
        status.update("normalise + lookup")
        step = routing_step(args.quick)
    if args.markdown:
        text = markdown(rows, [step])
        print(text, end="")
        if args.write:
            where = write_measured(Path.cwd(), "trie-bench", text)  # run in 02_trie_routing
            console.print(f"written: {where}", highlight=False)
        return
    console.print(f"Machine: {machine()}", style="dim", highlight=False)
    console.print(table(rows))
    console.print(LEGEND + "\n", style="dim", highlight=False)
    console.print(bars(rows))
    console.print(step, highlight=False)
    for text, ok in verdicts(rows):
        console.print(f"{'[green]✓[/]' if ok else '[red]✗[/]'} {text}", highlight=False)
    console.print(f"({time.perf_counter() - started:.0f} s)", style="dim")


if __name__ == "__main__":
    main()
