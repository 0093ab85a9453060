"""/cache/{path}: caching headers chosen by the query, and 304 revalidation (RFC 9110)."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from common.testing.processes import Proc

LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"  # epoch 1700000000


async def get(
    session: aiohttp.ClientSession, url: str, **headers: str
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    """GET with headers given as keywords (If_None_Match=...): status, headers, body."""
    async with session.get(url, headers={k.replace("_", "-"): v for k, v in headers.items()}) as r:
        return r.status, r.headers, await r.read()


async def test_the_query_sets_the_caching_headers(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    url = (
        f"{users_backend.url}/cache/headers?cache_control=public,%20max-age=60&etag=v1"
        "&last_modified=1700000000&expires=60&vary=Accept-Language"
    )
    status, headers, _ = await get(client_session, url, Accept_Language="fr")
    assert status == 200
    assert headers["Cache-Control"] == "public, max-age=60"
    assert headers["ETag"] == '"v1"'  # quoted for us
    assert headers["Last-Modified"] == LAST_MODIFIED
    assert headers["Vary"] == "Accept-Language"
    expires = parsedate_to_datetime(headers["Expires"]).timestamp()
    assert abs(expires - (time.time() + 60)) < 5

    status, headers, _ = await get(client_session, f"{users_backend.url}/cache/h?etag=W/%22v2%22")
    assert headers["ETag"] == 'W/"v2"'  # already a (weak) entity-tag: kept as is


async def test_each_full_response_counts_as_a_generation(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    url = f"{users_backend.url}/cache/counted?etag=v1"
    generations = []
    for _ in range(3):
        async with client_session.get(url) as resp:
            generations.append((await resp.json())["generation"])
    assert generations == [1, 2, 3]
    status, _, _ = await get(client_session, url, If_None_Match='"v1"')
    assert status == 304
    async with client_session.get(url) as resp:
        assert (await resp.json())["generation"] == 4  # the 304 generated nothing


@pytest.mark.parametrize(
    ("if_none_match", "expected"),
    [
        ('"v1"', 304),
        ('W/"v1"', 304),  # weak comparison: W/ is ignored
        ('"v0", "v1"', 304),  # a list: any match
        ("*", 304),
        ('"v2"', 200),
        ("v1", 200),  # not an entity-tag (no quotes)
    ],
)
async def test_if_none_match_revalidates_with_304(
    users_backend: Proc, client_session: aiohttp.ClientSession, if_none_match: str, expected: int
) -> None:
    url = f"{users_backend.url}/cache/inm?etag=v1&cache_control=max-age=60&vary=Accept&expires=60"
    status, headers, body = await get(client_session, url, If_None_Match=if_none_match)
    assert status == expected
    if expected == 304:
        assert body == b""
        # RFC 9110 §15.4.5: what a 200 would carry for these, so a cache can refresh.
        assert headers["ETag"] == '"v1"'
        assert headers["Cache-Control"] == "max-age=60"
        assert headers["Vary"] == "Accept"
        assert "Expires" in headers
        assert "Content-Type" not in headers and "Content-Length" not in headers


@pytest.mark.parametrize(
    ("if_modified_since", "expected"),
    [
        (LAST_MODIFIED, 304),
        ("Wed, 15 Nov 2023 00:00:00 GMT", 304),  # later than Last-Modified
        ("Tue, 14 Nov 2023 22:13:19 GMT", 200),  # one second earlier
        ("not a date", 200),  # an invalid date is ignored, not an error
    ],
)
async def test_if_modified_since_revalidates_with_304(
    users_backend: Proc,
    client_session: aiohttp.ClientSession,
    if_modified_since: str,
    expected: int,
) -> None:
    url = f"{users_backend.url}/cache/ims?last_modified=1700000000&cache_control=max-age=60"
    status, headers, body = await get(client_session, url, If_Modified_Since=if_modified_since)
    assert status == expected
    if expected == 304:
        assert body == b""
        assert headers["Last-Modified"] == LAST_MODIFIED  # the only validator: kept
        assert headers["Cache-Control"] == "max-age=60"


async def test_if_none_match_takes_precedence_over_if_modified_since(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    url = f"{users_backend.url}/cache/both?etag=v1&last_modified=1700000000"
    status, _, _ = await get(
        client_session, url, If_None_Match='"other"', If_Modified_Since=LAST_MODIFIED
    )
    assert status == 200  # If-Modified-Since alone would have said 304


@pytest.mark.parametrize(
    "query", ["etag=a%20b", 'etag=a"b', "last_modified=yesterday", "expires=soon"]
)
async def test_invalid_cache_parameters_are_a_422(
    users_backend: Proc, client_session: aiohttp.ClientSession, query: str
) -> None:
    status, _, _ = await get(client_session, f"{users_backend.url}/cache/bad?{query}")
    assert status == 422


async def test_delay_and_size_shape_the_answer(
    users_backend: Proc, client_session: aiohttp.ClientSession
) -> None:
    start = time.monotonic()
    async with client_session.get(f"{users_backend.url}/cache/shaped?delay=200&size=5000") as r:
        body = await r.json()
    assert time.monotonic() - start >= 0.2  # a slow miss, for coalescing tests
    assert len(body["pad"]) == 5000  # an object of a chosen size, for the byte bounds


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_unsafe_methods_answer_without_caching_headers(
    users_backend: Proc, client_session: aiohttp.ClientSession, method: str
) -> None:
    url = f"{users_backend.url}/cache/changed?cache_control=max-age=60"
    async with client_session.request(method, url) as r:
        assert r.status == 200 and "Cache-Control" not in r.headers
        assert (await r.json())["method"] == method
    async with client_session.request(method, url + "&status=404") as r:
        assert r.status == 404  # a failed one, which must invalidate nothing
