"""Rate limiting: how many requests a caller may make, decided per request, exactly.

- `config.py`      [rate_limit] and a route's `rate_limit` table: limits, keys, stores
- `algorithms.py`  GCRA, the sliding-window counter, the fixed window: one decision each
- `store.py`       the memory store (one process), bounded, expired keys evicted
- `redis_store.py` the Redis store: one Lua script per decision, Redis's clock, EVALSHA,
                   a breaker for when Redis is gone
- `keys.py`        whose budget a request spends: consumer, client address, header, key
- `fields.py`      the RateLimit and RateLimit-Policy header fields (structured fields)
- `limiter.py`     the middleware: decide, 429 with Retry-After, headers on every answer
"""
