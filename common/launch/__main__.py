"""`python -m common.launch 00_services` runs a stage; `--stop-all` stops what runs;
`--restart users-b` brings back a backend of the running stage (make restart NAME=...).

Exit status: 0 after a requested stop (Ctrl-C, SIGTERM, --stop-all) or a restart that
worked, 1 when a child failed (or did not come back), 2 for bad input (unknown stage,
invalid services.toml, busy port, stage already running, no such backend running): the
convention of argparse and most Unix tools.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from common.launch import output, pidfiles, restart, sockets
from common.launch.children import _parent_death_signal as parent_death_signal
from common.launch.config import REPO_ROOT, LaunchError, load_stage
from common.launch.stop_all import stop_all
from common.launch.supervisor import ADMIN, IDP, Supervisor
from common.redisserver import RedisUnavailable, spawn_redis


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m common.launch",
        description="Start a stage's backends and gateway (make <stage>), or stop them all.",
    )
    parser.add_argument(
        "stage", nargs="?", help="a stage folder under the repo root (00_services) or a path"
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=REPO_ROOT / ".run",
        help="where PID files live (default: %(default)s)",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="stage 05 on: start a private Redis and two gateway workers sharing it"
        " (a stage whose services.toml says redis = true always has its Redis)",
    )
    parser.add_argument(
        "--workers", type=int, help="gateway processes (default: services.toml, or 2 with --redis)"
    )
    parser.add_argument(
        "--no-traffic",
        action="store_true",
        help="stage 08 on: without the trickle of traffic services.toml asks for",
    )
    parser.add_argument(
        "--stop-all",
        action="store_true",
        help="stop every process recorded under the run dir, launchers first",
    )
    parser.add_argument(
        "--restart",
        metavar="NAME",
        help="start backend NAME (e.g. users-b) of the running stage again, on its port",
    )
    args = parser.parse_args(argv)
    if (args.stop_all or args.restart) and args.stage:
        parser.error("--stop-all and --restart take no stage: they act on what runs")
    if args.stop_all and args.restart:
        parser.error("--stop-all or --restart, not both")
    if not (args.stop_all or args.restart or args.stage):
        parser.error("name a stage to start (e.g. 00_services), or pass --stop-all")
    return args


def launch(
    stage_arg: str,
    run_dir: Path,
    redis: bool = False,
    workers: int | None = None,
    traffic: bool = True,
) -> int:
    try:
        stage = load_stage(stage_arg)
        children = [b.name for b in stage.services.backends]
        if stage.services.idp is not None:
            children.append(IDP)
        launcher_pid_file, notes = pidfiles.claim_stage(run_dir, stage.name, children=children)
    except LaunchError as e:
        output.error(str(e))
        return 2
    for note in notes:
        output.info(note)
    try:
        wanted = [(b.name, b.port) for b in stage.services.backends]
        if stage.services.idp is not None:
            wanted.append((IDP, stage.services.idp.port))
        gateway = stage.services.gateway
        if gateway is not None:
            wanted.append(("gateway", gateway.port))
            if gateway.admin_port is not None:
                wanted.append((ADMIN, gateway.admin_port))
        try:
            bound = sockets.bind_all(wanted)  # before any child exists: all or nothing
        except sockets.PortsBusy as e:
            holder = holding_stage(run_dir, e.ports)
            if holder is not None and len(e.ports) == len(str(e).splitlines()):
                # The usual case, another stage still up: one line, not one per port.
                output.error(f"the ports are held by {holder}: `make stop-all` stops it")
            else:
                output.error(str(e))
                if holder is not None:
                    output.error(f"some are held by {holder}: `make stop-all` stops it")
            output.error("nothing was started")
            return 2
        # Two workers on one port, one cache: what a request meets is the same whichever
        # worker takes it (make cache REDIS=1). A stage's services.toml may ask for Redis
        # itself (07: its limits are shared state) and says how many workers.
        redis = redis or (gateway is not None and gateway.redis)
        count = workers or (gateway.workers if gateway is not None and gateway.redis else 2)
        if not redis:
            extra = [] if workers in (None, 1) else ["--workers", str(workers)]
            supervisor = Supervisor(stage, bound, run_dir, gateway_args=extra, traffic=traffic)
            return asyncio.run(supervisor.run())
        try:
            with shared_redis(run_dir, stage.name) as url:
                extra = ["--redis-url", url, "--workers", str(count)]
                supervisor = Supervisor(
                    stage, bound, run_dir, gateway_args=extra, redis_url=url, traffic=traffic
                )
                return asyncio.run(supervisor.run())
        except RedisUnavailable as e:
            output.error(str(e))
            output.error("nothing was started")
            return 2
    finally:
        pidfiles.remove(launcher_pid_file)


def holding_stage(run_dir: Path, ports: list[int]) -> str | None:
    """A stage a launcher of this checkout runs now that holds some of `ports`
    ("05_cache_layer (launcher PID 4242)"), or None: whoever else holds them, `ss -ltnp`
    has to say. Its children's PID files record their URLs, hence their ports; the admin
    listener has no record of its own, so a stage that holds the others is taken to hold
    it too."""
    for launcher in sorted(run_dir.glob(f"*/{pidfiles.LAUNCHER}.json")):
        record = pidfiles.read(launcher)
        if record is None or pidfiles.stale_reason(record) is not None:
            continue
        held = set()
        for path in launcher.parent.glob("*.json"):
            child = pidfiles.read(path)
            if child is not None and child.url and pidfiles.stale_reason(child) is None:
                held.add(urlsplit(child.url).port)
        if held.intersection(ports):  # ports of one stage: whoever holds one holds them
            return f"{launcher.parent.name} (launcher PID {record.pid})"
    return None


@contextlib.contextmanager
def shared_redis(run_dir: Path, stage: str) -> Iterator[str]:
    """A private Redis for the stage (data and log under .run/<stage>/redis), recorded
    like the other children so that `make stop-all` stops it too."""
    # Like the launcher's other children, it goes when the launcher goes, even by SIGKILL.
    server = spawn_redis(
        pidfiles.stage_dir(run_dir, stage) / "redis", preexec_fn=parent_death_signal()
    )
    path = pidfiles.pid_path(run_dir, stage, "redis")
    cmdline = pidfiles.process_cmdline(server.popen.pid) or []
    pidfiles.write(path, pidfiles.record_for(server.popen.pid, "redis", server.url, cmdline))
    output.info(f"redis ({server.binary.name}) on {server.url}, data in {server.data_dir}")
    try:
        yield server.url
    finally:
        server.stop()
        pidfiles.remove(path)


def restart_backend(name: str, run_dir: Path) -> int:
    try:
        answer = restart.request(run_dir, name)
    except LaunchError as e:
        output.error(str(e))
        return 2
    if not answer.startswith("ok "):
        output.error(answer)
        return 1
    _, pid, url = answer.split()
    output.info(f"{name} is back on {url} (PID {pid})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.stop_all:
            return stop_all(args.run_dir)
        if args.restart:
            return restart_backend(args.restart, args.run_dir)
        return launch(
            args.stage, args.run_dir, redis=args.redis, workers=args.workers,
            traffic=not args.no_traffic,
        )  # fmt: skip
    except KeyboardInterrupt:
        # Ctrl-C before the supervisor's own handler is installed (or --stop-all):
        # nothing of ours is running yet, so just leave quietly.
        return 130


if __name__ == "__main__":
    sys.exit(main())
