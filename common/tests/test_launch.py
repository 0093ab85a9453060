"""The launcher behind `make <stage>` and `make stop-all`, driven as a user drives it.

Each test runs `python -m common.launch <tmp stage> --run-dir <tmp>` as a subprocess
against a services.toml in a temporary folder, with the real dummy backends on ephemeral
ports (port = 0). Readiness is observed the way a user would: the PID files appear, the
URLs they record answer /health, the launcher prints "Ctrl-C stops everything".

Every launcher gets a unique marker in its environment, which its children inherit, so
"no process left behind" is checked exactly (scan /proc for the marker), and teardown can
kill anything a test left without stopping a process by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.redisserver import ping
from common.testing.processes import REPO_ROOT, child_env

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc and PR_SET_PDEATHSIG"
)

MARKER = "LAUNCH_TEST_MARKER"
TIMEOUT = 30.0  # generous: two cores shared with other test runs


def backends_toml(*backends: tuple[str, str, int]) -> str:
    return "".join(
        f'[[backends]]\nservice = "{s}"\ninstance = "{i}"\nport = {p}\n\n' for s, i, p in backends
    )


def make_stage(root: Path, name: str, services_toml: str) -> Path:
    stage = root / name
    stage.mkdir(parents=True)
    (stage / "services.toml").write_text(services_toml)
    return stage


def cmdline_of(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [os.fsdecode(a) for a in raw.split(b"\0")[:-1]] or None  # zombie: empty


def running(record: dict[str, Any]) -> bool:
    """The recorded process is alive and still runs the recorded command line."""
    return bool(cmdline_of(record["pid"]) == record["cmdline"])


def processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose environment carries `marker` (zombies excluded)."""
    found = []
    needle = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and cmdline_of(
                int(entry.name)
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# the type ignore below: returns whatever `condition` returns
def poll(condition, timeout: float = TIMEOUT, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Call `condition` until it returns something truthy (polling observable state)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def health(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url + "/health", timeout=5) as resp:
        return resp.status, resp.headers.get("X-Served-By", "")


class Launcher:
    """One `python -m common.launch` process and what it printed."""

    def __init__(self, tmp_path: Path, args: list[str]) -> None:
        self.marker = uuid.uuid4().hex
        self.run_dir = tmp_path / "run"
        self.log_path = tmp_path / f"launcher-{self.marker[:8]}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in close()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "common.launch", *args],
            cwd=REPO_ROOT,
            env=child_env({MARKER: self.marker, "COLUMNS": "200"}),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group, like a job in a terminal: Ctrl-C can then be sent
            # the way a terminal sends it, to the whole foreground group.
            start_new_session=True,
        )

    def ctrl_c(self) -> None:
        """What pressing Ctrl-C does: SIGINT to every process in the foreground group."""
        os.killpg(self.popen.pid, signal.SIGINT)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def records(self, stage: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for path in (self.run_dir / stage).glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                found[path.stem] = json.loads(path.read_text())
        return found

    def wait_ready(self, stage: str, names: list[str]) -> dict[str, dict[str, Any]]:
        """PID files for the launcher and `names`, each URL healthy, the table printed."""

        def ready() -> dict[str, dict[str, Any]] | None:
            assert self.popen.poll() is None, f"launcher exited early:\n{self.output}"
            records = self.records(stage)
            if not {"launcher", *names} <= records.keys():
                return None
            if "Ctrl-C stops everything" not in self.output:
                return None
            return records

        records: dict[str, dict[str, Any]] = poll(ready, what=f"{stage} to be ready")
        for name in names:
            if name != "gateway":  # a gateway's health path is its own
                assert health(records[name]["url"])[0] == 200
        return records

    def wait(self) -> int:
        try:
            return self.popen.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"launcher did not exit:\n{self.output}") from None

    def close(self) -> None:
        """Teardown: whatever this launcher or its children left running is killed."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        for pid in processes_with(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._log.close()


# The `launch` fixture: start a launcher with these arguments; closed after the test.
Launch = Callable[..., "Launcher"]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    started: list[Launcher] = []

    def start(*args: str | Path) -> Launcher:
        launcher = Launcher(tmp_path, [str(a) for a in args])
        started.append(launcher)
        return launcher

    yield start
    for launcher in started:
        launcher.close()


def launched_on_a_free_port(
    launch: Launch,
    tmp_path: Path,
    name: str,
    services_for: Callable[[int], str],
    names: list[str],
) -> tuple[Launcher, int, dict[str, dict[str, Any]]]:
    """Stage `name`, whose services.toml names a fixed port picked here, launched and ready.

    The port is picked by binding port 0 and letting it go, and the launcher binds it a
    moment later; in between any connect() on the machine may take it as its source port,
    and the launcher then refuses it as busy. That is not what these tests are about: on
    that refusal, try again on another port (three times at most).
    """
    for attempt in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        stage = make_stage(tmp_path / f"attempt-{attempt}", name, services_for(port))
        launcher = launch(stage, "--run-dir", tmp_path / "run")
        try:
            return launcher, port, launcher.wait_ready(name, names)
        except AssertionError:
            if launcher.popen.poll() is None or "already in use" not in launcher.output:
                raise
    raise AssertionError("three ports in a row were taken before the launcher bound them")


def run_launcher(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """A launcher expected to exit on its own (bad input): its status and output."""
    return subprocess.run(
        [sys.executable, "-m", "common.launch", *map(str, args)],
        cwd=REPO_ROOT,
        env=child_env({"COLUMNS": "200"}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


# --- Start and stop --------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_starts_backends_and_stops_them_on_a_signal(
    tmp_path: Path, launch: Launch, sig: int
) -> None:
    stage = make_stage(tmp_path, "10_pair", backends_toml(("users", "a", 0), ("orders", "b", 0)))
    # A PID file left behind by a launcher killed with SIGKILL: cleaned up at launch.
    ghost = subprocess.Popen([sys.executable, "-c", "pass"])
    ghost.wait()
    stale = tmp_path / "run" / "10_pair" / "users-a.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(
        json.dumps(
            {"pid": ghost.pid, "name": "users-a", "url": None, "cmdline": ["gone"], "started": 0}
        )
    )

    launcher = launch(stage, "--run-dir", tmp_path / "run")
    records = launcher.wait_ready("10_pair", ["users-a", "orders-b"])

    assert "removed stale PID file users-a.json" in launcher.output
    assert records["launcher"]["pid"] == launcher.popen.pid
    for name, served_by in (("users-a", "users/a"), ("orders-b", "orders/b")):
        status, header = health(records[name]["url"])
        assert status == 200
        assert header.split("@")[0] == served_by
        assert running(records[name])
        assert records[name]["url"] in launcher.output  # the ready table

    if sig == signal.SIGINT:
        launcher.ctrl_c()  # the children must not get it: the launcher stops them in order
    else:
        launcher.popen.terminate()

    assert launcher.wait() == 0, launcher.output
    assert f"{signal.Signals(sig).name} received" in launcher.output
    assert "users-a stopped (exited with code 0)" in launcher.output
    assert not any(running(r) for r in records.values())
    assert not processes_with(launcher.marker)
    assert not list((tmp_path / "run").rglob("*.json"))


def test_redis_starts_a_private_server_and_stops_it_with_the_stage(
    tmp_path: Path, launch: Launch
) -> None:
    """`make cache REDIS=1`: a Redis server of the stage's own, recorded like a child (so
    stop-all finds it), data under the run dir, and gone with the launcher, even one
    killed with SIGKILL."""
    stage = make_stage(tmp_path, "11_shared", backends_toml(("users", "a", 0)))
    launcher = launch(stage, "--run-dir", tmp_path / "run", "--redis")
    records = launcher.wait_ready("11_shared", ["users-a"])  # redis.json is written first
    port = int(records["redis"]["url"].rsplit(":", 1)[1].split("/")[0])
    assert ping(port)
    assert (tmp_path / "run" / "11_shared" / "redis" / "server.log").is_file()
    assert "redis (" in launcher.output and records["redis"]["url"] in launcher.output
    # ...and in the table of what runs, with its PID, like every other child.
    table_rows = [line for line in launcher.output.splitlines() if "│ redis" in line]
    assert table_rows and str(records["redis"]["pid"]) in table_rows[0], launcher.output

    launcher.popen.kill()  # SIGKILL: no cleanup runs, and still the server goes with it

    launcher.wait()
    poll(lambda: not running(records["redis"]) or None, what="redis to follow the launcher")
    assert not ping(port)


def test_the_identity_provider_starts_with_the_backends_and_stops_with_them(
    tmp_path: Path, launch: Launch
) -> None:
    """Stage 06's [idp]: the demo identity provider, on its port, recorded like a child."""
    secret = "s" * 64

    def idp_on(port: int) -> str:  # a fixed port for the IdP, whose issuer URL names it
        return backends_toml(("users", "a", 0)) + f'[idp]\nport = {port}\nsecret = "{secret}"\n'

    launcher, port, records = launched_on_a_free_port(
        launch, tmp_path, "12_idp", idp_on, ["users-a", "idp"]
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/.well-known/openid-configuration",
                                timeout=5) as response:  # fmt: skip
        assert json.load(response)["issuer"] == f"http://127.0.0.1:{port}"
    launcher.popen.terminate()
    assert launcher.wait() == 0, launcher.output
    assert "idp stopped (exited with code 0)" in launcher.output
    assert not running(records["idp"])


