"""make cache-conformance says what is missing instead of failing obscurely.

The suite itself takes a minute per run; stage 05's tests hold the score (a floor) once
there is a cache to score. Here: the error paths a reader meets first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from common.testing.processes import REPO_ROOT, child_env


def conformance(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "common.cache_conformance", *args],
        cwd=REPO_ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_missing_suite_names_where_it_looked_and_how_to_point_elsewhere(tmp_path: Path) -> None:
    result = conformance(env={"CACHE_TESTS": str(tmp_path / "nowhere")})
    assert result.returncode == 2
    assert f"no cache test suite at {tmp_path / 'nowhere'}" in result.stderr
    assert "CACHE_TESTS" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_floor_is_a_usage_error() -> None:
    result = conformance("--floor", "lots")
    assert result.returncode == 2 and "expected PASSED or PASSED:REQUIRED" in result.stderr
