"""Observability in gateway.toml.

[observability]
metrics = true              # GET /metrics on the admin listener, and the RED middleware
consumer_label = false      # a `consumer` label on gateway_requests_total (opt-in)
access_log_format = "text"  # text | json: JSON lines with trace_id and span_id

[observability.tracing]
enabled = true
sample_ratio = 0.01         # of the requests that arrive without a sampled trace
otlp_endpoint = ""          # an OTLP/HTTP collector, e.g. "http://127.0.0.1:4318/v1/traces"
service_name = "gateway"
export_delay = 1.0          # seconds between batches to the collector
keep_traces = 50            # the last traces, in memory, for the dashboard

Every label value of every metric comes from this file (routes, pools, limits), never
from a request: that is what keeps the number of series bounded (gateway/observability/
metrics.py). A consumer label is opt-in and off by default, as Kong's `per_consumer` is:
it multiplies the request counter's series by the number of consumers. Its values are
the configured consumers' ids, never a token's subject.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from gateway.validation import Strict


class TracingConfig(Strict):
    enabled: bool = True
    sample_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    otlp_endpoint: str = ""
    service_name: Annotated[str, Field(min_length=1, max_length=100)] = "gateway"
    export_delay: Annotated[float, Field(gt=0.0, le=60.0)] = 1.0
    keep_traces: Annotated[int, Field(ge=0, le=1000)] = 50

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL, e.g. http://127.0.0.1:4318/v1/traces")
        return value


class ObservabilityConfig(Strict):
    metrics: bool = True
    # gateway_requests_total gets a `consumer` label: each configured consumer's id, or
    # "(other)" (a token whose subject is no configured consumer) or "" (no caller). Off
    # by default: it multiplies the family's series by the number of consumers.
    consumer_label: bool = False
    access_log_format: Literal["text", "json"] = "text"
    tracing: TracingConfig = TracingConfig()
