"""What the gateway tells the people who run it: Prometheus metrics on the admin listener.

- `metrics.py`    the metric families, the RED middleware, GET /metrics
- `workers.py`    one scrape for N workers: prometheus-client's multiprocess mode
- `config.py`     the `[observability]` section (config.py reads it while the routing
                  module is still being built: so nothing is imported here)
"""
