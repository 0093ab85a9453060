"""`make help`, as a reader meets it: every target listed, readable when piped."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from common.testing.processes import REPO_ROOT, child_env

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make_help() -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,  # a pipe, not a terminal
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_help_piped_has_no_colour_codes() -> None:
    assert "\x1b[" not in make_help()


def test_help_lists_every_target_with_a_description() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = re.findall(r"^([a-z][a-z-]*):.*## ", makefile, re.MULTILINE)
    listed = re.findall(r"^  ([a-z][a-z-]*) ", make_help(), re.MULTILINE)
    assert targets and listed == targets
    assert {"test", "check", "propagate", "restart", "lb"} <= set(listed)
