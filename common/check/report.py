"""Printing the results: one line per rule, the violations under it, then a summary table.

Violation lines are printed with soft wrapping, so a long message stays one line when the
output is piped (`make check | grep drift`) instead of being cut at 80 columns.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from common.check.model import RuleResult, Violation
from common.check.stages import Stage


def print_report(
    console: Console, root: Path, stages: list[Stage], results: list[RuleResult], seconds: float
) -> None:
    names = ", ".join(s.name for s in stages)
    console.print(
        Text.assemble(
            ("make check", "bold"),
            f": {root} ({len(stages)} stage{'s' if len(stages) != 1 else ''}: {names})",
        )
    )
    console.print()
    width = max(len(r.rule) for r in results)
    for result in results:
        badge = ("PASS", "bold green") if result.passed else ("FAIL", "bold red")
        console.print(
            Text.assemble(
                badge, "  ", (result.rule.ljust(width), "bold"), "  ", result.description
            ),
            soft_wrap=True,
        )
        for violation in sorted(result.violations, key=Violation.sort_key):
            console.print(
                Text.assemble("      ", (violation.location, "cyan"), "  ", violation.reason),
                soft_wrap=True,
            )
    console.print()

    table = Table(title=None, show_edge=False, header_style="bold")
    table.add_column("rule")
    table.add_column("stages checked", justify="right")
    table.add_column("violations", justify="right")
    table.add_column("result")
    for result in results:
        table.add_row(
            result.rule,
            str(result.stages_checked),
            str(len(result.violations)),
            Text("PASS", "green") if result.passed else Text("FAIL", "red"),
        )
    console.print(table)

    total = sum(len(r.violations) for r in results)
    if total:
        summary = Text(f"{total} violation{'s' if total != 1 else ''}", "bold red")
    else:
        summary = Text("all checks passed", "bold green")
    console.print(Text.assemble(summary, f" in {seconds:.2f} s"))
