"""Every worker agrees: how `POST /reload` answers for all of them (--workers N).

The admin port is shared, so a POST /reload reaches one worker; it must answer only when
every worker runs the new configuration, or with the error. The workers share nothing
but their parent and a directory, so they speak through both:

1. the worker that got the POST checks the file itself (parse, validate, fixed keys): a
   bad file is answered at once, and no worker is disturbed;
2. it notes each worker's count of reload attempts, from the status files below, and
   sends SIGHUP to the parent (gateway/workers.py), which passes it to every worker;
3. each worker reloads (gateway/reload/live.py) and rewrites its status file,
   `<dir>/<pid>.json`: generation, digest, attempts, last error;
4. the first worker waits until every status file shows one more attempt, and answers
   with each worker's generation and digest, or with the errors.

The parent makes the directory fresh at every start (like the metrics' one,
observability/workers.py) and names it in the workers' environment; a single process
has none and reloads alone. Waiting is a short poll of N small files: a reload is rare
and takes milliseconds, and the alternative (a pipe from every worker to every other)
is machinery for nothing. A production gateway has a control process that owns the
configuration and pushes it (nginx's master, Envoy's xDS server); this is the smallest
thing that gives the same answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

STATUS_DIR = "GATEWAY_RELOAD_DIR"
POLL_SECONDS = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    pid: int
    generation: int
    digest: str
    attempts: int  # reloads tried, successful or not
    error: str | None  # the last attempt's, if it failed


@contextmanager
def status_dir() -> Iterator[str]:
    """For the --workers parent: a fresh directory for the workers' status files."""
    path = tempfile.mkdtemp(prefix="gateway-reload-")
    os.environ[STATUS_DIR] = path
    try:
        yield path
    finally:
        del os.environ[STATUS_DIR]
        shutil.rmtree(path, ignore_errors=True)


def shared() -> Path | None:
    """The status directory, when this process is one of several workers."""
    path = os.environ.get(STATUS_DIR)
    return Path(path) if path else None


def publish(directory: Path, status: Status) -> None:
    """This worker's status, replaced atomically (a reader never sees half a file)."""
    part = directory / f".{status.pid}.part"
    part.write_text(json.dumps(asdict(status)), encoding="utf-8")
    part.replace(directory / f"{status.pid}.json")


def read_all(directory: Path) -> dict[int, Status]:
    found = {}
    for path in directory.glob("*.json"):
        try:
            status = Status(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue  # a worker that just exited; the parent stops the others
        found[status.pid] = status
    return found


async def reload_everywhere(directory: Path, timeout: float) -> dict[int, Status]:
    """SIGHUP to the parent, then wait until every worker has tried once more; every
    worker's status as it is then. TimeoutError if one did not answer in time."""
    before = {pid: status.attempts for pid, status in read_all(directory).items()}
    os.kill(os.getppid(), signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while True:
        now = read_all(directory)
        if all(pid in now and now[pid].attempts > n for pid, n in before.items()):
            return now
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(POLL_SECONDS)
