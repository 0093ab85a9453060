"""Start a stage's gateway in a test, whatever that stage's config dialect is.

The contract tests describe routes neutrally (`RouteSpec`); each stage's
`tests/stage_config.py` has `render(routes, ...)` that turns them into its own
gateway.toml. Stage 01 writes `[[routes]] prefix/upstream`; a later stage may write
upstream pools or policies instead, and only its render() changes, not the contracts.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common.testing.processes import Proc, spawn

HEALTH_PATH = "/_gateway/health"


@dataclass(frozen=True)
class RouteSpec:
    """One route: requests under `prefix` go to `upstream` (a base URL)."""

    prefix: str
    upstream: str
    strip_prefix: bool = False
    preserve_host: bool = False


def start_gateway(
    stage_dir: Path, config_text: str, tmp_path: Path, *args: str, wait: bool = True
) -> Proc:
    """Write `config_text` to a file and run `python -m gateway --config <file> --fd N ...`.

    The gateway runs from `stage_dir`, so `import gateway` finds that stage's package;
    its log goes to `tmp_path`, and a failed start raises with the log's last lines.
    """
    # A fresh file per gateway: a test may start several in one tmp_path.
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", prefix="gateway-", suffix=".toml", dir=tmp_path, delete=False
    ) as file:
        file.write(config_text)
    config = Path(file.name)
    return spawn(
        f"gateway-{stage_dir.name}",
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        cwd=stage_dir,
        health_path=HEALTH_PATH,
        log_dir=tmp_path,
        wait=wait,
    )
