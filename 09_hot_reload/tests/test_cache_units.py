"""The cache's parsers and its memory store, one rule at a time (no processes).

The conformance suite checks the same corners end to end; these say which rule is which,
and fail in a millisecond.
"""

from __future__ import annotations

import asyncio
import calendar
import gc

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from gateway.cache.cache import Cache
from gateway.cache.config import CacheConfig, CachePolicy
from gateway.cache.directives import (
    MAX_DELTA,
    delta_seconds,
    parse_age,
    parse_directives,
    parse_http_date,
    parse_targeted,
)
from gateway.cache.entry import Entry, normalise, storable
from gateway.cache.store import MemoryStore
from gateway.cache.tap import CacheTap
from gateway.proxy import TAP
from multidict import CIMultiDict

NOW = float(calendar.timegm((2026, 12, 3, 12, 0, 0, 0, 0, 0)))
NOV_1994 = float(calendar.timegm((1994, 11, 6, 8, 49, 37, 0, 0, 0)))


@pytest.mark.parametrize(
    "text",
    ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
     "sun, 06 nov 1994 08:49:37 gmt"],
)  # fmt: skip
def test_the_three_http_date_forms_are_read_in_any_case(text: str) -> None:
    assert parse_http_date(text, NOW) == NOV_1994


@pytest.mark.parametrize(
    "text",
    ["Sun, 06 Nov 1994 08:49:37 UTC", "Sun 06 Nov 1994 08:49:37 GMT",
     "Sun, 06 Nov 94 08:49:37 GMT", "Sun, 06  Nov 1994 08:49:37 GMT",
     "Sun, 06-Nov-1994 08:49:37 GMT", "Sun, 06 Nov 1994 8:49:37 GMT", "0", ""],
)  # fmt: skip
def test_anything_else_is_not_a_date(text: str) -> None:
    """An invalid Expires is then in the past (RFC 9111 §5.3): never fresh by mistake."""
    assert parse_http_date(text, NOW) is None


def test_cache_control_first_occurrence_quotes_and_junk() -> None:
    cc = parse_directives(['max-age="60", Max-Age=5', 'extension="max-age=999", no-cache'])
    assert cc["max-age"] == "60" and cc["extension"] == "max-age=999" and "no-cache" in cc
    assert delta_seconds(parse_directives(["max-age =60"])["max-age"]) is None  # stale
    assert delta_seconds("003600") == 3600 and delta_seconds("-1") is None
    assert delta_seconds("99999999999") == MAX_DELTA


def test_cdn_cache_control_is_a_structured_field_or_nothing() -> None:
    assert parse_targeted(["max-age=60, stale-if-error=5"]) == {
        "max-age": "60",
        "stale-if-error": "5",
    }
    assert parse_targeted(['max-age="60"']) is None  # a string where an integer belongs
    assert parse_targeted(["MaX-AgE=60"]) is None  # keys are lower case in Structured Fields
    assert parse_targeted([]) is None


@pytest.mark.parametrize(
    ("lines", "age"),
    [([], 0), (["abc"], 0), (["-7200"], 0), (["7200.0"], 0), (["0, 7200"], 0), (["7200, 0"], 7200),
     (["7200;foo=bar"], 7200), (["0", "7200"], 0)],
)  # fmt: skip
def test_age_is_the_first_value_and_garbage_is_ignored(lines: list[str], age: int) -> None:
    assert parse_age(lines) == age


def test_what_a_shared_cache_may_store() -> None:
    def why(status: int, authorized: bool = False, **fields: str) -> str | None:
        return storable(status, CIMultiDict((k.replace("_", "-"), v) for k, v in fields.items()),
                        authorized)  # fmt: skip

    assert why(200, Cache_Control="max-age=60") is None
    assert why(200, Cache_Control="private, max-age=60") == "private"
    assert why(200, Cache_Control="no-store, max-age=60") == "no-store"
    assert why(200, Cache_Control="no-store, must-understand, max-age=60") is None
    assert why(599, Cache_Control="no-store, must-understand, max-age=60") == "must-understand"
    assert why(200, True, Cache_Control="max-age=60") == "authorization"
    assert why(200, True, Cache_Control="public, max-age=60") is None
    assert why(201) == "no-freshness" and why(206, Cache_Control="max-age=60") == "status"
    assert why(200, Cache_Control="max-age=60", Vary="Accept, *") == "vary-star"


