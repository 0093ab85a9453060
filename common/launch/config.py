"""Find a stage folder and load its services.toml into a validated model.

Every error here is a `LaunchError` whose message names the file, the key and the reason,
because the person reading it is editing that file right now: "services.toml:
backends[1].port: Input should be less than or equal to 65535 (got 70000)" beats a
pydantic traceback.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES_FILE = "services.toml"

# A stage is a folder such as `03_load_balancing`: two digits, an underscore, a name.
STAGE_NAME = re.compile(r"^\d\d_[a-z_]+$")


class LaunchError(Exception):
    """Bad input (stage, services.toml, busy port): printed as is, exit status 2."""


# strict=True: TOML already has types, so `port = "9001"` is a mistake worth reporting
# rather than a string to coerce. extra="forbid": a misspelt key (`prot = 9001`) fails
# loudly instead of being ignored and leaving the default in place.
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Port = Annotated[int, Field(ge=0, le=65535)]


class BackendSpec(_Strict):
    # The launcher does not keep its own list of services: `python -m common.backends`
    # owns that list and rejects an unknown one at start, with its own message.
    service: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    instance: Annotated[str, Field(pattern=r"^[a-z0-9]+$")]
    port: Port

    @property
    def name(self) -> str:
        return f"{self.service}-{self.instance}"


class GatewaySpec(_Strict):
    port: Port
    config: Annotated[str, Field(min_length=1)]
    # Stage 03 on: the admin listener's port. When there is one, `health` is asked there.
    admin_port: Port | None = None
    health: Annotated[str, Field(pattern=r"^/")]
    # Stage 05 on: how `make <stage>` runs it. `redis`: with a private Redis (--redis-url);
    # `workers`: gateway processes (--workers). The demo tests start the stage the same way.
    redis: bool = False
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # Stage 08 on: the dashboard's path on the admin listener, for the table at start-up.
    dashboard: Annotated[str, Field(pattern=r"^/")] | None = None
    # Stage 09 on: the gateway runs on a fresh copy of `config` under .run/<stage>/, which
    # the reader edits (or replaces) and reloads, leaving the stage's own file as it is.
    live_config: bool = False


class IdpSpec(_Strict):
    """Stage 06 on: the demo identity provider (common/idp), started with the backends.
    Its issuer is http://127.0.0.1:PORT; `secret` is the HMAC key of its HS256 tokens,
    the same one the stage's gateway.toml holds."""

    port: Annotated[int, Field(ge=1, le=65535)]
    secret: Annotated[str, Field(min_length=64)]


class TrafficSpec(_Strict):
    """Stage 08 on: a steady trickle of requests to the gateway, started once it is
    healthy, so that the dashboard moves (common/traffic.py)."""

    rate: Annotated[float, Field(gt=0, le=200)] = 20.0
    paths: Annotated[list[Annotated[str, Field(pattern=r"^/")]], Field(min_length=1)]
    seconds: Annotated[float, Field(gt=0, le=86400)] = 3600.0  # then it stops by itself


class PrometheusSpec(_Strict):
    """Stage 08 on: a Prometheus server scraping the admin listener, when one is installed."""

    port: Port = 9090
    scrape_interval: Annotated[float, Field(ge=1, le=60)] = 5.0


class ServicesFile(_Strict):
    backends: list[BackendSpec] = []
    idp: IdpSpec | None = None
    gateway: GatewaySpec | None = None
    traffic: TrafficSpec | None = None
    prometheus: PrometheusSpec | None = None


@dataclass(frozen=True)
class Stage:
    name: str  # the folder name, also the PID-file subfolder under the run dir
    path: Path
    services: ServicesFile


def known_stages(root: Path) -> list[str]:
    """Folders under `root` that look like a stage and have a services.toml."""
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if STAGE_NAME.match(p.name) and (p / SERVICES_FILE).is_file()
    )


def find_stage(arg: str) -> Path:
    """`00_services` (a folder under the repo root) or a path to a stage folder."""
    looks_like_path = os.sep in arg or arg.startswith(".")
    candidates = [Path(arg)] if looks_like_path else [REPO_ROOT / arg, Path(arg)]
    for candidate in candidates:
        if (candidate / SERVICES_FILE).is_file():
            return candidate.resolve()
    # List the stages where the user was looking: next to the folder they named, or the
    # repo root for a bare name.
    where = Path(arg).resolve().parent if looks_like_path else REPO_ROOT
    stages = known_stages(where)
    listing = ", ".join(stages) if stages else "none"
    why = "has no services.toml" if Path(arg).is_dir() else "no such folder"
    raise LaunchError(f"unknown stage {arg!r} ({why}); known stages in {where}: {listing}")


def load_stage(arg: str) -> Stage:
    path = find_stage(arg)
    return Stage(name=path.name, path=path, services=load_services(path / SERVICES_FILE))


def load_services(file: Path) -> ServicesFile:
    shown = _display(file)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:  # the message carries line and column
        raise LaunchError(f"{shown}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LaunchError(f"{shown}: cannot read: {e}") from None
    try:
        services = ServicesFile.model_validate(data)
    except ValidationError as e:
        raise LaunchError("\n".join(_describe(shown, err) for err in e.errors())) from None
    _check_consistency(shown, file.parent, services)
    return services


def _check_consistency(shown: str, stage_dir: Path, services: ServicesFile) -> None:
    """What a per-field validator cannot see: names and ports across entries."""
    problems: list[str] = []
    if not services.backends and services.gateway is None:
        problems.append(f"{shown}: nothing to start: add a [[backends]] entry or a [gateway]")
    names: dict[str, int] = {}
    ports: dict[int, str] = {}
    for i, backend in enumerate(services.backends):
        if backend.name in names:
            problems.append(
                f"{shown}: backends[{i}]: {backend.name} is already defined by"
                f" backends[{names[backend.name]}] (service and instance must be unique)"
            )
        names.setdefault(backend.name, i)
        if backend.port == 0:
            continue  # every port-0 socket gets its own ephemeral port
        if backend.port in ports:
            problems.append(
                f"{shown}: backends[{i}].port: port {backend.port} is already used by"
                f" {ports[backend.port]}"
            )
        ports.setdefault(backend.port, backend.name)
    if services.idp is not None:
        if services.idp.port in ports:
            problems.append(
                f"{shown}: idp.port: port {services.idp.port} is already used by"
                f" {ports[services.idp.port]}"
            )
        ports.setdefault(services.idp.port, "idp")
    gateway = services.gateway
    if gateway is not None:
        for key in ("port", "admin_port"):
            port = getattr(gateway, key)
            if port and port in ports:
                problems.append(
                    f"{shown}: gateway.{key}: port {port} is already used by {ports[port]}"
                )
            if port:
                ports.setdefault(port, f"gateway.{key}")
        if not (stage_dir / gateway.config).is_file():
            problems.append(
                f"{shown}: gateway.config: {gateway.config} does not exist in {stage_dir}"
            )
    if problems:
        raise LaunchError("\n".join(problems))


def _describe(shown: str, err: Any) -> str:
    """One pydantic error as `file: backends[1].port: reason (got value)`."""
    key = ""
    for part in err["loc"]:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    reason = err["msg"]
    if err["type"] not in ("missing", "extra_forbidden"):
        got = repr(err["input"])
        reason += f" (got {got if len(got) <= 60 else got[:57] + '...'})"
    return f"{shown}: {key or '(top level)'}: {reason}"


def _display(path: Path) -> str:
    """The path as the user would type it: relative to the current folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
