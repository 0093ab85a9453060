"""`make stop-all`: stop every process the launchers recorded, and nothing else.

For each stage under the run dir: first its launcher, with SIGTERM, exactly as if Ctrl-C
had been pressed in its terminal, so it stops the gateway before the backends and cleans
up its own PID files; then anything still recorded (children that outlived a launcher
killed with SIGKILL on a system without PR_SET_PDEATHSIG). A record whose process is gone,
or whose PID now runs another command line, is stale: the file is removed and that
process is never signalled (see pidfiles.py).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import time
from pathlib import Path

from rich.table import Table
from rich.text import Text

from common.launch import output, pidfiles
from common.launch.children import GATEWAY_STOP_TIMEOUT, STOP_TIMEOUT
from common.launch.pidfiles import PidRecord

# A launcher needs up to GATEWAY_STOP_TIMEOUT for the gateway, then STOP_TIMEOUT for the
# backends.
LAUNCHER_GRACE = GATEWAY_STOP_TIMEOUT + STOP_TIMEOUT + 5.0


class Target:
    """A recorded process we have verified and may signal.

    On Linux it is held through a pidfd (pidfd_open, Linux 5.3+): a file descriptor that
    refers to that one process, not to a number. Verify the command line, then signal
    through the fd: if the process exited in between and its PID went to a stranger, the
    signal fails with ESRCH instead of reaching the stranger. The fd also becomes readable
    when the process exits, which gives an event to wait on for a process that is not our
    child (waitpid() only works on our own children). Without pidfds we fall back to
    plain PIDs and polling, with the small reuse window every PID-file tool lives with.
    """

    def __init__(self, record: PidRecord, pidfd: int | None) -> None:
        self.record = record
        self.pidfd = pidfd

    @classmethod
    def open(cls, record: PidRecord) -> tuple[Target | None, str]:
        """(target, "") if the recorded process runs, else (None, why the record is stale)."""
        pidfd = None
        if hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(record.pid)
            except ProcessLookupError:
                return None, f"process {record.pid} is gone"
            except OSError:  # an older kernel (ENOSYS) or a sandbox: use plain PIDs
                pidfd = None
        reason = pidfiles.stale_reason(record)
        if reason is not None:
            if pidfd is not None:
                os.close(pidfd)
            return None, reason
        return cls(record, pidfd), ""

    def send(self, sig: signal.Signals) -> bool:
        """Deliver `sig`; False if the process is already gone."""
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            else:
                os.kill(self.record.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float) -> bool:
        """True once the process has exited (within `timeout` seconds)."""
        if self.pidfd is not None:
            readable, _, _ = select.select([self.pidfd], [], [], timeout)
            return bool(readable)
        deadline = time.monotonic() + timeout
        while pidfiles.stale_reason(self.record) is None:  # a zombie counts as exited
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)  # no exit event for a non-child without pidfds (kqueue aside)
        return True

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def terminate(target: Target, grace: float) -> tuple[str, str]:
    """SIGTERM, then SIGKILL after `grace` seconds; (what happened, rich style)."""
    try:
        if not target.send(signal.SIGTERM):
            return "had already exited", "dim"
        if target.wait(grace):
            return "stopped (SIGTERM)", "green"
        target.send(signal.SIGKILL)
        target.wait(2.0)
        return f"killed (SIGKILL: still running {grace:g} s after SIGTERM)", "yellow"
    except PermissionError:
        return "not permitted to signal it (another user's process?)", "bold red"
    finally:
        target.close()


def stop_stage(stage: str, paths: list[Path]) -> list[tuple[str, str, str, str, str]]:
    """Stop one stage's processes; one (stage, name, pid, result, style) row per file."""
    rows: dict[Path, tuple[str, str, str, str, str]] = {}
    targets: dict[Path, Target] = {}
    for path in paths:
        record = pidfiles.read(path)
        if record is None:
            rows[path] = (stage, path.stem, "?", "stale: unreadable PID file, removed", "yellow")
            pidfiles.remove(path)
            continue
        target, reason = Target.open(record)
        if target is None:
            result = f"stale ({reason}): file removed, nothing signalled"
            rows[path] = (stage, record.name, str(record.pid), result, "yellow")
            pidfiles.remove(path)
        else:
            targets[path] = target

    def row(path: Path, result: str, style: str) -> None:
        record = targets[path].record
        rows[path] = (stage, record.name, str(record.pid), result, style)

    for path in [p for p in targets if p.stem == pidfiles.LAUNCHER]:  # the launcher first
        result, style = terminate(targets[path], LAUNCHER_GRACE)
        if style == "green":
            result += "; it stopped its children in order"
        row(path, result, style)
        pidfiles.remove(path)
    for path, target in targets.items():
        if path in rows:
            continue
        if target.wait(0):  # its launcher stopped it a moment ago
            target.close()
            row(path, "stopped by its launcher", "green")
        else:
            row(path, *terminate(target, STOP_TIMEOUT))
        pidfiles.remove(path)
    return [rows[p] for p in sorted(paths, key=lambda p: p.stem != pidfiles.LAUNCHER)]


def stop_all(run_dir: Path) -> int:
    paths = sorted(run_dir.glob("*/*.json")) if run_dir.is_dir() else []
    if not paths:
        output.out.print(Text(f"Nothing to stop: no PID files under {run_dir}"))
        return 0
    rows = []
    for stage, group in itertools.groupby(paths, key=lambda p: p.parent.name):
        rows += stop_stage(stage, list(group))
    for folder in {p.parent for p in paths}:
        with contextlib.suppress(OSError):
            folder.rmdir()
    table = Table(title=Text(f"stop-all ({run_dir})"), title_justify="left")
    for column in ("stage", "process", "PID", "result"):
        table.add_column(column, justify="right" if column == "PID" else "left")
    for stage, name, pid, result, style in rows:
        table.add_row(Text(stage), Text(name), pid, Text(result, style=style))
    output.out.print(table, soft_wrap=False)
    return 1 if any(style == "bold red" for *_, style in rows) else 0
