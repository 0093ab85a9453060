"""The command line every "stage k against stage k-1" bench shares.

    python -m common.bench.<name> [--before 05] [--after 06] [--quick] [--markdown]

cache-bench, auth-bench and ratelimit-bench differ in what they run, not in how they are
started, report and fail: `compare_main` is that part, once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from common.bench.lb_report import Section, report
from common.bench.load import LoadError
from common.bench.run import BenchError, find_stage, machine_summary

# (the stage without the concern, the stage with it, --quick, the console) -> the sections
Run = Callable[[Path, Path, bool, Console], list[Section]]


def compare_main(argv: list[str] | None, *, name: str, what: str, before: str, after: str,
                 run: Run) -> int:  # fmt: skip
    """Parse the arguments, run, print rich tables (or Markdown); exit status 0 when every
    judged target was met, 1 when one was not, 2 for bad input or a failed start."""
    parser = argparse.ArgumentParser(prog=f"python -m common.bench.{name.replace('-', '_')}")
    parser.add_argument("--before", default=before, help=f"the stage without {what} ({before})")
    parser.add_argument("--after", default=after, help=f"the stage with {what} ({after})")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    parser.add_argument(
        "--write", action="store_true", help="--markdown, also written into the stage's MEASURED.md"
    )
    args = parser.parse_args(argv)
    args.markdown = args.markdown or args.write
    try:
        old, new = find_stage(args.before, "--before"), find_stage(args.after, "--after")
    except BenchError as exc:
        parser.error(str(exc))
    assert old is not None and new is not None  # names given: a stage or an error
    console = Console(stderr=args.markdown)
    try:
        sections = run(old, new, args.quick, console)
    except (RuntimeError, OSError, LoadError) as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]{name}:[/] {exc}", highlight=False)
        return 2
    measured = (new, name) if args.write else None
    return report(sections, machine_summary(), console, args.markdown, measured)
