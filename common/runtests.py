"""`make test`: common/'s tests and every stage's, each in its own pytest process.

Why one process per stage: every stage has a package called `gateway`. In one interpreter
the first stage imported wins and every later stage would silently test stage 01's code.
A subprocess per stage (cwd = the stage folder, so `import gateway` finds *its* package)
is the simplest way to make that impossible.

Suites run `--jobs` at a time (default 3 on the 2 cores CI has), the longest first so
the last one to start is a short one. Three, not two: a suite spends much of its time
waiting for the processes it starts (backends, gateways, Redis) and on sockets, and with
two at a time a CI run used 1.1 cores of 2 (9 min 17 s of CPU in 8 min 19 s); three took
`make test` from 433 s to 305 s on the same machine, every test passing. Not four: with
stage 09 it took `make test` from 472 s to 411-468 s, but two of three CI runs then
failed a test that depends on time (a Redis answer within 50 ms, the HTTP cache suite's
few-second freshness checks) on a machine that saturated. Suites can run
side by side: every test binds its own ephemeral ports on 127.0.0.1 and writes under its
own tmp_path, so they share nothing but the CPU. Each suite's output is kept until it
ends and then printed whole, so two suites never interleave their lines; a line per
start and end shows progress.

Usage: python -m common.runtests [--only 01 --only common] [--jobs N] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from common.testing.processes import REPO_ROOT, child_env

STAGE_DIR = re.compile(r"^\d\d_[a-z0-9_]+$")
# pytest's closing line, e.g. "==== 3 failed, 41 passed, 1 skipped in 12.3s ====".
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")
NO_TESTS_COLLECTED = 5  # pytest's exit code when it found nothing to run
# Rough seconds per suite on 2 cores, to start the long ones first. Only the order depends
# on these: a wrong guess costs a little wall time, never a result.
EXPECTED_SECONDS = {
    "common": 140,
    "05_cache_layer": 110,
    "06_authentication": 130,
    "07_rate_limiting": 145,
    "08_observability": 155,
    "09_hot_reload": 190,
}  # 05 on run the conformance suite (all at once: ~10 s each)


@dataclass
class Suite:
    name: str
    cwd: Path
    target: str


@dataclass
class Outcome:
    suite: Suite
    code: int
    counts: dict[str, int]
    seconds: float
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0


def suites(root: Path = REPO_ROOT) -> list[Suite]:
    found = [Suite("common", root, "common/tests")]
    for path in sorted(p for p in root.iterdir() if p.is_dir() and STAGE_DIR.match(p.name)):
        found.append(Suite(path.name, path, "tests"))
    return found


def longest_first(selected: list[Suite]) -> list[Suite]:
    """Later stages hold every earlier contract and more: they take longest."""

    def expected(suite: Suite) -> int:
        if suite.name in EXPECTED_SECONDS:
            return EXPECTED_SECONDS[suite.name]
        return 10 * int(suite.name[:2])  # 01: 10 s ... 07: 70 s, as a rough guide

    return sorted(selected, key=expected, reverse=True)


def run_suite(suite: Suite, extra: list[str]) -> Outcome:
    if not (suite.cwd / suite.target).is_dir():
        message = f"{suite.name}: no {suite.target}/ folder: a stage without tests fails\n"
        return Outcome(suite, NO_TESTS_COLLECTED, {}, 0.0, message)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", suite.target, "-q", "--color=no", *extra],
        cwd=suite.cwd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    counts: dict[str, int] = {}
    for line in proc.stdout.splitlines()[-5:]:
        for number, word in COUNTS.findall(line):
            key = "errors" if word.startswith("error") else word
            counts[key] = counts.get(key, 0) + int(number)
    return Outcome(suite, proc.returncode, counts, time.monotonic() - started, proc.stdout)


def summary(outcomes: list[Outcome], seconds: float, jobs: int) -> Table:
    table = Table(title=f"make test: {seconds:.0f} s wall time, {jobs} suites at a time")
    for column in ("suite", "result", "passed", "failed", "skipped", "seconds"):
        table.add_column(column, justify="left" if column in ("suite", "result") else "right")
    for o in outcomes:
        if o.code == NO_TESTS_COLLECTED:
            result = "[red]NO TESTS"
        else:
            result = "[green]ok" if o.ok else f"[red]FAILED (exit {o.code})"
        table.add_row(
            o.suite.name,
            result,
            str(o.counts.get("passed", 0)),
            str(o.counts.get("failed", 0) + o.counts.get("errors", 0)),
            str(o.counts.get("skipped", 0)),
            f"{o.seconds:.1f}",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="a suite: common or 01")
    parser.add_argument(
        "--jobs",
        type=int,
        default=int(os.environ.get("TEST_JOBS", "3")),
        help="suites at a time (default 3, or $TEST_JOBS)",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    console = Console()
    selected = [
        s
        for s in suites()
        if not args.only or any(s.name == o or s.name.startswith(o + "_") for o in args.only)
    ]
    if not selected:
        console.print(f"[red]no suite matches {escape(str(args.only))}")
        return 2
    jobs = max(1, args.jobs)
    lock = threading.Lock()  # one suite's report at a time on the terminal

    def run_and_report(suite: Suite) -> Outcome:
        with lock:
            console.print(f"[dim]▶ {suite.name} started[/]")
        outcome = run_suite(suite, args.pytest_args)
        with lock:
            console.rule(f"[bold]{suite.name}[/] ({outcome.seconds:.0f} s)")
            # Test output is data, never markup: a test name with [brackets] prints as is.
            console.print(outcome.output, markup=False, highlight=False, end="")
        return outcome

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        by_name = {o.suite.name: o for o in pool.map(run_and_report, longest_first(selected))}
    outcomes = [by_name[s.name] for s in selected]  # the table in repo order

    console.print(summary(outcomes, time.monotonic() - started, jobs))
    passed = sum(o.counts.get("passed", 0) for o in outcomes)
    failed = sum(o.counts.get("failed", 0) + o.counts.get("errors", 0) for o in outcomes)
    bad = [o.suite.name for o in outcomes if not o.ok]
    # A plain closing line that any CI log reader understands.
    print(f"total: {passed} passed, {failed} failed")
    if bad:
        console.print(f"[red]failing suites: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
