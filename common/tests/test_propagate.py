"""`make propagate`: a fix in one stage reaches the later stages that can take it.

Each test builds a small git repo of three stages under tmp_path, commits it, edits stage
01's working tree, and checks what `propagate("01")` did to stages 02 and 03.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.propagate import PropagateError, propagate
from common.testing.processes import REPO_ROOT, child_env

OLD = "def route(path):\n    return lookup(path)\n\n\ndef other():\n    return 1\n"
FIXED = OLD.replace("return lookup(path)", "return lookup(normalise(path))")


def git(root: Path, *args: str) -> None:
    # An identity of its own: a fresh CI machine has no user.name or user.email.
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", *identity, *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    # 02 copies 01's app.py; 03 owns its own version (a line added at the end).
    for stage, text in (
        ("01_a", OLD),
        ("02_b", OLD),
        ("03_c", OLD + "\n\ndef mine():\n    pass\n"),
    ):
        (tmp_path / stage / "gateway").mkdir(parents=True)
        (tmp_path / stage / "gateway" / "app.py").write_text(text)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "stages")
    return tmp_path


def outcomes(table: object) -> list[list[str]]:
    # the type ignore below: rich's Table, returned as a renderable
    columns = table.columns  # type: ignore[attr-defined]
    return [[str(cell) for cell in column._cells] for column in columns]


def test_a_fix_is_copied_into_copies_and_patched_into_owned_files(repo: Path) -> None:
    (repo / "01_a/gateway/app.py").write_text(FIXED)
    table, conflicts = propagate("01", root=repo)
    assert conflicts == 0
    assert (repo / "02_b/gateway/app.py").read_text() == FIXED  # a copy: copied
    owned = (repo / "03_c/gateway/app.py").read_text()
    assert "lookup(normalise(path))" in owned and "def mine()" in owned  # its own: patched
    files, stage2, stage3 = outcomes(table)
    assert files == ["gateway/app.py"]
    assert "copied" in stage2[0] and "patched" in stage3[0]


def test_a_fix_already_carried_forward_is_left_alone(repo: Path) -> None:
    (repo / "01_a/gateway/app.py").write_text(FIXED)
    propagate("01", root=repo)
    table, conflicts = propagate("01", root=repo)  # twice: nothing more to do
    assert conflicts == 0
    assert all("already there" in cell[0] for cell in outcomes(table)[1:])


def test_a_change_that_does_not_apply_is_reported_and_not_touched(repo: Path) -> None:
    mine = "def route(path):\n    return something_else(path)\n"
    (repo / "03_c/gateway/app.py").write_text(mine)
    git(repo, "commit", "-qam", "03 rewrote it")
    (repo / "01_a/gateway/app.py").write_text(FIXED)
    table, conflicts = propagate("01", root=repo)
    assert conflicts == 1
    assert (repo / "03_c/gateway/app.py").read_text() == mine
    assert "conflict" in outcomes(table)[2][0]


def test_new_and_removed_files_travel_too(repo: Path) -> None:
    (repo / "01_a/gateway/new.py").write_text("X = 1\n")
    (repo / "01_a/gateway/app.py").unlink()
    _, conflicts = propagate("01", root=repo)
    assert (repo / "02_b/gateway/new.py").read_text() == "X = 1\n"
    assert not (repo / "02_b/gateway/app.py").exists()  # it was an unchanged copy
    assert (repo / "03_c/gateway/app.py").exists()  # its own version: a conflict, kept
    assert conflicts == 1


def test_dry_run_changes_nothing(repo: Path) -> None:
    (repo / "01_a/gateway/app.py").write_text(FIXED)
    propagate("01", root=repo, dry_run=True)
    assert (repo / "02_b/gateway/app.py").read_text() == OLD


def test_an_unknown_stage_is_a_clear_error(repo: Path) -> None:
    with pytest.raises(PropagateError, match="FROM=09: no such stage"):
        propagate("09", root=repo)


def test_the_command_line_reports_and_exits_2_on_bad_input() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "common.propagate", "99"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "FROM=99: no such stage" in done.stderr