def test_an_idp_port_used_twice_is_a_config_error(tmp_path: Path) -> None:
    toml = backends_toml(("users", "a", 9701)) + '[idp]\nport = 9701\nsecret = "' + "s" * 64 + '"\n'
    result = run_launcher(tmp_path, make_stage(tmp_path, "13_clash", toml))
    assert result.returncode == 2
    assert "idp.port: port 9701 is already used by users-a" in result.stderr


def test_a_second_launch_of_a_running_stage_is_refused(tmp_path: Path, launch: Launch) -> None:
    stage = make_stage(tmp_path, "11_once", backends_toml(("users", "a", 0)))
    first = launch(stage, "--run-dir", tmp_path / "run")
    records = first.wait_ready("11_once", ["users-a"])

    second = run_launcher(tmp_path, stage, "--run-dir", tmp_path / "run")

    assert second.returncode == 2
    assert "already running" in second.stderr
    assert str(records["launcher"]["pid"]) in second.stderr
    assert "make stop-all" in second.stderr
    assert running(records["users-a"])  # the first launch is untouched
    first.popen.terminate()
    assert first.wait() == 0


def test_ctrl_c_stops_the_gateway_before_the_backends(tmp_path: Path, launch: Launch) -> None:
    """A stand-in gateway records whether its backend was up when it started and when it
    was asked to stop: both must be true (started after, stopped before the backends).
    It also says so if Ctrl-C reaches it directly: only the launcher may get it."""
    stage = make_stage(
        tmp_path,
        "12_gated",
        backends_toml(("users", "a", 0))
        + '[gateway]\nport = 0\nconfig = "gateway.toml"\nhealth = "/_gateway/health"\n',
    )
    (stage / "gateway.toml").write_text(
        f'users = "{tmp_path / "run" / "12_gated" / "users-a.json"}"\n'
    )
    (stage / "gateway").mkdir()
    (stage / "gateway" / "__main__.py").write_text(STAND_IN_GATEWAY)

    launcher = launch(stage, "--run-dir", tmp_path / "run")
    records = launcher.wait_ready("12_gated", ["users-a", "gateway"])
    # The stand-in answers 404 on /health: the launcher must have used the configured path.
    assert health(records["gateway"]["url"] + "/_gateway")[0] == 200
    launcher.ctrl_c()

    assert launcher.wait() == 0, launcher.output
    assert "gateway got SIGINT" not in launcher.output
    assert "gateway | backend up at start: True" in launcher.output
    assert "gateway | backend up at stop: True" in launcher.output
    out = launcher.output
    assert out.index("gateway stopped") < out.index("users-a stopped")


