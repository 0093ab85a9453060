"""The Redis store: one cache shared by every gateway worker and instance.

Layout: one Redis hash per primary key, `PREFIX k:<key>`, one field per variant (its
selecting values, hashed), each value an entry as Entry.dump() writes it (a JSON head,
then the body). One round trip (HVALS) finds every variant of a key; the hash expires
when its longest-kept variant would (`EXPIRE ... NX` then `... GT`). Bodies are capped
by the cache's max_object_bytes before they get here; the server's own `maxmemory` with
`allkeys-lru` (the launcher starts it that way) bounds the whole.

Redis is a dependency the gateway can live without. Every call has a short timeout
(`[cache.redis] timeout`, 50 ms); a failure turns the cache off for a second at a time
(reads find nothing, writes are dropped), is logged once per outage, and shows on the
admin listener (`/cache`). Requests then go to the origin as if nothing were cached:
slower, never an error. (A production deployment would add replicas or a cluster; the
client side stays this.)
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .entry import Entry

log = logging.getLogger("gateway.cache")

OUTAGE_PAUSE = 1.0  # seconds without Redis calls after one failed


class RedisStore:
    name = "redis"

    def __init__(self, url: str, *, timeout: float, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self.errors = 0
        self.last_error: str | None = None
        self._paused_until = 0.0
        self._down = False

    def _index(self, key: str) -> str:
        return f"{self.prefix}k:{key}"

    def _available(self) -> bool:
        return time.monotonic() >= self._paused_until

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        self._paused_until = time.monotonic() + OUTAGE_PAUSE
        if not self._down:
            self._down = True
            log.warning(
                "redis at %s unavailable (%s); caching is off until it answers",
                self.url,
                self.last_error,
            )

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            log.warning("redis at %s answers again; caching is back on", self.url)

    async def get(self, key: str) -> list[Entry]:
        if not self._available():
            return []
        try:
            # decode_responses is off: values are bytes (redis-py types them bytes | str)
            values = cast(list[bytes], await self._redis.hvals(self._index(key)))
        except (RedisError, OSError) as exc:
            self._failed("get", exc)
            return []
        self._succeeded()
        entries = []
        for value in values:
            try:
                entries.append(Entry.load(value))
            except (ValueError, KeyError, TypeError):
                continue  # written by another version: a miss, not an error
        entries.sort(key=lambda e: e.response_time, reverse=True)
        return entries

    async def put(self, key: str, entry: Entry, keep: float) -> None:
        if not self._available():
            return
        index, seconds = self._index(key), max(1, int(keep))
        variant = hashlib.blake2b(repr(entry.vary).encode(), digest_size=8).hexdigest()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(index, variant, entry.dump())
                pipe.expire(index, seconds, nx=True)
                pipe.expire(index, seconds, gt=True)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed("put", exc)
            return
        self._succeeded()

    async def delete(self, key: str) -> int:
        if not self._available():
            return 0
        try:
            dropped = int(await self._redis.delete(self._index(key)))
        except (RedisError, OSError) as exc:
            self._failed("delete", exc)
            return 0
        self._succeeded()
        return dropped

    async def purge(self, prefix: str) -> int:
        pattern = _glob_escape(self._index(prefix)) + "*"
        dropped = 0
        try:
            async for name in self._redis.scan_iter(match=pattern, count=500):
                dropped += int(await self._redis.delete(name))
        except (RedisError, OSError) as exc:
            self._failed("purge", exc)
        return dropped

    def stats(self) -> dict[str, object]:
        return {
            "store": self.name,
            "url": self.url,
            "available": not self._down,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    async def close(self) -> None:
        await self._redis.aclose()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
