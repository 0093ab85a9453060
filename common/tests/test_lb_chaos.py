"""lb-chaos runs unattended to its summary, and leaves no process behind, even on Ctrl-C.

The short timeline (16 s) against the newest stage with upstream pools; skipped while
the repo has none.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from common.lb_chaos.__main__ import newest_lb_stage
from common.testing.processes import REPO_ROOT, child_env

try:
    STAGE = newest_lb_stage()
except SystemExit:
    STAGE = None  # type: ignore[assignment]  # no stage has balancing yet: skipped
pytestmark = pytest.mark.skipif(STAGE is None, reason="no stage with gateway/balancing yet")


def lb_chaos(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "common.lb_chaos", "--short", "--plain", *args],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_short_timeline_ejects_and_recovers_every_broken_backend(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    proc = lb_chaos("--summary-json", str(out))
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert "lb-chaos summary" in output and "ejected and came back" in output
    summary = json.loads(out.read_text())
    killed, slow, flaky = (summary["faults"][name] for name in "bcd")
    # The killed and the failing backend were taken out within a few health checks...
    assert killed["eject"] is not None and killed["eject"] < 3.0, killed
    assert flaky["eject"] is not None and flaky["eject"] < 3.0, flaky
    # ...and used again after the heal, with nobody telling the gateway.
    assert all(f["recover"] is not None for f in (killed, slow, flaky)), summary["faults"]
    # Most requests never noticed: only those caught in a detection window failed.
    assert summary["sent"] > 1000 and summary["failed"] < 0.05 * summary["sent"], summary
    assert all(gone(pid) for pid in summary["pids"]), summary["pids"]


def test_ctrl_c_stops_every_process_it_started() -> None:
    proc = lb_chaos()
    try:
        assert proc.stdout is not None
        line = ""
        for line in proc.stdout:  # the first line names every child, once all are up
            if line.startswith("pids:"):
                break
        pids = [int(pid) for pid in line.split()[1:]]
        assert len(pids) == 7, line  # six backends and the gateway
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    assert all(gone(pid) for pid in pids), pids