STAND_IN_GATEWAY = textwrap.dedent(
    '''
    """A stand-in for a stage's gateway: `python -m gateway --config C --fd N`."""
    import argparse, http.server, json, signal, socket, sys, tomllib, urllib.request

    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--fd", type=int)
    args = parser.parse_args()
    with open(args.config, "rb") as f:
        pid_file = tomllib.load(f)["users"]

    def backend_up():
        with open(pid_file) as f:
            url = json.load(f)["url"]
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path.startswith("/_gateway") else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    def stop(signum, frame):
        print("backend up at stop:", backend_up(), flush=True)
        sys.exit(0)

    def interrupted(signum, frame):
        print("gateway got SIGINT", flush=True)
        sys.exit(1)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, interrupted)
    print("backend up at start:", backend_up(), flush=True)
    server = http.server.HTTPServer(("127.0.0.1", 0), Health, bind_and_activate=False)
    server.socket = socket.socket(fileno=args.fd)
    server.serve_forever()
    '''
)


# --- Children that fail ----------------------------------------------------------------


def test_a_backend_that_dies_is_reported_and_the_others_keep_running(
    tmp_path: Path, launch: Launch
) -> None:
    stage = make_stage(tmp_path, "20_crash", backends_toml(("users", "a", 0), ("users", "b", 0)))
    launcher = launch(stage, "--run-dir", tmp_path / "run")
    records = launcher.wait_ready("20_crash", ["users-a", "users-b"])

    os.kill(records["users-b"]["pid"], signal.SIGKILL)

    poll(lambda: "make restart NAME=users-b" in launcher.output, what="the report")
    assert "users-b was killed by SIGKILL while running" in launcher.output
    assert launcher.popen.poll() is None  # the stage goes on
    assert health(records["users-a"]["url"])[0] == 200
    assert "users-b" not in launcher.records("20_crash")  # its PID file went with it

    launcher.popen.terminate()
    assert launcher.wait() == 0, launcher.output
    assert "users-a stopped" in launcher.output
    assert not processes_with(launcher.marker)


