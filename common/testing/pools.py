"""Upstream pools described neutrally, for the LB contract, lb-bench and lb-chaos.

`RouteSpec` (gateway.py) says where a path goes; from stage 03 on its `upstream` may be
the name of a pool instead of a URL, and a `PoolSpec` says what that pool is: its
targets, how it balances and how it checks health. Each stage's
`tests/stage_config.render_pools(routes, pools, ...)` turns both into its own
gateway.toml, the same way `render(routes, ...)` does for plain routes, so the contract
never depends on a stage's config dialect.

`restart_backend` brings a stopped backend back on its old port: what "the target
recovers" means to a pool that knows it by address.
"""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.testing.processes import (
    HOST,
    Proc,
    backend_argv,
    child_env,
    listening_socket,
    wait_healthy,
)


@dataclass(frozen=True)
class TargetSpec:
    url: str  # scheme://host:port
    weight: int = 1


@dataclass(frozen=True)
class HealthSpec:
    """Active checks (probe `path` every `interval`) and passive ones (eject after
    `consecutive_failures` failed requests). Tests use short times so that ejection and
    recovery happen within a second or two."""

    active: bool = True
    path: str = "/health"
    interval: float = 0.2
    timeout: float = 0.2
    healthy_threshold: int = 1
    unhealthy_threshold: int = 1
    consecutive_failures: int = 3  # 0: no passive checks
    base_ejection_time: float = 1.0
    max_ejection_time: float = 5.0
    max_ejection_percent: int = 50


@dataclass(frozen=True)
class PoolSpec:
    """One upstream pool. `strategy` is round_robin, weighted_round_robin,
    least_connections or consistent_hash; the other settings belong to one of them."""

    targets: tuple[TargetSpec, ...]
    strategy: str = "round_robin"
    hash_key: str | None = None  # consistent_hash: header:NAME | cookie:NAME | client_ip | path
    virtual_nodes: int | None = None  # consistent_hash
    bounded_load: float | None = None  # consistent_hash
    choices: int | None = None  # least_connections: 2 = power of two choices
    health: HealthSpec = field(default_factory=HealthSpec)


def targets(*urls: str, weights: tuple[int, ...] | None = None) -> tuple[TargetSpec, ...]:
    """`targets(a.url, b.url, weights=(3, 1))`, the common case in one call."""
    weights = weights or (1,) * len(urls)
    return tuple(TargetSpec(url, w) for url, w in zip(urls, weights, strict=True))


def restart_backend(proc: Proc, *, log_dir: Path | None = None, wait: bool = True) -> Proc:
    """Start `proc`'s backend again on the same port, after it was stopped or killed.

    `spawn` always takes a fresh ephemeral port; a pool's target is an address, so a
    backend that "comes back" must come back where it was. The port is free again once
    the old process is gone (SO_REUSEADDR covers connections left in TIME_WAIT).
    """
    service, _, instance = proc.name.partition("-")
    sock = listening_socket(HOST, proc.port)
    log_dir = log_dir or proc.log_path.parent
    log_path = log_dir / f"{proc.name}-{proc.port}-restarted.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by Proc.stop
    try:
        popen = subprocess.Popen(
            [*backend_argv(service, instance or "a"), "--fd", str(sock.fileno())],
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
        )
    finally:
        sock.close()
    restarted = Proc(proc.name, proc.port, popen, log_path, proc.health_path, log_file)
    if wait:
        try:
            wait_healthy(restarted)
        except BaseException:
            restarted.stop()
            raise
    return restarted


def stage_render_pools(stage_dir: Path) -> Callable[..., str]:
    """`render_pools` from `stage_dir`/tests/stage_config.py: that stage's config dialect.

    For tools outside pytest (lb-bench, lb-chaos) that start a stage's gateway with pools
    of their own; loaded by path, so no stage's tests folder lands on sys.path.
    """
    path = stage_dir / "tests" / "stage_config.py"
    spec = importlib.util.spec_from_file_location(f"stage_config_{stage_dir.name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    render = getattr(module, "render_pools", None)
    if render is None:
        raise LookupError(f"{path} has no render_pools(): {stage_dir.name} has no upstream pools")
    return render  # type: ignore[no-any-return]
