"""Stage 09 as a reader meets it: the six backends, the identity provider, the gateway,
demo.http true as written.

`running_stage` (common/testing/stage.py) starts what `make channelling` starts, on
ephemeral ports, with this stage's own gateway.toml. Every request of demo.http is one
test: it must answer the status its `# expect:` line names. The tests after that check
what the demo's comments say the reader will see.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from gateway.auth.apikeys import key_hash

from common.demo import DemoResult, load_demo
from common.testing.processes import Proc
from common.testing.stage import RunningStage, demo_cases, running_stage, served_by

STAGE = Path(__file__).resolve().parents[1]
DEMO = STAGE / "demo.http"
USERS = ("users/a", "users/b", "users/c")


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
    # 17, 18, 21: refused by the path rules, not by a missing route, each saying why.
    for number, why in ((17, "encoded slash"), (18, "encoded NUL"), (21, "encoded backslash")):
        problem = json.loads(results[number].body)
        assert problem["type"].endswith("/bad-path") and why in problem["detail"], number
    # 19: what the upstream received is the normalised path.
    assert json.loads(results[19].body)["path"] == "/echo/a/b"
    # 20: on the route that keeps them, %2F arrives as sent, inside its segment.
    assert json.loads(results[20].body)["path"] == "/echo/files/reports%2F2026.csv"
    # 22: /%75sers/1 was routed as /users/1, to the users service.
    assert served_by(results[22]).startswith("users/") and json.loads(results[22].body)["id"] == 1


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


def get(stage: RunningStage, path: str, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", stage.gateway.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, (response.getheader("X-Served-By") or "-").partition("@")[0]
    finally:
        conn.close()


def test_every_user_sticks_to_one_backend_and_users_spread(stage: RunningStage) -> None:
    """What 26-28 invite the reader to try, made impossible to pass by chance: eight
    users, four requests each on different paths, each user always on one backend (a
    random pick would agree four times in a row for one user with p = 1/27)."""
    # Users spread over the targets that are in the pool: the demo's requests before
    # this test, or a health probe that timed out on a loaded machine, may have taken one
    # out for a few seconds. Wait until all three are healthy (the admin view says so).
    deadline = time.monotonic() + 30
    targets = users_targets(stage)
    while not all(t["state"] == "healthy" for t in targets):
        assert time.monotonic() < deadline, targets
        time.sleep(0.1)  # a probe every 2 s brings a target back: nothing to wait on but it
        targets = users_targets(stage)
    homes = {}
    for user in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"):
        answers = {
            get(stage, path, {"X-User-ID": user})
            for path in ("/users/1", "/api/v1/users/2", "/users", "/debug/echo/x")
        }
        assert len(answers) == 1, (user, answers)
        ((status, home),) = answers
        assert status == 200 and home in USERS, (user, status, home)
        homes[user] = home
    # The users do spread over the pool (and if not, what the pool looked like then).
    assert len(set(homes.values())) > 1, (homes, targets, users_targets(stage))


def users_targets(stage: RunningStage) -> list[dict[str, object]]:
    """The users pool's targets, as the admin listener shows them."""
    with urllib.request.urlopen(stage.gateway.admin_url + "/upstreams", timeout=5) as reply:
        targets: list[dict[str, object]] = json.load(reply)["upstreams"]["users"]["targets"]
    return targets


def test_a_hot_key_in_flight_spills_to_the_next_backend(stage: RunningStage) -> None:
    """Request 32 as the demo tells it: carol's 1 s request, and a second one sent while
    the first is in flight. ceil(1.25 x 2/3) = 1 request per backend, so the second
    answers from another backend than the first."""
    carol = {"X-User-ID": "carol"}
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(get, stage, "/debug/delay/1000", carol)
        deadline = time.monotonic() + 5
        while not in_flight(stage):  # the first request is on a backend now
            assert time.monotonic() < deadline, "the first request never got in flight"
            time.sleep(0.01)  # polling an observable state, not waiting for one
        second = pool.submit(get, stage, "/debug/delay/1000", carol)
        (status1, home1), (status2, home2) = first.result(), second.result()
    assert status1 == status2 == 200
    assert home1 in USERS and home2 in USERS and home1 != home2, (home1, home2)


