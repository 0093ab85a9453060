"""[upstreams.NAME] in gateway.toml: what it accepts, what it builds, how it says no."""

from __future__ import annotations

import random
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from gateway.balancing import (
    ConsistentHash,
    KeySource,
    LeastConnections,
    RoundRobin,
    UpstreamConfig,
    WeightedRoundRobin,
    build_pool,
    unknown_upstreams,
)
from gateway.balancing.config import UpstreamName
from gateway.config import ConfigError, load_config
from lbhelpers import FakeRequest
from pydantic import BaseModel, ConfigDict, ValidationError

from common.testing.processes import child_env

EXAMPLE = """
[upstreams.users]
strategy = "consistent_hash"
targets = [
  { url = "http://127.0.0.1:9001", weight = 2 },
  "http://127.0.0.1:9002",
  { url = "http://127.0.0.1:9003/" },
]
hash_key = "header:X-User-ID"
virtual_nodes = 160
bounded_load = 1.25

[upstreams.users.health]
path = "/health"
interval = 2.0
timeout = 1.0
healthy_threshold = 2
unhealthy_threshold = 2

[upstreams.users.breaker]
consecutive_failures = 5
failure_rate = 0.5
window = 10.0
min_requests = 20
open_for = 5.0
max_open_for = 60.0
half_open_requests = 1
max_open_percent = 50

[upstreams.orders]
strategy = "least_connections"
choices = 2
targets = ["http://127.0.0.1:9004", "http://127.0.0.1:9005"]
"""


class Root(BaseModel):
    """How gateway/config.py will hold the sections: `upstreams: dict[name, UpstreamConfig]`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    upstreams: dict[UpstreamName, UpstreamConfig] = {}


def describe(err: Any) -> str:
    """Stage 01's config._describe, minus "(got ...)" when the input is a whole section."""
    key = ""
    for part in err["loc"]:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    reasons = {"missing": "required key is missing", "extra_forbidden": "unknown key"}
    reason = reasons.get(err["type"]) or err["msg"].removeprefix("Value error, ")
    if err["type"] not in reasons and not isinstance(err["input"], dict):
        reason += f" (got {err['input']!r})"
    return f"{key}: {reason}"


def problems(toml: str) -> list[str]:
    try:
        Root.model_validate(tomllib.loads(toml))
    except ValidationError as exc:
        return [describe(err) for err in exc.errors()]
    return []


def test_the_documented_example_is_valid_and_means_what_it_says() -> None:
    config = Root.model_validate(tomllib.loads(EXAMPLE)).upstreams
    users = config["users"]
    assert [(t.url, t.weight) for t in users.targets] == [
        ("http://127.0.0.1:9001", 2),
        ("http://127.0.0.1:9002", 1),
        ("http://127.0.0.1:9003", 1),  # the trailing slash is dropped
    ]
    assert users.key_source == KeySource("header", "X-User-ID")
    assert users.health.active_policy().unhealthy_threshold == 2
    assert users.breaker is not None and users.breaker.policy().max_open_percent == 50
    assert config["orders"].choices == 2


def test_pools_built_from_config_use_the_configured_strategy() -> None:
    config = Root.model_validate(tomllib.loads(EXAMPLE)).upstreams
    users = build_pool("users", config["users"], rng=random.Random(1))
    assert isinstance(users.strategy, ConsistentHash)
    assert users.strategy.factor == 1.25
    assert len(users.strategy.ring) == 160 * 4  # weights 2 + 1 + 1
    assert users.key_for(FakeRequest(headers={"X-User-ID": "42"}), "/") == "42"
    orders = build_pool("orders", config["orders"])
    assert isinstance(orders.strategy, LeastConnections) and orders.strategy.choices == 2
    assert orders.key_for(FakeRequest(headers={"X-User-ID": "42"}), "/") is None
    for name, kind in (("round_robin", RoundRobin), ("weighted_round_robin", WeightedRoundRobin)):
        pool = build_pool(
            "p", UpstreamConfig.model_validate({"strategy": name, "targets": ["http://a:1"]})
        )
        assert isinstance(pool.strategy, kind)


