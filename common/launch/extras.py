"""What a stage may start beside its services once the gateway is healthy (stage 08 on):
a steady trickle of traffic, so that the dashboard moves, and a Prometheus server scraping
the admin listener, when a `prometheus` binary is installed.

They are helpers, not services: nothing waits on their health, their output goes to a log
file under the run directory (Prometheus is chatty), and they are stopped first. Like every
child they have PID files (`make stop-all` finds them) and go when the launcher goes, even
killed with SIGKILL (the kernel's parent-death signal, children.py). A missing Prometheus
is a note in the table, not a failure: the stage works without one.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from common.launch import pidfiles, sockets
from common.launch.children import _parent_death_signal as parent_death_signal
from common.launch.config import REPO_ROOT, Stage
from common.launch.sockets import HOST

STOP_TIMEOUT = 5.0


@dataclass
class Extra:
    name: str
    argv: list[str]
    url: str
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=parent_death_signal(),
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def extras_for(stage: Stage, run_dir: Path, traffic: bool = True) -> tuple[list[Extra], list[str]]:
    """The stage's extras, and notes for the table (e.g. that Prometheus is missing)."""
    services, gateway = stage.services, stage.services.gateway
    if gateway is None:
        return [], []
    where = pidfiles.stage_dir(run_dir, stage.name)
    where.mkdir(parents=True, exist_ok=True)
    extras, notes = [], []
    if (trickle := services.traffic) is not None and traffic:
        argv = [sys.executable, "-m", "common.traffic", f"http://{HOST}:{gateway.port}"]
        argv += [*trickle.paths, "--rate", str(trickle.rate), "--seconds", str(trickle.seconds)]
        extras.append(Extra("traffic", argv, f"{trickle.rate:g}/s", where / "traffic.log"))
    if (prometheus := services.prometheus) is not None and gateway.admin_port is not None:
        binary = shutil.which("prometheus")
        if binary is None:
            notes.append("Prometheus: not installed (sudo apt-get install prometheus), skipped")
        elif not _free(prometheus.port):
            notes.append(f"Prometheus: port {prometheus.port} is taken, skipped")
        else:
            config = where / "prometheus.yml"
            config.write_text(
                "global:\n"
                f"  scrape_interval: {prometheus.scrape_interval:g}s\n"
                "scrape_configs:\n"
                "  - job_name: gateway\n"
                f"    static_configs: [{{targets: ['{HOST}:{gateway.admin_port}']}}]\n"
            )
            url = f"http://{HOST}:{prometheus.port}"
            data = where / "prometheus"
            argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
                    f"--web.listen-address={HOST}:{prometheus.port}"]  # fmt: skip
            extras.append(Extra("prometheus", argv, url, where / "prometheus.log"))
    return extras, notes


def _free(port: int) -> bool:
    """Can `port` be bound now? (Prometheus binds it itself a moment later.)"""
    try:
        bound = sockets.bind_all([("prometheus", port)])
    except sockets.PortsBusy:
        return False
    for sock in bound.values():
        sock.close()
    return True