def in_flight(stage: RunningStage) -> bool:
    assert stage.gateway.admin_port is not None
    conn = http.client.HTTPConnection("127.0.0.1", stage.gateway.admin_port, timeout=5)
    try:
        conn.request("GET", "/upstreams")
        view = json.loads(conn.getresponse().read())["upstreams"]
    finally:
        conn.close()
    return any(t["in_flight"] for t in view["users"]["targets"])


def test_the_channelling_requests_show_what_they_say(results: dict[int, DemoResult]) -> None:
    # Every relayed answer says how many tries it took; stage 03's requests took one.
    assert results[2].header("X-Attempt-Count") == "1"
    # 33-35: no retries on /down: two refusals, then the open breaker answers at once.
    for number in (33, 34):
        assert json.loads(results[number].body)["type"].endswith("/upstream-unavailable")
    assert "open circuit" in json.loads(results[35].body)["detail"]
    assert results[35].seconds < 0.5
    # 36: the reset's answer shows the breaker as it was (open), then closed.
    reset = json.loads(results[36].body)
    assert [t["state"] for t in reset["before"]] == ["open"] and reset["before"][0]["opens"] == 1
    assert [t["state"] for t in reset["targets"]] == ["healthy"]
    # 37: a 404 from the router, not a health document.
    assert json.loads(results[37].body)["type"].endswith("/no-route")
    # 38: the first try met the refused target, the second answered.
    assert results[38].header("X-Attempt-Count") == "2"
    assert served_by(results[38]) == "users/a"
    # 39: a POST that reached the upstream: its own 503 (FastAPI's body), one try.
    assert results[39].header("X-Attempt-Count") == "1"
    assert results[39].header("Content-Type") != "application/problem+json"
    # 40: the same on a GET: three tries, on three different backends.
    assert results[40].header("X-Attempt-Count") == "3"
    # 41: the deadline, named, after two tries, in about 2 s (not 3 s, not 1 s).
    problem = json.loads(results[41].body)
    assert problem["type"].endswith("/deadline-exceeded"), problem
    assert "deadline of 2 s" in problem["detail"] and "2 tries" in problem["detail"], problem
    assert 1.9 <= results[41].seconds < 2.9, results[41].seconds
    # 42: the backend saw the try's limit in X-Request-Deadline-Ms.
    assert json.loads(results[42].body)["deadline_ms"] == 1000
    # 43: retries were granted (38, 40, 41), and nothing was shed.
    channel = json.loads(results[43].body)
    assert channel["retry_budget"]["granted"] >= 4 and channel["load_shedder"]["shed"] == 0


def test_the_auth_requests_show_what_they_say(results: dict[int, DemoResult]) -> None:
    # 55: both challenges, no error code (nothing was sent).
    assert results[55].header("WWW-Authenticate") == (
        'Bearer realm="gateway", ApiKey realm="gateway", header="X-API-Key"'
    )
    # 56: alice's key is alice upstream, and the key did not travel with it.
    seen = json.loads(results[56].body)
    assert seen["consumer"] == {"id": "alice", "username": "Alice Example", "groups": "staff"}
    assert seen["authenticated"] == {"subject": "alice", "scope": "orders:read users:read"}
    # 57 and 65: a wrong key and an expired token: 401, one problem type.
    for number in (57, 65, 66):
        assert json.loads(results[number].body)["type"].endswith("/unauthorized"), number
    assert 'error="invalid_token"' in (results[65].header("WWW-Authenticate") or "")
    # 60: the token's identity: alice by her subject, with the token's scope.
    seen = json.loads(results[60].body)
    assert seen["consumer"]["id"] == "alice" and seen["authenticated"]["scope"] == "orders:read"
    assert seen["authorization"] is None
    # 62: 403, naming the scope.
    assert 'scope="orders:write"' in (results[62].header("WWW-Authenticate") or "")
    # 63: the spoofed headers never reached the backend.
    assert json.loads(results[63].body)["consumer"] == {}
    assert json.loads(results[63].body)["authenticated"] == {}
    # 67-68: the report is alice's own; bob's is generated for him.
    assert (
        json.loads(results[68].body)["generation"] == json.loads(results[67].body)["generation"] + 1
    )
    assert "fwd=uri-miss" in (results[68].header("Cache-Status") or "")
    # 69: the admin view counted all that.
    counts = json.loads(results[69].body)["auth"]["counts"]
    assert counts["accepted"] >= 4 and counts["invalid"] >= 3 and counts["insufficient_scope"] == 1


