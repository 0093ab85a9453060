"""make cache-conformance: the public HTTP cache test suite against a stage's gateway.

    make cache-conformance                      the newest stage (about 75 s)
    make cache-conformance ARGS="--stage 04"    another one
    make cache-conformance ARGS="--id freshness-max-age"   one test, both sides' exchanges
    python -m common.cache_conformance --write             the table, into MEASURED.md

The suite is the one behind cache-tests.fyi (http-tests/cache-tests), in a folder with its
runner (`run.sh`, `score.mjs`): `$CACHE_TESTS`, by default `../shared/cache-tests` beside
this repo, and when that is not there the copy in `third_party/cache-tests`.

The runner starts the suite's origin on a port of ours, checks that the proxy
forwards to it, runs the 365 tests and scores them the way cache-tests.fyi does (a test
that depends on a failed one does not count as passed). It needs node 18+, npm and curl;
its first run installs the suite's node packages into a copy inside the clone
(`.cache/http-cache-tests/<hash of the suite>/`, gitignored), once, under a lock: two stages'
tests run at the same time, and two `npm i` into one folder fail with ENOTEMPTY.

The stage's gateway gets one route, `/` to the suite's origin, and otherwise its own
defaults: what the suite measures is the stage as a reader runs it. The table puts the
score next to the published proxies' results that ship with the suite (reverse-proxy
mode), so "better than Traffic Server" is a line in the same table, not a claim.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from common.bench.measured import write as write_measured
from common.testing.gateway import stage_render, start_gateway
from common.testing.processes import REPO_ROOT
from common.testing.specs import GatewaySpec, RouteSpec

DEFAULT_SUITE = REPO_ROOT.parent / "shared" / "cache-tests"
# The same suite and runner, kept in the repo (BSD-3-Clause, third_party/cache-tests/
# suite/LICENSE) so that `make test`, whose floor test runs the suite, passes on a fresh
# clone with nothing beside it. ../shared/cache-tests wins when it is there.
BUNDLED_SUITE = REPO_ROOT / "third_party" / "cache-tests"
# The published reverse proxies whose results ship with the suite (suite/results/).
PUBLISHED = ("trafficserver", "apache", "squid", "caddy", "varnish", "nginx", "haproxy",
             "fastly")  # fmt: skip
TARGET_PASSED, TARGET_REQUIRED = 250, 135  # issue #11: more than every published proxy
# What stage 05 reached (322 passed, 152 required): the floor the cache contract holds in
# `make test`. Required tests are deterministic; a few "check" tests depend on timing
# (heuristic freshness a few seconds long), hence the small margin below 322.
FLOOR_PASSED, FLOOR_REQUIRED = 318, 152


# Where the suite's writable copy and its node packages go: inside the clone, never a fixed
# path under /tmp, where a folder an earlier run left behind would hide a broken install.
INSTALL_ROOT = REPO_ROOT / ".cache" / "http-cache-tests"
# The suite's client runs its tests 25 at a time (test-engine/client/runner.mjs), and each
# batch waits for its slowest test's pauses (3 s, twice in some): about a minute, most of
# it asleep. The installed copy's cli.mjs gets one change, so that CT_CHUNK_SIZE can say
# how many run at once; unset, it is the suite's 25, as on cache-tests.fyi. The floor test
# in `make test` runs them all at once: about 10 s, and the same score (322 and 152 both
# ways on 2026-12-07). A suite whose cli.mjs no longer has this line runs at its own pace.
RUN_CALL = "await runTests(testsToRun, false, baseUrl)"
CHUNKED_CALL = "await runTests(testsToRun, false, baseUrl, Number(process.env.CT_CHUNK_SIZE) || 25)"


class ConformanceError(RuntimeError):
    """The suite cannot run here; the message says what is missing."""


def suite_dir() -> Path:
    """$CACHE_TESTS; else ../shared/cache-tests when it holds the suite; else the copy
    in third_party/."""
    if "CACHE_TESTS" in os.environ:
        where = Path(os.environ["CACHE_TESTS"])
    else:
        where = DEFAULT_SUITE if (DEFAULT_SUITE / "run.sh").is_file() else BUNDLED_SUITE
    if not (where / "run.sh").is_file() or not (where / "score.mjs").is_file():
        raise ConformanceError(
            f"no cache test suite at {where} (run.sh and score.mjs): set CACHE_TESTS to a"
            " folder holding the suite (http-tests/cache-tests) and its runner"
        )
    for tool in ("node", "npm", "curl"):
        if shutil.which(tool) is None:
            raise ConformanceError(f"the cache test suite needs {tool} on PATH")
    return where


def suite_hash(suite: Path) -> str:
    """A short hash of the suite's files: a changed suite (a new ../shared copy) gets a
    fresh install instead of the node packages of another version."""
    digest = hashlib.sha256()
    for path in sorted((suite / "suite").rglob("*")):
        if path.is_file() and "node_modules" not in path.parts:
            digest.update(str(path.relative_to(suite)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def installed_suite(suite: Path, root: Path = INSTALL_ROOT) -> Path:
    """The suite copied into .cache/ with its node packages installed, done once.

    Several pytest processes (one per stage) reach this at the same moment. The first
    takes an exclusive lock, installs into a staging folder and renames it into place
    (a rename is atomic, so nobody sees half a node_modules); the others wait on the lock
    and then find the finished copy. `$CACHE_TESTS_DIR` names another place to use as is.
    """
    if "CACHE_TESTS_DIR" in os.environ:
        return Path(os.environ["CACHE_TESTS_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    key = suite_hash(suite)
    target = root / key

    def ready() -> bool:
        cli = target / "test-engine" / "cli.mjs"
        return (
            cli.is_file()
            and (target / "node_modules" / "undici").is_dir()
            and RUN_CALL not in cli.read_text()  # an older copy, without CT_CHUNK_SIZE
        )

    if ready():
        return target
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if ready():
            return target
        staging = root / f"{key}.staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)  # a copy without node_modules
        try:
            shutil.copytree(suite / "suite", staging)
            for path in [staging, *staging.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)  # ../shared is read-only
            cli = staging / "test-engine" / "cli.mjs"
            cli.write_text(cli.read_text().replace(RUN_CALL, CHUNKED_CALL))
            done = subprocess.run(
                ["npm", "i", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=staging, capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise ConformanceError(
                    f"npm i for the cache test suite failed in {staging}:\n{done.stderr[-2000:]}"
                )
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def newest_stage() -> Path:
    stages = sorted(REPO_ROOT.glob("[0-9][0-9]_*/gateway"))
    if not stages:
        raise ConformanceError("no stage with a gateway/ package")
    return stages[-1].parent


def find_stage(name: str) -> Path:
    matches = sorted(p.parent for p in REPO_ROOT.glob(f"{name}*/gateway"))
    if not matches:
        raise ConformanceError(f"--stage {name}: no stage folder with a gateway/ package")
    return matches[0]


def free_port() -> int:
    # The suite's origin binds it itself (node), so it is chosen here and released first;
    # run.sh refuses a port that is taken by then (exit 3), and the run says so.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_suite(
    stage: Path,
    suite: Path,
    installed: Path,
    tmp: Path,
    test_id: str | None,
    chunk: int | None = None,
) -> Path | None:
    """The stage's gateway in front of the suite's origin; the results file (None: one
    test was run with -i, its exchanges printed as they came)."""
    origin_port = free_port()
    spec = GatewaySpec([RouteSpec("/", f"http://127.0.0.1:{origin_port}")])
    gateway = start_gateway(stage, stage_render(stage)(spec), tmp, "--no-access-log")
    try:
        # TMPDIR: run.sh's lock file (one per origin port, which is ours alone: a fresh
        # ephemeral one) and its work folder go where this run's files go, and leave with
        # them, instead of piling up in the machine's /tmp run after run.
        env = dict(
            os.environ,
            CT_ORIGIN_PORT=str(origin_port),
            CT_OUT_DIR=str(tmp),
            CACHE_TESTS_DIR=str(installed),
            TMPDIR=str(tmp),
        )
        if chunk is not None:
            env["CT_CHUNK_SIZE"] = str(chunk)
        results = tmp / "results.json"
        argv = ["bash", str(suite / "run.sh")]
        argv += ["-i", test_id] if test_id else ["-o", str(results), "-l", stage.name]
        done = subprocess.run(
            [*argv, str(gateway.port)],
            env=env,
            stdout=None if test_id else subprocess.PIPE,
            stderr=None if test_id else subprocess.PIPE,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise ConformanceError(
                f"run.sh exited with {done.returncode}:\n{(done.stderr or '')[-2000:]}"
            )
        return None if test_id else results
    finally:
        gateway.stop()


def scores(suite: Path, installed: Path, results: Path) -> list[dict[str, Any]]:
    """score.mjs --json for our results and the published proxies', ours first."""
    published = [suite / "suite" / "results" / f"{name}.json" for name in PUBLISHED]
    done = subprocess.run(
        ["node", str(suite / "score.mjs"), "--suite", str(installed), "--mode", "proxy", "--json",
         str(results), *(str(p) for p in published if p.is_file())],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise ConformanceError(f"score.mjs failed:\n{done.stderr[-2000:]}")
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def table(rows: list[dict[str, Any]], stage: str) -> Table:
    out = Table(
        title=f"HTTP cache conformance (cache-tests.fyi suite, {rows[0]['total']} tests)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for name in ("proxy", "passed", "required", "optimal", "check", "failed", "other"):
        out.add_column(name, justify="left" if name == "proxy" else "right")
    ours, others = rows[0], sorted(rows[1:], key=lambda r: -r["passed"])
    for row in [ours, *others]:
        style = "bold" if row is ours else None
        out.add_row(
            stage if row is ours else row["name"],
            str(row["passed"]),
            f"{row['required']['pass']} of {row['required']['n']}",
            f"{row['optimal']['pass']} of {row['optimal']['n']}",
            f"{row['check']['yes']} of {row['check']['n']}",
            str(row["failed"]),
            str(row["other"]),
            style=style,
        )
    return out


def verdict(rows: list[dict[str, Any]]) -> tuple[str, bool]:
    ours, others = rows[0], rows[1:]
    best = max(others, key=lambda r: (r["passed"], r["required"]["pass"]), default=None)
    met = (
        ours["passed"] >= TARGET_PASSED
        and ours["required"]["pass"] >= TARGET_REQUIRED
        and all(
            ours["passed"] > r["passed"] and ours["required"]["pass"] > r["required"]["pass"]
            for r in others
        )
    )
    lead = "" if best is None else f"; best published: {best['name']} {best['passed']}"
    return (
        f"passed {ours['passed']}, required {ours['required']['pass']} (target: at least"
        f" {TARGET_PASSED} and {TARGET_REQUIRED}, and more than every published proxy{lead})",
        met,
    )


def markdown(rows: list[dict[str, Any]], stage: str) -> str:
    lines = ["| proxy | passed | required | optimal | check |", "|---|---:|---:|---:|---:|"]
    ours, others = rows[0], sorted(rows[1:], key=lambda r: -r["passed"])
    for row in [ours, *others]:
        name = f"**{stage}**" if row is ours else row["name"]
        lines.append(
            f"| {name} | {row['passed']} | {row['required']['pass']} of {row['required']['n']}"
            f" | {row['optimal']['pass']} of {row['optimal']['n']}"
            f" | {row['check']['yes']} of {row['check']['n']} |"
        )
    return "\n".join(lines)


def failures(installed: Path, results: Path) -> list[tuple[str, str, str]]:
    """(kind, id, name) of every test that did not pass in reverse-proxy mode, required
    ones first; a test whose dependency failed is left out (its dependency is listed)."""
    script = (
        "import(process.argv[1]).then(m => console.log(JSON.stringify(m.default.flatMap("
        "s => s.tests.filter(t => !t.browser_only).map("
        "t => [t.id, t.kind || 'required', t.name || '', t.depends_on || []])))))"
    )
    index = installed / "tests" / "index.mjs"
    done = subprocess.run(["node", "-e", script, index.as_uri()], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    got = json.loads(results.read_text())
    tests = json.loads(done.stdout)
    failed = {test_id for test_id, *_ in tests if got.get(test_id) is not True}
    order = {"required": 0, "optimal": 1, "check": 2}
    rows = [(kind, test_id, name) for test_id, kind, name, deps in tests
            if test_id in failed and not failed.intersection(deps)]  # fmt: skip
    return sorted(rows, key=lambda row: order.get(row[0], 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.cache_conformance")
    parser.add_argument("--stage", help="stage folder or its number (default: the newest)")
    parser.add_argument("--id", help="run one test and print both sides' exchanges")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument(
        "--write", action="store_true", help="--markdown, also into the stage's MEASURED.md"
    )
    parser.add_argument("--failures", action="store_true", help="list every test that did not pass")
    parser.add_argument(
        "--chunk",
        type=int,
        metavar="N",
        help="run N tests at once (default: the suite's 25; the floor test: all at once)",
    )
    parser.add_argument(
        "--floor",
        metavar="PASSED:REQUIRED",
        help="exit 1 below this score, e.g. 250:135 (the regression floor a test holds)",
    )
    args = parser.parse_args(argv)
    if args.chunk is not None and args.chunk < 1:
        parser.error(f"--chunk {args.chunk}: expected at least 1")
    if args.floor and not all(
        part.isdigit() for part in args.floor.split(":") if part
    ):  # fmt: skip
        parser.error(f"--floor {args.floor}: expected PASSED or PASSED:REQUIRED, e.g. 250:135")
    console = Console(stderr=args.markdown or args.write, highlight=False)
    try:
        suite = suite_dir()
        stage = find_stage(args.stage) if args.stage else newest_stage()
        with console.status("installing the cache test suite's node packages (once)..."):
            installed = installed_suite(suite)
        with tempfile.TemporaryDirectory(prefix="cache-conformance-") as tmp:
            if args.id:
                run_suite(stage, suite, installed, Path(tmp), args.id)
                return 0
            with console.status(f"running the cache test suite against {stage.name}..."):
                results = run_suite(stage, suite, installed, Path(tmp), None, args.chunk)
                assert results is not None
                rows = scores(suite, installed, results)
                failed = failures(installed, results) if args.failures else []
    except (ConformanceError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        Console(stderr=True, soft_wrap=True).print(
            f"[red]cache-conformance:[/] {exc}", highlight=False
        )
        return 2
    claim, met = verdict(rows)
    if args.markdown or args.write:
        text = markdown(rows, stage.name)
        print(text)
        if args.write:
            where = write_measured(stage, "cache-conformance", text)
            console.print(f"written: {where}")
    else:
        console.print(table(rows, stage.name))
    console.print(f"{'[green]✓[/]' if met else '[red]✗[/]'} {stage.name}: {claim}")
    for kind, test_id, name in failed:
        console.print(f"  {kind:<9} {test_id}: {name}", markup=False)
    if args.floor:
        passed, _, required = args.floor.partition(":")
        ours = rows[0]
        if ours["passed"] < int(passed) or ours["required"]["pass"] < int(required or 0):
            console.print(f"[red]below the floor {args.floor}[/]")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
