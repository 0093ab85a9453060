"""`python -m common.demo path/to/demo.http [--var name=value ...]`: run it, show a table.

Exit status: 0 when every request answered its `# expect:`, 1 when one did not, 2 when the
file or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from common.demo.parser import DemoError
from common.demo.runner import DemoResult, run_demo


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    parser = argparse.ArgumentParser(
        prog="python -m common.demo",
        description="Send every request of a demo.http and check its `# expect:` status.",
    )
    parser.add_argument("path", type=Path, help="the demo.http file")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a file variable, e.g. --var users=http://127.0.0.1:9101 (repeatable)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request (default 10)"
    )
    args = parser.parse_args(argv)
    overrides: dict[str, str] = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            parser.error(f"--var wants NAME=VALUE, got {item!r}")
        overrides[name.strip().lstrip("@")] = value.strip()
    return args, overrides


def table(path: Path, results: list[DemoResult]) -> Table:
    out = Table(title=str(path), title_justify="left")
    out.add_column("#", justify="right")
    out.add_column("request")
    out.add_column("expected", justify="right")
    out.add_column("got", justify="right")
    out.add_column("ok", justify="center")
    out.add_column("ms", justify="right", style="dim")
    for result in results:
        request = result.request
        got = str(result.status) if result.status is not None else "error"
        out.add_row(
            str(request.number),
            Text(request.title or f"line {request.line}"),
            str(request.expect) if request.expect is not None else "-",
            Text(got, style="green" if result.ok else "red"),
            Text("✓", style="green") if result.ok else Text("✗", style="bold red"),
            f"{result.seconds * 1000:.0f}",
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    console = Console()
    try:
        results = run_demo(args.path, overrides, timeout=args.timeout)
    except DemoError as exc:
        console.print(Text(f"error: {exc}", style="red"))
        return 2
    console.print(table(args.path, results))
    failed = [result for result in results if not result.ok]
    for result in failed:
        console.print(Text(result.problem(), style="red"))
    if not results:
        console.print(Text(f"{args.path}: no requests found", style="red"))
        return 1
    summary = f"{len(results) - len(failed)} of {len(results)} requests answered as expected"
    console.print(Text(summary, style="red" if failed else "green"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
