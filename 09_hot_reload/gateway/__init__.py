"""Stage 09 API gateway: stage 08's observed gateway, whose configuration reloads live.

(The first line above is also what `python -m gateway --help` says: one place per stage.)
`python -m gateway --config gateway.toml` starts it. The modules, in the order a request
meets them:

- `server.py`     listening socket(s), the admin socket, workers, signals, shutdown
- `protocol.py`   each client connection's HTTP/1.1: malformed heads and slow ones
- `app.py`        the aiohttp applications: lifecycle, the middleware chain, the handler
- `admin.py`      the admin listener: /health and every concern's views, as JSON
- `concern.py`    the seam a concern plugs into: start, close, admin views
- `requestid.py`  X-Request-ID: kept or generated, and stamped on every log line
- `accesslog.py`  one line per request
- `errors.py`     every error the gateway itself produces, as application/problem+json
- `pathsafety.py` the path normalised before routing: dot-segments, `//`, refused escapes
- `routing.py`    normalised path + method -> route, and the path its upstream receives;
                  the routing middleware
- `trie.py`       the radix trie: priority, backtracking, 405 (built by `trie_build.py`)
- `patterns.py`   route patterns (`/users/{id}`, `{rest:path}`) and rewrite templates
- `reload/`       live configuration: SIGHUP or POST /reload reads gateway.toml again,
                  builds it off to the side and swaps it in whole
- `observability/` what the operators see: metrics (GET /metrics), traces (OTLP),
                  a live dashboard (GET /dashboard)
- `auth/`         who is calling: API keys, JWT (PyJWT), JWKS with rotation, scopes;
                  identity headers upstream, spoofed ones removed; 401 / 403
- `ratelimit/`    how often: GCRA and sliding-window limits per consumer, address or key,
                  concurrency limits, memory or Redis (one Lua script per decision)
- `cache/`        the shared HTTP cache: freshness, Vary, revalidation, stale serving,
                  coalescing, the memory and Redis stores, Cache-Status
- `channel/`      the way upstream: deadlines, retries and their budget, hedging,
                  bulkheads and load shedding, WebSocket relaying
- `balancing/`    upstream pools: strategies, the hash ring, active health, breakers
- `proxy.py`      one request to one upstream: `open` it, then `relay` the answer
- `headers.py`    hop-by-hop headers, X-Forwarded-* / Forwarded, Via
- `config.py`     gateway.toml, validated, with errors that name the key
- `validation.py` what every config model shares: strictness, seconds, ports
"""

STAGE = "09_hot_reload"  # gateway_build_info says which stage runs