def test_restart_brings_a_dead_backend_back_on_its_port(tmp_path: Path, launch: Launch) -> None:
    stage = make_stage(tmp_path, "22_again", backends_toml(("users", "a", 0), ("users", "b", 0)))
    launcher = launch(stage, "--run-dir", tmp_path / "run")
    records = launcher.wait_ready("22_again", ["users-a", "users-b"])
    os.kill(records["users-b"]["pid"], signal.SIGKILL)
    poll(lambda: "make restart NAME=users-b" in launcher.output, what="the report")

    result = run_launcher(tmp_path, "--restart", "users-b", "--run-dir", tmp_path / "run")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"users-b is back on {records['users-b']['url']}" in result.stdout
    back = launcher.records("22_again")["users-b"]
    assert back["url"] == records["users-b"]["url"] and back["pid"] != records["users-b"]["pid"]
    assert health(back["url"])[0] == 200  # answering, on its old port
    assert running(back)
    # A running backend can be restarted too: stopped first, then started again.
    again = run_launcher(tmp_path, "--restart", "users-b", "--run-dir", tmp_path / "run")
    assert again.returncode == 0, again.stdout + again.stderr
    assert launcher.records("22_again")["users-b"]["pid"] != back["pid"]
    launcher.popen.terminate()
    assert launcher.wait() == 0, launcher.output
    assert not processes_with(launcher.marker)


