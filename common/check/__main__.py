"""`python -m common.check [--root DIR] [--rule NAME ...]`: exit 1 on any violation.

Exit codes: 0 all rules pass, 1 at least one violation, 2 the command itself was wrong
(no such root, no stage folders, unknown rule).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from rich.console import Console

from common.check import demo_lint, docs, drift, structure
from common.check.model import RuleResult, Violation, rel
from common.check.report import print_report
from common.check.stages import Stage, find_stages

RULES: list[ModuleType] = [structure, drift, docs, demo_lint]
DEFAULT_ROOT = Path(__file__).resolve().parents[2]


def run_rules(root: Path, stages: list[Stage], names: list[str] | None = None) -> list[RuleResult]:
    results = []
    for module in RULES:
        if names and module.NAME not in names:
            continue
        check: Callable[[Path, list[Stage]], RuleResult] = module.check
        try:
            results.append(check(root, stages))
        except OSError as exc:
            # An unreadable file is a finding about the repo, not a crash of the checker.
            where = rel(Path(exc.filename), root) if exc.filename else str(root)
            result = RuleResult(module.NAME, module.DESCRIPTION, len(stages))
            result.violations.append(Violation(where, None, f"could not read: {exc.strerror}"))
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.check", description="Check the stages of the monorepo."
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="repo root to check")
    parser.add_argument(
        "--rule",
        action="append",
        choices=[m.NAME for m in RULES],
        help="run only this rule (repeatable)",
    )
    args = parser.parse_args(argv)
    err = Console(stderr=True, highlight=False)

    root: Path = args.root.resolve()
    if not root.is_dir():
        err.print(f"[red]error:[/] --root {args.root} is not a directory")
        return 2
    stages = find_stages(root)
    if not stages:
        err.print(f"[red]error:[/] no stage folders (NN_name) under {root}")
        return 2

    started = time.perf_counter()
    results = run_rules(root, stages, args.rule)
    print_report(Console(highlight=False), root, stages, results, time.perf_counter() - started)
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
