"""The `[upstreams.NAME]` sections of gateway.toml, validated.

    [upstreams.users]
    strategy = "consistent_hash"    # round_robin | weighted_round_robin
                                    # | least_connections | consistent_hash
    targets = [{ url = "http://127.0.0.1:9001", weight = 2 }, "http://127.0.0.1:9002"]
    hash_key = "header:X-User-ID"   # consistent_hash: header:NAME | cookie:NAME | client_ip | path
    virtual_nodes = 160             # consistent_hash: ring points per unit of weight
    bounded_load = 1.25             # consistent_hash, optional: no target above ceil(1.25 x avg)
    choices = 2                     # least_connections, optional: 0 = scan all, 2 = P2C

    [upstreams.users.health]        # active checks (active = false turns them off)
    path = "/health"
    interval = 2.0
    timeout = 1.0
    healthy_threshold = 2
    unhealthy_threshold = 2

    [upstreams.users.breaker]       # circuit breakers, fed by real requests (breaker.py)
    consecutive_failures = 5        # open after this many failures in a row (0: never)
    failure_rate = 0.5              # ...or this share of the last `window` (0: never)
    window = 10.0
    min_requests = 20
    open_for = 5.0                  # the first opening; each next one lasts longer
    max_open_for = 60.0
    half_open_requests = 1          # probes at a time, and successes needed to close
    max_open_percent = 50

A setting the chosen strategy would ignore is an error, not a silent no-op: someone who
writes `bounded_load = 1.25` under a round-robin upstream believes hot keys are capped.
Models are strict and forbid unknown keys, like the rest of gateway.toml; a cross-field
error names its key at the start of the message, since pydantic can only point at the
section (`upstreams.users: hash_key: required with strategy = 'consistent_hash' ...`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Annotated, Any, Self
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, StringConstraints, field_validator, model_validator

from gateway.validation import Seconds, Strict

from .active import ActivePolicy
from .breaker import BreakerPolicy
from .keys import SPECS, KeySource
from .ring import DEFAULT_VIRTUAL_NODES
from .strategies import STRATEGIES

# The NAME in [upstreams.NAME]. A route's `upstream` is either such a name or an http://
# URL, and this is the one test that tells them apart (a URL has a ':' and '/').
POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
UpstreamName = Annotated[str, StringConstraints(pattern=rf"^{POOL_NAME.pattern}$")]


class HealthConfig(Strict):
    """Active checks: a probe of every target on a timer (active.py)."""

    active: bool = True
    path: str = "/health"
    interval: Seconds = 2.0
    timeout: Seconds = 1.0
    healthy_threshold: Annotated[int, Field(ge=1, le=100)] = 2
    unhealthy_threshold: Annotated[int, Field(ge=1, le=100)] = 2

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/") or any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in value):
            raise ValueError("must be a path starting with '/', without spaces or non-ASCII")
        return value

    @model_validator(mode="after")
    def _check_times(self) -> HealthConfig:
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout: {self.timeout:g} s is longer than interval ({self.interval:g} s);"
                " a probe would still be waiting when the next round is due"
            )
        return self

    def active_policy(self) -> ActivePolicy:
        # The policies' fields are named like the keys here: copy them by name.
        return ActivePolicy(**{f.name: getattr(self, f.name) for f in fields(ActivePolicy)})


class BreakerConfig(Strict):
    """Circuit breakers, one per target, fed by real requests (breaker.py)."""

    consecutive_failures: Annotated[int, Field(ge=0, le=1000)] = 5
    failure_rate: Annotated[float, Field(ge=0, le=1)] = 0.5
    window: Seconds = 10.0
    min_requests: Annotated[int, Field(ge=1, le=100_000)] = 20
    open_for: Seconds = 5.0
    max_open_for: Seconds = 60.0
    half_open_requests: Annotated[int, Field(ge=1, le=100)] = 1
    max_open_percent: Annotated[int, Field(ge=0, le=100)] = 50

    @model_validator(mode="after")
    def _check_times(self) -> BreakerConfig:
        if self.max_open_for < self.open_for:
            raise ValueError(
                f"max_open_for: {self.max_open_for:g} s is shorter than"
                f" open_for ({self.open_for:g} s)"
            )
        return self

    def policy(self) -> BreakerPolicy:
        return BreakerPolicy(**{f.name: getattr(self, f.name) for f in fields(BreakerPolicy)})


def split_http_url(value: str) -> SplitResult:
    """`value` split into its parts if it is an http:// URL; ValueError says what is wrong.

    Shared by pool targets here and by a route's plain-URL upstream in gateway/config.py.
    """
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port such as :99999 or :abc
    except ValueError:
        raise ValueError("must be an http:// URL with a valid port") from None
    if parts.scheme != "http" or not parts.hostname:
        # TLS to upstreams is a production must-have (mTLS in a mesh) but not this
        # repo's lesson: every backend here speaks plain HTTP on 127.0.0.1.
        raise ValueError("must be an http:// URL")
    return parts


class TargetConfig(Strict):
    url: str
    # nginx and HAProxy accept weights up to 256; 100 keeps a ring of 160 points per
    # unit of weight at 16,000 points for the heaviest target.
    weight: Annotated[int, Field(ge=1, le=100)] = 1

    @model_validator(mode="before")
    @classmethod
    def _bare_url(cls, data: Any) -> Any:
        # `targets = ["http://127.0.0.1:9001", ...]` is shorthand for weight 1.
        return {"url": data} if isinstance(data, str) else data

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = split_http_url(value)
        if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
            # A target is a server, not a place on it: the route decides the path.
            raise ValueError("must be scheme://host:port only, without a path or query")
        return f"{parts.scheme}://{parts.netloc}"


class UpstreamConfig(Strict):
    strategy: str = "round_robin"  # a name in strategies.STRATEGIES
    targets: Annotated[list[TargetConfig], Field(min_length=1, max_length=1000)]
    hash_key: str | None = None
    virtual_nodes: Annotated[int, Field(ge=1, le=10_000)] = DEFAULT_VIRTUAL_NODES
    bounded_load: Annotated[float, Field(gt=1, le=10)] | None = None
    choices: Annotated[int, Field(ge=0, le=100)] | None = None
    health: HealthConfig = HealthConfig()
    # None: no breaker (the implicit pool of a URL route); a section of defaults otherwise.
    breaker: BreakerConfig | None = BreakerConfig()

    @classmethod
    def single(cls, url: str) -> Self:
        """The implicit pool of a route whose `upstream` is a URL: one target, no checks.

        No active checks: an arbitrary upstream need not answer GET /health. No breaker
        either: with nothing to fail over to, opening the only target's circuit would only
        turn the upstream's precise 502 or 504 into a vaguer 503, so such a route keeps
        stage 02's behaviour exactly. A pool is what buys health checks and breakers.
        """
        return cls(targets=[TargetConfig(url=url)], health=HealthConfig(active=False), breaker=None)

    @field_validator("strategy")
    @classmethod
    def _check_strategy(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(f"must be one of {', '.join(map(repr, STRATEGIES))}")
        return value

    @field_validator("hash_key")
    @classmethod
    def _check_hash_key(cls, value: str) -> str:
        KeySource.parse(value)  # its ValueError says what is wrong
        return value

    @field_validator("choices")
    @classmethod
    def _check_choices(cls, value: int | None) -> int | None:
        if value == 1:
            raise ValueError(
                "must be 0 (scan every target) or at least 2: one random choice ignores load"
            )
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> UpstreamConfig:
        seen: dict[str, int] = {}
        for i, target in enumerate(self.targets):
            if target.url in seen:
                first = seen[target.url]
                raise ValueError(f"targets[{i}]: {target.url} is already targets[{first}]")
            seen[target.url] = i
        used = f"(this upstream's strategy is {self.strategy!r})"
        if self.strategy == "consistent_hash":
            if self.hash_key is None:
                raise ValueError(f"hash_key: required with strategy = 'consistent_hash' ({SPECS})")
        else:
            for key in ("hash_key", "virtual_nodes", "bounded_load"):
                if key in self.model_fields_set:
                    raise ValueError(f"{key}: only used by strategy = 'consistent_hash' {used}")
        if self.strategy != "least_connections" and "choices" in self.model_fields_set:
            raise ValueError(f"choices: only used by strategy = 'least_connections' {used}")
        if self.strategy == "round_robin" and any(t.weight != 1 for t in self.targets):
            raise ValueError(
                "weight: round_robin ignores weights; use strategy = 'weighted_round_robin'"
            )
        return self

    @property
    def key_source(self) -> KeySource | None:
        return None if self.hash_key is None else KeySource.parse(self.hash_key)


def unknown_upstreams(
    route_upstreams: Sequence[str], upstreams: Mapping[str, UpstreamConfig]
) -> list[tuple[int, str]]:
    """(route index, reason) for every route naming an upstream that is not defined.

    A route's `upstream` is either an http:// URL (an implicit pool of one) or the NAME
    of an [upstreams.NAME] section; gateway/config.py adds these to its own problems.
    """
    defined = ", ".join(sorted(upstreams)) or "none"
    return [
        (i, f"no [upstreams.{name}] section defines {name!r} (defined: {defined})")
        for i, name in enumerate(route_upstreams)
        if POOL_NAME.fullmatch(name) and name not in upstreams
    ]
