"""The live-configuration contract: what every stage from 09 on promises when its
configuration changes while it serves.

A stage runs it from `tests/test_reload_contract.py`:

    from common.contracts.reload import *  # noqa: F403

with the `stage_dir` and `render` fixtures of its conftest.py. Real gateway and backend
processes; the configuration file is rewritten and reloaded (POST /reload on the admin
listener, or SIGHUP) while clients keep sending.

- 20 reloads under load, one worker and two: 8 clients on keep-alive connections, the
  file alternating between two versions that move a route to another upstream, swap a
  pool target for another, add a consumer's second key and change a limit. No request
  fails; a request that started before a reload was sent is answered by the old
  configuration, one that started after its answer by the new (a removed target gets
  none of them); the new key works as soon as /reload answered, and stops working when
  the next one removes it. With two workers, the answer lists both, on one digest.
- A broken file (a syntax error, a route to an unknown pool, a port change) is refused
  with file, line and key, under load: nothing fails, the old configuration serves on,
  and the refusal is counted in /metrics. SIGHUP reloads too, and with --watch every
  save does, by rename or in place.
- State survives where identity does: a remaining target's open breaker is still open,
  a remaining limit's budget is not reset, an unchanged issuer keeps its keys, and a
  verified token whose consumer changed is checked again.
- The metrics follow: a consumer a reload adds gets its own consumer label value.

Run against stage 08 it fails: 08's admin listener has no /reload (404).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.contracts.auth import SECRET, Idp, bearer, get, whoami
from common.contracts.upstreams import refused_port
from common.contracts.wire import send
from common.testing.gateway import Render, start_gateway
from common.testing.processes import Proc, spawn, start_backend
from common.testing.specs import (
    AuthSpec,
    CacheSpec,
    ConsumerSpec,
    GatewaySpec,
    HealthSpec,
    IssuerSpec,
    LimitSpec,
    ObservabilitySpec,
    PoolSpec,
    RouteAuthSpec,
    RouteLimitSpec,
    RouteSpec,
    targets,
)

FIRST_KEY = "gwk_reload1a_" + "a" * 43  # alice's key in both versions
SECOND_KEY = "gwk_reload2b_" + "b" * 43  # alice's second key: version B only
MINUTE = 60.0
RELOADS = 20


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Backends:
    users: Proc  # /moved in version A
    orders: Proc  # /moved in version B
    a: Proc  # in pool p in both versions
    b: Proc  # in pool p in version A only
    c: Proc  # in pool p in version B only


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backends]:
    logs = tmp_path_factory.mktemp("reload-backends")
    procs = [
        start_backend("users", "a", log_dir=logs),
        start_backend("orders", "a", log_dir=logs),
        start_backend("users", "pa", log_dir=logs),
        start_backend("users", "pb", log_dir=logs),
        start_backend("users", "pc", log_dir=logs),
    ]
    yield Backends(*procs)
    for proc in procs:
        proc.stop()


def version(backends: Backends, second: bool) -> GatewaySpec:
    """Version A (`second` False) or B of the configuration the load test alternates."""
    pool = (backends.a, backends.c) if second else (backends.a, backends.b)
    keys: tuple[tuple[str, str], ...] = (("reload1a", key_hash(FIRST_KEY)),)
    if second:
        keys += (("reload2b", key_hash(SECOND_KEY)),)
    limit = LimitSpec("burst", 200_000 if second else 100_000, MINUTE)
    return GatewaySpec(
        [
            RouteSpec("/moved", (backends.orders if second else backends.users).url,
                      strip_prefix=True),
            RouteSpec("/pool", "p", strip_prefix=True),
            RouteSpec("/keyed", backends.a.url, strip_prefix=True,
                      auth=RouteAuthSpec(mode="key"),
                      rate_limit=RouteLimitSpec(limits=(limit,), key="consumer")),
        ],
        pools={"p": PoolSpec(targets(*(p.url for p in pool)),
                             health=HealthSpec(active=False))},
        auth=AuthSpec(consumers=(ConsumerSpec("alice", api_keys=keys),)),
        # Every answer from its upstream: a cached one would not show where a route goes.
        cache=CacheSpec(enabled=False),
    )  # fmt: skip


def served_by(proc: Proc) -> str:
    """The X-Served-By value of a backend (common/backends/app.py): `users/a@9001`."""
    return f"{proc.name.replace('-', '/', 1)}@{proc.port}"


def expected(backends: Backends, second: bool) -> dict[str, set[str]]:
    """Who may answer each path in version A or B."""
    pool = (backends.a, backends.c) if second else (backends.a, backends.b)
    return {
        "/moved/health": {served_by(backends.orders if second else backends.users)},
        "/pool/health": {served_by(p) for p in pool},
        "/keyed/health": {served_by(backends.a)},
    }


def config_path(proc: Proc) -> Path:
    argv = [str(arg) for arg in proc.popen.args]  # type: ignore[union-attr]  # spawn's list
    return Path(argv[argv.index("--config") + 1])


def rewrite(proc: Proc, text: str) -> None:
    """The gateway's config file replaced as an editor does: a new file renamed over it."""
    path = config_path(proc)
    part = path.with_suffix(".part")
    part.write_text(text, encoding="utf-8")
    part.replace(path)


