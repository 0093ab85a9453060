"""Stage 03 as a reader meets it: the six backends, the gateway, demo.http true as written.

The backends run on ephemeral ports (never 9001-9006 or 8080, which a reader's `make lb`
may hold): the stage's own gateway.toml is used with its upstream ports swapped for the
test's, and the demo's @gateway variable points at the test's gateway.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.demo import DemoResult, assert_demo, load_demo
from common.testing.gateway import start_gateway
from common.testing.processes import Proc, start_backend, wait_healthy

STAGE = Path(__file__).resolve().parents[1]
DEMO = STAGE / "demo.http"
SERVICES = tomllib.loads((STAGE / "services.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("demo")
    started: list[Proc] = []
    try:
        by_port: dict[int, Proc] = {}
        for backend in SERVICES["backends"]:  # started side by side: each import is slow
            proc = start_backend(backend["service"], backend["instance"], log_dir=tmp, wait=False)
            started.append(proc)
            by_port[backend["port"]] = proc
        for proc in started:
            wait_healthy(proc)
        config = re.sub(
            r"http://127\.0\.0\.1:(\d+)(?!\d)",
            lambda m: by_port[int(m.group(1))].url,
            (STAGE / SERVICES["gateway"]["config"]).read_text(encoding="utf-8"),
        )
        gateway = start_gateway(STAGE, config, tmp)
        started.append(gateway)
        yield gateway
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture(scope="module")
def results(gateway: Proc) -> dict[int, DemoResult]:
    """Every demo request, run once; keyed by its number in the `### N.` title."""
    ran = assert_demo(DEMO, {"gateway": gateway.url})
    return {result.request.number: result for result in ran}


def test_every_demo_request_answers_its_expected_status(results: dict[int, DemoResult]) -> None:
    assert len(results) >= 10


def test_the_demo_shows_what_it_says(results: dict[int, DemoResult]) -> None:
    assert served_by(results[2]) in USERS
    assert served_by(results[7]) in ("orders/a", "orders/b")
    # 6: the gateway's own error, in its own format.
    assert results[6].header("Content-Type") == "application/problem+json"
    assert json.loads(results[6].body)["request_id"] == results[6].header("X-Request-ID")
    # 9: the request id the client chose comes back; the upstream saw the hop removed.
    assert results[9].header("X-Request-ID") == "demo-42"
    echo = json.loads(results[9].body)
    assert (echo["path"], echo["query"]) == ("/echo/a%20b", "q=a+b%2F")
    assert [v for n, v in echo["headers"] if n == "x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert not [n for n, _ in echo["headers"] if n in ("connection", "x-secret")]


def test_the_routing_requests_show_what_they_say(results: dict[int, DemoResult]) -> None:
    # 13: /api/v1/users/1 reached the users service's own /users/1.
    assert json.loads(results[13].body)["id"] == 1
    # 14: the static route won: /whoami's document, not a user.
    assert "consumer" in json.loads(results[14].body)
    # 15: 405 with the methods that would work.
    assert results[15].header("Allow") == "GET, HEAD"
    assert results[15].header("Content-Type") == "application/problem+json"
    # 17 and 22: refused by the path rules, not by a missing route.
    for number in (17, 22):
        assert json.loads(results[number].body)["type"].endswith("/bad-path")
    # 18, 19, 21: what the upstream received is the normalised path.
    assert json.loads(results[18].body)["path"] == "/echo/admin"
    assert json.loads(results[19].body)["path"] == "/echo/admin"
    assert json.loads(results[21].body)["path"] == "/echo/a/b"
    # 20: /users/../products went to the products service.
    assert served_by(results[20]) == "products/a"


USERS = ("users/a", "users/b", "users/c")


def served_by(result: DemoResult) -> str:
    return (result.header("X-Served-By") or "-").partition("@")[0]


def test_the_balancing_requests_show_what_they_say(results: dict[int, DemoResult]) -> None:
    # 3-4: the record was read back from the backend that created it.
    assert served_by(results[3]) == served_by(results[4]) != "-"
    # 23-25: keyless requests rotate over the three users backends.
    assert sorted(served_by(results[n]) for n in (23, 24, 25)) == list(USERS)
    # 26-27: alice sticks to one backend, whatever the path.
    assert served_by(results[26]) == served_by(results[27])
    # 29-30: the two orders backends take turns.
    assert {served_by(results[29]), served_by(results[30])} == {"orders/a", "orders/b"}
    # 31: the admin view lists every pool and strategy, every target healthy.
    view = json.loads(results[31].body)["upstreams"]
    assert {name: view[name]["strategy"] for name in ("users", "orders", "products")} == {
        "users": "consistent_hash",
        "orders": "least_connections",
        "products": "round_robin",
    }
    assert all(t["state"] == "healthy" for pool in view.values() for t in pool["targets"])


def test_demo_and_services_toml_agree_on_the_gateway_port() -> None:
    """`make lb` starts what demo.http calls: the gateway on 8080."""
    port = SERVICES["gateway"]["port"]
    assert load_demo(DEMO).variables == {"gateway": f"http://127.0.0.1:{port}"}
