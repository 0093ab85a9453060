"""Observability in gateway.toml.

[observability]
metrics = true              # GET /metrics on the admin listener, and the RED middleware

Every label value of every metric comes from this file (routes, pools, limits), never
from a request: that is what keeps the number of series bounded (gateway/observability/
metrics.py). A consumer label is the one thing a production gateway offers on top, off
by default (Kong's `per_consumer`), because it multiplies every series by the number of
consumers; this stage leaves it out.
"""

from __future__ import annotations

from gateway.validation import Strict


class ObservabilityConfig(Strict):
    metrics: bool = True
