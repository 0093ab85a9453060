"""`make test`: common/'s tests, then every stage's, each in its own pytest process.

Why one process per stage: every stage has a package called `gateway`. In one interpreter
the first stage imported wins and every later stage would silently test stage 01's code.
A subprocess per stage (cwd = the stage folder, so `import gateway` finds *its* package)
is the simplest way to make that impossible.

Usage: python -m common.runtests [--only 01 --only common] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from common.testing.processes import REPO_ROOT, child_env

STAGE_DIR = re.compile(r"^\d\d_[a-z0-9_]+$")
# pytest's closing line, e.g. "==== 3 failed, 41 passed, 1 skipped in 12.3s ====".
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")
NO_TESTS_COLLECTED = 5  # pytest's exit code when it found nothing to run


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

    @property
    def ok(self) -> bool:
        return self.code == 0


def suites(root: Path = REPO_ROOT) -> list[Suite]:
    found = [Suite("common", root, "common/tests")]
    for path in sorted(p for p in root.iterdir() if p.is_dir() and STAGE_DIR.match(p.name)):
        found.append(Suite(path.name, path, "tests"))
    return found


def run_suite(suite: Suite, extra: list[str], console: Console) -> Outcome:
    console.rule(f"[bold]{suite.name}")
    if not (suite.cwd / suite.target).is_dir():
        console.print(f"[red]{suite.name}: no {suite.target}/ folder: a stage without tests fails")
        return Outcome(suite, NO_TESTS_COLLECTED, {}, 0.0)
    started = time.monotonic()
    # Output streams straight through (CI logs show progress); the closing line is parsed
    # from a tee'd copy.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", suite.target, "-q", *extra],
        cwd=suite.cwd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    last_lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        last_lines = (last_lines + [line])[-5:]
    code = proc.wait()
    counts: dict[str, int] = {}
    for line in last_lines:
        for number, word in COUNTS.findall(line):
            key = "errors" if word.startswith("error") else word
            counts[key] = counts.get(key, 0) + int(number)
    return Outcome(suite, code, counts, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="a suite: common or 01")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    console = Console()
    selected = [
        s
        for s in suites()
        if not args.only or any(s.name == o or s.name.startswith(o + "_") for o in args.only)
    ]
    if not selected:
        console.print(f"[red]no suite matches {args.only}")
        return 2
    outcomes = [run_suite(s, args.pytest_args, console) for s in selected]

    table = Table(title="make test")
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
    console.print(table)
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
