"""`make observability`'s helpers: the traffic trickle, and the extras the launcher starts
after the gateway (traffic, Prometheus when installed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.launch.config import REPO_ROOT, LaunchError, Stage, load_services
from common.launch.extras import extras_for
from common.testing.processes import Proc, child_env, start_backend

STAGE_08 = REPO_ROOT / "08_observability"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_backend("users", "a", log_dir=tmp_path_factory.mktemp("traffic"))
    yield proc
    proc.stop()


def test_the_trickle_keeps_its_rate_and_stops_by_itself(backend: Proc) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "common.traffic", backend.url, "/users/1", "/nothing",
         "--rate", "40", "--seconds", "1.5"],
        cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    # 40 a second for 1.5 s, the two paths in turn: 60, give or take a request at the edge.
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("traffic: done, "), done.stdout
    sent = int(last.split()[2])
    assert 55 <= sent <= 61, last
    assert "'200'" in last and "'404'" in last
    assert took < 10  # by itself, on time (the interpreter's start included)


def test_a_stage_asks_for_traffic_and_prometheus(tmp_path: Path) -> None:
    services = load_services(STAGE_08 / "services.toml")
    assert services.traffic is not None and services.prometheus is not None
    stage = Stage(name=STAGE_08.name, path=STAGE_08, services=services)
    extras, notes = extras_for(stage, tmp_path)
    traffic = next(e for e in extras if e.name == "traffic")
    assert traffic.argv[1:3] == ["-m", "common.traffic"]
    assert "http://127.0.0.1:8080" in traffic.argv and "/users/1" in traffic.argv
    quiet, _ = extras_for(stage, tmp_path, traffic=False)  # make observability TRAFFIC=0
    assert "traffic" not in [e.name for e in quiet]
    if shutil.which("prometheus") is None:
        assert any("not installed" in note for note in notes)
    else:
        prometheus = next(e for e in extras if e.name == "prometheus")
        config = (tmp_path / STAGE_08.name / "prometheus.yml").read_text()
        assert "127.0.0.1:8081" in config  # it scrapes the admin listener
        assert prometheus.url == "http://127.0.0.1:9090"


def test_a_bad_traffic_section_names_the_key(tmp_path: Path) -> None:
    file = tmp_path / "services.toml"
    file.write_text('[traffic]\nrate = 20.0\npaths = ["users"]\n')
    with pytest.raises(LaunchError, match=r"services.toml: traffic.paths\[0\]: .*got .users."):
        load_services(file)
