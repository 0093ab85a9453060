"""Stage 01: a correct, streaming reverse proxy with dict routing.

`python -m gateway --config gateway.toml` starts it. The modules, in the order a request
meets them:

- `server.py`     listening socket(s), worker processes, signals, graceful shutdown
- `app.py`        the aiohttp application: lifecycle and the middleware chain
- `requestid.py`  X-Request-ID: kept or generated, and stamped on every log line
- `accesslog.py`  one line per request
- `errors.py`     every error the gateway itself produces, as application/problem+json
- `routing.py`    path prefix -> route (a deliberately simple dict scan)
- `proxy.py`      forwarding one request to one upstream, streaming both ways
- `headers.py`    hop-by-hop headers, X-Forwarded-* / Forwarded, Via
- `config.py`     gateway.toml, validated, with errors that name the key
"""
