"""`make restart NAME=users-b`: bring back one backend of a running stage.

The launcher owns its children, so it is the one that restarts them; this module is the
conversation between it and the `make restart` that asks, through the run dir:

    make restart  -> <run-dir>/<stage>/restart-users-b.request     (the question)
                  -> SIGUSR1 to that stage's launcher               (look now)
    launcher      -> restarts users-b on its old port, then
                  -> <run-dir>/<stage>/restart-users-b.result       (the answer)
    make restart  <- reads the answer, prints it, removes it

A file per request and a signal to say "look": signals carry no data, and a file survives
the race between two `make restart`s for different backends. The answer is either
`ok <pid> <url>` or the reason it did not work.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from common.launch import pidfiles
from common.launch.config import LaunchError

SIGNAL = signal.SIGUSR1
ANSWER_TIMEOUT = 40.0  # the launcher stops the old process (5 s) and waits for health (20 s)


def request_path(stage_run_dir: Path, name: str) -> Path:
    return stage_run_dir / f"restart-{name}.request"


def answer_path(stage_run_dir: Path, name: str) -> Path:
    return stage_run_dir / f"restart-{name}.result"


def pending(stage_run_dir: Path) -> list[str]:
    """Names asked for, oldest request first (in the launcher)."""
    found = sorted(stage_run_dir.glob("restart-*.request"), key=lambda p: p.stat().st_mtime)
    return [p.name.removeprefix("restart-").removesuffix(".request") for p in found]


def answer(stage_run_dir: Path, name: str, text: str) -> None:
    """The launcher's answer to one request; the request is gone once it is answered."""
    tmp = answer_path(stage_run_dir, name).with_suffix(".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, answer_path(stage_run_dir, name))
    with contextlib.suppress(FileNotFoundError):
        request_path(stage_run_dir, name).unlink()


def request(run_dir: Path, name: str) -> str:
    """Ask the launcher that runs backend `name` to restart it; wait for its answer.

    Returns the answer ("ok <pid> <url>"); LaunchError when nothing runs `name`, when
    it is ambiguous, or when the launcher does not answer in time.
    """
    stages = running_stages(run_dir)
    holding = [(stage, record) for stage, record in stages if name in record.children]
    if not holding:
        running = ", ".join(
            f"{stage.name} ({', '.join(record.children) or 'no children'})"
            for stage, record in stages
        )
        raise LaunchError(
            f"no running stage has a process named {name!r}"
            + (f"; running: {running}" if running else "; no stage is running (make <stage>)")
        )
    if len(holding) > 1:
        names = ", ".join(stage.name for stage, _ in holding)
        raise LaunchError(f"{name!r} runs in several stages ({names}): stop all but one")
    stage_dir, launcher = holding[0]
    with contextlib.suppress(FileNotFoundError):
        answer_path(stage_dir, name).unlink()  # an old answer nobody read
    request_path(stage_dir, name).write_text(f"{os.getpid()}\n", encoding="utf-8")
    os.kill(launcher.pid, SIGNAL)
    deadline = time.monotonic() + ANSWER_TIMEOUT
    result = answer_path(stage_dir, name)
    while not result.exists():  # the launcher's answer is a file: poll for it
        if time.monotonic() > deadline:
            raise LaunchError(f"the launcher of {stage_dir.name} did not answer within 40 s")
        if pidfiles.stale_reason(launcher) is not None:
            raise LaunchError(f"the launcher of {stage_dir.name} stopped before it answered")
        time.sleep(0.05)
    text = result.read_text(encoding="utf-8").strip()
    result.unlink()
    return text


def running_stages(run_dir: Path) -> list[tuple[Path, pidfiles.PidRecord]]:
    """(stage run dir, its live launcher's record) for every stage that runs now."""
    found = []
    for folder in sorted(p for p in run_dir.iterdir() if p.is_dir()) if run_dir.is_dir() else []:
        record = pidfiles.read(pidfiles.pid_path(run_dir, folder.name, pidfiles.LAUNCHER))
        if record is not None and pidfiles.stale_reason(record) is None:
            found.append((folder, record))
    return found
