"""make cache-conformance says what is missing instead of failing obscurely.

The suite itself takes a minute per run; stage 05's tests hold the score (a floor) once
there is a cache to score. Here: the error paths a reader meets first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from common.cache_conformance import CHUNKED_CALL, RUN_CALL
from common.testing.processes import REPO_ROOT, child_env


def conformance(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
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


FAKE_NPM = """#!/bin/sh
# npm i as the suite's install runs it: slow enough that two callers overlap; it fails the
# way the real one did (ENOTEMPTY) when another install is already in the same folder.
echo "$$" >> "$NPM_CALLS"
[ -e node_modules ] && { echo "ENOTEMPTY: node_modules" >&2; exit 1; }
mkdir -p node_modules/undici && sleep 0.5
"""


def test_two_stages_installing_the_suite_at_once_install_it_once(tmp_path: Path) -> None:
    """06 and 07 run in parallel, and each one's floor test installs the suite's node
    packages: the first one installs (into the clone, not /tmp), the other waits for it."""
    suite = tmp_path / "suite-src"
    (suite / "suite" / "test-engine").mkdir(parents=True)
    (suite / "suite" / "test-engine" / "cli.mjs").write_text("// the client\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(FAKE_NPM)
    (bin_dir / "npm").chmod(0o755)
    calls = tmp_path / "npm-calls"
    root = tmp_path / "cache"
    script = (
        "from pathlib import Path; from common.cache_conformance import installed_suite;"
        f" print(installed_suite(Path({str(suite)!r}), Path({str(root)!r})))"
    )
    env = child_env({"PATH": f"{bin_dir}:/usr/bin:/bin", "NPM_CALLS": str(calls)})
    env.pop("CACHE_TESTS_DIR", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], results
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1 and Path(paths.pop()).parent == root
    assert len(calls.read_text().split()) == 1  # npm ran once
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [
        next(p.name for p in root.iterdir() if p.is_dir())
    ]  # no staging folder left behind


def test_the_installed_client_takes_how_many_tests_run_at_once(tmp_path: Path) -> None:
    """The installed copy's cli.mjs reads CT_CHUNK_SIZE (the floor test runs every test at
    once: ~10 s instead of ~60 s); a copy installed before that change is installed again."""
    suite = tmp_path / "suite-src"
    (suite / "suite" / "test-engine").mkdir(parents=True)
    (suite / "suite" / "test-engine" / "cli.mjs").write_text(f"{RUN_CALL}.catch(err => {{}})\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(FAKE_NPM)
    (bin_dir / "npm").chmod(0o755)
    calls, root = tmp_path / "npm-calls", tmp_path / "cache"
    script = (
        "from pathlib import Path; from common.cache_conformance import installed_suite;"
        f" print(installed_suite(Path({str(suite)!r}), Path({str(root)!r})))"
    )
    env = child_env({"PATH": f"{bin_dir}:/usr/bin:/bin", "NPM_CALLS": str(calls)})
    env.pop("CACHE_TESTS_DIR", None)

    def install() -> Path:
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        return Path(done.stdout.strip())

    cli = install() / "test-engine" / "cli.mjs"
    assert CHUNKED_CALL in cli.read_text() and RUN_CALL not in cli.read_text()
    assert install() / "test-engine" / "cli.mjs" == cli  # ready: not installed again
    assert len(calls.read_text().split()) == 1
    cli.write_text(f"{RUN_CALL}\n")  # as an install from before CT_CHUNK_SIZE left it
    assert CHUNKED_CALL in (install() / "test-engine" / "cli.mjs").read_text()
    assert len(calls.read_text().split()) == 2