def test_the_rate_limit_requests_show_what_they_say(results: dict[int, DemoResult]) -> None:
    import http_sf

    def state(number: int) -> dict[str, dict[str, int]]:
        value = results[number].header("RateLimit") or ""
        members: Any = http_sf.parse(value.encode(), tltype="list")  # a List: (item, params)
        return {str(k): v for k, v in members}

    # 70-72: counting down; 73: refused with Retry-After, the hourly limit untouched by it.
    assert [state(n)["burst"]["r"] for n in (70, 71, 72)] == [2, 1, 0]
    assert results[73].header("Retry-After") in ("9", "10")  # 10 s, less what 70-73 took
    assert state(73)["hourly"]["r"] == 97
    assert json.loads(results[73].body)["type"].endswith("/rate-limited")
    # 74: bob's plan.
    assert '"burst";q=6;w=30' in (results[74].header("RateLimit-Policy") or "")
    assert state(74)["burst"]["r"] == 5
    # 75: a public route, limited per address.
    assert "minute" in state(75)
    view = json.loads(results[76].body)["rate_limit"]
    assert view["counts"]["limited"] == 1 and view["counts"]["admitted"] >= 5
    assert view["store"]["store"] == "redis"  # started as `make rate-limit` starts it
    # 77: alice's burst and hourly counts, forgotten.
    assert json.loads(results[77].body)["forgotten"] == 2


