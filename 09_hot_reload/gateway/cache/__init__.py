"""Stage 05's concern: an RFC 9111 shared cache between routing and the channel.

- `cache.py`       the middleware: lookup, hits, misses and coalescing, stale-if-error,
                   invalidation and purge, Cache-Status, stats
- `verdict.py`     may a stored response answer? fresh, stale allowed, revalidate
- `validators.py`  conditional requests: the cache's validators out, the client's in
- `tap.py`         an origin answer as proxy.relay meets it: a 304 refreshing the stored
                   one, stale-if-error on a 5xx, or a copy into the store
- `refresh.py`     stale-while-revalidate's background refresh
- `admin.py`       what the admin listener shows (/cache) and purges (/cache/purge)
- `fill.py`        a response filling the store while the client reads it; coalescing
- `entry.py`       a stored response: storable?, freshness, age, Vary, 304 updates
- `directives.py`  Cache-Control, CDN-Cache-Control, Age and HTTP-date parsing
- `store.py`       the Store interface, the memory store (LRU bounded by bytes), and
                   open_store: the store [cache] names
- `redis_store.py` the Redis store, shared by workers and instances
- `config.py`      [cache] and a route's `cache` table
"""