def admin(proc: Proc, method: str, path: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(proc.admin_url + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# --- 20 reloads under load ---------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    path: str
    started: float  # before the client sent it
    finished: float  # when its answer had arrived
    status: int
    served_by: str


@dataclass(frozen=True)
class Reload:
    sent: float  # before POST /reload was sent
    answered: float  # when its answer arrived
    second: bool  # the version it applied


async def _client(port: int, stop: asyncio.Event, answers: list[Answer],
                  progress: asyncio.Condition) -> None:  # fmt: skip
    paths = ["/moved/health", "/pool/health", "/keyed/health"]
    # One connection, kept alive the whole time: every reload happens under it.
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        n = 0
        while not stop.is_set():
            path = paths[n % len(paths)]
            n += 1
            started = time.monotonic()
            async with session.get(
                f"http://127.0.0.1:{port}{path}", headers={"X-API-Key": FIRST_KEY}
            ) as response:
                await response.read()
                served = response.headers.get("X-Served-By", "")
                answers.append(Answer(path, started, time.monotonic(), response.status, served))
            async with progress:
                progress.notify_all()


async def _reload_under_load(proc: Proc, backends: Backends, render: Render,
                             workers: int) -> tuple[list[Answer], list[Reload]]:  # fmt: skip
    answers: list[Answer] = []
    reloads: list[Reload] = []
    stop = asyncio.Event()
    progress = asyncio.Condition()
    clients = [asyncio.create_task(_client(proc.port, stop, answers, progress)) for _ in range(8)]
    try:
        async with aiohttp.ClientSession() as admin_session:
            for n in range(RELOADS):
                second = n % 2 == 0  # A -> B -> A ...
                await asyncio.to_thread(rewrite, proc, render(version(backends, second)))
                sent = time.monotonic()
                async with admin_session.post(proc.admin_url + "/reload") as reply:
                    body = await reply.json()
                    assert reply.status == 200, body
                answered = time.monotonic()
                reloads.append(Reload(sent, answered, second))
                rows = body["workers"]
                assert len(rows) == workers, rows
                assert len({(r["generation"], r["digest"]) for r in rows}) == 1, rows
                assert rows[0]["generation"] == n + 2, rows
                # The new key works at once, and the old version knows it not.
                reply_status = await _status(admin_session, proc.port, SECOND_KEY)
                assert reply_status == (200 if second else 401), (n, reply_status)
                # Traffic on the new version before the next reload: some answers that
                # started after this one's answer.
                async with progress:
                    await asyncio.wait_for(progress.wait_for(_after(answers, answered)), 30)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    return answers, reloads


def _after(answers: list[Answer], answered: float) -> Callable[[], bool]:
    """Have 24 requests started after `answered` been answered? (Before the next reload
    is sent: so none of them overlaps a reload, and each says which version served it.)"""
    return lambda: sum(a.started > answered for a in answers) >= 24


async def _status(session: aiohttp.ClientSession, port: int, key: str) -> int:
    async with session.get(
        f"http://127.0.0.1:{port}/keyed/health", headers={"X-API-Key": key}
    ) as reply:
        await reply.read()
        return reply.status


def _check(answers: list[Answer], reloads: list[Reload], backends: Backends) -> None:
    assert answers, "no traffic"
    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} failed, e.g. {failed[:3]}"
    checked = 0
    for answer in answers:
        # Seen from the client, a request is at the gateway some time between `started`
        # and `finished`, and a swap happens between a reload's `sent` and `answered`.
        # When the two overlap either version may answer (the test below checks that a
        # request in flight across a swap stays on the old one); otherwise the reloads
        # answered before it started say which version serves it.
        if any(r.sent < answer.finished and answer.started < r.answered for r in reloads):
            continue
        done = [r for r in reloads if r.answered <= answer.started]
        second = done[-1].second if done else False
        allowed = expected(backends, second)[answer.path]
        assert answer.served_by in allowed, (answer, "version B" if second else "version A")
        checked += 1
    # Each reload waited for 24 answers that started after it had answered (below).
    assert checked >= 24 * len(reloads), (checked, len(answers))
    # The removed target got nothing while version B served, the added one something.
    removed, added = served_by(backends.b), served_by(backends.c)
    assert any(a.served_by == added for a in answers)
    assert any(a.served_by == removed for a in answers)


@pytest.mark.parametrize("workers", [1, 2])
def test_twenty_reloads_under_load_fail_no_request(
    workers: int, backends: Backends, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    proc = start_gateway(
        stage_dir, render(version(backends, False)), tmp_path, "--workers", str(workers)
    )
    try:
        answers, reloads = asyncio.run(_reload_under_load(proc, backends, render, workers))
        _check(answers, reloads, backends)
        status, shown = admin(proc, "GET", "/config")
        assert status == 200 and shown["generation"] == RELOADS + 1, shown
        if workers > 1:
            assert len(shown["workers"]) == workers, shown
        else:  # the target version B added and A removed has no series left
            metrics = urllib.request.urlopen(proc.admin_url + "/metrics", timeout=10).read()
            assert f'target="{backends.b.url}"'.encode() in metrics  # version A's
            assert f'target="{backends.c.url}"'.encode() not in metrics
    finally:
        proc.stop()


def test_a_request_in_flight_across_a_reload_ends_on_its_generation(
    backends: Backends, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    """A slow request is at the old upstream when the route moves: it is answered from
    there, and the next one goes to the new upstream."""
    proc = start_gateway(stage_dir, render(version(backends, False)), tmp_path)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            slow = pool.submit(send, proc.port, "GET", "/moved/delay/1000")
            # At the old upstream now: its target counts it in flight.
            deadline = time.monotonic() + 10
            while _in_flight(proc, backends.users.url) < 1:
                assert time.monotonic() < deadline and not slow.done(), "never in flight"
            rewrite(proc, render(version(backends, True)))
            assert admin(proc, "POST", "/reload")[0] == 200
            assert not slow.done()  # the swap happened while it was in flight
            assert send(proc.port, "GET", "/moved/health").header("X-Served-By") == (
                served_by(backends.orders)
            )
            reply = slow.result(timeout=30)
        assert reply.status == 200
        assert reply.header("X-Served-By") == served_by(backends.users)
    finally:
        proc.stop()


def _in_flight(proc: Proc, url: str) -> int:
    """Requests at the target `url` now, as the admin listener shows them."""
    shown = admin(proc, "GET", "/upstreams")[1]["upstreams"]
    return sum(
        row["in_flight"] for pool in shown.values() for row in pool["targets"] if row["url"] == url
    )


# --- a broken file ------------------------------------------------------------------------


async def _load_while(port: int, stop: asyncio.Event) -> list[int]:
    statuses: list[int] = []
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            async with session.get(
                f"http://127.0.0.1:{port}/keyed/health", headers={"X-API-Key": FIRST_KEY}
            ) as reply:
                await reply.read()
                statuses.append(reply.status)
    return statuses


async def _refusals_under_load(proc: Proc, broken: list[str]) -> tuple[list[int], list[Any]]:
    stop = asyncio.Event()
    clients = [asyncio.create_task(_load_while(proc.port, stop)) for _ in range(2)]
    refusals = []
    try:
        for text in broken:
            await asyncio.to_thread(rewrite, proc, text)
            refusals.append(await asyncio.to_thread(admin, proc, "POST", "/reload"))
    finally:
        stop.set()
        statuses = [s for done in await asyncio.gather(*clients) for s in done]
    return statuses, refusals


@pytest.mark.parametrize("workers", [1, 2])
def test_a_broken_file_is_refused_and_the_old_one_serves_on(
    workers: int, backends: Backends, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    good = render(version(backends, False))
    with refused_port() as elsewhere:
        unknown_pool = render(replace(version(backends, False), routes=[
            RouteSpec("/moved", "nowhere", strip_prefix=True),
        ]))  # fmt: skip
        broken = [
            good.replace("[[routes]]", "[[routes]\n", 1),  # a syntax error
            unknown_pool,
            good.replace("[server]\n", f"[server]\nport = {elsewhere}\n", 1),
        ]
        proc = start_gateway(stage_dir, good, tmp_path, "--workers", str(workers))
        try:
            statuses, refusals = asyncio.run(_refusals_under_load(proc, broken))
            assert statuses and set(statuses) == {200}, set(statuses)
            name = str(config_path(proc))
            (syntax, one), (pool, two), (port, three) = refusals
            for status, problem in refusals:
                assert status == 422, problem
                assert problem["title"] == "Configuration Not Applied", problem
                assert name in problem["detail"], problem
            assert "not valid TOML" in one["detail"] and "line" in one["detail"], one
            assert re.search(
                rf"{re.escape(name)}:\d+: routes\[0\]\.upstream: .*nowhere", two["detail"]
            )
            assert f"{name}:" in three["detail"] and "server.port" in three["detail"], three
            assert "cannot change while the gateway runs" in three["detail"], three
            status, shown = admin(proc, "GET", "/config")
            assert shown["generation"] == 1, shown
            assert {row["generation"] for row in shown.get("workers", [shown])} == {1}, shown
            metrics = urllib.request.urlopen(proc.admin_url + "/metrics", timeout=10).read()
            assert b'gateway_config_reloads_total{result="failed"} 3.0' in metrics
            # The old configuration, still whole: /moved still goes where it went.
            reply = send(proc.port, "GET", "/moved/health")
            assert reply.status == 200
            assert reply.header("X-Served-By") == served_by(backends.users)
        finally:
            proc.stop()


def test_sighup_reloads(
    backends: Backends, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    proc = start_gateway(stage_dir, render(version(backends, False)), tmp_path)
    try:
        rewrite(proc, render(version(backends, True)))
        os.kill(proc.popen.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while admin(proc, "GET", "/config")[1]["generation"] != 2:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.02)  # polling the admin listener: the reload's own signal
        reply = send(proc.port, "GET", "/moved/health")
        assert reply.header("X-Served-By") == served_by(backends.orders)
        reply = send(proc.port, "GET", "/keyed/health", [("X-API-Key", SECOND_KEY)])
        assert reply.status == 200
    finally:
        proc.stop()


# --- state survives where identity does ---------------------------------------------------


def stateful(backends: Backends, dead: int, extra: bool) -> GatewaySpec:
    """A pool with a dead target (its breaker opens on the first failure, for a minute)
    and a route limited to 3 requests a minute; `extra` adds a target and a route."""
    pool = [backends.a.url, f"http://127.0.0.1:{dead}"] + ([backends.b.url] if extra else [])
    routes = [
        RouteSpec("/flaky", "flaky", strip_prefix=True),
        RouteSpec("/limited", backends.a.url, strip_prefix=True,
                  rate_limit=RouteLimitSpec(limits=(LimitSpec("few", 3, MINUTE),),
                                            key="client_ip")),
    ]  # fmt: skip
    if extra:
        routes.append(RouteSpec("/moved", backends.orders.url, strip_prefix=True))
    health = HealthSpec(active=False, consecutive_failures=1, base_ejection_time=MINUTE,
                        max_ejection_time=MINUTE, max_ejection_percent=100)  # fmt: skip
    return GatewaySpec(
        routes,
        pools={"flaky": PoolSpec(targets(*pool), health=health)},
        cache=CacheSpec(enabled=False),
    )


def test_an_open_breaker_and_a_spent_budget_survive_a_reload(
    backends: Backends, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    with refused_port() as dead:
        dead_url = f"http://127.0.0.1:{dead}"
        proc = start_gateway(stage_dir, render(stateful(backends, dead, False)), tmp_path)
        try:
            seen = {send(proc.port, "GET", "/flaky/health").status for _ in range(4)}
            assert 502 in seen, seen  # the dead target got one, and its breaker opened
            assert [send(proc.port, "GET", "/limited/health").status for _ in range(4)] == [
                200, 200, 200, 429
            ]  # fmt: skip

            rewrite(proc, render(stateful(backends, dead, True)))
            status, body = admin(proc, "POST", "/reload")
            assert status == 200, body

            status, shown = admin(proc, "GET", "/upstreams")
            rows = {row["url"]: row for row in shown["upstreams"]["flaky"]["targets"]}
            assert rows[dead_url]["circuit"] == "open", rows
            assert rows[backends.b.url]["circuit"] == "closed", rows  # the new one
            # The open breaker keeps every request away from the dead target.
            assert {send(proc.port, "GET", "/flaky/health").status for _ in range(6)} == {200}
            # The budget spent before the reload is still spent.
            assert send(proc.port, "GET", "/limited/health").status == 429
            assert send(proc.port, "GET", "/moved/health").status == 200  # it did reload
        finally:
            proc.stop()


def with_issuer(idp: Idp, backends: Backends, owner: str, refetch: float) -> GatewaySpec:
    """A route for tokens of one issuer whose keys come from the IdP's JWKS, and one
    consumer, dora, who owns the subject demo:dora; `owner` is her display name."""
    issuer = IssuerSpec("demo", idp.url, ("RS256",), jwks_url=idp.url + "/jwks.json",
                        refetch_interval=refetch)  # fmt: skip
    return GatewaySpec(
        [RouteSpec("/jwt", backends.a.url, strip_prefix=True, auth=RouteAuthSpec(mode="jwt"))],
        auth=AuthSpec(
            issuers=(issuer,),
            consumers=(ConsumerSpec("dora", name=owner, subjects=("demo:dora",)),),
        ),
        cache=CacheSpec(enabled=False),
    )


def test_an_unchanged_issuer_keeps_its_keys_and_a_changed_consumer_is_forgotten(
    backends: Backends, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    """The verified-token cache forgets a token whose consumer changed: the same token's
    next request carries the new identity. An issuer whose settings stayed keeps its keys
    (the IdP sees no JWKS fetch); one whose settings changed fetches them again."""
    idp = Idp(spawn("idp", [sys.executable, "-m", "common.idp", "--secret", SECRET],
                    log_dir=tmp_path))  # fmt: skip
    proc = start_gateway(stage_dir, render(with_issuer(idp, backends, "Dora One", 1.0)), tmp_path)
    try:
        token = bearer(idp.token(sub="dora"))
        assert whoami(get(proc, "/jwt/whoami", token))["consumer"]["username"] == "Dora One"
        fetched = idp.fetches()

        rewrite(proc, render(with_issuer(idp, backends, "Dora Two", 1.0)))
        assert admin(proc, "POST", "/reload")[0] == 200
        assert whoami(get(proc, "/jwt/whoami", token))["consumer"]["username"] == "Dora Two"
        assert idp.fetches() == fetched  # the issuer did not change: its keys stayed

        rewrite(proc, render(with_issuer(idp, backends, "Dora Two", 2.0)))
        assert admin(proc, "POST", "/reload")[0] == 200
        assert idp.fetches() == fetched + 1  # it changed: fetched at the reload
        assert whoami(get(proc, "/jwt/whoami", token))["consumer"]["username"] == "Dora Two"
    finally:
        proc.stop()
        idp.proc.stop()


def test_watch_reloads_on_every_save_however_it_is_written(
    backends: Backends, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    """--watch: a save by rename (a new file over the old one, as editors do) and a save in
    place are both noticed, each is one reload, and a broken save is refused while the
    last good configuration serves on."""
    proc = start_gateway(stage_dir, render(version(backends, False)), tmp_path, "--watch")

    def generation_becomes(number: int) -> None:
        deadline = time.monotonic() + 10
        while (shown := admin(proc, "GET", "/config")[1])["generation"] != number:
            assert time.monotonic() < deadline, f"no reload to {number}: {shown}"
            time.sleep(0.02)  # polling the admin listener: the reload's own signal

    try:
        rewrite(proc, render(version(backends, True)))  # write, then rename over it
        generation_becomes(2)
        assert send(proc.port, "GET", "/moved/health").header("X-Served-By") == (
            served_by(backends.orders)
        )
        config_path(proc).write_text(render(version(backends, False)))  # in place
        generation_becomes(3)
        assert send(proc.port, "GET", "/moved/health").header("X-Served-By") == (
            served_by(backends.users)
        )
        config_path(proc).write_text("[[routes]\n")  # broken: refused, nothing changes
        deadline = time.monotonic() + 10
        while not admin(proc, "GET", "/config")[1]["last_error"]:
            assert time.monotonic() < deadline, "the broken save was not noticed"
            time.sleep(0.02)
        status, shown = admin(proc, "GET", "/config")
        assert shown["generation"] == 3 and "not valid TOML" in shown["last_error"], shown
        assert shown["reloads"] == 3, shown  # one per save
        assert send(proc.port, "GET", "/moved/health").status == 200
    finally:
        proc.stop()


ERIN_KEY = "gwk_erinkey1_" + "e" * 43  # a consumer only the second version has


def labelled(backends: Backends, with_erin: bool) -> GatewaySpec:
    """The consumer label on; `with_erin` adds a consumer with her key."""
    consumers = [ConsumerSpec("alice", api_keys=(("reload1a", key_hash(FIRST_KEY)),))]
    if with_erin:
        consumers.append(ConsumerSpec("erin", api_keys=(("erinkey1", key_hash(ERIN_KEY)),)))
    return GatewaySpec(
        [RouteSpec("/keyed", backends.a.url, strip_prefix=True, auth=RouteAuthSpec(mode="key"))],
        auth=AuthSpec(consumers=tuple(consumers)),
        observability=ObservabilitySpec(consumer_label=True),
        cache=CacheSpec(enabled=False),
    )


def test_the_consumer_label_follows_the_consumers_a_reload_adds(
    backends: Backends, stage_dir: Path, render: Render, tmp_path: Path
) -> None:
    """With [observability] consumer_label on, a consumer a reload adds is counted under
    its own id, not "(other)": the label's values come from the serving configuration."""
    proc = start_gateway(stage_dir, render(labelled(backends, False)), tmp_path)
    try:
        rewrite(proc, render(labelled(backends, True)))
        assert admin(proc, "POST", "/reload")[0] == 200
        assert send(proc.port, "GET", "/keyed/health", [("X-API-Key", ERIN_KEY)]).status == 200
        metrics = urllib.request.urlopen(proc.admin_url + "/metrics", timeout=10).read()
        counted = [line for line in metrics.decode().splitlines() if 'code="200"' in line]
        assert any('consumer="erin"' in line for line in counted), counted
    finally:
        proc.stop()
