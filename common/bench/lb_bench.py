"""lb-bench: the hash ring's balance and stability, strategies under a slow backend, bounded loads.

Run from a stage folder (03 on), so that `gateway` is that stage's package:

    cd 03_load_balancing && PYTHONPATH=.. ../.venv/bin/python -m common.bench.lb_bench
    make lb-bench                  the same
    ... -m common.bench.lb_bench --markdown    Markdown, for ARCHITECTURE.md's "Measured"
    ... -m common.bench.lb_bench --no-live     parts 1, 2, 4 only (no processes started)

1. Distribution: each target's share of the hash space, for 6 and 100 targets and 10 to
   1000 virtual nodes. Shares are exact arc lengths, not sampled keys, so the spread is
   the ring's own. One ring is one draw of random points, so next to the ring of this
   repo's targets (ports 9001...) the table shows the mean over many rings with other
   target names, and the theory: a share is a sum of v random arcs, its spread is about
   sqrt((1 - 1/N) / v), 7.9% at v = 160 (Damian Gryski measured ~10% at 100 points and
   3.2% at 1000; nginx's `hash ... consistent` uses 160 per unit of weight).
2. Stability: the share of keys that change target when one target is removed or added,
   against the ideal 1/N, and the keys that moved between two targets that did not
   change (a ring must keep that at 0). `hash % N` for contrast.
4. Bounded loads: a Zipf hot-key workload with requests in flight (Poisson arrivals,
   exponential service times, simulated time): the peak in-flight per target against
   the cap ceil(c x avg), for a plain ring and several c.

3. Least connections and P2C vs round robin with one slow backend: real requests through
   the gateway (lb_slow.py), p50/p90/p99 and who answered, from X-Served-By.

Parts 1, 2 and 4 use the stage's own balancing code (gateway.balancing) and are seeded:
two runs print the same numbers. Part 3 is a measurement and moves from run to run.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from gateway.balancing import ConsistentHash, HashRing, Lease, Target, UpstreamPool, hash64
from rich.console import Console

from common.bench import lb_slow
from common.bench.lb_report import Section, bar, report
from common.bench.run import machine_summary
from common.bench.workloads import zipf_keys

STAGE = Path.cwd()  # `make lb-bench` runs it in 03_load_balancing, the stage it measures

STDDEV_TARGET = 8.0  # % of the mean share with 160 virtual nodes, for N <= 100
MOVE_TARGET = 1.1  # keys moved when one of N targets is removed, in units of 1/N
KEYS = [hash64(f"user-{i}") for i in range(20_000)]  # hashed once, looked up many times


def repo_targets(n: int, host: str = "127.0.0.1") -> list[Target]:
    return [Target(f"http://{host}:{9001 + i}") for i in range(n)]


def spread(ring: HashRing) -> tuple[float, float]:
    """(stddev of the shares as % of the mean, max share / mean share)."""
    shares = list(ring.shares().values())
    mean = 1 / len(shares)
    return statistics.pstdev(shares) / mean * 100, max(shares) / mean


def distribution() -> Section:
    section = Section(
        "1. Distribution: each target's share of the ring",
        ["N", "vnodes", "stddev", "max/avg", "rings", "mean stddev", "p90", "theory", ""],
    )
    for n in (6, 100):
        for vnodes in (10, 40, 160, 1000):
            stddev, max_avg = spread(HashRing(repo_targets(n), vnodes))
            count = max(5, min(200, 200_000 // (n * vnodes)))  # ~200k points per row
            draws = sorted(
                spread(HashRing(repo_targets(n, f"ring{r}.example"), vnodes))[0]
                for r in range(count)
            )
            mean = statistics.fmean(draws)
            theory = math.sqrt((1 - 1 / n) / vnodes) * 100
            p90 = draws[int(0.9 * (count - 1))]
            section.rows.append(
                [f"{n}", f"{vnodes}", f"{stddev:.1f}%", f"{max_avg:.2f}", f"{count}",
                 f"{mean:.1f}%", f"{p90:.1f}%", f"{theory:.1f}%", bar(stddev, 30, 16)]
            )  # fmt: skip
            if vnodes == 160:
                # The target is about the method, so the mean over many rings is judged.
                # One ring is one draw from that spread: shown, not judged.
                section.verdicts += [
                    (f"N = {n}, 160 vnodes: stddev {mean:.1f}% on average over {count} rings"
                     f" (target ≤ {STDDEV_TARGET:g}%)", mean <= STDDEV_TARGET),
                    (f"N = {n}, 160 vnodes: this repo's ring {stddev:.1f}%, one draw"
                     f" (p90 of the draws: {p90:.1f}%)", None),
                ]  # fmt: skip
        section.rows.append([])
    section.rows.pop()
    section.notes.append(
        "stddev, max/avg, bar: the ring of http://127.0.0.1:9001 and up (this repo's targets),"
        " stddev as % of the mean share. mean stddev, p90: over `rings` rings of other target"
        " names. theory: sqrt((1-1/N)/v)."
    )
    return section


def owners(ring: HashRing) -> list[str]:
    # the type ignore below: a ring with targets always has an owner
    return [ring.owner_at(key).url for key in KEYS]  # type: ignore[union-attr]


def stability() -> Section:
    section = Section(
        "2. Stability: keys that change target when the pool changes (160 vnodes)",
        ["N", "change", "moved", "worst", "ideal", "moved/ideal", "others", "hash % N", ""],
    )  # fmt: skip
    for n in (6, 100):
        pool = repo_targets(n)
        before = owners(HashRing(pool))
        for change in ("remove one", "add one"):
            fractions, collateral = [], 0
            # Removing: every target in turn. Adding: ten different newcomers.
            for i in range(n if change == "remove one" else 10):
                if change == "remove one":
                    gone = pool[i].url
                    after = owners(HashRing([t for t in pool if t.url != gone]))
                else:
                    new = f"http://127.0.0.1:{9001 + n + i}"
                    after = owners(HashRing([*pool, Target(new)]))
                moved = [k for k in range(len(KEYS)) if after[k] != before[k]]
                fractions.append(len(moved) / len(KEYS))
                # A move is necessary only from the removed target or to the new one.
                collateral += sum(
                    (before[k] != gone) if change == "remove one" else (after[k] != new)
                    for k in moved
                )
            ideal = 1 / n if change == "remove one" else 1 / (n + 1)
            m = n - 1 if change == "remove one" else n + 1
            modulo = sum(key % n != key % m for key in KEYS) / len(KEYS)
            mean = statistics.fmean(fractions)
            section.rows.append(
                [f"{n}", change, f"{mean:.2%}", f"{max(fractions):.2%}", f"{ideal:.2%}",
                 f"{mean / ideal:.2f}", f"{collateral}", f"{modulo:.1%}", bar(mean, 0.2, 16)]
            )  # fmt: skip
            if change == "remove one":
                section.verdicts.append(
                    (f"N = {n}, one removed: {mean * n:.2f}/N of the keys moved on average"
                     f" (target ≤ {MOVE_TARGET:g}/N), {collateral} between other targets",
                     mean * n <= MOVE_TARGET and collateral == 0)
                )  # fmt: skip
    section.notes += [
        f"{len(KEYS):,} keys. moved: mean over removing each target in turn, or over adding"
        " ten different newcomers; worst: the largest of those. others: keys that moved"
        " between two targets that did not change. hash % N: keys that move without a ring.",
        "The mean over every removable target is exactly 1/N when nothing else moves; the worst"
        " case is the largest target's share (max/avg in 1).",
    ]
    return section


@dataclass
class Run:
    peaks: list[int]  # per target: the most requests it held at once
    served: list[int]  # per target: requests placed on it
    worst: float  # the highest load/cap at any placement
    over: int  # placements above the cap
    at_home: float  # share of requests placed on their key's owner
    avg: float  # requests in flight per target, averaged over placements


def simulate(keys: list[str], factor: float | None, n: int = 6, concurrency: float = 60) -> Run:
    """Place `keys` as requests arrive and finish; measure each placement against the cap.

    The cap is recomputed here from its definition (ceil(c * m / n), m counting the request
    just placed), not taken from ring.py. A plain ring is measured against c = 1.25.
    """
    rng = random.Random(11)  # same seed for every factor: the same arrivals and durations
    targets = repo_targets(n)
    strategy = ConsistentHash(targets, bounded_load=factor)
    pool = UpstreamPool("bench", targets, strategy)
    c = Fraction(str(factor or 1.25))
    in_flight: list[tuple[float, int, Lease]] = []
    now = worst = 0.0
    peaks, served = [0] * n, [0] * n
    over = at_home = total = 0
    for i, key in enumerate(keys):
        now += rng.expovariate(concurrency)
        while in_flight and in_flight[0][0] <= now:
            heapq.heappop(in_flight)[2].release()
        lease = pool.acquire(key)
        placed = sum(t.in_flight for t in targets)
        cap = math.ceil(c * placed / n)
        load = lease.target.in_flight
        worst, over = max(worst, load / cap), over + (load > cap)
        index = targets.index(lease.target)
        peaks[index] = max(peaks[index], load)
        served[index] += 1
        at_home += lease.target is strategy.ring.owner(key)
        total += placed
        heapq.heappush(in_flight, (now + rng.expovariate(1.0), i, lease))
    return Run(peaks, served, worst, over, at_home / len(keys), total / len(keys) / n)


def bounded_loads() -> list[Section]:
    keys = zipf_keys(random.Random(5), 50_000)
    hottest = Counter(keys).most_common(1)[0][1] / len(keys)
    summary = Section(
        "4. Bounded loads: 6 targets, Zipf hot keys, ~60 requests in flight",
        ["ring", "peak", "avg", "load/cap", "over cap", "own target", ""],
    )
    results: dict[float | None, Run] = {}
    for factor in (None, 2.0, 1.5, 1.25, 1.1):
        r = results[factor] = simulate(keys, factor)
        label = "plain ring" if factor is None else f"c = {factor:g}"
        summary.rows.append(
            [label, f"{max(r.peaks)}", f"{r.avg:.1f}", f"{r.worst:.2f}", f"{r.over:,}",
             f"{r.at_home:.0%}", bar(max(r.peaks), 40, 16)]
        )  # fmt: skip
        if factor is not None:
            summary.verdicts.append(
                (f"c = {factor:g}: {r.over} of {len(keys):,} placements above ceil(c·avg)",
                 r.over == 0)
            )  # fmt: skip
    summary.notes += [
        f"{len(keys):,} requests, Zipf s = 1.1 over 1,000 keys: the hottest key alone is"
        f" {hottest:.0%} of them, an even share is {1 / 6:.0%}. peak: the most requests any"
        " target held at once. avg: requests in flight per target, averaged over placements."
        " load/cap: the highest, over all placements, of the chosen target's in-flight (this"
        " request included) / ceil(c·avg) at that moment (the plain ring against c = 1.25)."
        " own target: requests served by their key's owner on the ring.",
    ]
    plain, bounded = results[None], results[1.25]
    per_target = Section(
        "4b. Per target: plain ring vs c = 1.25",
        ["target", "requests", "peak", "", "requests ", "peak ", " "],
    )
    for i, target in enumerate(repo_targets(6)):
        per_target.rows.append(
            [target.url.removeprefix("http://"),
             f"{plain.served[i] / len(keys):.0%}", f"{plain.peaks[i]}",
             bar(plain.peaks[i], 40, 12),
             f"{bounded.served[i] / len(keys):.0%}", f"{bounded.peaks[i]}",
             bar(bounded.peaks[i], 40, 12)]
        )  # fmt: skip
    per_target.notes.append("Left: plain ring. Right: bounded loads, c = 1.25.")
    return [summary, per_target]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lb_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    parser.add_argument(
        "--write", action="store_true", help="--markdown, also written into 03's MEASURED.md"
    )
    parser.add_argument("--no-live", action="store_true", help="skip part 3 (starts processes)")
    args = parser.parse_args(argv)
    args.markdown = args.markdown or args.write
    console = Console(stderr=args.markdown)
    if not console.is_terminal:
        console = Console(stderr=args.markdown, width=100)  # logs and pipes: no truncation
    sections: list[Section] = []
    with console.status("1. distribution..."):
        sections.append(distribution())
    with console.status("2. stability..."):
        sections.append(stability())
    if not args.no_live:
        with console.status("3. one slow backend: starting backends and the gateway..."):
            try:
                sections.append(lb_slow.section(lb_slow.measure()))
            except KeyboardInterrupt:  # measure() has stopped its processes on the way out
                console.print("[yellow]interrupted[/]")
                return 130
    with console.status("4. bounded loads..."):
        sections += bounded_loads()
    # Exit status 1 when a target is missed, so `make lb-bench` fails loudly.
    measured = (STAGE, "lb-bench") if args.write else None
    return report(sections, machine_summary(), console, args.markdown, measured)


if __name__ == "__main__":
    raise SystemExit(main())
