"""The lifecycle of one stage: start in order, watch, stop in reverse order.

    start backends -> all healthy? -> start gateway -> healthy? -> print table -> watch
                                                                                  |
    Ctrl-C / SIGTERM ------------------------------------------------------------>+
    the gateway exits -----------------------------> report it ------------------>+
    a backend exits ---> report it, keep watching the others                      |
    `make restart NAME=users-b` ---> start that backend again on its port         v
                                  stop gateway (SIGTERM ... SIGKILL), then backends

Dependencies start first and stop last, like systemd's After=/Requires= ordering or
docker compose's depends_on: the gateway never runs without its backends, and on the way
down it stops taking requests before the backends behind it disappear.

A backend that dies is reported, loudly, with its last lines of output, and the rest of
the stage keeps running: a dead backend is exactly what a gateway with health checks is
for (stage 03's "Try it" asks you to kill one). Only the gateway dying ends the stage, or,
in a stage without one, the last backend. Nothing is restarted by itself: a crash hidden
by an automatic restart is a crash nobody reads. `make restart NAME=...` (restart.py)
brings a backend back when you say so. Production supervisors (systemd
Restart=on-failure, Kubernetes restartPolicy) restart with a back-off and alert instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from common.launch import output, pidfiles, restart
from common.launch.children import GATEWAY_STOP_TIMEOUT, STOP_TIMEOUT, Child
from common.launch.config import REPO_ROOT, LaunchError, Stage
from common.launch.extras import extras_for
from common.launch.health import wait_healthy
from common.launch.sockets import bind_all
from common.testing.processes import child_env

# How long a child may take to answer its first health check. Importing FastAPI and
# uvicorn takes about a second on a quiet machine; a loaded CI box can be ten times slower.
HEALTH_TIMEOUT = 20.0

Failure = tuple[Child, str]  # who, and what happened to it
ADMIN = "gateway admin"  # the admin listener's socket, in the sockets bound at launch
IDP = "idp"  # stage 06 on: the identity provider (common/idp)


class Supervisor:
    def __init__(
        self,
        stage: Stage,
        sockets: dict[str, socket.socket],
        run_dir: Path,
        gateway_args: list[str] | None = None,  # e.g. --redis-url URL --workers 2
        redis_url: str | None = None,  # the private Redis, for the table of what runs
        traffic: bool = True,  # services.toml's [traffic], unless --no-traffic
    ) -> None:
        self.stage = stage
        self.redis_url = redis_url
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
        if (idp := stage.services.idp) is not None:
            # Started with the backends, before the gateway: the gateway fetches its keys
            # at start-up.
            self.backends.append(Child(
                name=IDP,
                argv=[sys.executable, "-m", "common.idp", "--secret", idp.secret],
                cwd=REPO_ROOT,
                sock=sockets[IDP],
                health_path="/health",
                colour=output.colour_for(len(self.backends)),
            ))  # fmt: skip
        gw = stage.services.gateway
        # The gateway runs in the stage folder: `python -m gateway` imports that stage's
        # package (the current directory comes first on sys.path), and the config path in
        # services.toml is relative to it.
        config = gw.config if gw is not None else ""
        live_note = []
        if gw is not None and gw.live_config:  # stage 09 on: a copy to edit and reload
            live = pidfiles.stage_dir(run_dir, stage.name) / Path(gw.config).name
            live.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stage.path / gw.config, live)
            config = str(live)
            shown = live.relative_to(REPO_ROOT) if live.is_relative_to(REPO_ROOT) else live
            live_note = [f"config: {shown} (a copy: edit it, then POST /reload or SIGHUP)"]
        self.gateway = (
            Child(
                name="gateway",
                argv=[
                    sys.executable,
                    "-m",
                    "gateway",
                    "--config",
                    config,
                    *(gateway_args or []),
                ],  # fmt: skip
                cwd=stage.path,
                sock=sockets["gateway"],
                health_path=gw.health,
                colour=output.GATEWAY_COLOUR,
                admin_sock=sockets.get(ADMIN),
            )
            if gw is not None
            else None
        )
        self.extras, self.extra_notes = extras_for(stage, run_dir, traffic=traffic)
        self.extra_notes += live_note
        self.width = max(len(c.name) for c in self.children)
        self._stop_requested = asyncio.Event()
        self._restart_requested = asyncio.Event()

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
        loop.add_signal_handler(restart.SIGNAL, self._restart_requested.set)
        stop_requested = asyncio.ensure_future(self._stop_requested.wait())
        starting = asyncio.ensure_future(self._start_all())
        failure: Failure | None = None
        try:
            await asyncio.wait({starting, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                failure = starting.result()
                if failure is None:
                    for extra in self.extras:  # traffic, Prometheus (stage 08 on)
                        extra.start(self.env)
                        record = pidfiles.record_for(extra.pid, extra.name, None, extra.argv)
                        pidfiles.write(self._stage_run_dir / f"{extra.name}.json", record)
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
            reason = await wait_healthy(
                child.health_port, child.health_path, child.exited, HEALTH_TIMEOUT
            )
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

    async def _watch(self, stop_requested: asyncio.Future[Any]) -> Failure | None:
        """Until a stop request or the gateway's exit: report backends that exit, restart
        the ones `make restart` asks for. A failure that ends the stage is returned."""
        while True:
            exits = {
                child.exited: child
                for child in self.children
                if child.exited is not None and not child.reported
            }
            restarts = asyncio.ensure_future(self._restart_requested.wait())
            try:
                racing: set[asyncio.Future[Any]] = {stop_requested, restarts, *exits}
                done, _ = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            finally:
                restarts.cancel()
            if stop_requested in done:
                return None
            for task, child in exits.items():
                if task not in done:
                    continue
                reason = f"{output.describe_exit(task.result())} while running"
                if child is self.gateway or not self._still_running():
                    return child, reason  # nobody asked it to stop: the stage ends
                await self._report_exit(child, reason)
            if self._restart_requested.is_set():
                self._restart_requested.clear()
                for name in restart.pending(self._stage_run_dir):
                    restart.answer(self._stage_run_dir, name, await self._restart(name))

    def _still_running(self) -> bool:
        return any(c.exited is not None and not c.exited.done() for c in self.children)

    async def _report_exit(self, child: Child, reason: str) -> None:
        child.reported = True
        await child.drain_output()
        output.failure(child.name, child.colour, reason, child.tail)
        output.info(f"the others keep running; `make restart NAME={child.name}` starts it again")
        pidfiles.remove(self._pid_path(child))

    async def _restart(self, name: str) -> str:
        """Start backend `name` again on its port (stopping it first if it runs): the
        answer for the `make restart` that asked, "ok ..." or why not."""
        index = next((i for i, c in enumerate(self.backends) if c.name == name), None)
        if index is None:
            known = ", ".join(c.name for c in self.backends) or "none"
            return f"{name} is not a backend of {self.stage.name} (backends: {known})"
        old = self.backends[index]
        if old.exited is not None and not old.exited.done():
            output.info(f"restarting {name}: stopping it first")
            await old.stop(STOP_TIMEOUT)
        try:
            sock = bind_all([(name, old.port)])[name]
        except LaunchError as e:
            return str(e)
        new = Child(old.name, old.argv, old.cwd, sock, old.health_path, old.colour)
        self.backends[index] = new
        try:
            cmdline = await new.start(self.env, self._relay_line)
        except OSError as e:
            return f"{name} could not be started: {e}"
        pidfiles.write(self._pid_path(new), pidfiles.record_for(new.pid, name, new.url, cmdline))
        failure = await self._wait_healthy([new])
        if failure is not None:
            await self._report_exit(new, failure[1])
            return f"{name} did not come back: {failure[1]}"
        output.info(f"{name} is back on {new.url} (PID {new.pid})")
        return f"ok {new.pid} {new.url}"

    async def _stop_everything(self, failed: Child | None) -> None:
        """The extras first (nothing depends on them), then the gateway, so no request is
        sent to a backend that is going away; then the backends together (nothing depends
        on a backend but the gateway)."""
        await asyncio.gather(*(asyncio.to_thread(extra.stop) for extra in self.extras))
        for extra in self.extras:
            pidfiles.remove(self._stage_run_dir / f"{extra.name}.json")
        groups = (
            ([self.gateway] if self.gateway else [], GATEWAY_STOP_TIMEOUT),
            (self.backends, STOP_TIMEOUT),
        )
        for group, timeout in groups:
            started = [c for c in group if c.process is not None]
            codes = await asyncio.gather(*(c.stop(timeout) for c in started))
            for child, code in zip(started, codes, strict=True):
                if child is not failed and not child.reported:
                    output.stopped(child.name, child.colour, code, child.killed)
                pidfiles.remove(self._pid_path(child))

    def _show_ready(self) -> None:
        rows = [output.Row(c.name, c.colour, c.url, c.pid) for c in self.children]
        admin = None
        if self.gateway is not None and self.gateway.admin_port:
            admin = f"http://127.0.0.1:{self.gateway.admin_port}"
            rows.append(output.Row("gateway admin", output.GATEWAY_COLOUR, admin, self.gateway.pid))
        if self.redis_url is not None:
            record = pidfiles.read(pidfiles.pid_path(self.run_dir, self.stage.name, "redis"))
            rows.append(output.Row("redis", "dim", self.redis_url, record.pid if record else 0))
        gw = self.stage.services.gateway
        if admin is not None and gw is not None and gw.dashboard is not None:
            pid = self.gateway.pid if self.gateway else 0
            rows.append(output.Row("dashboard", output.GATEWAY_COLOUR, admin + gw.dashboard, pid))
        for extra in self.extras:
            pid = extra.proc.pid if extra.proc is not None else 0
            log = os.path.relpath(extra.log, REPO_ROOT)
            rows.append(output.Row(extra.name, "dim", f"{extra.url} (log: {log})", pid))
        for note in self.extra_notes:
            output.info(note)
        demo = self.stage.path / "demo.http"
        shown = os.path.relpath(demo, REPO_ROOT) if demo.is_file() else None
        pid_dir = str(pidfiles.stage_dir(self.run_dir, self.stage.name))
        output.ready(self.stage.name, rows, pid_dir, demo=shown, admin=admin)

    def _relay_line(self, child: Child, line: str) -> None:
        output.child_line(child.name, child.colour, self.width, line)

    def _pid_path(self, child: Child) -> Path:
        return pidfiles.pid_path(self.run_dir, self.stage.name, child.name)

    @property
    def _stage_run_dir(self) -> Path:
        return pidfiles.stage_dir(self.run_dir, self.stage.name)
