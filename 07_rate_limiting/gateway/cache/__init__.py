"""Stage 05's concern: an RFC 9111 shared cache between routing and the channel.

- `cache.py`       the middleware: lookup, hits, revalidation, stale serving, storing
                   (through proxy.relay's tap), invalidation, Cache-Status
- `fill.py`        a response filling the store while the client reads it; coalescing
- `entry.py`       a stored response: storable?, freshness, age, Vary, 304 updates
- `directives.py`  Cache-Control, CDN-Cache-Control, Age and HTTP-date parsing
- `store.py`       the Store interface and the memory store (LRU bounded by bytes)
- `redis_store.py` the Redis store, shared by workers and instances
- `config.py`      [cache] and a route's `cache` table
"""
