"""`make diff A=01 B=02` on two made-up stages: the lesson shows, the caches do not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.diff import main
from common.testing.processes import child_env

ROUTING_V1 = """\
def route(table, path):
    # a dict: exact paths only
    return table[path]
"""

ROUTING_V2 = """\
def route(trie, path):
    # a dict: exact paths only
    return trie.find(path)
"""


def write(root: Path, relpath: str, data: str | bytes) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    one: dict[str, str | bytes] = {
        "ARCHITECTURE.md": "# 01_one\n",
        "gateway/routing.py": ROUTING_V1,
        "gateway/old.py": "OLD = True\n",
        "gateway/same.py": "SAME = 1\n",
        "gateway/__pycache__/routing.cpython-311.pyc": b"\x00BYTECODE_ONE",
        ".pytest_cache/README.md": "cache one\n",
        "logo.png": b"\x89PNG\x00one",
        "version.txt": "1",  # no final newline
    }
    two: dict[str, str | bytes] = {
        "ARCHITECTURE.md": "# 02_two\n",
        "gateway/routing.py": ROUTING_V2,
        "gateway/trie.py": "class Trie:\n    pass\n",
        "gateway/same.py": "SAME = 1\n",
        "gateway/__pycache__/routing.cpython-311.pyc": b"\x00BYTECODE_TWO",
        ".pytest_cache/README.md": "cache two\n",
        "logo.png": b"\x89PNG\x00two",
        "version.txt": "2",
    }
    for relpath, data in one.items():
        write(tmp_path, f"01_one/{relpath}", data)
    for relpath, data in two.items():
        write(tmp_path, f"02_two/{relpath}", data)
    return tmp_path


def run_diff(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_diff_shows_changes_and_hides_caches(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_diff(capsys, "01", "02", "--root", str(repo))
    assert code == 0
    assert "\x1b[" not in out  # not a TTY: plain text, safe to pipe or save as a patch
    assert "__pycache__" not in out and "BYTECODE" not in out and "cache one" not in out
    assert "gateway/same.py" not in out

    assert (
        "diff -ruN a/01_one/gateway/routing.py b/02_two/gateway/routing.py\n"
        "--- a/01_one/gateway/routing.py\n"
        "+++ b/02_two/gateway/routing.py\n"
        "@@ -1,3 +1,3 @@\n"
        "-def route(table, path):\n"
        "+def route(trie, path):\n"
        "     # a dict: exact paths only\n"
        "-    return table[path]\n"
        "+    return trie.find(path)\n"
    ) in out
    # Added and removed files are shown in full against /dev/null.
    assert "--- /dev/null\n+++ b/02_two/gateway/trie.py\n@@ -0,0 +1,2 @@\n+class Trie:\n" in out
    assert "--- a/01_one/gateway/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-OLD = True\n" in out
    assert "Binary files a/01_one/logo.png and b/02_two/logo.png differ\n" in out
    assert "-1\n\\ No newline at end of file\n+2\n\\ No newline at end of file\n" in out
    assert "-# 01_one\n+# 02_two\n" in out  # ARCHITECTURE.md is part of the lesson

    headers = [line.split()[-1] for line in out.splitlines() if line.startswith("diff -ruN")]
    assert headers == sorted(headers)
    assert len(headers) == 6


def test_folder_names_and_brief(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_diff(capsys, "01_one", "02_two/", "--brief", "--root", str(repo))
    assert code == 0
    assert out.splitlines() == [
        "Files 01_one/ARCHITECTURE.md and 02_two/ARCHITECTURE.md differ",
        "Only in 01_one/gateway: old.py",
        "Files 01_one/gateway/routing.py and 02_two/gateway/routing.py differ",
        "Only in 02_two/gateway: trie.py",
        "Files 01_one/logo.png and 02_two/logo.png differ",
        "Files 01_one/version.txt and 02_two/version.txt differ",
    ]


def test_unknown_stage_lists_the_known_ones(repo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "common.diff", "01", "07", "--root", str(repo)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "error: unknown stage '07'; known stages: 01_one, 02_two\n"
