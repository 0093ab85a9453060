"""bench-all: the same request through every stage, 01 to 09, each with its concerns on.

    make bench-all                    about eight minutes (two timed)
    make bench-all ARGS=--quick       shorter runs
    make bench-all ARGS=--no-count    the timed rounds only
    make bench-all ARGS=--no-cache-sim   counted, without the simulated L2
    make bench-all ARGS="--only 01,07 --rounds 12 --no-count"
                                      two stages alone, more rounds: a steadier ratio
    python -m common.bench.bench_all --markdown      the README's table

One request, `GET /small` with an API key, in front of the bench's fast origin:

    01  a prefix route to the origin (dict routing)
    02  the same through the radix trie and path normalisation
    03  the origin as a pool (round robin, active health checks)
    04  + the channel: deadline, up to 3 tries, breaker, bulkhead
    05  + the cache (the answer says nothing about caching: a miss, looked up and passed)
    06  + auth: the route needs an API key
    07  + a rate limit per consumer (memory store, never reached)
    08  + metrics (the request counted and timed, its try timed) and traces at 1 %;
        beside it, 08 with every request traced
    09  + live configuration: the routed part of the chain read once per request from
        the generation serving (no reload during the run: what it costs every request)

CPU per request of the gateway process, p50 and p99, 16 connections, alternating rounds,
median; a bar per stage and what its concern added to the one before. Targets: 07 with
every concern on costs at most 1.45x what 01 costs, 08 at most 1.10x what 07 costs, 09 at
most 1.03x what 08 costs, and no concern adds more than 25 µs.

Then, where valgrind is installed, the same request counted instead of timed: each
stage's instructions per request under callgrind (common/bench/instructions.py), and
the targets are judged on the counts; the timed ratios stay printed beside their targets
with a `·`, shown and not judged. On a shared VM the times of one stage move by a third
between rounds; the counts move by about one percent, so they tell whether a change
made a concern cheaper, and a verdict on them is the same on every run. Without
valgrind, or with `--no-count` (which skips the counting: about five minutes with the
cache simulation, three without), the times judge the targets.

Counts are not time: beside them, the misses per request of a simulated cache the size
of this machine's L2 (`--no-cache-sim` leaves it out). Once a request's code and objects
no longer fit in the L2, every request fetches the excess again, and the later stages'
instructions run slower than 01's: the gap between the timed and the counted ratios. The
misses move by about a tenth between runs (they depend on where objects land in memory);
the instructions by about one percent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import statistics
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

from rich.console import Console

from common.bench import cpu, instructions, load
from common.bench.eventloop import loop_factory
from common.bench.lb_report import Section, bar, report
from common.bench.run import machine_summary, pin_this_process
from common.testing.gateway import stage_render, start_gateway
from common.testing.processes import REPO_ROOT, Proc, spawn
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

KEY = "gwk_benchall_" + "k" * 43
HEADERS = (("X-API-Key", KEY),)
MAX_RATIO = 1.45  # 07 against 01, every concern on
MAX_OBSERVED_RATIO = 1.10  # 08 against 07: what the metrics may cost
MAX_LIVE_RATIO = 1.03  # 09 against 08: what live configuration may cost
SAMPLED = 0.01  # 08's traces in the bench, as production samples them
EVERY = "@100%"  # the row of 08 with every request traced
MAX_ADDED_US = 25  # what one stage's concern may add to the one before
# (the stage, the one it is judged against, the largest ratio allowed, what is on)
TARGETS = ((1, 7, MAX_RATIO, "with every concern on"),
           (7, 8, MAX_OBSERVED_RATIO, "with metrics on and traces at 1 %"),
           (8, 9, MAX_LIVE_RATIO, "with its configuration live"))  # fmt: skip
ADDED = {1: "dict routing, streaming proxy", 2: "radix trie, path safety", 3: "a pool, health",
         4: "the channel: deadline, tries, breaker", 5: "the cache (a miss)",
         6: "auth: an API key", 7: "a rate limit per consumer",
         8: "metrics, traces at 1 %", 9: "live configuration"}  # fmt: skip


def stages(only: frozenset[int] | None = None) -> list[Path]:
    """Every gateway stage, or those whose numbers are in `only`."""
    found = sorted(p for p in REPO_ROOT.glob("0[1-9]_*") if (p / "gateway").is_dir())
    return [p for p in found if only is None or int(p.name[:2]) in only]


def stage_numbers(text: str) -> frozenset[int]:
    """`--only 01,07` (or `1,7`): the stages to run; what is not a stage is an error."""
    try:
        numbers = frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not stage numbers: {text!r} (say 01,07)") from None
    known = {int(p.name[:2]) for p in stages()}
    if not numbers or not numbers <= known:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the stages are {', '.join(f'{n:02d}' for n in sorted(known))}"
        )
    return numbers


def shows(previous: str, stage: str) -> bool:
    """Does a row's "added" column say anything: over the stage right before it, or, for
    the fully traced row, over its own stage."""
    return EVERY in stage or adjacent(previous, stage)


def adjacent(first: str, second: str) -> bool:
    """Is `second` the stage right after `first`? Only then is their difference what
    one concern adds (with --only 01,07 it is six concerns')."""
    return int(second[:2]) == int(first[:2]) + 1


def spec_for(number: int, origin: Proc, sample_ratio: float = SAMPLED) -> GatewaySpec:
    pools = {}
    upstream = origin.url
    if number >= 3:
        pools = {
            "origin": PoolSpec(targets(origin.url), health=HealthSpec(interval=2.0, timeout=1.0))
        }
        upstream = "origin"
    auth = RouteAuthSpec(mode="key") if number >= 6 else None
    limit = (RouteLimitSpec(limits=(LimitSpec("huge", 1_000_000_000, 60.0),), key="consumer")
             if number >= 7 else None)  # fmt: skip
    route = RouteSpec("/", upstream, auth=auth, rate_limit=limit)
    consumers = AuthSpec(consumers=(ConsumerSpec("bench", api_keys=(
        ("benchall", "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()),)),))  # fmt: skip
    channel = ChannelSpec(attempts=3, deadline=30.0) if number >= 4 else ChannelSpec()
    # 08 on: metrics, and traces sampled as production would (none exported: the cost
    # measured is the gateway's own, the exporter's thread is not asked to send anything).
    seen = ObservabilitySpec(sample_ratio=sample_ratio) if number >= 8 else None
    return GatewaySpec([route], pools=pools, channel=channel,
                       auth=consumers if number >= 6 else None, observability=seen)  # fmt: skip


def concern_of(row: str) -> str:
    return "traces: every request" if EVERY in row else ADDED.get(int(row[:2]), "-")


def variants(
    origin: Proc, only: frozenset[int] | None = None
) -> list[tuple[str, Path, GatewaySpec]]:
    """(name, stage, spec) for every row: each stage as it is, and 08 on with every
    request traced beside the sampled one, to show what tracing costs when it is on."""
    rows = []
    for stage in stages(only):
        number = int(stage.name[:2])
        rows.append((stage.name, stage, spec_for(number, origin)))
        if number == 8:
            rows.append((f"{stage.name} {EVERY}", stage, spec_for(number, origin, 1.0)))
    return rows


def run_all(
    seconds: float,
    rounds: int,
    console: Console,
    counted: int,
    cache_sim: bool = True,
    only: frozenset[int] | None = None,
) -> list[Section]:
    """The timed section, and with `counted` > 0 (and valgrind) the counted one; with
    `only`, for those stages alone."""
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp, contextlib.ExitStack() as stack:
        where = Path(tmp)
        origin = spawn("origin", [sys.executable, "-m", "common.bench.origin"], log_dir=where)
        stack.callback(origin.stop)
        gateways: dict[str, Proc] = {}
        for name, folder, spec in variants(origin, only):
            proc = start_gateway(folder, stage_render(folder)(spec), where, "--no-access-log")
            stack.callback(proc.stop)
            gateways[name] = proc
        pinning = pin_this_process()
        for proc in gateways.values():
            if pinning.proxy_cores is not None:
                cpu.pin_tree(proc.pid, pinning.proxy_cores)
        results: dict[str, list[load.LoadResult]] = {name: [] for name in gateways}
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            for round_no in range(rounds):
                order = list(gateways) if round_no % 2 == 0 else list(gateways)[::-1]
                for name in order:
                    proc = gateways[name]
                    console.log(f"round {round_no + 1}/{rounds}: {name}")
                    results[name].append(runner.run(load.run_builtin(
                        proc.url + "/small", connections=16, duration=seconds, warmup=0.3,
                        meter=partial(cpu.tree_cpu_us, proc.pid),
                        headers=HEADERS)))  # fmt: skip
        for proc in gateways.values():
            proc.stop()  # idle, but their health checks would share the counting core
        counts: dict[str, float] = {}
        misses: dict[str, float] = {}
        cache = instructions.l2_of_this_machine() if cache_sim else None
        if counted and instructions.available():
            for name, folder, spec in variants(origin, only):
                console.log(f"counting instructions: {name}")
                config = stage_render(folder)(spec)
                got = instructions.count(folder, config, where, "/small", HEADERS, counted, cache)
                counts[name] = got.instructions
                if got.misses is not None:
                    misses[name] = got.misses
    # Counted, the targets are judged on the counts; the times stay beside them, unjudged.
    timed = timed_section(results, rounds, seconds, pinning.note, judged=not counts)
    if not counted:
        return [timed]
    per = timed_per_request(results)
    return [timed, counted_section(counts, per, counted, misses, cache)]


def timed_per_request(results: dict[str, list[load.LoadResult]]) -> dict[str, float]:
    # the type ignore below: meter_delta is None only for runs without a meter; these have one
    return {s: statistics.median(r.meter_delta / r.requests for r in rs)  # type: ignore[operator]
            for s, rs in results.items()}  # fmt: skip


def timed_section(
    results: dict[str, list[load.LoadResult]],
    rounds: int,
    seconds: float,
    pinned: str,
    judged: bool = True,
) -> Section:
    """The timed rows, and the targets judged on them; with `judged` False (the counts
    judge them, below), the same ratios shown beside their targets with a `·`, not a
    verdict: only "every request answered 200" is judged here then."""
    per = timed_per_request(results)
    out = Section(
        f"Each stage, the same request (GET /small with an API key): 16 connections, {rounds}"
        f" rounds of {seconds:g} s, median",
        ["stage", "its concern", "rps", "p50", "p99", "errors", "CPU µs/request", "",
         "added"],
    )  # fmt: skip
    full = max(per.values())
    previous = None
    for stage, rs in results.items():
        out.rows.append(
            [
                stage,
                concern_of(stage),
                f"{statistics.median(r.rps for r in rs):,.0f}",
                f"{statistics.median(r.p50_ms for r in rs):.2f} ms",
                f"{statistics.median(r.p99_ms for r in rs):.2f} ms",
                str(sum(r.errors for r in rs)),
                f"{per[stage]:.0f}",
                bar(per[stage], full),
                f"{per[stage] - per[previous]:+.0f} µs"
                if previous is not None and shows(previous, stage)
                else "-",
            ]
        )
        if EVERY not in stage:  # the variant's "added" is over its own stage; the next's not
            previous = stage
    by_number = {int(stage[:2]): stage for stage in per if EVERY not in stage}
    for base, later, target, what in TARGETS:
        if base not in by_number or later not in by_number:
            continue
        first, last = by_number[base], by_number[later]
        # The ratio is taken within each round, then the median: on a shared machine the
        # CPU a request costs drifts between rounds (a neighbour's load, frequency), and two
        # stages measured seconds apart drift together, so their ratio holds still where a
        # ratio of medians from different moments does not. The range says how much it moved.
        ratios = [
            (b.meter_delta / b.requests) / (a.meter_delta / a.requests)  # type: ignore[operator]  # metered runs
            for a, b in zip(results[first], results[last], strict=True)
        ]
        ratio = statistics.median(ratios)
        out.verdicts.append(
            (
                f"{last} {what} costs {per[last]:.0f} µs, {ratio:.2f}x"
                f" {first}'s {per[first]:.0f} µs (the median of {len(ratios)} rounds'"
                f" ratios, {min(ratios):.2f}x to {max(ratios):.2f}x; target: at most {target}x"
                f"{'' if judged else unjudged(ratio <= target)})",
                ratio <= target if judged else None,
            )
        )
    ordered = [stage for stage in per if EVERY not in stage]  # concerns, not the variant
    added = {b: per[b] - per[a] for a, b in itertools.pairwise(ordered) if adjacent(a, b)}
    traced = [stage for stage in per if EVERY in stage]
    for stage in traced:  # what tracing every request costs, beside the sampled row
        sampled = stage.replace(f" {EVERY}", "")
        out.notes.append(
            f"{stage}: {per[stage]:.0f} µs, {per[stage] - per[sampled]:+.0f} µs over"
            f" {SAMPLED:.0%} sampling (spans recorded, none exported)"
        )
    if added:
        most = max(added, key=lambda stage: added[stage])
        within = added[most] <= MAX_ADDED_US
        out.verdicts.append(
            (
                f"no concern adds more than {MAX_ADDED_US} µs (the most: {most},"
                f" {added[most]:+.0f} µs{'' if judged else unjudged(within)})",
                within if judged else None,
            )
        )
    errors = sum(r.errors for rs in results.values() for r in rs)
    out.verdicts.append((f"every request answered 200 ({errors} errors)", errors == 0))
    if not judged:
        out.notes.append(
            "· a target judged on the counted table below, not on these times: on a shared"
            " VM a stage's time moves by a third between rounds, and the later stages, whose"
            " requests miss the L2 more (the counted table's L2 misses, when simulated),"
            " slow down most when neighbours fill the L3 they share. The counts move by"
            " about one percent."
        )
    out.notes.append(pinned)
    return out


def unjudged(within: bool) -> str:
    """What a timed figure beside its target says when the counts judge the target: in
    plain words whether the time alone would have met it."""
    return (
        "; judged on the count below, and within it in time too"
        if within
        else "; judged on the count below: over it in time on this machine"
    )


def counted_section(
    counts: dict[str, float],
    timed: dict[str, float],
    requests: int,
    misses: dict[str, float] | None = None,
    cache: instructions.Cache | None = None,
) -> Section:
    """The same rows counted: thousands of instructions per request, what each concern
    added over the stage right before, and that in µs at the rate the first stage (01,
    unless --only leaves it out) ran at in the timed rounds (an estimate: a concern's
    instructions need not run as fast as that stage's); with `misses`, the misses per
    request of the simulated `cache`, which say why they do not."""
    columns = ["stage", "its concern", "instructions/request", "", "added", "≈ µs added"]
    if misses:
        columns.append("L2 misses/request")
    out = Section(
        f"Each stage, the same request counted: instructions per request under callgrind"
        f" ({requests} requests on one connection after {instructions.WARM_UP} unseen)",
        columns,
    )
    if not counts:
        out.notes.append("not counted: valgrind is not installed (apt-get install valgrind)")
        return out
    ordered = [stage for stage in counts if EVERY not in stage]
    base = ordered[0]
    us_each = timed[base] / counts[base]  # µs per instruction, as 01 ran in the timed rounds
    full, previous = max(counts.values()), None
    added: dict[str, float] = {}
    for stage, n in counts.items():
        more = n - counts[previous] if previous is not None and shows(previous, stage) else None
        if more is not None and EVERY not in stage:
            added[stage] = more
        out.rows.append(
            [
                stage,
                concern_of(stage),
                f"{n / 1000:,.1f}k",
                bar(n, full),
                "-" if more is None else f"{more / 1000:+,.1f}k",
                "-" if more is None else f"{more * us_each:+.0f} µs",
                *([f"{misses[stage]:,.0f}" if stage in misses else "-"] if misses else []),
            ]
        )
        if EVERY not in stage:
            previous = stage
    by_number = {int(stage[:2]): stage for stage in ordered}
    for first_no, last_no, target, what in TARGETS:
        if first_no in by_number and last_no in by_number:
            first, last = by_number[first_no], by_number[last_no]
            ratio = counts[last] / counts[first]
            claim = (
                f"{last} {what}: {counts[last] / 1000:,.0f}k instructions, {ratio:.2f}x"
                f" {first}'s {counts[first] / 1000:,.0f}k (target: at most {target}x)"
            )
            out.verdicts.append((claim, ratio <= target))
    if added:
        most = max(added, key=lambda stage: added[stage])
        most_us = added[most] * us_each
        claim = (
            f"no concern adds more than {MAX_ADDED_US} µs (the most: {most},"
            f" {added[most] / 1000:+,.1f}k instructions, about {most_us:.0f} µs at"
            f" {base[:2]}'s rate)"
        )
        out.verdicts.append((claim, most_us <= MAX_ADDED_US))
    out.notes.append(
        f"≈ µs: at the rate {base} ran in the timed rounds, {us_each * 1000:.3f} ns per instruction"
    )
    if misses:
        where = f" ({cache})" if cache is not None else ""
        out.notes.append(
            f"L2 misses: callgrind's simulation of this machine's L2{where}, one connection,"
            " the kernel's share of the cache not in it; each miss costs tens of cycles"
            " that the instruction count does not weigh, so a stage with more of them runs"
            f" its instructions slower than {base} does"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.bench.bench_all")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--markdown", action="store_true", help="Markdown for the README")
    parser.add_argument("--no-count", action="store_true", help="time only, no callgrind")
    parser.add_argument("--no-cache-sim", action="store_true", help="count without the L2")
    parser.add_argument(
        "--only", type=stage_numbers, metavar="01,07", help="these stages alone (default: all)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        choices=range(1, 101),
        metavar="N",
        help="timed rounds (5; 3 with --quick)",
    )
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    counted = 0 if args.no_count else (200 if args.quick else 500)
    seconds, rounds = (1.0, 3) if args.quick else (2.0, 5)
    rounds = args.rounds or rounds
    try:
        sections = run_all(seconds, rounds, console, counted, not args.no_cache_sim, args.only)
    except (RuntimeError, OSError, load.LoadError, subprocess.SubprocessError) as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]bench-all:[/] {exc}", highlight=False)
        return 2
    return report(sections, machine_summary(), Console(), args.markdown)


if __name__ == "__main__":
    sys.exit(main())
