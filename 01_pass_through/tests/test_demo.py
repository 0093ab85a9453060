"""Stage 01 as a reader meets it: the three backends, the gateway, demo.http true as written.

`running_stage` (common/testing/stage.py) starts what `make pass-through` starts, on
ephemeral ports, with this stage's own gateway.toml. Every request of demo.http is one
test: it must answer the status its `# expect:` line names. The tests after that check
what the demo's comments say the reader will see.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.demo import DemoResult, load_demo
from common.testing.stage import RunningStage, demo_cases, running_stage, served_by

STAGE = Path(__file__).resolve().parents[1]
DEMO = STAGE / "demo.http"


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStage]:
    with running_stage(STAGE, tmp_path_factory.mktemp("demo")) as running:
        yield running


@pytest.fixture(scope="module")
def results(stage: RunningStage) -> dict[int, DemoResult]:
    """Every demo request, run once and in order (a demo is a story: create, then read)."""
    return stage.run_demo(DEMO)


@pytest.mark.parametrize("number", demo_cases(DEMO))
def test_demo_request(results: dict[int, DemoResult], number: int) -> None:
    result = results[number]
    assert result.ok, result.problem()


@pytest.fixture(scope="module")
def second_pass(stage: RunningStage, results: dict[int, DemoResult]) -> dict[int, DemoResult]:
    """The whole file again, right after the first pass: a reader clicks the requests
    again and again, and each must still answer what its `# expect:` line says."""
    return stage.run_demo(DEMO)


@pytest.mark.parametrize("number", demo_cases(DEMO))
def test_demo_request_sent_again(second_pass: dict[int, DemoResult], number: int) -> None:
    result = second_pass[number]
    assert result.ok, result.problem()


def test_the_demo_shows_what_it_says(results: dict[int, DemoResult]) -> None:
    assert served_by(results[2]) == "users/a"
    assert served_by(results[7]) == "orders/a"
    # 6: the gateway's own error, in its own format.
    assert results[6].header("Content-Type") == "application/problem+json"
    assert json.loads(results[6].body)["request_id"] == results[6].header("X-Request-ID")
    # 9: the request id the client chose comes back; the upstream saw the hop removed.
    assert results[9].header("X-Request-ID") == "demo-42"
    echo = json.loads(results[9].body)
    assert (echo["path"], echo["query"]) == ("/echo/a%2Fb", "q=a+b")
    assert [v for n, v in echo["headers"] if n == "x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert not [n for n, _ in echo["headers"] if n in ("connection", "x-secret")]


def test_demo_and_services_toml_agree_on_the_gateway_port(stage: RunningStage) -> None:
    """`make pass-through` starts what demo.http calls: the gateway on 8080."""
    port = stage.services["gateway"]["port"]
    assert load_demo(DEMO).variables == {"gateway": f"http://127.0.0.1:{port}"}
