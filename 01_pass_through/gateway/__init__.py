"""Stage 01 API gateway: a correct, streaming reverse proxy with dict routing.

(The first line above is also what `python -m gateway --help` says: one place per stage.)
`python -m gateway --config gateway.toml` starts it. The modules, in the order a request
meets them:

- `server.py`     listening socket(s), worker processes, signals, graceful shutdown
- `protocol.py`   each client connection's HTTP/1.1: malformed heads and slow ones
- `app.py`        the aiohttp application: lifecycle, the middleware chain, the handler
- `requestid.py`  X-Request-ID: kept or generated, and stamped on every log line
- `accesslog.py`  one line per request
- `errors.py`     every error the gateway itself produces, as application/problem+json
- `routing.py`    path prefix -> route (a deliberately simple dict scan), a middleware
- `proxy.py`      one request to one upstream: `open` it, then `relay` the answer
- `headers.py`    hop-by-hop headers, X-Forwarded-* / Forwarded, Via
- `config.py`     gateway.toml, validated, with errors that name the key
- `validation.py` what every config model shares: strictness, seconds, ports
"""
