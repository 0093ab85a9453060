"""A stage as `make <stage>` runs it, on ephemeral ports: for the demo.http tests.

`make <stage>` starts the backends of the stage's services.toml on fixed ports (9001...)
and its gateway on 8080 with the stage's own gateway.toml. A test must never take those
ports (a reader's `make lb` may hold them), so `running_stage` starts the same backends on
ephemeral ports and the same gateway.toml with every `http://127.0.0.1:<fixed port>`
swapped for the backend that stands in for it. What the reader runs is what is tested. A
fixed port that no backend of services.toml stands behind (stage 04's deliberately dead
target, :9009) becomes a port where connecting is refused, as it is for the reader.

`demo_cases(path)` turns a demo.http into pytest parameters, one per request, so a
request that answers the wrong status fails as itself: `test_demo_request[23. ...]`.
"""

from __future__ import annotations

import contextlib
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from common.contracts.upstreams import refused_port
from common.demo import DemoResult, load_demo, run_demo
from common.redisserver import spawn_redis
from common.testing.gateway import start_gateway
from common.testing.processes import HOST, Proc, spawn, start_backend, wait_healthy


@dataclass
class RunningStage:
    backends: dict[str, Proc]  # by services.toml name: "users-a"
    gateway: Proc
    services: dict[str, Any]  # services.toml, parsed
    idp: Proc | None = None  # stage 06 on: the identity provider (common/idp)
    # Every fixed port of services.toml -> the URL standing in for it (the module's doc).
    stand_ins: dict[int, str] = field(default_factory=dict)

    def localise(self, config_text: str) -> str:
        """Another config file of the stage (stage 09's gateway.next.toml) with the same
        stand-ins as the one the gateway was started with."""
        return re.sub(
            r"http://127\.0\.0\.1:(\d+)(?!\d)",
            lambda match: self.stand_ins[int(match.group(1))],
            config_text,
        )

    def run_demo(self, demo: Path) -> dict[int, DemoResult]:
        """Every request of `demo` against this stage, in order; keyed by its number.
        `{{gateway}}` is the public port, `{{admin}}` (stage 03 on) the admin listener."""
        where = {"gateway": self.gateway.url}
        if self.gateway.admin_port is not None:
            where["admin"] = self.gateway.admin_url
        if self.idp is not None:
            where["idp"] = self.idp.url
        return {r.request.number: r for r in run_demo(demo, where)}


@contextlib.contextmanager
def running_stage(stage_dir: Path, tmp_path: Path) -> Iterator[RunningStage]:
    services = tomllib.loads((stage_dir / "services.toml").read_text(encoding="utf-8"))
    started: list[Proc] = []
    refused = contextlib.ExitStack()
    try:
        by_port: dict[int, str] = {}  # fixed port in services.toml -> its stand-in's URL
        backends: dict[str, Proc] = {}
        for backend in services["backends"]:  # side by side: each FastAPI import is slow
            name = f"{backend['service']}-{backend['instance']}"
            proc = start_backend(
                backend["service"], backend["instance"], log_dir=tmp_path, wait=False
            )
            started.append(proc)
            backends[name] = proc
            by_port[backend["port"]] = proc.url
        idp = None
        if "idp" in services:  # stage 06 on; its issuer URL is its own, ephemeral, address
            argv = [sys.executable, "-m", "common.idp", "--secret", services["idp"]["secret"]]
            idp = spawn("idp", argv, log_dir=tmp_path, wait=False)
            started.append(idp)
            by_port[services["idp"]["port"]] = idp.url
        for proc in started:
            wait_healthy(proc)

        def stand_in(match: re.Match[str]) -> str:
            port = int(match.group(1))
            if port not in by_port:  # a dead target: one refusing stand-in per fixed port
                by_port[port] = f"http://{HOST}:{refused.enter_context(refused_port())}"
            return by_port[port]

        config = re.sub(
            r"http://127\.0\.0\.1:(\d+)(?!\d)",
            stand_in,
            (stage_dir / services["gateway"]["config"]).read_text(encoding="utf-8"),
        )
        args: list[str] = []
        if services["gateway"].get("redis"):  # as `make <stage>` runs it (common/launch)
            server = spawn_redis(tmp_path / "redis")
            refused.callback(server.stop)
            args = [
                "--redis-url",
                server.url,
                "--workers",
                str(services["gateway"].get("workers", 1)),
            ]
        gateway = start_gateway(stage_dir, config, tmp_path, *args)
        started.append(gateway)
        yield RunningStage(backends, gateway, services, idp, by_port)
    finally:
        for proc in reversed(started):
            proc.stop()
        refused.close()


def demo_cases(demo: Path) -> list[Any]:
    """One pytest parameter per request of `demo`: its number, with its title as the id."""
    return [
        pytest.param(request.number, id=f"{request.number}. {request.title}"[:60])
        for request in load_demo(demo).requests
    ]


def served_by(result: DemoResult) -> str:
    """`users/a` from `X-Served-By: users/a@9001`: which backend answered."""
    return (result.header("X-Served-By") or "-").partition("@")[0]