def test_a_route_with_a_plain_url_gets_a_pool_of_one_without_health_checks() -> None:
    single = UpstreamConfig.single("http://127.0.0.1:9001")
    assert [t.url for t in single.targets] == ["http://127.0.0.1:9001"]
    assert not single.health.active
    assert single.breaker is None
    assert build_pool("route /users", single).breaker is None


BASE = '[upstreams.users]\ntargets = ["http://127.0.0.1:9001"]\n'
CH = BASE + 'strategy = "consistent_hash"\nhash_key = "client_ip"\n'


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            BASE + 'strategy = "random"',
            "upstreams.users.strategy: must be one of 'round_robin', 'weighted_round_robin',"
            " 'least_connections', 'consistent_hash' (got 'random')",
        ),
        (
            BASE + 'strategy = "consistent_hash"',
            "upstreams.users: hash_key: required with strategy = 'consistent_hash'"
            " (header:NAME | cookie:NAME | client_ip | path)",
        ),
        (
            CH.replace("client_ip", "header:"),
            "upstreams.users.hash_key: header: needs a header name, e.g. 'header:X-User-ID'"
            " (got 'header:')",
        ),
        (
            CH.replace("client_ip", "query:id"),
            "upstreams.users.hash_key: must be one of header:NAME | cookie:NAME | client_ip |"
            " path (got 'query:id')",
        ),
        (
            CH.replace("client_ip", "path:/x"),
            "upstreams.users.hash_key: 'path' takes no name (write just 'path') (got 'path:/x')",
        ),
        (
            CH + "bounded_load = 1.0",
            "upstreams.users.bounded_load: Input should be greater than 1 (got 1.0)",
        ),
        (
            BASE + "bounded_load = 1.25",
            "upstreams.users: bounded_load: only used by strategy = 'consistent_hash'"
            " (this upstream's strategy is 'round_robin')",
        ),
        (
            BASE + 'strategy = "least_connections"\nchoices = 1',
            "upstreams.users.choices: must be 0 (scan every target) or at least 2: one random"
            " choice ignores load (got 1)",
        ),
        (
            BASE + "choices = 2",
            "upstreams.users: choices: only used by strategy = 'least_connections'"
            " (this upstream's strategy is 'round_robin')",
        ),
        (
            '[upstreams.users]\ntargets = [{ url = "http://127.0.0.1:9001", weight = 3 }]',
            "upstreams.users: weight: round_robin ignores weights;"
            " use strategy = 'weighted_round_robin'",
        ),
        (
            '[upstreams.users]\ntargets = ["localhost:9001"]',
            "upstreams.users.targets[0].url: must be an http:// URL (got 'localhost:9001')",
        ),
        (
            '[upstreams.users]\ntargets = ["http://127.0.0.1:9001/api"]',
            "upstreams.users.targets[0].url: must be scheme://host:port only, without a path or"
            " query (got 'http://127.0.0.1:9001/api')",
        ),
        (
            '[upstreams.users]\ntargets = ["http://127.0.0.1:9001", "http://127.0.0.1:9001/"]',
            "upstreams.users: targets[1]: http://127.0.0.1:9001 is already targets[0]",
        ),
        (
            "[upstreams.users]\ntargets = []",
            "upstreams.users.targets: List should have at least 1 item after validation, not 0"
            " (got [])",
        ),
        (
            BASE + "[upstreams.users.health]\ninterval = 1.0\ntimeout = 2.0",
            "upstreams.users.health: timeout: 2 s is longer than interval (1 s); a probe would"
            " still be waiting when the next round is due",
        ),
        (
            BASE + "[upstreams.users.breaker]\nopen_for = 30.0\nmax_open_for = 10",
            "upstreams.users.breaker: max_open_for: 10 s is shorter than open_for (30 s)",
        ),
        (
            BASE + "[upstreams.users.breaker]\nmax_open_percent = 150",
            "upstreams.users.breaker.max_open_percent: Input should be less than or equal to"
            " 100 (got 150)",
        ),
        (
            BASE + "[upstreams.users.health]\nintervall = 2.0",
            "upstreams.users.health.intervall: unknown key",
        ),
        (
            BASE + '[upstreams.users.health]\npath = "health"',
            "upstreams.users.health.path: must be a path starting with '/', without spaces or"
            " non-ASCII (got 'health')",
        ),
        (
            "[upstreams.users]\nstrategy = 'round_robin'",
            "upstreams.users.targets: required key is missing",
        ),
    ],
)
def test_a_bad_section_is_reported_with_its_key_and_reason(toml: str, expected: str) -> None:
    assert problems(toml) == [expected]


