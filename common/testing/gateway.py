"""Start a stage's gateway in a test or a tool, whatever that stage's config dialect is.

Tests describe the gateway they want neutrally (`common/testing/specs.py: GatewaySpec`);
each stage's `tests/stage_config.py` has `render(spec) -> str`, its own gateway.toml for
it. Inside a stage's pytest run that function is the `render` fixture; tools that run
outside pytest (the benches, lb-chaos) load it by path with `stage_render(stage_dir)`.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

from common.testing.processes import Proc, spawn
from common.testing.specs import GatewaySpec

HEALTH_PATH = "/_gateway/health"

Render = Callable[[GatewaySpec], str]


def start_gateway(
    stage_dir: Path,
    config_text: str,
    tmp_path: Path,
    *args: str,
    wait: bool = True,
    under: Sequence[str] = (),
    timeout: float = 20.0,
) -> Proc:
    """Write `config_text` to a file and run `python -m gateway --config <file> --fd N ...`.

    The gateway runs from `stage_dir`, so `import gateway` finds that stage's package;
    its log goes to `tmp_path`, and a failed start raises with the log's last lines. A
    stage whose services.toml gives the gateway an `admin_port` (stage 03 on) gets an
    admin socket too, and its health check is asked there (`Proc.admin_url`). `under`: a
    command the interpreter runs inside (valgrind, for common/bench/instructions.py).
    """
    has_admin, health = gateway_health(stage_dir)
    # A fresh file per gateway: a test may start several in one tmp_path.
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", prefix="gateway-", suffix=".toml", dir=tmp_path, delete=False
    ) as file:
        file.write(config_text)
    config = Path(file.name)
    return spawn(
        f"gateway-{stage_dir.name}",
        [*under, sys.executable, "-m", "gateway", "--config", str(config), *args],
        cwd=stage_dir,
        health_path=health,
        log_dir=tmp_path,
        wait=wait,
        admin=has_admin,
        timeout=timeout,
    )


def gateway_health(stage_dir: Path) -> tuple[bool, str]:
    """(does the stage's gateway have an admin listener, its health path), as the stage's
    services.toml says: what `make <stage>` waits for is what a test waits for."""
    services = stage_dir / "services.toml"
    if not services.is_file():
        return False, HEALTH_PATH
    gateway = tomllib.loads(services.read_text(encoding="utf-8")).get("gateway", {})
    return "admin_port" in gateway, gateway.get("health", HEALTH_PATH)


def stage_render(stage_dir: Path) -> Render:
    """`render` from `stage_dir`/tests/stage_config.py: that stage's config dialect.

    Loaded by path under a name of its own, so no stage's tests folder lands on sys.path
    and two stages' renderers can live in one process (their `gateway` packages cannot).
    """
    path = stage_dir / "tests" / "stage_config.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: it renders the stage's gateway.toml")
    spec = importlib.util.spec_from_file_location(f"stage_config_{stage_dir.name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    render = getattr(module, "render", None)
    if render is None:
        raise LookupError(f"{path} has no render(spec)")
    # the type ignore below: loaded from the stage's stage_config.py at run time
    return render  # type: ignore[no-any-return]
