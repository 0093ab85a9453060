"""`--workers N`: N gateway processes on one port, which is how Python uses N cores.

One Python process runs its event loop on one core (the GIL lets one thread execute
Python at a time), and a proxy is CPU-bound long before the network is full: parsing
HTTP, copying headers, running middleware. So the gateway scales the way nginx, gunicorn
and uvicorn do: several independent processes accepting on the same port. They share
nothing but the socket, which is also why later stages need Redis for state that must be
shared (a rate limit counted per process is a limit per process).

Two ways to share a port, both used here:

- `--fd N`: the listening socket already exists (the launcher or systemd bound it); every
  worker inherits the same socket, so there is one accept queue and whichever idle worker
  wakes first takes the connection.
- `--port P`: every worker binds its own socket with SO_REUSEPORT and the kernel spreads
  new connections over their accept queues by a hash of the client's address and port,
  evenly, even when one worker is busy (nginx `listen ... reuseport`).

This parent process serves nothing. It starts the workers (fresh interpreters, not
fork(): nothing half-initialised is inherited), forwards SIGTERM/SIGINT to them and waits;
each worker then shuts down gracefully on its own deadline. SIGHUP it passes on too: each
worker reloads its configuration (gateway/reload/; POST /reload sends it here).

Ready means every worker. A worker that has set itself up (config, application, upstream
session) says so on a pipe to the parent, then waits; once all N have, the parent lets
them all start accepting (SIGUSR1). Until then connections wait in the kernel's accept
queue, so the first health check that is answered is answered by a gateway whose every
worker serves, not by the fastest one while the others are still importing. systemd's
`Type=notify` (sd_notify READY=1) is the same idea one level up. If a worker dies on its own,
the parent stops the others and exits non-zero: a supervisor above (systemd, Kubernetes,
`make`) decides what happens next. gunicorn's and nginx's masters restart dead workers
instead; that needs crash-loop protection, which this teaching gateway leaves out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("gateway.workers")


def supervise(count: int, worker_argv: Sequence[str], pass_fds: Sequence[int] = ()) -> int:
    """Run `count` copies of `worker_argv` until a signal stops them; return the exit code."""
    workers: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers.values():
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)

    serving = threading.Event()  # set once every worker is ready and released

    def reload_all(signum: int = signal.SIGHUP, frame: FrameType | None = None) -> None:
        # Live configuration (gateway/reload/): every worker reads the file again. Not
        # before they all serve: a worker still importing would die of it (SIGHUP's
        # default action), and one that has not read its file yet reads it anyway.
        if not serving.is_set():
            log.warning("SIGHUP before every worker is ready: ignored, send it again")
            return
        for worker in workers.values():
            if worker.returncode is None:
                worker.send_signal(signal.SIGHUP)

    # Installed before the first worker starts, so a signal can never find a worker
    # that the parent does not know about yet.
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGHUP, reload_all)
    ready_read, ready_write = os.pipe()
    for _ in range(count):
        argv = [sys.executable, "-m", "gateway", *worker_argv, "--ready-fd", str(ready_write)]
        worker = subprocess.Popen(argv, pass_fds=(*pass_fds, ready_write))
        workers[worker.pid] = worker
        if stopping:  # a signal arrived while we were starting workers
            worker.send_signal(signal.SIGTERM)
    os.close(ready_write)  # the workers hold it now: EOF here means every one is gone
    log.info("started %d workers: %s", count, ", ".join(str(pid) for pid in workers))
    # The main thread must stay in os.wait() below (to see a worker die at any time), so
    # the readiness pipe is read by a thread of its own.
    threading.Thread(
        target=_release_when_ready,
        args=(ready_read, list(workers.values()), serving),
        daemon=True,
    ).start()

    exit_code = 0
    while any(worker.returncode is None for worker in workers.values()):
        # os.wait() blocks until any child exits; a signal handler runs in between
        # and the wait resumes (PEP 475), so no polling loop is needed.
        pid, status = os.wait()
        exited = workers.get(pid)
        if exited is None:
            continue
        exited.returncode = os.waitstatus_to_exitcode(status)
        if not stopping:
            log.error(
                "worker %d exited on its own (code %d); stopping the others", pid, exited.returncode
            )
            exit_code = 1
            stop_all()
        elif exited.returncode != 0:  # stopping, and this one did not stop cleanly
            exit_code = exit_code or 1
    log.info("all workers stopped")
    return exit_code


def _release_when_ready(
    ready: int, workers: list[subprocess.Popen[bytes]], serving: threading.Event
) -> None:
    """Read one byte per worker, then tell them all to start accepting."""
    received = 0
    with os.fdopen(ready, "rb", buffering=0) as pipe:
        while received < len(workers):
            chunk = pipe.read(len(workers) - received)
            if not chunk:
                return  # a worker died before it was ready: supervise() handles that
            received += len(chunk)
    log.info("all %d workers are ready: serving", len(workers))
    for worker in workers:
        if worker.returncode is None:
            worker.send_signal(signal.SIGUSR1)
    serving.set()


async def wait_for_siblings(ready_fd: int) -> None:
    """In a worker: tell the parent this worker is ready, then wait for its go (SIGUSR1).

    The handler is installed before the parent can send the signal (SIGUSR1's default
    action is to terminate the process)."""
    loop = asyncio.get_running_loop()
    go = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    os.write(ready_fd, b".")
    os.close(ready_fd)
    await go.wait()
    loop.remove_signal_handler(signal.SIGUSR1)