def test_restart_of_an_unknown_name_says_what_runs(tmp_path: Path, launch: Launch) -> None:
    stage = make_stage(tmp_path, "23_names", backends_toml(("users", "a", 0)))
    launcher = launch(stage, "--run-dir", tmp_path / "run")
    launcher.wait_ready("23_names", ["users-a"])
    result = run_launcher(tmp_path, "--restart", "users-z", "--run-dir", tmp_path / "run")
    assert result.returncode == 2
    assert "no running stage has a process named 'users-z'" in result.stderr
    assert "23_names (users-a)" in result.stderr
    launcher.popen.terminate()
    assert launcher.wait() == 0


def test_the_gateway_dying_stops_the_stage(tmp_path: Path, launch: Launch) -> None:
    stage = make_stage(
        tmp_path,
        "24_gone",
        backends_toml(("users", "a", 0))
        + '[gateway]\nport = 0\nconfig = "gateway.toml"\nhealth = "/_gateway/health"\n',
    )
    (stage / "gateway.toml").write_text(
        f'users = "{tmp_path / "run" / "24_gone" / "users-a.json"}"\n'
    )
    (stage / "gateway").mkdir()
    (stage / "gateway" / "__main__.py").write_text(STAND_IN_GATEWAY)
    launcher = launch(stage, "--run-dir", tmp_path / "run")
    records = launcher.wait_ready("24_gone", ["users-a", "gateway"])

    os.kill(records["gateway"]["pid"], signal.SIGKILL)

    assert launcher.wait() == 1, launcher.output
    assert "gateway was killed by SIGKILL while running" in launcher.output
    assert "users-a stopped" in launcher.output
    assert not processes_with(launcher.marker)
    assert not list((tmp_path / "run").rglob("*.json"))


def test_a_stage_without_a_gateway_ends_with_its_last_backend(
    tmp_path: Path, launch: Launch
) -> None:
    stage = make_stage(tmp_path, "25_alone", backends_toml(("users", "a", 0)))
    launcher = launch(stage, "--run-dir", tmp_path / "run")
    records = launcher.wait_ready("25_alone", ["users-a"])
    os.kill(records["users-a"]["pid"], signal.SIGKILL)
    assert launcher.wait() == 1, launcher.output
    assert "users-a was killed by SIGKILL while running" in launcher.output


def test_a_child_failing_at_start_is_reported_with_its_output(
    tmp_path: Path, launch: Launch
) -> None:
    stage = make_stage(tmp_path, "21_typo", backends_toml(("users", "a", 0), ("nosuch", "a", 0)))
    launcher = launch(stage, "--run-dir", tmp_path / "run")

    assert launcher.wait() == 1, launcher.output
    out = launcher.output
    assert "nosuch-a exited with code 2 before it answered GET /health" in out
    assert "lines of nosuch-a:" in out
    report = out[out.index("lines of nosuch-a:") :]
    assert "invalid choice: 'nosuch'" in report  # argparse's message, from the child's log
    assert not processes_with(launcher.marker)
    assert not list((tmp_path / "run").rglob("*.json"))


def test_children_do_not_outlive_a_launcher_killed_with_sigkill(
    tmp_path: Path, launch: Launch
) -> None:
    stage = make_stage(tmp_path, "22_orphans", backends_toml(("users", "a", 0)))
    launcher = launch(stage, "--run-dir", tmp_path / "run")
    records = launcher.wait_ready("22_orphans", ["users-a"])

    launcher.popen.kill()  # no cleanup runs in the launcher: the kernel does it (PDEATHSIG)
    launcher.popen.wait()

    poll(lambda: not processes_with(launcher.marker), what="the orphaned backend to exit")
    # Its PID files stay behind; stop-all finds them stale and removes them.
    result = run_launcher(tmp_path, "--stop-all", "--run-dir", tmp_path / "run")
    assert result.returncode == 0
    assert f"process {records['users-a']['pid']} is gone" in result.stdout
    assert not list((tmp_path / "run").rglob("*.json"))


