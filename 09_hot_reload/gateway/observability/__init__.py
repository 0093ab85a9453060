"""What the gateway tells the people who run it: metrics, traces, a live dashboard.

- `middleware.py` the one middleware: every request's span, counted and timed
- `metrics.py`    Prometheus metric families, GET /metrics
- `state.py`      each concern's own numbers as metrics, copied when read
- `workers.py`    one scrape for N workers: prometheus-client's multiprocess mode
- `tracing.py`    OpenTelemetry: sampling, spans, W3C trace context, OTLP export
- `labels.py`     what a request is called in both: its route, never its path
- `dashboard.py`  GET /dashboard (dashboard.html, dashboard.js, uPlot in third_party/)
- `config.py`     the `[observability]` section (config.py reads it while the routing
                  module is still being built: so nothing is imported here)
"""
