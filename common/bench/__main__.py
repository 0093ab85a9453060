"""python -m common.bench [--stage 01_pass_through] [--duration 3] [--connections 16] [--rounds 2]

Measures, on 127.0.0.1, the origin direct, the baseline aiohttp proxy and a stage's gateway
(default: the newest stage with a gateway/ package), and prints requests/s, p50, p99 and
the proxy's CPU µs per request, with the gateway/baseline ratio against the target.
"""

from __future__ import annotations

import argparse
import signal
import sys

from rich.console import Console

from common.bench.load import MAX_SECONDS
from common.bench.measured import write as write_measured
from common.bench.report import markdown, print_rich
from common.bench.run import BenchError, BenchOptions, find_stage, run_bench


# the type ignore below: returns an argparse type function of `kind`
def _bounded(kind: type, low: float, high: float):  # type: ignore[no-untyped-def]
    # the type ignore below: an argparse type: returns whatever `kind` makes
    def parse(text: str):  # type: ignore[no-untyped-def]
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low:g} and {high:g}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m common.bench", description="Proxy overhead bench (make bench)."
    )
    parser.add_argument(
        "--stage", default="", help="stage folder, e.g. 01_pass_through or 01 (default: newest)"
    )
    parser.add_argument(
        "--no-gateway", action="store_true", help="measure only the origin and the baseline"
    )
    parser.add_argument(
        "--duration",
        type=_bounded(float, 0.1, MAX_SECONDS),
        default=3.0,
        help="seconds measured per row and round (default 3)",
    )
    parser.add_argument(
        "--warmup",
        type=_bounded(float, 0.0, 10.0),
        default=0.5,
        help="seconds of unmeasured load before each measurement (default 0.5)",
    )
    parser.add_argument(
        "--connections",
        type=_bounded(int, 1, 1000),
        default=16,
        help="keep-alive connections (default 16)",
    )
    parser.add_argument(
        "--rounds",
        type=_bounded(int, 1, 10),
        default=2,
        help="alternating baseline/gateway rounds; the median is shown (default 2)",
    )
    parser.add_argument(
        "--load",
        choices=("auto", "builtin", "wrk"),
        default="auto",
        help="load generator (default: wrk if on PATH, else built-in)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the table as Markdown",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="--markdown, also written into the stage's MEASURED.md",
    )
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, make stop): unwind like Ctrl-C, stop the children


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    out = Console()
    if not out.is_terminal:  # piped or captured: no terminal width to respect
        out = Console(width=120)
    err = Console(stderr=True)
    try:
        stage_dir = None if args.no_gateway else find_stage(args.stage)
        options = BenchOptions(
            stage_dir=stage_dir,
            duration=args.duration,
            warmup=args.warmup,
            connections=args.connections,
            rounds=args.rounds,
            load=args.load,
        )
        report = run_bench(options, lambda step: err.print(f"[dim]measuring {step}…[/]"))
    except BenchError as exc:
        err.print(f"[red]bench: {exc}[/]", highlight=False)
        return 1
    except KeyboardInterrupt:
        err.print("[yellow]bench: interrupted; every process it started is stopped[/]")
        return 130
    if stage_dir is None:
        why = "--no-gateway" if args.no_gateway else "no stage has a gateway/ package yet"
        report.notes.append(f"No gateway rows: {why}.")
    if args.markdown or args.write:
        text = markdown(report)
        print(text, end="")
        if args.write and stage_dir is not None:
            err.print(f"written: {write_measured(stage_dir, 'bench', text)}", highlight=False)
    else:
        print_rich(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
