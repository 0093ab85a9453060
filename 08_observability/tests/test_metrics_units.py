"""The RED numbers counted in plain numbers (metrics.Tally) reach Prometheus exactly as
prometheus-client's own calls would have put them there."""

from __future__ import annotations

import pytest
from gateway.observability.metrics import BUCKETS, Metrics
from gateway.observability.workers import SHARED_DIR
from prometheus_client import CollectorRegistry, Histogram, generate_latest

# Every kind of value: zero, each bound exactly (`le` includes it), between bounds, and
# beyond the last one (+Inf).
SECONDS = [0.0, 0.0001, *BUCKETS, 0.0007, 0.3, 3.0, 42.0, 0.001, 0.001]


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    monkeypatch.delenv(SHARED_DIR, raising=False)  # one worker: the process's registry
    return Metrics(stage="08_observability", config_text="")


def lines(registry: CollectorRegistry, name: str) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.startswith(name + "_")]


def test_synced_latencies_are_what_observe_would_have_counted(metrics: Metrics) -> None:
    registry = CollectorRegistry()
    reference = Histogram(
        "gateway_request_duration_seconds",
        "reference",
        ["route"],
        buckets=BUCKETS,
        registry=registry,
    )
    for seconds in SECONDS:
        metrics.record("/users", "GET", 200, "upstream", "", seconds)
        reference.labels("/users").observe(seconds)

    def series(registry: CollectorRegistry) -> list[str]:
        return [
            line
            for line in lines(registry, "gateway_request_duration_seconds")
            if "_created" not in line
        ]

    assert series(metrics.exposed) == []  # nothing in the families before a sync
    metrics.sync()
    assert series(metrics.exposed) == series(registry)
    metrics.sync()  # a second sync adds nothing more
    assert series(metrics.exposed) == series(registry)


def test_synced_counts_add_up_once(metrics: Metrics) -> None:
    for _ in range(5):
        metrics.record("/users", "GET", 200, "upstream", "", 0.01)
    metrics.record("/users", "GET", 429, "gateway", "", 0.0002)
    metrics.upstream_time("users", 0.002)
    metrics.sync()
    metrics.record("/users", "GET", 200, "upstream", "", 0.01)
    metrics.sync()
    metrics.sync()
    got = lines(metrics.exposed, "gateway_requests")
    assert (
        'gateway_requests_total{code="200",method="GET",route="/users",source="upstream"} 6.0'
        in got
    )
    assert (
        'gateway_requests_total{code="429",method="GET",route="/users",source="gateway"} 1.0' in got
    )
    upstream = lines(metrics.exposed, "gateway_upstream_duration_seconds")
    assert 'gateway_upstream_duration_seconds_count{upstream="users"} 1.0' in upstream
    assert 'gateway_upstream_duration_seconds_bucket{le="0.001",upstream="users"} 0.0' in upstream
    assert 'gateway_upstream_duration_seconds_bucket{le="0.0025",upstream="users"} 1.0' in upstream
