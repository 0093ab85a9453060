"""PID files: which processes a launcher started, so `make stop-all` can stop exactly those.

One JSON file per process, `<run-dir>/<stage>/<name>.json`, plus `launcher.json` for the
launcher itself:

    {"pid": 4242, "name": "users-a", "url": "http://127.0.0.1:9001",
     "cmdline": ["/repo/.venv/bin/python", "-m", "common.backends", ...], "started": 1.7e9}

A PID alone is not an identity: once a process exits, the kernel hands its number to the
next process that starts, and a classic PID file then points at a stranger (a shell, an
editor...). So a record counts as running only if that PID is alive AND its
/proc/<pid>/cmdline is the command line recorded at spawn. Anything else is stale: the
file is removed and the process is never signalled. We never look processes up by name
(pkill -f common.backends would also stop the tests and the other checkouts on the box).

systemd sidesteps PID files entirely by tracking a service's processes in a cgroup; a
PID file plus a command-line check is the portable approximation.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from common.launch.config import LaunchError

LAUNCHER = "launcher"


class PidRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    pid: int
    name: str
    url: str | None
    cmdline: list[str]
    started: float
    children: list[str] = []  # the launcher's record: the names it starts (make restart)


def stage_dir(run_dir: Path, stage: str) -> Path:
    return run_dir / stage


def pid_path(run_dir: Path, stage: str, name: str) -> Path:
    return stage_dir(run_dir, stage) / f"{name}.json"


def record_for(
    pid: int, name: str, url: str | None, cmdline: list[str], children: list[str] | None = None
) -> PidRecord:
    return PidRecord(
        pid=pid, name=name, url=url, cmdline=cmdline, started=time.time(), children=children or []
    )


def own_cmdline() -> list[str]:
    # sys.orig_argv is the argv this interpreter was exec'd with (`python -m
    # common.launch ...`), which is what /proc/self/cmdline shows; sys.argv is rewritten
    # by `-m` and would never match.
    return list(sys.orig_argv)


def read(path: Path) -> PidRecord | None:
    """The record in `path`, or None if it is missing or not a record (treated as stale)."""
    try:
        return PidRecord.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None


def write(path: Path, record: PidRecord, *, exclusive: bool = False) -> None:
    """Write atomically: a reader sees no file or a whole file, never half a JSON document.

    The text goes to a temporary file first, then takes the final name in one step:
    rename() replaces, link() fails if the name exists (`exclusive`: two launchers
    starting the same stage at once cannot both claim it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(record.model_dump_json() + "\n", encoding="utf-8")
    try:
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    with contextlib.suppress(OSError):  # the stage folder, once its last file is gone
        path.parent.rmdir()


def process_cmdline(pid: int) -> list[str] | None:
    """The command line of a live process, or None if it is gone (or a zombie)."""
    if sys.platform.startswith("linux"):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        # Each argument ends with a NUL. A zombie (exited, not yet reaped by its parent)
        # has an empty cmdline: for our purposes it is gone.
        if not raw:
            return None
        return [os.fsdecode(arg) for arg in raw.removesuffix(b"\0").split(b"\0")]
    # Elsewhere (macOS, BSD) ask ps: one string, arguments joined with spaces.
    result = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return [result.stdout.strip()] if result.returncode == 0 and result.stdout.strip() else None


def stale_reason(record: PidRecord) -> str | None:
    """None if the recorded process is running; otherwise why the record is stale."""
    actual = process_cmdline(record.pid)
    if actual is None:
        return f"process {record.pid} is gone"
    if actual != record.cmdline and " ".join(actual) != " ".join(record.cmdline):
        shown = " ".join(actual)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return f"PID {record.pid} now belongs to another process ({shown})"
    return None


def claim_stage(
    run_dir: Path, stage: str, url: str | None = None, children: list[str] | None = None
) -> tuple[Path, list[str]]:
    """Record this launcher as the one running `stage`; return its PID file and notes.

    Stale files left by a launcher that was killed with SIGKILL (or a reboot) are removed
    and reported in the notes. A live one means the stage is running: LaunchError.
    """
    notes: list[str] = []
    folder = stage_dir(run_dir, stage)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = read(path)
        reason = "unreadable" if record is None else stale_reason(record)
        if reason is None:
            assert record is not None
            raise LaunchError(
                f"{stage} is already running ({record.name}, PID {record.pid});"
                f" stop it with `make stop-all` (or Ctrl-C in its terminal)"
            )
        remove(path)
        notes.append(f"removed stale PID file {path.name}: {reason}")
    path = pid_path(run_dir, stage, LAUNCHER)
    try:
        record = record_for(os.getpid(), LAUNCHER, url, own_cmdline(), children)
        write(path, record, exclusive=True)
    except FileExistsError:
        raise LaunchError(f"{stage} is being started by another launcher right now") from None
    return path, notes