# --- Bad input: exit 2, a precise message, nothing started -----------------------------


def test_a_busy_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stage = make_stage(
            tmp_path, "30_busy", backends_toml(("users", "a", 0), ("users", "b", port))
        )
        result = run_launcher(tmp_path, stage, "--run-dir", tmp_path / "run")

    assert result.returncode == 2
    assert f"port {port} (users-b) is already in use" in result.stderr
    assert "nothing was started" in result.stderr
    assert result.stdout == ""  # no child ever printed a line
    assert not list((tmp_path / "run").rglob("*.json"))


def test_ports_held_by_another_running_stage_name_it_and_the_way_out(
    tmp_path: Path, launch: Launch
) -> None:
    """The usual busy port: the reader left the previous stage running. One line naming
    it and `make stop-all`, not a line per port."""
    first, port, records = launched_on_a_free_port(
        launch, tmp_path, "31_first", lambda port: backends_toml(("users", "a", port)), ["users-a"]
    )
    second = make_stage(tmp_path, "32_second", backends_toml(("users", "a", port)))
    result = run_launcher(tmp_path, second, "--run-dir", tmp_path / "run")
    assert result.returncode == 2
    pid = records["launcher"]["pid"]
    assert f"held by 31_first (launcher PID {pid}): `make stop-all` stops it" in result.stderr
    assert "already in use" not in result.stderr


def test_when_everything_is_up_it_says_what_to_do_next(tmp_path: Path, launch: Launch) -> None:
    stage = make_stage(tmp_path, "33_next", backends_toml(("users", "a", 0)))
    (stage / "demo.http").write_text(
        "@users = http://127.0.0.1:9001\n\n### 1. a\n# expect: 200\nGET {{users}}/health\n"
    )
    launcher = launch(stage, "--run-dir", tmp_path / "run")
    launcher.wait_ready("33_next", ["users-a"])
    assert "demo.http in VS Code" in launcher.output
    assert "python -m common.demo" in launcher.output and "33_next/demo.http" in launcher.output


def test_an_unknown_stage_lists_the_known_ones(tmp_path: Path) -> None:
    for name in ("00_alpha", "01_beta", "notes"):
        make_stage(tmp_path, name, backends_toml(("users", "a", 0)))
    (tmp_path / "02_empty").mkdir()  # a stage name, but nothing to start

    by_path = run_launcher(tmp_path, tmp_path / "07_missing")
    by_name = run_launcher(tmp_path, "99_no_such_stage")

    assert by_path.returncode == 2
    assert "unknown stage" in by_path.stderr and "07_missing" in by_path.stderr
    assert "known stages in" in by_path.stderr and "00_alpha, 01_beta" in by_path.stderr
    assert "notes" not in by_path.stderr and "02_empty" not in by_path.stderr
    assert by_name.returncode == 2
    assert "unknown stage '99_no_such_stage'" in by_name.stderr
    assert "Traceback" not in by_path.stderr + by_name.stderr


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (backends_toml(("users", "a", 70000)), "backends[0].port: Input should be less than"),
        (backends_toml(("users", "a", 0)) + "prot = 1\n", "backends[0].prot: Extra inputs"),
        ('[[backends]]\nservice = "users"\nport = 0\n', "backends[0].instance: Field required"),
        ('[gateway]\nport = "8080"\n', "gateway.port: Input should be a valid integer"),
        (backends_toml(("users", "a", 0), ("users", "a", 0)), "backends[1]: users-a is already"),
        ("[[backends]\n", "not valid TOML"),
    ],
    ids=["range", "unknown-key", "missing-key", "type", "duplicate", "syntax"],
)
def test_a_bad_services_toml_names_file_key_and_reason(
    tmp_path: Path, toml: str, expected: str
) -> None:
    stage = make_stage(tmp_path, "40_bad", toml)

    result = run_launcher(tmp_path, stage, "--run-dir", tmp_path / "run")

    assert result.returncode == 2
    # The launcher (run in the repo) shows a path below it relative to it: the tests'
    # TMPDIR may be inside the clone, as in CI. Any other path as it is.
    path = stage / "services.toml"
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    assert f"{shown}: " in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


