"""Where entries live: the Store interface, and the in-memory store (the default).

A primary key (the request-target, plus any fields a route adds) holds a short list of
variants, one per combination of the request fields its responses vary on (§4.1); the
cache picks the variant whose recorded values match the request.

The memory store is an LRU bounded by bytes: the sum of every stored body and header
section stays under `max_bytes`, the least recently used variants leaving first. What a
single object may take is bounded separately (`max_object_bytes`, checked by the cache
as the body streams in), so one large response cannot empty the store. It belongs to one
process: each gateway worker has its own. The Redis store (redis_store.py) is the one to
use when workers or instances should share what they cache.
"""

from __future__ import annotations

import ctypes
import time
from collections import OrderedDict
from typing import Protocol

from .config import CacheConfig
from .entry import Entry

# glibc's malloc serves large blocks with mmap and gives them back on free, but it raises
# that threshold every time such a block is freed: after the first evictions, 256 KiB
# bodies come from the heap instead, where freed ones leave holes the process keeps. A
# store whose objects come and go would then hold far more RSS than its bound. Pinning
# the threshold keeps large bodies in mmap. (Varnish ships jemalloc for the same reason.)
M_MMAP_THRESHOLD = -3
LARGE_BLOCK = 128 * 1024


def pin_mmap_threshold() -> None:
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)
    except (OSError, AttributeError):
        pass  # not glibc (musl, macOS): their allocators do not move the threshold


MAX_VARIANTS = (
    8  # per primary key: a Vary on a field with many values must not grow one key forever
)


class Store(Protocol):
    name: str

    async def get(self, key: str) -> list[Entry]:
        """The variants stored under `key`, newest first ([] when none)."""

    async def put(self, key: str, entry: Entry, keep: float) -> None:
        """Store `entry` for at most `keep` seconds (it may be evicted sooner); it
        replaces the variant with the same selecting values."""

    async def delete(self, key: str) -> int:
        """Forget every variant of `key`; how many keys were dropped (0 or 1)."""

    async def purge(self, prefix: str) -> int:
        """Forget every key that starts with `prefix`; how many."""

    def stats(self) -> dict[str, object]: ...

    async def close(self) -> None: ...


class MemoryStore:
    name = "memory"

    def __init__(self, max_bytes: int, clock: object = time.time) -> None:
        pin_mmap_threshold()
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._keys: OrderedDict[str, list[tuple[Entry, float]]] = OrderedDict()  # (entry, expiry)
        self._clock = clock

    async def get(self, key: str) -> list[Entry]:
        variants = self._keys.get(key)
        if variants is None:
            return []
        # the type ignore below: the clock is a plain callable kept on the instance
        now = self._clock()  # type: ignore[operator]
        if any(expires <= now for _, expires in variants):
            for entry, expires in variants:
                if expires <= now:
                    self.bytes -= entry.size
            variants[:] = [(e, x) for e, x in variants if x > now]
            if not variants:
                del self._keys[key]
                return []
        self._keys.move_to_end(key)  # most recently used
        return [entry for entry, _ in variants]

    async def put(self, key: str, entry: Entry, keep: float) -> None:
        variants = self._keys.setdefault(key, [])
        for old, _ in variants:
            if old.vary == entry.vary:
                self.bytes -= old.size
        variants[:] = [(e, x) for e, x in variants if e.vary != entry.vary]
        # the type ignore below: the clock is a plain callable kept on the instance
        variants.insert(0, (entry, self._clock() + keep))  # type: ignore[operator]
        self.bytes += entry.size
        while len(variants) > MAX_VARIANTS:
            self.bytes -= variants.pop()[0].size
        self._keys.move_to_end(key)
        while self.bytes > self.max_bytes and self._keys:
            _, dropped = self._keys.popitem(last=False)  # the least recently used key
            self.bytes -= sum(e.size for e, _ in dropped)
            self.evictions += 1

    async def delete(self, key: str) -> int:
        variants = self._keys.pop(key, None)
        if variants is None:
            return 0
        self.bytes -= sum(e.size for e, _ in variants)
        return 1

    async def purge(self, prefix: str) -> int:
        doomed = [key for key in self._keys if key.startswith(prefix)]
        for key in doomed:
            await self.delete(key)
        return len(doomed)

    def stats(self) -> dict[str, object]:
        return {
            "store": self.name,
            "keys": len(self._keys),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "evictions": self.evictions,
        }

    async def close(self) -> None:
        self._keys.clear()
        self.bytes = 0


def open_store(config: CacheConfig) -> Store:
    """The store [cache] names: memory, or Redis (--redis-url makes it Redis)."""
    if config.store == "redis":
        from .redis_store import RedisStore  # redis-py only when it is used

        redis = config.redis
        return RedisStore(redis.url, timeout=redis.timeout, prefix=redis.prefix)
    return MemoryStore(config.max_bytes)
