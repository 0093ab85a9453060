"""One bench run: start the processes, pin them to cores, measure every row, stop them all.

Rows, for each body size: the origin direct (what the load generator and origin can do
without a proxy), the baseline aiohttp proxy, and the stage's gateway. Baseline and gateway
are measured in alternating rounds (B G, then G B, ...) and each figure is the median over
rounds, so a burst of noise from a neighbour lands on both and moves neither much.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.bench import cpu, load
from common.bench.eventloop import loop_factory, loop_name
from common.testing.gateway import stage_render, start_gateway
from common.testing.processes import REPO_ROOT, Proc, spawn
from common.testing.specs import GatewaySpec, RouteSpec

# (label in the table, path on the origin)
BODIES = (("20 B", "/small"), ("16 KiB", "/16k"))


class BenchError(RuntimeError):
    """A bench that cannot run: a message for the user, not a traceback."""


@dataclass(frozen=True)
class BenchOptions:
    stage_dir: Path | None  # None: measure the origin and the baseline only
    duration: float = 3.0
    warmup: float = 0.5
    connections: int = 16
    rounds: int = 2
    load: str = "auto"  # auto | builtin | wrk


@dataclass
class Row:
    target: str  # "origin direct", "baseline aiohttp proxy", "01_pass_through gateway"
    role: str  # direct | baseline | gateway
    body: str
    results: list[load.LoadResult] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median([r.rps for r in self.results])

    @property
    def p50_ms(self) -> float:
        return statistics.median([r.p50_ms for r in self.results])

    @property
    def p99_ms(self) -> float:
        return statistics.median([r.p99_ms for r in self.results])

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.results)

    @property
    def cpu_us_per_request(self) -> float | None:
        """Median over rounds of the proxy's CPU delta / requests served; None: no proxy."""
        per_round = [
            r.meter_delta / r.requests
            for r in self.results
            if r.meter_delta is not None and r.requests
        ]
        return statistics.median(per_round) if per_round else None


@dataclass
class BenchReport:
    options: BenchOptions
    machine: str
    pinning: str
    load_tool: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    def ratio(self, body: str) -> float | None:
        """The gateway's CPU µs/request over the baseline's for one body size."""
        by_role = {r.role: r for r in self.rows if r.body == body}
        gateway, baseline = by_role.get("gateway"), by_role.get("baseline")
        if gateway is None or baseline is None:
            return None
        g, b = gateway.cpu_us_per_request, baseline.cpu_us_per_request
        return g / b if g is not None and b else None


# --- where things run ---------------------------------------------------------------------


def machine_summary() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()} ({loop_name()}),"
        f" {platform.system()} {platform.release()}"
    )


@dataclass(frozen=True)
class Pinning:
    proxy_cores: set[int] | None  # None: not pinned
    note: str


def pin_this_process() -> Pinning:
    """Keep the last core for the proxy under test; this process (the load generator) and
    every child it starts (the origin, wrk) inherit the other cores.

    The proxy alone on its core means its CPU time is its own work, never time-sliced with
    the generator that feeds it. On one core there is nothing to separate.
    """
    cores = cpu.available_cores()
    if len(cores) < 2:
        return Pinning(None, f"not pinned: only {len(cores)} core available")
    proxy, others = {cores[-1]}, set(cores[:-1])
    try:
        os.sched_setaffinity(0, others)
    except (AttributeError, OSError) as exc:
        return Pinning(None, f"not pinned: {exc}")
    other_list = ",".join(str(c) for c in sorted(others))
    return Pinning(
        proxy,
        f"proxy under test alone on core {cores[-1]}; origin and load generator on core"
        f"{'s' if len(others) > 1 else ''} {other_list}",
    )


# --- the processes ------------------------------------------------------------------------


def find_stage(name: str | None, flag: str = "--stage") -> Path | None:
    """--stage NAME (e.g. 01_pass_through, 01), or the newest stage with a gateway/.
    `flag`: the option the name came from, for the error message."""
    with_gateway = sorted(
        p.parent.parent for p in REPO_ROOT.glob("[0-9][0-9]_*/gateway/__main__.py")
    )
    if not name:
        return with_gateway[-1] if with_gateway else None
    name = name.rstrip("/")
    matches = [
        p
        for p in sorted(REPO_ROOT.glob("[0-9][0-9]_*"))
        if p.name in (name,) or p.name.startswith(name + "_")
    ]
    if not matches:
        raise BenchError(f"{flag} {name}: no such stage folder in {REPO_ROOT}")
    stage = matches[0]
    if not (stage / "gateway" / "__main__.py").exists():
        raise BenchError(f"{flag} {name}: {stage.name} has no gateway/ package to bench")
    return stage


