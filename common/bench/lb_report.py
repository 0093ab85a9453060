"""The benches' output: rich tables with bars for the terminal, Markdown for a stage's
MEASURED.md (common/bench/measured.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from common.bench.measured import write as write_measured

_EIGHTHS = " ▏▎▍▌▋▊▉"


@dataclass
class Section:
    title: str
    columns: list[str]  # a blank name marks a column of bars
    rows: list[list[str]] = field(default_factory=list)  # an empty row separates groups
    notes: list[str] = field(default_factory=list)
    # (claim, met): met is None for a figure shown next to a target without being judged.
    verdicts: list[tuple[str, bool | None]] = field(default_factory=list)


def bar(value: float, full: float, width: int = 24) -> str:
    """A horizontal bar, `width` characters long at `full`, in eighths of a character."""
    eighths = max(0, min(width * 8, round(value / full * width * 8)))
    whole, part = divmod(eighths, 8)
    return "█" * whole + (_EIGHTHS[part] if part else "")


def print_rich(sections: list[Section], machine: str, console: Console) -> None:
    for section in sections:
        table = Table(title=section.title, title_justify="left", box=box.SIMPLE_HEAD)
        for i, name in enumerate(section.columns):
            left = i == 0 or not name.strip()
            table.add_column(name, justify="left" if left else "right", no_wrap=True)
        for row in section.rows:
            if any(row):
                table.add_row(*row)
            else:
                table.add_section()
        console.print(table)
        for note in section.notes:
            console.print(note, style="dim", highlight=False)
        for claim, met in section.verdicts:
            mark = "[dim]·[/]" if met is None else "[green]✓[/]" if met else "[red]✗[/]"
            console.print(f"{mark} {claim}", highlight=False)
        console.print()
    console.print(f"Machine: {machine}", style="dim", highlight=False)


def print_markdown(sections: list[Section], machine: str) -> None:
    print(markdown_text(sections, machine), end="")


def markdown_text(sections: list[Section], machine: str) -> str:
    lines = []
    for section in sections:
        lines += [f"**{section.title}**", ""]
        lines.append("| " + " | ".join(section.columns) + " |")
        aligns = (
            "---" if i == 0 or not n.strip() else "---:" for i, n in enumerate(section.columns)
        )
        lines.append("|" + "|".join(aligns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in filter(any, section.rows)]
        lines.append("")
        lines += [f"{note}  " for note in section.notes]
        lines += [
            f"{'·' if met is None else '✓' if met else '✗'} {claim}  "
            for claim, met in section.verdicts
        ]
        lines.append("")
    lines.append(f"Machine: {machine}")
    return "\n".join(lines) + "\n"


def report(
    sections: list[Section],
    machine: str,
    console: Console,
    markdown: bool,
    measured: tuple[Path, str] | None = None,
) -> int:
    """Print the sections (rich, or Markdown); the exit status: 0 when every judged claim
    was met, 1 when one was not. With `markdown` and `measured` (a stage, the bench's
    name), the Markdown also becomes that bench's section of the stage's MEASURED.md."""
    if markdown:
        text = markdown_text(sections, machine)
        print(text, end="")
        if measured is not None:
            stage, bench = measured
            where = write_measured(stage, bench, text)
            console.print(f"written: {where}", highlight=False)
    else:
        print_rich(sections, machine, console)
    met = [m for s in sections for _, m in s.verdicts if m is not None]
    return 0 if all(met) else 1
