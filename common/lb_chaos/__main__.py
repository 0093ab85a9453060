"""`python -m common.lb_chaos [--short] [--plain] [--stage DIR] [--summary-json FILE]`.

Starts six backends and the stage's gateway on ephemeral ports with a config of its own,
drives steady load, breaks backends on the timeline (timeline.py), shows what the
gateway does about it, and ends with a summary. Exit status 0 when every broken backend
was taken out of the pool and came back on its own, 1 when one was not, 130 on Ctrl-C.
Every process it started is stopped on the way out, whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from aiohttp import ClientSession
from rich.console import Console
from rich.live import Live

from common.bench.eventloop import loop_factory
from common.lb_chaos import observe, view
from common.lb_chaos.timeline import BACKENDS, FLAKY_RATE, FULL, SHORT, SLOW_MS, Step, Timeline
from common.testing.gateway import stage_render, start_gateway
from common.testing.processes import REPO_ROOT, Proc, restart_backend, start_backend, wait_healthy
from common.testing.specs import GatewaySpec, HealthSpec, PoolSpec, RouteSpec
from common.testing.specs import targets as target_specs

# Health settings for a 40 s show: checks every 0.5 s, two in a row to change a verdict,
# three failed requests to eject for 2 s (then 4, 6...). Production values are slower
# (Envoy: 30 s ejections; nginx Plus: 5 s checks), which would make a long, dull demo.
HEALTH = HealthSpec(
    interval=0.5,
    timeout=0.4,
    healthy_threshold=2,
    unhealthy_threshold=2,
    consecutive_failures=3,
    base_ejection_time=2.0,
    max_ejection_time=8.0,
    max_ejection_percent=50,
)


def newest_lb_stage() -> Path:
    stages = sorted(REPO_ROOT.glob("[0-9][0-9]_*/gateway/balancing"))
    if not stages:
        raise SystemExit("lb-chaos: no stage with gateway/balancing (03_load_balancing on)")
    return stages[-1].parents[1]


class Chaos:
    """The running world: backends by name, the gateway, and what to do at each step."""

    def __init__(self, stage: Path, logs: Path, console: Console, plain: bool) -> None:
        self.stage, self.logs, self.console, self.plain = stage, logs, console, plain
        self.backends: dict[str, Proc] = {}
        self.gateway: Proc | None = None
        self.pids: list[int] = []
        self.recorder = observe.Recorder()

    def start(self) -> None:
        with self.console.status("starting 6 backends and the gateway..."):
            for name in BACKENDS:
                proc = start_backend("users", name, log_dir=self.logs, wait=False)
                self.backends[name] = proc
                self.pids.append(proc.pid)
            for proc in self.backends.values():
                wait_healthy(proc)
            urls = [self.backends[name].url for name in BACKENDS]
            pool = PoolSpec(target_specs(*urls), "least_connections", choices=2, health=HEALTH)
            spec = GatewaySpec([RouteSpec("/users", "users")], {"users": pool})
            config = stage_render(self.stage)(spec)
            self.gateway = start_gateway(self.stage, config, self.logs)
            self.pids.append(self.gateway.pid)
        if self.plain:
            self.console.print(f"pids: {' '.join(map(str, self.pids))}", highlight=False)

    def stop(self) -> None:
        for proc in [*self.backends.values(), *([self.gateway] if self.gateway else [])]:
            proc.stop()

    async def apply(self, step: Step, session: ClientSession) -> None:
        self.recorder.event(step.label)
        if step.action == "kill":
            self.backends[step.backend].popen.kill()  # SIGKILL: a crash, no clean close
        elif step.action == "slow":
            await self._chaos(session, step.backend, {"latency_ms": SLOW_MS})
        elif step.action == "flaky":
            await self._chaos(session, step.backend, {"failure_rate": FLAKY_RATE})
        else:  # heal: bring back whatever is dead, reset every chaos setting
            for name, proc in list(self.backends.items()):
                if not proc.alive():
                    proc.stop()  # reap it, close its log
                    self.backends[name] = await asyncio.to_thread(restart_backend, proc)
                    self.pids.append(self.backends[name].pid)
                else:
                    await self._chaos(session, name, None)

    async def _chaos(
        self, session: ClientSession, name: str, settings: dict[str, object] | None
    ) -> None:
        url = self.backends[name].url + "/_chaos"
        request = session.delete(url) if settings is None else session.post(url, json=settings)
        async with request as response:
            response.raise_for_status()

    async def run(self, timeline: Timeline) -> None:
        assert self.gateway is not None
        names = {proc.url: name for name, proc in self.backends.items()}
        stop = asyncio.Event()
        self.recorder = recorder = observe.Recorder()
        tasks = [
            asyncio.create_task(observe.drive_load(self.gateway.url + "/users/1", recorder, stop)),
            asyncio.create_task(
                observe.poll_states(observe.upstreams_url(self.gateway), names, recorder, stop)
            ),
        ]
        live = None if self.plain else Live(console=self.console, auto_refresh=False)
        # Ctrl-C and SIGTERM cancel this task through the loop's own signal handling: a
        # Python-level handler (asyncio.Runner's, or _interrupt) only runs when the main
        # thread gets back to bytecode, and with uvloop an interrupt could be lost.
        loop, main = asyncio.get_running_loop(), asyncio.current_task()
        assert main is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, main.cancel)
        try:
            async with ClientSession() as session:
                with live or contextlib.nullcontext():
                    await self._show(timeline, session, live)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _show(self, timeline: Timeline, session: ClientSession, live: Live | None) -> None:
        recorder = self.recorder
        phase, steps, shown = "steady", list(timeline.steps), 0
        while recorder.now() < timeline.end:
            if steps and recorder.now() >= steps[0].at:
                step = steps.pop(0)
                phase = step.label
                await self.apply(step, session)
            if live is not None:
                live.update(view.live(recorder, timeline, phase), refresh=True)
            else:
                for at, text in recorder.events[shown:]:
                    self.console.print(f"{at:5.1f} s  {text}", highlight=False)
                shown = len(recorder.events)
            # Wake for the next step on time, and at least 4 times a second for the view.
            due = min(steps[0].at if steps else timeline.end, recorder.now() + 0.25)
            await asyncio.sleep(max(0.0, due - recorder.now()))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m common.lb_chaos", description=__doc__)
    parser.add_argument("--stage", type=Path, help="stage folder (default: newest with pools)")
    parser.add_argument("--short", action="store_true", help="the 16 s timeline (tests)")
    parser.add_argument("--plain", action="store_true", help="event lines, no live view")
    parser.add_argument("--summary-json", type=Path, help="also write the summary here")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM too: the same clean-up as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stage = (args.stage or newest_lb_stage()).resolve()
    timeline = SHORT if args.short else FULL
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=100)  # a log or a pipe: no wrapping at 80
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="lb-chaos-") as tmp:
        chaos = Chaos(stage, Path(tmp), console, args.plain)
        try:
            chaos.start()
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(chaos.run(timeline))
        except (KeyboardInterrupt, asyncio.CancelledError):  # cancelled: see Chaos.run
            console.print("[yellow]interrupted[/]: stopping every process it started")
            return 130
        except (OSError, RuntimeError, LookupError) as exc:  # a process that did not start
            console.print(f"[red]error:[/] {exc}")
            return 2
        finally:
            chaos.stop()
    summary = view.summarize(chaos.recorder, timeline, chaos.pids)
    console.print()
    console.print(view.summary_table(summary))
    console.print(view.NOTES, style="dim")
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary.as_json(), indent=2), encoding="utf-8")
    if summary.ok:
        console.print("[green]✓[/] every broken backend was ejected and came back on its own")
    else:
        console.print("[red]✗[/] a backend was not ejected, or never came back")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