def start_stage_gateway(stage_dir: Path, origin_url: str, tmp: Path) -> Proc:
    """The stage's gateway with one route, / -> origin, and no access log (a log line per
    request is real work, but not the work this bench compares)."""
    try:
        render = stage_render(stage_dir)
    except (OSError, LookupError) as exc:
        raise BenchError(str(exc)) from exc
    config_text = render(GatewaySpec([RouteSpec(prefix="/", upstream=origin_url)]))
    return start_gateway(stage_dir, config_text, tmp, "--no-access-log")


# --- the run ------------------------------------------------------------------------------


def choose_load(requested: str) -> str:
    if requested == "wrk" and load.wrk_path() is None:
        raise BenchError("--load wrk: wrk is not on PATH")
    if requested == "auto":
        return "wrk" if load.wrk_path() else "built-in"
    return "wrk" if requested == "wrk" else "built-in"


def run_bench(options: BenchOptions, progress: Callable[[str], None]) -> BenchReport:
    tool = choose_load(options.load)
    pinning = pin_this_process()
    report = BenchReport(options, machine_summary(), pinning.note, tool, rows=[])
    procs: list[Proc] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp_name,
        asyncio.Runner(loop_factory=loop_factory()) as runner,
    ):
        tmp = Path(tmp_name)
        py = sys.executable

        def measure(url: str, proc: Proc | None) -> load.LoadResult:
            meter = (lambda: cpu.tree_cpu_us(proc.pid)) if proc is not None else None
            kwargs = {
                "connections": options.connections,
                "duration": options.duration,
                "warmup": options.warmup,
                "meter": meter,
            }
            if tool == "wrk":
                # the type ignore below: the same options as run_builtin, passed through
                return load.run_wrk(url, **kwargs)  # type: ignore[arg-type]
            # the type ignore below: the options of run_builtin, passed through
            return runner.run(load.run_builtin(url, **kwargs))  # type: ignore[arg-type]

        try:
            origin = spawn("origin", [py, "-m", "common.bench.origin"], log_dir=tmp)
            procs.append(origin)
            proxies = [("baseline aiohttp proxy", "baseline")]
            baseline = spawn(
                "baseline",
                [py, "-m", "common.bench.baseline_proxy", "--upstream", origin.url],
                log_dir=tmp,
            )
            procs.append(baseline)
            by_role = {"baseline": baseline}
            if options.stage_dir is not None:
                gateway = start_stage_gateway(options.stage_dir, origin.url, tmp)
                procs.append(gateway)
                by_role["gateway"] = gateway
                proxies.append((f"{options.stage_dir.name} gateway", "gateway"))
            if pinning.proxy_cores is not None:
                for proc in by_role.values():
                    cpu.pin_tree(proc.pid, pinning.proxy_cores)

            for body, path in BODIES:
                direct = Row("origin direct", "direct", body)
                progress(f"{body}: origin direct")
                direct.results.append(measure(origin.url + path, None))
                rows = [Row(target, role, body) for target, role in proxies]
                for round_no in range(options.rounds):
                    # B G, G B, B G...: neither always runs first (warm caches, turbo, noise).
                    order = rows if round_no % 2 == 0 else rows[::-1]
                    for row in order:
                        proc = by_role[row.role]
                        progress(f"{body}: {row.target}, round {round_no + 1}/{options.rounds}")
                        row.results.append(measure(proc.url + path, proc))
                        if not proc.alive():
                            raise BenchError(f"{proc.name} died:\n{proc.log_tail()}")
                report.rows += [direct, *rows]
        except BenchError:
            raise
        except (RuntimeError, TimeoutError) as exc:  # a child that would not start, a dead load
            raise BenchError(str(exc)) from exc
        finally:
            for proc in reversed(procs):
                proc.stop()
    return report