def test_the_metrics_requests_show_what_they_say(results: dict[int, DemoResult]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def counted(**labels: str) -> float:
        families = text_string_to_metric_families(results[78].body.decode())
        return sum(
            s.value
            for f in families
            for s in f.samples
            if s.name == "gateway_requests_total" and labels.items() <= s.labels.items()
        )

    # 78: 5's 404 came from the users service, 6's from the gateway; 55's 401 and 73's 429
    # are the gateway's; 2 and its like were relayed.
    assert counted(route="/users", code="404", source="upstream") >= 1
    assert counted(route="(unmatched)", code="404", source="gateway") >= 1
    assert counted(code="401", source="gateway") >= 1
    assert counted(route="/account/quota", code="429", source="gateway") == 1
    assert counted(route="/users", code="200", source="upstream") >= 2
    assert b"gateway_request_duration_seconds_bucket" in results[78].body
    # 80, 81: the traced request is on the dashboard, as a waterfall under its trace id.
    traces = json.loads(results[81].body)["traces"]
    (trace,) = [t for t in traces if t["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"]
    assert trace["name"] == "GET /users"
    assert "upstream try" in [span["name"] for span in trace["spans"]]
    assert b"uplot" in results[82].body
    # 79: OpenMetrics, ending as the format says.
    assert (results[79].header("Content-Type") or "").startswith("application/openmetrics-text")
    assert results[79].body.rstrip().endswith(b"# EOF")


def test_demo_and_services_toml_agree_on_the_ports(stage: RunningStage) -> None:
    """`make auth` starts what demo.http calls: the gateway on 8080, admin on 8081, the
    identity provider on 9100; the demo's keys are the consumers' in gateway.toml."""
    gateway = stage.services["gateway"]
    variables = load_demo(DEMO).variables
    assert {k: variables[k] for k in ("gateway", "admin", "idp")} == {
        "gateway": f"http://127.0.0.1:{gateway['port']}",
        "admin": f"http://127.0.0.1:{gateway['admin_port']}",
        "idp": f"http://127.0.0.1:{stage.services['idp']['port']}",
    }
    config = (STAGE / "gateway.toml").read_text(encoding="utf-8")
    for name in ("aliceKey", "bobKey"):
        assert key_hash(variables[name]) in config, name


def test_the_shed_503_of_try_it(stage: RunningStage) -> None:
    """ARCHITECTURE.md's "Try it": four 2 s requests at once to the narrow pool (two
    places, no queue): two are served, two are shed at once with Retry-After. Four
    distinct targets (?n=1..4), or the cache would coalesce them into one request."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(lambda n: get_with_retry_after(stage, n), range(1, 5)))
    assert sorted(status for status, _, _ in replies) == [200, 200, 503, 503]
    for status, retry_after, seconds in replies:
        if status == 503:
            assert retry_after == "1" and seconds < 1.0, (retry_after, seconds)


def get_with_retry_after(stage: RunningStage, n: int) -> tuple[int, str | None, float]:
    conn = http.client.HTTPConnection("127.0.0.1", stage.gateway.port, timeout=10)
    start = time.monotonic()
    try:
        conn.request("GET", f"/narrow/delay/2000?n={n}")
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Retry-After"), time.monotonic() - start
    finally:
        conn.close()


def test_the_reload_requests_show_what_they_say(results: dict[int, DemoResult]) -> None:
    """83-86: the generation serving, a reload to the next one (the file unchanged: the
    same digest), the pools as they were, carol unknown with gateway.toml."""
    before, reloaded = json.loads(results[83].body), json.loads(results[84].body)
    (row,) = reloaded["workers"]  # the demo runs one worker
    assert row["generation"] == before["generation"] + 1
    assert row["digest"] == before["digest"]
    pools = json.loads(results[85].body)["upstreams"]
    assert len(pools["users"]["targets"]) == 3
    assert results[86].status == 401


def test_switching_to_the_next_version_as_try_it_says(
    stage: RunningStage, second_pass: dict[int, DemoResult]
) -> None:
    """ARCHITECTURE.md's "Try it": gateway.next.toml copied over the running file and
    reloaded: /debug answers from the orders pool, carol's key works at once, users/c
    (dropped from its pool) gets nothing and leaves /upstreams; copied back, all undone.
    After both demo passes: the demo's own requests must not see this."""
    running = config_path(stage.gateway)
    original = running.read_text(encoding="utf-8")
    carol = load_demo(DEMO).variables["carolKey"]
    try:
        nxt = stage.localise((STAGE / "gateway.next.toml").read_text(encoding="utf-8"))
        running.write_text(nxt, encoding="utf-8")
        status, body = post(stage.gateway.admin_url + "/reload")
        assert status == 200, body
        whoami = fetch(stage.gateway.url + "/account/whoami", {"X-API-Key": carol})
        assert whoami[0] == 200 and b"carol" in whoami[2], whoami
        assert fetch(stage.gateway.url + "/debug/health")[1].startswith("orders/")
        users = {
            fetch(stage.gateway.url + "/users/1", {"X-User-ID": f"u{n}"})[1] for n in range(40)
        }
        assert users and not any(s.startswith("users/c@") for s in users), users
        shown = json.loads(fetch(stage.gateway.admin_url + "/upstreams")[2])
        assert len(shown["upstreams"]["users"]["targets"]) == 2
    finally:
        running.write_text(original, encoding="utf-8")
        status, body = post(stage.gateway.admin_url + "/reload")
    assert status == 200, body
    assert fetch(stage.gateway.url + "/account/whoami", {"X-API-Key": carol})[0] == 401


def config_path(proc: Proc) -> Path:
    argv = [str(arg) for arg in proc.popen.args]  # type: ignore[union-attr]  # spawn's list
    return Path(argv[argv.index("--config") + 1])


def post(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """(status, X-Served-By, body) of a GET on a fresh connection."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers.get("X-Served-By", ""), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("X-Served-By", ""), error.read()
