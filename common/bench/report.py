"""The bench's output: a rich table for the terminal, or Markdown for ARCHITECTURE.md."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from common.bench.run import BenchReport, Row

# The target: correctness (hop-by-hop, Forwarded, request ids, timeouts) should cost
# at most 30% more CPU per request than the proxy that does none of it.
TARGET_RATIO = 1.3
COLUMNS = ("", "body", "requests/s", "p50", "p99", "errors", "proxy CPU µs/req", "vs baseline")
LEFT = ("", "body")


def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"


def _cells(report: BenchReport, row: Row) -> list[str]:
    cpu = row.cpu_us_per_request
    ratio = report.ratio(row.body) if row.role == "gateway" else None
    return [
        row.target,
        row.body,
        f"{row.rps:,.0f}",
        _ms(row.p50_ms),
        _ms(row.p99_ms),
        str(row.errors),
        "—" if cpu is None else f"{cpu:.1f}",
        "" if ratio is None else f"{ratio:.2f}×",
    ]


def verdicts(report: BenchReport) -> list[tuple[str, float, bool]]:
    """(body, gateway/baseline ratio, within target) for each body with both rows."""
    out = []
    for body in dict.fromkeys(r.body for r in report.rows):
        ratio = report.ratio(body)
        if ratio is not None:
            out.append((body, ratio, ratio <= TARGET_RATIO))
    return out


def setup_lines(report: BenchReport) -> list[str]:
    o = report.options
    rounds = f"median of {o.rounds} alternating rounds" if o.rounds > 1 else "1 round"
    return [
        f"Machine: {report.machine}",
        f"Load: {report.load_tool} load generator, {o.connections} keep-alive connections,"
        f" {o.duration:g} s per measurement after {o.warmup:g} s warm-up; proxies: {rounds}",
        f"Pinning: {report.pinning}",
        *report.notes,
    ]


def print_rich(report: BenchReport, console: Console) -> None:
    table = Table(title="Proxy overhead on 127.0.0.1", title_justify="left", box=box.SIMPLE_HEAD)
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in LEFT else "right", no_wrap=True)
    previous_body = None
    for row in report.rows:
        if previous_body is not None and row.body != previous_body:
            table.add_section()
        previous_body = row.body
        style = "bold" if row.role == "gateway" else None
        table.add_row(*_cells(report, row), style=style)
    console.print(table)
    for line in setup_lines(report):
        console.print(line, style="dim", highlight=False)
    for body, ratio, ok in verdicts(report):
        mark = "[green]✓ within[/]" if ok else "[red]✗ over[/]"
        console.print(
            f"{body}: gateway CPU per request = {ratio:.2f}× the baseline's"
            f" {mark} the target of ≤ {TARGET_RATIO}×"
        )


def markdown(report: BenchReport) -> str:
    """The same table in Markdown, with the machine noted (paste into "## Measured")."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if n in LEFT else "---:" for n in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_cells(report, row)) + " |" for row in report.rows]
    lines.append("")
    lines += [f"{line}  " for line in setup_lines(report)]
    for body, ratio, ok in verdicts(report):
        verdict = "within" if ok else "over"
        lines.append(
            f"{body}: gateway CPU per request = {ratio:.2f}× the baseline's,"
            f" {verdict} the target of ≤ {TARGET_RATIO}×.  "
        )
    return "\n".join(lines).rstrip() + "\n"
