"""trie-bench's output: a rich table and bars for the terminal, or Markdown for the docs."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.table import Table

TARGETS = ((1_000, 1_000), (100_000, 3_000))  # (routes, trie p50 ns at most)
SPEEDUP_AT, SPEEDUP = 10_000, 50  # trie at least this much faster than the dict scan
COLUMNS = ("routes", "router", "hit p50", "hit p99", "miss p50", "miss p99", "n", "build",
           "memory", "vs trie")  # fmt: skip
COLOURS = {"dict scan": "red", "regex list": "yellow", "trie": "green"}

LEGEND = """\
n: samples per row (each is one path looked up `reps` times); slow rows stop after a time
budget. build: wall time, GC paused. memory: what tracemalloc saw the build allocate (the
trie's includes its build tree, kept for later adds); —: not measured, tracemalloc would
add seconds. vs trie: the row's hit p50 / the trie's."""


@dataclass
class Row:
    router: str
    size: int
    build_ms: float
    memory: int | None  # bytes; None: not measured
    hit: list[float]  # ns per lookup, one value per sample, sorted
    miss: list[float]


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def ns(value: float) -> str:
    if value < 10_000:
        return f"{value:,.0f} ns"
    return f"{value / 1000:,.0f} µs" if value < 10_000_000 else f"{value / 1e6:,.1f} ms"


def size_text(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**10:,.0f} KiB" if n < 2**24 else f"{n / 2**20:,.0f} MiB"


def cells(row: Row, rows: list[Row]) -> list[str]:
    trie = next(r for r in rows if r.router == "trie" and r.size == row.size)
    speed = pct(row.hit, 0.5) / pct(trie.hit, 0.5)  # < 1: faster than the trie
    return [
        f"{row.size:,}",
        row.router,
        ns(pct(row.hit, 0.5)),
        ns(pct(row.hit, 0.99)),
        ns(pct(row.miss, 0.5)),
        ns(pct(row.miss, 0.99)),
        f"{len(row.hit)}",
        f"{row.build_ms:,.1f} ms" if row.build_ms < 10 else f"{row.build_ms:,.0f} ms",
        size_text(row.memory),
        "" if row.router == "trie" else f"{speed:,.{0 if speed >= 10 else 1}f}×",
    ]


def table(rows: list[Row]) -> Table:
    out = Table(
        title="Route lookup, ns per lookup (GET)", title_justify="left", box=box.SIMPLE_HEAD
    )
    for column in COLUMNS:
        out.add_column(column, justify="left" if column == "router" else "right", no_wrap=True)
    for k, row in enumerate(rows):
        if k and row.size != rows[k - 1].size:
            out.add_section()
        out.add_row(*cells(row, rows), style="bold" if row.router == "trie" else None)
    return out


def bars(rows: list[Row], width: int = 44) -> Table:
    """Hit p50 on a log scale, 100 ns to 100 ms: a flat bar stack is O(1), a staircase
    climbing one tick per row is O(n)."""
    out = Table(
        title="How each curve grows (hit p50, log scale 100 ns … 100 ms)",
        title_justify="left",
        box=None,
        show_header=False,
    )
    for justify in ("left", "right", "left", "right"):
        out.add_column(justify=justify, no_wrap=True)
    for name, colour in COLOURS.items():
        for row in (r for r in rows if r.router == name):
            value = pct(row.hit, 0.5)
            length = max(1, round(width * math.log10(max(value, 100) / 100) / 6))
            out.add_row(name, f"{row.size:,}", f"[{colour}]{'█' * length}[/]", ns(value))
    return out


def verdicts(rows: list[Row]) -> list[tuple[str, bool]]:
    tries = {r.size: r for r in rows if r.router == "trie"}
    scans = {r.size: r for r in rows if r.router == "dict scan"}
    out = []
    for size, limit in TARGETS:
        if size not in tries:
            continue
        # Strict: the slower of hits and misses must meet the target.
        worst = max(pct(tries[size].hit, 0.5), pct(tries[size].miss, 0.5))
        text = f"trie p50 at {size:,} routes, hits and misses: {ns(worst)} (target ≤ {ns(limit)})"
        out.append((text, worst <= limit))
    if SPEEDUP_AT in scans and SPEEDUP_AT in tries:
        ratio = pct(scans[SPEEDUP_AT].hit, 0.5) / pct(tries[SPEEDUP_AT].hit, 0.5)
        text = f"trie vs dict scan at {SPEEDUP_AT:,} routes: {ratio:,.0f}× faster"
        out.append((f"{text} (target ≥ {SPEEDUP}×)", ratio >= SPEEDUP))
    return out


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next(
        (x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")),
        platform.machine(),
    )
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}{load}"
    )


def markdown(rows: list[Row], notes: list[str]) -> str:
    """The table in Markdown, with the machine, the notes and the verdicts (for "Measured")."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if c == "router" else "---:" for c in COLUMNS) + "|",
    ]
    for row in rows:
        text = cells(row, rows)
        if row.router == "trie":
            text = [f"**{t}**" if t else t for t in text]
        lines.append("| " + " | ".join(text) + " |")
    lines += ["", f"Machine: {machine()}  ", *[f"{note}  " for note in notes]]
    lines += [f"{'✓' if ok else '✗'} {text}  " for text, ok in verdicts(rows)]
    return "\n".join(lines).rstrip() + "\n"
