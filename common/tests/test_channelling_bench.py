"""channelling-bench runs stage 03 and 04 side by side and reports what it measured.

One scenario of the six, shortened (the retry storm: its verdict is about counting, not
timing, so it holds on a busy machine); the whole bench is `make channelling-bench`.
Skipped while the repo has no stage with gateway/channel.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from common.testing.processes import REPO_ROOT, child_env

HAS_CHANNEL = any(REPO_ROOT.glob("[0-9][0-9]_*/gateway/channel"))


@pytest.mark.skipif(not HAS_CHANNEL, reason="no stage with gateway/channel yet")
def test_the_storm_scenario_compares_both_stages_and_meets_its_target() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "common.bench.channelling_bench", "--only", "2", "--quick",
         "--markdown"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "**2. Retry storm" in out and "**1." not in out  # --only picks one scenario
    rows = [line for line in out.splitlines() if line.startswith("| 0")]
    assert [row.split(" | ")[0] for row in rows] == [
        "| 03_load_balancing",
        "| 04_req_channelling",
        "| 04_req_channelling, naive (no budget, no breaker)",
    ]
    cells = [row.strip(" |").split(" | ") for row in rows]
    sent, upstream = (int(cells[1][i].replace(",", "")) for i in (1, 4))
    # The budget's promise (channel/budget.py, gateway.toml's defaults): over any 10 s,
    # retries <= 20% of the requests + a reserve of 3 a second x 10 s. A short run with a
    # few hundred requests may pass 1.2x by the reserve, and that is the budget working.
    assert upstream <= 1.2 * sent + 30, (sent, upstream)
    assert float(cells[2][5]) >= 2.0, cells[2]  # naive retries: every try goes out
    assert "✓ 04_req_channelling: amplification" in out


def test_a_stage_that_does_not_exist_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "common.bench.channelling_bench", "--after", "99"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--after 99: no such stage folder" in result.stderr and "Traceback" not in result.stderr
