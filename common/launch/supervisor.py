"""The lifecycle of one stage: start in order, watch, stop in reverse order.

    start backends -> all healthy? -> start gateway -> healthy? -> print table -> watch
                                                                                  |
    Ctrl-C / SIGTERM ------------------------------------------------------------>+
    a child exits ---------------------------------> report it ------------------>+
                                                                                  v
                                  stop gateway (SIGTERM ... SIGKILL), then backends

Dependencies start first and stop last, like systemd's After=/Requires= ordering or
docker compose's depends_on: the gateway never runs without its backends, and on the way
down it stops taking requests before the backends behind it disappear.

There are no restarts: a child that dies takes the stage down, loudly, with its last
lines of output. This is a teaching tool, and a crash hidden by an automatic restart is
a crash nobody reads. Supervisors for production (systemd Restart=on-failure, Kubernetes
restartPolicy, supervisord autorestart) restart with a back-off and alert instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from pathlib import Path

from common.launch import output, pidfiles
from common.launch.children import GATEWAY_STOP_TIMEOUT, STOP_TIMEOUT, Child
from common.launch.config import REPO_ROOT, Stage
from common.launch.health import wait_healthy
from common.testing.processes import child_env

# How long a child may take to answer its first health check. Importing FastAPI and
# uvicorn takes about a second on a quiet machine; a loaded CI box can be ten times slower.
HEALTH_TIMEOUT = 20.0

Failure = tuple[Child, str]  # who, and what happened to it


class Supervisor:
    def __init__(self, stage: Stage, sockets: dict[str, socket.socket], run_dir: Path) -> None:
        self.stage = stage
        self.run_dir = run_dir
        self.env = child_env()
        self.backends = [
            Child(
                name=b.name,
                argv=[sys.executable, "-m", "common.backends"]
                + ["--service", b.service, "--instance", b.instance],
                cwd=REPO_ROOT,
                sock=sockets[b.name],
                health_path="/health",
                colour=output.colour_for(i),
            )
            for i, b in enumerate(stage.services.backends)
        ]
        gw = stage.services.gateway
        # The gateway runs in the stage folder: `python -m gateway` imports that stage's
        # package (the current directory comes first on sys.path), and the config path in
        # services.toml is relative to it.
        self.gateway = (
            Child(
                name="gateway",
                argv=[sys.executable, "-m", "gateway", "--config", gw.config],
                cwd=stage.path,
                sock=sockets["gateway"],
                health_path=gw.health,
                colour=output.GATEWAY_COLOUR,
            )
            if gw is not None
            else None
        )
        self.width = max(len(c.name) for c in self.children)
        self._stop_requested = asyncio.Event()

    @property
    def children(self) -> list[Child]:
        return self.backends + ([self.gateway] if self.gateway else [])

    async def run(self) -> int:
        """Run until Ctrl-C / SIGTERM (return 0) or until a child fails (return 1)."""
        loop = asyncio.get_running_loop()
        # Signals become an event the main task awaits, instead of a KeyboardInterrupt
        # raised wherever the code happens to be (halfway through spawning a child).
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        stop_requested = asyncio.ensure_future(self._stop_requested.wait())
        starting = asyncio.ensure_future(self._start_all())
        failure: Failure | None = None
        try:
            await asyncio.wait({starting, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                failure = starting.result()
                if failure is None:
                    self._show_ready()
                    failure = await self._watch(stop_requested)
            else:  # stopped while starting: a child half-spawned is killed by asyncio
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        finally:
            if failure is not None:
                child, reason = failure
                await child.drain_output()  # its last words belong in the report
                output.failure(child.name, child.colour, reason, child.tail)
                output.error(f"{child.name} failed: stopping the others")
            await self._stop_everything(failed=failure[0] if failure else None)
            stop_requested.cancel()
        return 1 if failure else 0

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop_requested.is_set():
            output.info(f"{sig.name} again: already stopping (SIGKILL comes after a grace period)")
            return
        order = "the gateway first, then the backends" if self.gateway else "the backends"
        output.info(f"{sig.name} received: stopping {order}")
        self._stop_requested.set()

    async def _start_all(self) -> Failure | None:
        """Backends first, then the gateway, each group healthy before the next starts."""
        for group in (self.backends, [self.gateway] if self.gateway else []):
            for child in group:
                try:
                    cmdline = await child.start(self.env, self._relay_line)
                except OSError as e:  # e.g. the interpreter vanished: cannot even exec
                    return child, f"could not be started: {e}"
                record = pidfiles.record_for(child.pid, child.name, child.url, cmdline)
                pidfiles.write(self._pid_path(child), record)
            failure = await self._wait_healthy(group)
            if failure is not None:
                return failure
        return None

    async def _wait_healthy(self, group: list[Child]) -> Failure | None:
        """All of `group` healthy, or the first one that is not (no waiting for the rest)."""

        async def check(child: Child) -> Failure:
            assert child.exited is not None
            reason = await wait_healthy(child.port, child.health_path, child.exited, HEALTH_TIMEOUT)
            return child, reason

        pending = {asyncio.ensure_future(check(child)) for child in group}
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    child, reason = task.result()
                    if reason:
                        return child, reason
        finally:
            for task in pending:
                task.cancel()
        return None

    async def _watch(self, stop_requested: asyncio.Future[bool]) -> Failure | None:
        """Wait for a stop request or for any child to exit, whichever comes first."""
        exits = {child.exited: child for child in self.children if child.exited is not None}
        done, _ = await asyncio.wait({stop_requested, *exits}, return_when=asyncio.FIRST_COMPLETED)
        for task, child in exits.items():
            if task in done:  # nobody asked it to stop, whatever its exit code
                return child, f"{output.describe_exit(task.result())} while running"
        return None

    async def _stop_everything(self, failed: Child | None) -> None:
        """The gateway first, so no request is sent to a backend that is going away;
        then the backends together (nothing depends on a backend but the gateway)."""
        groups = (
            ([self.gateway] if self.gateway else [], GATEWAY_STOP_TIMEOUT),
            (self.backends, STOP_TIMEOUT),
        )
        for group, timeout in groups:
            started = [c for c in group if c.process is not None]
            codes = await asyncio.gather(*(c.stop(timeout) for c in started))
            for child, code in zip(started, codes, strict=True):
                if child is not failed:
                    output.stopped(child.name, child.colour, code, child.killed)
                pidfiles.remove(self._pid_path(child))

    def _show_ready(self) -> None:
        rows = [output.Row(c.name, c.colour, c.url, c.pid) for c in self.children]
        output.ready(self.stage.name, rows, str(pidfiles.stage_dir(self.run_dir, self.stage.name)))

    def _relay_line(self, child: Child, line: str) -> None:
        output.child_line(child.name, child.colour, self.width, line)

    def _pid_path(self, child: Child) -> Path:
        return pidfiles.pid_path(self.run_dir, self.stage.name, child.name)