def test_freshness_s_maxage_then_max_age_then_expires_then_heuristic() -> None:
    def lifetime(**fields: str) -> float:
        headers = CIMultiDict((k.replace("_", "-"), v) for k, v in fields.items())
        return Entry(200, "OK", headers, b"", NOW, NOW, ()).facts.lifetime

    date = "Thu, 03 Dec 2026 12:00:00 GMT"
    assert lifetime(Cache_Control="max-age=60, s-maxage=5") == 5
    assert lifetime(Cache_Control="max-age=60", Expires="Thu, 03 Dec 2026 13:00:00 GMT") == 60
    assert lifetime(Date=date, Expires="Thu, 03 Dec 2026 12:10:00 GMT") == 600
    assert lifetime(Date=date, Expires="0") == 0
    assert lifetime(Date=date, Last_Modified="Thu, 03 Dec 2026 11:00:00 GMT") == 360  # 10%
    assert lifetime(Date=date) == 0  # nothing said, no Last-Modified: not fresh


def test_vary_values_are_normalised() -> None:
    def value(name: str, *lines: str) -> str | None:
        return normalise(name, CIMultiDict((name, line) for line in lines))

    assert value("accept-language", "fr, EN") == value("accept-language", "en,fr") == "en,fr"
    assert value("x-thing", "a, b") == value("x-thing", "a", "b") == "a,b"  # lines combined
    assert value("x-thing", "b, a") != value("x-thing", "a, b")  # order kept where unknown
    assert value("x-thing") is None  # absent: matches only absent


def test_the_memory_store_evicts_the_least_recently_used_within_its_bytes() -> None:
    async def scenario() -> tuple[list[int], int, int]:
        store = MemoryStore(max_bytes=3 * 1300)
        for name in "abc":
            await store.put(name, Entry(200, "OK", CIMultiDict(), bytes(1000), NOW, NOW, ()), 60)
        await store.get("a")  # a is used again: b is now the oldest
        await store.put("d", Entry(200, "OK", CIMultiDict(), bytes(1000), NOW, NOW, ()), 60)
        found = [len(await store.get(name)) for name in "abcd"]
        return found, store.bytes, store.evictions

    found, held, evictions = asyncio.run(scenario())
    assert found == [1, 0, 1, 1] and evictions == 1 and held <= 3 * 1300


def test_a_forwarded_request_is_freed_as_it_ends_not_by_the_cycle_collector() -> None:
    """The tap refers to its request and the request to its tap: unbroken, every miss
    left the request, its headers and its match for the cycle collector to find."""
    config = CacheConfig()
    policy = CachePolicy.resolve(config, None)
    assert policy is not None
    cache = Cache(MemoryStore(1 << 20), config)

    async def handler(forwarded: web.Request) -> web.StreamResponse:
        assert TAP in forwarded  # what the proxy's relay reads
        return web.Response(text="ok")

    async def miss() -> None:
        request = make_mocked_request("GET", "/users/1")
        response = await cache._forward(request, handler, "/users/1", None, policy, {}, "uri-miss")
        assert response.status == 200

    loop = asyncio.new_event_loop()
    gc.collect()
    gc.disable()  # only what reference counting frees is freed from here
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector would free, kept in gc.garbage
    try:
        loop.run_until_complete(miss())
        gc.collect()
        # (The mocked request's own mocks make cycles of their own: only the tap's count.)
        assert not [o for o in gc.garbage if isinstance(o, CacheTap)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
        loop.close()
