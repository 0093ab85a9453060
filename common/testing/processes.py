"""Start and stop the processes a test needs: backends, gateways, origins.

Every process gets a listening socket that *this* process bound on 127.0.0.1:0 and hands
over by file descriptor (`--fd N`). The kernel picks a free port and nobody can take it
between "found a free port" and "the child bound it" — the race that `bind(0); close();
spawn --port N` has. systemd socket activation works the same way.

Every child's stdout and stderr go to a log file, so a failing test can show the last
lines of what the child said, and a chatty child can never block on a full pipe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def listening_socket(host: str = HOST, port: int = 0) -> socket.socket:
    """A bound, listening TCP socket the child can inherit (port 0: the kernel picks)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def reserved_port(host: str = HOST) -> Iterator[int]:
    """A free port, held until the block ends, for a child that must bind it itself with
    SO_REUSEPORT (`--workers N --port P`, where no inherited socket can stand in).

    `bind(0); close()` frees the port the kernel picked, and any connect() on the machine
    may take it as its source port before the child binds it: "address already in use",
    now and then, under parallel suites. A socket bound with SO_REUSEPORT that never
    listens keeps it: the kernel skips bound ports when it picks a source port, a bind
    without SO_REUSEPORT fails, and the child's workers (SO_REUSEPORT, the same user) bind
    beside it. It never gets a connection: only listening sockets are offered one.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        yield port


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: the repo root importable, output unbuffered."""
    env = dict(os.environ)
    parts = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class Proc:
    """A child process listening on `port`; `url` is its base URL.

    `admin_port` (stage 03 on, a gateway's admin listener): where its health check and
    its own endpoints answer; None for everything else.
    """

    name: str
    port: int
    popen: subprocess.Popen[Any]  # bytes or text, as its starter chose
    log_path: Path
    health_path: str = "/health"
    _log_file: object = field(default=None, repr=False)
    admin_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def admin_url(self) -> str:
        assert self.admin_port is not None, f"{self.name} has no admin listener"
        return f"http://{HOST}:{self.admin_port}"

    @property
    def health_url(self) -> str:
        port = self.port if self.admin_port is None else self.admin_port
        return f"http://{HOST}:{port}{self.health_path}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int:
        """Ask the child to stop (SIGTERM), kill it after `timeout`; return its exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self._log_file is not None:
            # the type ignore below: an open file object, kept untyped on the dataclass
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        return self.popen.returncode


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    cwd: Path = REPO_ROOT,
    env: dict[str, str] | None = None,
    health_path: str = "/health",
    wait: bool = True,
    timeout: float = 20.0,
    log_dir: Path | None = None,
    admin: bool = False,
) -> Proc:
    """Run `argv + ["--fd", N]` with a fresh listening socket, wait for its health check.

    `argv` must accept `--fd N` (inherit a listening socket); with `admin`, also
    `--admin-fd M`, a second socket, where the health check is asked. On a failed start
    the child is stopped and the error carries the last lines of its log.
    """
    sock = listening_socket()
    port = sock.getsockname()[1]
    extra: list[str] = []
    socks = [sock]
    admin_port = None
    if admin:
        admin_sock = listening_socket()
        socks.append(admin_sock)
        admin_port = admin_sock.getsockname()[1]
        extra = ["--admin-fd", str(admin_sock.fileno())]
    log_dir = log_dir or Path(tempfile.gettempdir())
    log_path = log_dir / f"{name.replace('/', '_')}-{port}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by Proc.stop
    try:
        popen = subprocess.Popen(
            [*argv, "--fd", str(sock.fileno()), *extra],
            cwd=cwd,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            pass_fds=tuple(s.fileno() for s in socks),
        )
    finally:
        for s in socks:
            s.close()  # the child holds its own copies of the listening sockets
    proc = Proc(name, port, popen, log_path, health_path, log_file, admin_port)
    if wait:
        try:
            wait_healthy(proc, timeout)
        except BaseException:
            proc.stop()
            raise
    return proc


def wait_healthy(proc: Proc, timeout: float = 20.0) -> None:
    """Poll the child's health URL until it answers 200; fail fast if the child exits."""
    deadline = time.monotonic() + timeout
    url = proc.health_url
    delay = 0.01
    while True:
        if not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited with code {proc.popen.returncode} before it was healthy;"
                f" last log lines:\n{proc.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{proc.name} did not answer {url} within {timeout}s; last log lines:\n"
                f"{proc.log_tail()}"
            )
        time.sleep(delay)  # polling a health check: the only event a child process offers
        delay = min(delay * 2, 0.2)


def backend_argv(service: str, instance: str = "a") -> list[str]:
    return [sys.executable, "-m", "common.backends", "--service", service, "--instance", instance]


def start_backend(service: str, instance: str = "a", **kwargs: object) -> Proc:
    """One dummy FastAPI backend (see common/backends) on an ephemeral port."""
    # the type ignore below: spawn's keyword options, passed through
    return spawn(f"{service}-{instance}", backend_argv(service, instance), **kwargs)  # type: ignore[arg-type]


def restart_backend(proc: Proc, *, log_dir: Path | None = None, wait: bool = True) -> Proc:
    """Start `proc`'s backend again on the same port, after it was stopped or killed.

    `spawn` always takes a fresh ephemeral port; a pool's target is an address, so a
    backend that "comes back" must come back where it was. The port is free again once
    the old process is gone (SO_REUSEADDR covers connections left in TIME_WAIT).
    """
    service, _, instance = proc.name.partition("-")
    sock = listening_socket(HOST, proc.port)
    log_dir = log_dir or proc.log_path.parent
    log_path = log_dir / f"{proc.name}-{proc.port}-restarted.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by Proc.stop
    try:
        popen = subprocess.Popen(
            [*backend_argv(service, instance or "a"), "--fd", str(sock.fileno())],
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
        )
    finally:
        sock.close()
    restarted = Proc(proc.name, proc.port, popen, log_path, proc.health_path, log_file)
    if wait:
        try:
            wait_healthy(restarted)
        except BaseException:
            restarted.stop()
            raise
    return restarted


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    """Stop every process on the way out, whatever happened inside."""
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (Linux /proc)."""
    return _status_field(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """High-water mark of the resident set of `pid` in KiB (Linux /proc, VmHWM)."""
    return _status_field(pid, "VmHWM")


def _status_field(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")