# --- make stop-all ---------------------------------------------------------------------


def test_stop_all_stops_launchers_and_leaves_strangers_alone(
    tmp_path: Path, launch: Launch
) -> None:
    run_dir = tmp_path / "run"
    stage = make_stage(tmp_path, "50_stopme", backends_toml(("users", "a", 0), ("orders", "a", 0)))
    launcher = launch(stage, "--run-dir", run_dir)
    records = launcher.wait_ready("50_stopme", ["users-a", "orders-a"])

    # Two stale records: a process that has exited, and a live process (ours) whose PID
    # the file names but whose command line is not the recorded one (a reused PID).
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    stranger = subprocess.Popen(["sleep", "60"])
    stale_dir = run_dir / "51_stale"
    stale_dir.mkdir()
    backend_cmd = [sys.executable, "-m", "common.backends", "--service", "users", "--fd", "3"]
    for name, pid in (("gone", exited.pid), ("reused", stranger.pid)):
        record = {"pid": pid, "name": name, "url": None, "cmdline": backend_cmd, "started": 0}
        (stale_dir / f"{name}.json").write_text(json.dumps(record))

    try:
        result = run_launcher(tmp_path, "--stop-all", "--run-dir", run_dir)

        assert result.returncode == 0, result.stdout + result.stderr
        assert launcher.wait() == 0, launcher.output
        assert "SIGTERM received" in launcher.output  # stopped like Ctrl-C: in order
        assert not any(running(r) for r in records.values())
        assert not processes_with(launcher.marker)
        assert stranger.poll() is None, "a process with a reused PID was signalled"
        assert f"process {exited.pid} is gone" in result.stdout
        assert f"PID {stranger.pid} now belongs to another process" in result.stdout
        assert "stopped by its launcher" in result.stdout
        assert not list(run_dir.rglob("*.json"))
    finally:
        stranger.kill()
        stranger.wait()


def test_stop_all_with_nothing_running(tmp_path: Path) -> None:
    result = run_launcher(tmp_path, "--stop-all", "--run-dir", tmp_path / "run")

    assert result.returncode == 0
    assert "Nothing to stop" in result.stdout


def test_a_live_config_runs_on_a_fresh_copy_under_the_run_dir(
    tmp_path: Path, launch: Launch
) -> None:
    """Stage 09's `live_config`: the gateway gets a copy of its config under the run dir
    (the reader edits that one and reloads), made fresh at every start, and the table
    says where it is; the stage's own file stays as it was."""
    stage = make_stage(
        tmp_path,
        "25_live",
        backends_toml(("users", "a", 0))
        + '[gateway]\nport = 0\nconfig = "gateway.toml"\nhealth = "/_gateway/health"\n'
        + "live_config = true\n",
    )
    original = f'users = "{tmp_path / "run" / "25_live" / "users-a.json"}"\n'
    (stage / "gateway.toml").write_text(original)
    copy = tmp_path / "run" / "25_live" / "gateway.toml"
    copy.parent.mkdir(parents=True)
    copy.write_text("left over from an earlier run\n")
    (stage / "gateway").mkdir()
    (stage / "gateway" / "__main__.py").write_text(STAND_IN_GATEWAY)
    launcher = launch(stage, "--run-dir", tmp_path / "run")
    records = launcher.wait_ready("25_live", ["users-a", "gateway"])
    argv = cmdline_of(records["gateway"]["pid"]) or []
    assert argv[argv.index("--config") + 1] == str(copy), argv
    assert copy.read_text() == original == (stage / "gateway.toml").read_text()
    assert "(a copy: edit it, then POST /reload or SIGHUP)" in launcher.output