def test_an_upstream_name_must_be_a_plain_word() -> None:
    [problem] = problems('[upstreams."my users"]\ntargets = ["http://127.0.0.1:9001"]')
    assert problem.startswith("upstreams.my users.[key]: String should match pattern")


def test_routes_must_name_a_defined_upstream_or_give_a_url() -> None:
    upstreams = Root.model_validate(tomllib.loads(EXAMPLE)).upstreams
    assert unknown_upstreams(["users", "http://127.0.0.1:9009", "user"], upstreams) == [
        (2, "no [upstreams.user] section defines 'user' (defined: orders, users)")
    ]


@pytest.mark.parametrize(
    ("spec", "request_", "key"),
    [
        ("header:X-User-ID", FakeRequest(headers={"X-User-ID": "42"}), "42"),
        ("header:X-User-ID", FakeRequest(headers={"X-User-ID": ""}), None),
        ("header:X-User-ID", FakeRequest(), None),
        ("cookie:session", FakeRequest(cookies={"session": "abc"}), "abc"),
        ("cookie:session", FakeRequest(cookies={"other": "abc"}), None),
        ("client_ip", FakeRequest(remote="10.0.0.7"), "10.0.0.7"),
        ("client_ip", FakeRequest(remote=None), None),
        ("path", FakeRequest(), "/users/1"),  # what was routed: extract()'s `path`
    ],
)
def test_a_key_source_reads_its_part_of_the_request(
    spec: str, request_: FakeRequest, key: str | None
) -> None:
    source = KeySource.parse(spec)
    assert str(source) == spec
    assert source.extract(request_, "/users/1") == key


# --- the same sections inside a whole gateway.toml (gateway/config.py) -------------------

ROUTES = '[[routes]]\nprefix = "/users"\nupstream = "users"\n'


def load_problems(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path, shown="gateway.toml")
    return str(error.value)


def test_gateway_toml_reports_a_route_naming_an_undefined_upstream(tmp_path: Path) -> None:
    assert load_problems(tmp_path, ROUTES.replace('"users"', '"user"') + EXAMPLE) == (
        "gateway.toml:3: routes[0].upstream: no [upstreams.user] section defines 'user'"
        " (defined: orders, users)"
    )


def test_gateway_toml_reports_a_bad_upstream_section_by_file_and_key(tmp_path: Path) -> None:
    text = ROUTES + BASE + 'strategy = "consistent_hash"\n'
    assert load_problems(tmp_path, text) == (
        "gateway.toml:4: upstreams.users: hash_key: required with strategy = 'consistent_hash'"
        " (header:NAME | cookie:NAME | client_ip | path)"
    )


def test_a_url_route_gets_an_implicit_pool_named_after_the_route(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    url_route = '[[routes]]\nprefix = "/v1"\nupstream = "http://127.0.0.1:9009/api"\n'
    path.write_text(ROUTES + url_route + EXAMPLE, encoding="utf-8")
    config = load_config(path)
    assert [route.pool for route in config.routes] == ["users", "route /v1"]
    pools = config.pools()
    assert set(pools) == {"users", "orders", "route /v1"}
    # The pool's target is the server; the route keeps the base path (/api).
    assert [t.url for t in pools["route /v1"].targets] == ["http://127.0.0.1:9009"]


def test_check_prints_a_missing_pool_with_its_brackets(tmp_path: Path) -> None:
    """`[upstreams.order]` in a message is text, not rich markup (it printed as `no  section`)."""
    config = tmp_path / "gateway.toml"
    config.write_text('[[routes]]\nprefix = "/orders"\nupstream = "order"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "--check"],
        cwd=Path(__file__).resolve().parents[1],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "no [upstreams.order] section defines 'order'" in result.stderr
