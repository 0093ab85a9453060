"""What the launcher shows in the terminal: child output, the ready table, failures.

Child output is data, not markup: a backend that logs "[bold]" or "[/]" must appear as
typed, and must not crash rich's markup parser. So every line a child writes becomes a
`rich.text.Text` (never parsed), and names and paths that come from files or the command
line are wrapped in `Text` too. Only the launcher's own fixed strings use markup.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

# soft_wrap: long log lines and messages keep their line breaks instead of being cut at
# the terminal width; a log line folded by the terminal is easier to copy than one with
# newlines inserted into it. highlight=False: no colouring of numbers or paths inside
# child output, which would look like emphasis the child never asked for.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# Assigned in spawn order. Red is left out: it is the colour of the launcher's errors.
PALETTE = ["cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta"]
GATEWAY_COLOUR = "bold bright_white"


@dataclass(frozen=True)
class Row:
    name: str
    colour: str
    url: str
    pid: int


def colour_for(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def child_line(name: str, colour: str, width: int, line: str) -> None:
    """`users-a | <line>`, the name padded so the bars line up."""
    out.print(Text.assemble((name.rjust(width), colour), (" | ", "dim"), line))


def info(message: str) -> None:
    out.print(Text(message, style="dim"))


def error(message: str) -> None:
    err.print(Text(message, style="bold red"))


def describe_exit(returncode: int) -> str:
    """`exited with code 2` or `was killed by SIGKILL` (asyncio reports -9 for a signal)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"


def failure(name: str, colour: str, reason: str, tail: Iterable[str]) -> None:
    """A child that died or never became healthy: what happened, then its last words."""
    lines = list(tail)
    err.print(Text.assemble(("✗ ", "bold red"), (name, f"bold {colour}"), f" {reason}"))
    if not lines:
        err.print(Text(f"  ({name} printed nothing)", style="dim"))
        return
    err.print(Text(f"  last {len(lines)} lines of {name}:", style="dim"))
    for line in lines:
        err.print(Text.assemble(("  │ ", "dim"), line))


def ready(
    stage: str, rows: list[Row], pid_dir: str, demo: str | None = None, admin: str | None = None
) -> None:
    table = Table(
        title=Text(f"{stage}: everything is up"),
        title_justify="left",
    )
    table.add_column("name")
    table.add_column("URL")
    table.add_column("PID", justify="right")
    for row in rows:
        table.add_row(Text(row.name, style=row.colour), Text(row.url), str(row.pid))
    out.print(table, soft_wrap=False)
    if demo is not None:
        next_steps(demo, admin)
    out.print(Text(f"Logs: below, each line prefixed with its process name. PID files: {pid_dir}"))
    out.print("[bold]Ctrl-C stops everything[/] (or `make stop-all` from another terminal)")


def next_steps(demo: str, admin: str | None) -> None:
    """What to do now that it runs: the demo to open, the command that sends it, where the
    gateway's own view is."""
    out.print(Text("Next:", style="bold"))
    out.print(
        Text(
            f'  open {demo} in VS Code (REST Client) and click "Send Request"; or,'
            " from a second terminal, send every request and see each answer:"
        )
    )
    out.print(Text(f"  .venv/bin/python -m common.demo {demo}", style="bold"))
    if admin is not None:
        out.print(Text(f"  the gateway's own view: {admin}/upstreams (and /health, /channel, ...)"))


def stopped(name: str, colour: str, returncode: int, killed: bool) -> None:
    how = "killed after it ignored SIGTERM" if killed else describe_exit(returncode)
    out.print(Text.assemble(("■ ", "dim"), (name, colour), f" stopped ({how})"))
