"""Big and slow bodies: /stream, /bytes, /upload, and the payload pattern behind /bytes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from common.backends.diagnostics import BYTES_LIMIT
from common.backends.payload import PIECE_SIZE, pattern, pattern_sha256
from common.testing.fixtures import BackendFactory
from common.testing.processes import Proc, peak_rss_kib

MiB = 1024 * 1024


def test_pattern_is_deterministic_and_never_repeats_a_piece() -> None:
    n = 5 * PIECE_SIZE + 123
    pieces = list(pattern(n, seed=3))
    assert sum(map(len, pieces)) == n
    assert all(len(piece) <= PIECE_SIZE for piece in pieces)
    assert len(set(pieces[:-1])) == len(pieces) - 1  # duplicated/reordered pieces change the hash
    assert b"".join(pieces) == b"".join(pattern(n, seed=3))
    assert pattern_sha256(n, seed=3) == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert pattern_sha256(n, seed=4) != pattern_sha256(n, seed=3)


async def test_stream_delivers_the_first_chunk_before_the_last_is_produced(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    url = users_backend.url + "/stream?chunks=5&interval_ms=150"
    async with client_session.get(url) as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in resp.headers
        first = await resp.content.readline()
        # CLOCK_MONOTONIC is one clock for the whole machine (Linux), so the backend's
        # timestamps and ours compare directly.
        first_arrived_ms = time.monotonic() * 1000
        rest = (await resp.read()).decode().splitlines()
    lines = [first.decode().rstrip("\n"), *rest]
    assert [line.split(" at ")[0] for line in lines] == [f"chunk {i} of 5" for i in range(1, 6)]
    produced_ms = [float(line.split(" at ")[1]) for line in lines]
    assert produced_ms == sorted(produced_ms)
    assert produced_ms[-1] - produced_ms[0] >= 3 * 150  # paced: one chunk per interval
    # We held chunk 1 before the backend had even written chunk 5: the response streamed.
    assert first_arrived_ms < produced_ms[-1]


async def test_stream_pads_chunks_to_size_and_caps_its_parameters(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    async with client_session.get(
        users_backend.url + "/stream?chunks=3&interval_ms=0&size=1000"
    ) as resp:
        body = await resp.read()
    assert len(body) == 3000
    assert [len(line) for line in body.split(b"\n")[:-1]] == [999, 999, 999]
    for query in ("chunks=1001", "chunks=0", "interval_ms=10001", "size=10", "size=1048577"):
        async with client_session.get(f"{users_backend.url}/stream?{query}") as resp:
            assert resp.status == 422, query


async def test_bytes_sends_exactly_n_bytes_of_the_seeded_pattern(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    n = 3 * MiB + 17
    digest = hashlib.sha256()
    async with client_session.get(f"{users_backend.url}/bytes/{n}?seed=7") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(n)
        async for piece in resp.content.iter_chunked(PIECE_SIZE):
            digest.update(piece)
    assert digest.hexdigest() == pattern_sha256(n, seed=7)

    async with client_session.get(f"{users_backend.url}/bytes/0") as resp:
        assert (resp.status, await resp.read()) == (200, b"")


async def test_bytes_over_1_gib_is_a_422_naming_the_limit(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    async with client_session.get(f"{users_backend.url}/bytes/{BYTES_LIMIT + 1}") as resp:
        assert resp.status == 422
        error = (await resp.json())["detail"][0]
    assert error["loc"] == ["path", "n"]
    assert error["ctx"] == {"le": BYTES_LIMIT}


async def test_upload_reports_size_hash_and_framing(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    body = bytes(range(256)) * 1000
    headers = {"Content-Type": "application/x-test"}
    async with client_session.put(
        users_backend.url + "/upload", data=body, headers=headers
    ) as resp:
        report = await resp.json()
    assert report["bytes"] == len(body)
    assert report["sha256"] == hashlib.sha256(body).hexdigest()
    assert report["content_type"] == "application/x-test"
    assert report["chunked"] is False
    assert report["content_length"] == len(body)


async def chunked_body(total: int, piece: bytes, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """`total` bytes as a stream (aiohttp sends it with Transfer-Encoding: chunked)."""
    sent = 0
    while sent < total:
        chunk = piece[: total - sent]
        digest.update(chunk)
        sent += len(chunk)
        yield chunk


async def upload(session: aiohttp.ClientSession, url: str, total: int) -> None:
    digest = hashlib.sha256()
    piece = bytes(range(256)) * 4096  # 1 MiB, sent over and over
    async with session.post(url, data=chunked_body(total, piece, digest)) as resp:
        report = await resp.json()
    assert report["bytes"] == total
    assert report["sha256"] == digest.hexdigest()
    assert report["chunked"] is True
    assert report["pieces"] > 1


@pytest.mark.slow
async def test_a_200_mib_upload_leaves_backend_memory_flat(
    backend_factory: BackendFactory, client_session: aiohttp.ClientSession
) -> None:
    # Its own backend: the peak RSS must not include other tests' work.
    backend = backend_factory("users", "a")
    await upload(client_session, backend.url + "/upload", 16 * MiB)  # warm up: imports, buffers
    before = peak_rss_kib(backend.pid)
    await upload(client_session, backend.url + "/upload", 200 * MiB)
    growth_mib = (peak_rss_kib(backend.pid) - before) / 1024
    assert growth_mib < 20, f"peak RSS grew by {growth_mib:.1f} MiB for a 200 MiB upload"
