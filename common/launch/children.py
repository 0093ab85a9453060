"""One supervised child: how it is started, how its output is relayed, how it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.launch.sockets import HOST

# The last lines of output kept per child, shown when it dies: enough for a traceback's
# tail or an argparse usage message, short enough to read at a glance.
TAIL_LINES = 20

# SIGTERM first, SIGKILL after this long. Docker (`docker stop`) and Kubernetes
# (terminationGracePeriodSeconds) default to 10 s and 30 s; our dummy servers have no
# long requests to drain, and a reader waiting at Ctrl-C should not wait long.
STOP_TIMEOUT = 5.0
# The gateway drains requests in flight for `[server] shutdown_timeout` (10 s in every
# stage's gateway.toml) before it exits by itself; SIGKILL only after that, plus a margin.
GATEWAY_STOP_TIMEOUT = 15.0

# How much output to read at once. Reading chunks and splitting lines ourselves instead of
# StreamReader.readline(): readline() raises on a line longer than its 64 KiB limit, and
# one huge log line must not take the launcher down.
READ_CHUNK = 64 * 1024

LineHandler = Callable[["Child", str], None]


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel send SIGTERM to the child when we die (Linux).

    Normally a child outlives its parent: a launcher killed with SIGKILL (or OOM-killed)
    runs no cleanup, and its backends would keep their ports forever. PR_SET_PDEATHSIG
    asks the kernel to signal the child the moment its parent goes, whatever the reason.
    Two subtleties:
    - It fires when the parent *thread* that forked exits, not the process. asyncio forks
      from the event loop's thread, which is the main thread here, so that is the same.
    - If the launcher dies between fork() and prctl(), the signal never comes: the child
      checks that its parent is still the launcher and gives up otherwise.
    preexec_fn runs between fork and exec, where only async-signal-safe work is wise;
    libc and the function pointer are therefore looked up here, before any fork.
    """
    if not sys.platform.startswith("linux"):
        return None  # macOS has no equivalent; BSDs have procctl(PROC_PDEATHSIG_CTL)
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    launcher = os.getpid()

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != launcher:
            os._exit(1)

    return preexec


@dataclass
class Child:
    name: str
    argv: list[str]  # without `--fd N`, which is added at spawn
    cwd: Path
    sock: socket.socket
    health_path: str
    colour: str
    port: int = 0
    process: asyncio.subprocess.Process | None = None
    exited: asyncio.Task[int] | None = None  # completes with the return code
    killed: bool = False  # needed SIGKILL after ignoring SIGTERM
    reported: bool = False  # its unrequested exit was reported; the stage went on
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    _pump: asyncio.Task[None] | None = None
    # A gateway's admin listener (stage 03 on): a second socket, `--admin-fd N`, where
    # its health check is asked.
    admin_sock: socket.socket | None = None
    admin_port: int = 0

    def __post_init__(self) -> None:
        self.port = self.sock.getsockname()[1]
        if self.admin_sock is not None:
            self.admin_port = self.admin_sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def health_port(self) -> int:
        return self.admin_port or self.port

    @property
    def cmdline(self) -> list[str]:
        admin = [] if self.admin_sock is None else ["--admin-fd", str(self.admin_sock.fileno())]
        return [*self.argv, "--fd", str(self.sock.fileno()), *admin]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, env: dict[str, str], on_line: LineHandler) -> list[str]:
        """Spawn with the listening socket as `--fd N`; return the exact argv used."""
        cmdline = self.cmdline
        try:
            self.process = await asyncio.create_subprocess_exec(
                *cmdline,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                # One pipe for both streams keeps a traceback's lines in order; the child
                # runs unbuffered (child_env), so lines arrive as they are written.
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # pass_fds keeps exactly these sockets open across exec, at the same number.
                pass_fds=tuple(s.fileno() for s in (self.sock, self.admin_sock) if s),
                # A session (and process group) of its own: Ctrl-C in the terminal sends
                # SIGINT to the terminal's foreground process group, which then holds only
                # the launcher (and make). Without this, every child would get SIGINT at
                # the same instant and stop in random order; with it, the launcher stops
                # the gateway first, then the backends, each with SIGTERM.
                start_new_session=True,
                preexec_fn=_parent_death_signal(),
            )
        finally:
            # The child holds its own copy now. Keeping ours would keep the port bound
            # (and accepting into the backlog) after the child died.
            self.sock.close()
            if self.admin_sock is not None:
                self.admin_sock.close()
        self.exited = asyncio.ensure_future(self.process.wait())
        self._pump = asyncio.ensure_future(self._relay_output(on_line))
        return cmdline

    async def _relay_output(self, on_line: LineHandler) -> None:
        assert self.process is not None and self.process.stdout is not None
        pending = b""
        while chunk := await self.process.stdout.read(READ_CHUNK):
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                self._emit(raw, on_line)
        if pending:
            self._emit(pending, on_line)

    def _emit(self, raw: bytes, on_line: LineHandler) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        self.tail.append(line)
        on_line(self, line)

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then SIGKILL after `timeout`; return the exit status (-N: signal N)."""
        assert self.process is not None and self.exited is not None
        if not self.exited.done():
            self._signal(signal.SIGTERM)
            done, _ = await asyncio.wait({self.exited}, timeout=timeout)
            if not done:
                self.killed = True
                self._signal(signal.SIGKILL)
        returncode = await self.exited
        await self.drain_output()
        return returncode

    def _signal(self, sig: signal.Signals) -> None:
        # SIGTERM goes to the child alone: a server with workers (the gateway's
        # --workers) forwards it to them and stops them in its own order. SIGKILL goes to
        # the whole process group, the child and everything it spawned, so nothing
        # outlives a child that had to be killed. systemd calls this KillMode=mixed.
        # We only signal a child whose exit we have not seen: until it is reaped, its
        # PID (= its group id) cannot be reused. (asyncio reaps in a watcher thread and
        # tells the loop just after, a window of microseconds; pidfds close even that,
        # see stop_all.py.)
        assert self.process is not None
        pid = self.process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sig != signal.SIGKILL:
                os.kill(pid, sig)
                return
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:  # it left our group (called setsid() itself)
                os.kill(pid, sig)

    async def drain_output(self) -> None:
        """Relay what the child printed on its way out. A grandchild that inherited the
        pipe could hold it open forever, hence the bound."""
        if self._pump is not None:
            await asyncio.wait({self._pump}, timeout=1.0)
            self._pump.cancel()
