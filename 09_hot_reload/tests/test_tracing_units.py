"""tracing.py without a gateway: the trace context of a request that is not sampled, made
without the SDK, and the spans of the steps of one that is."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import make_mocked_request
from gateway.observability.config import TracingConfig
from gateway.observability.tracing import (
    ROOT,
    SAMPLED,
    RecentTraces,
    Tracing,
    child,
    current_ids,
    inject,
    tracer,
    unsampled_root,
)
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, StatusCode

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-00")  # W3C, flags: not sampled


def test_an_unsampled_root_is_a_valid_traceparent_with_new_ids() -> None:
    seen = set()
    for _ in range(200):
        match = TRACEPARENT.fullmatch(unsampled_root())
        assert match is not None
        trace_id, span_id = match.groups()
        assert int(trace_id, 16) != 0 and int(span_id, 16) != 0  # 0 is the invalid id
        seen.add(trace_id)
    assert len(seen) == 200


def test_the_upstream_and_the_log_see_the_same_ids_and_none_after_the_request() -> None:
    tracing = Tracing(TracingConfig(sample_ratio=0.0), stage="test")
    request = make_mocked_request("GET", "/users/1")
    begun = tracing.begin(request)
    headers: dict[str, str] = {}
    inject(headers)  # what the channel does for every try
    ids = current_ids()  # what the access log and the exemplars read
    assert ids is not None
    assert headers["traceparent"] == f"00-{ids[0]}-{ids[1]}-00"
    tracing.end(begun, request, "/users", 200)
    # The next request on this connection runs in the same context: nothing is left.
    assert ROOT.get() is None and current_ids() is None


@pytest.fixture
def finished() -> Iterator[RecentTraces]:
    """Every span this process's provider ends from now on (one provider per process: the
    first Tracing made sets it)."""
    Tracing(TracingConfig(sample_ratio=1.0), stage="test")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    kept = RecentTraces(keep=10)
    provider.add_span_processor(kept)
    sampled = SAMPLED.set(True)  # what Tracing.begin sets for a sampled request
    yield kept
    SAMPLED.reset(sampled)


def test_a_step_that_nests_is_the_parent_of_what_it_does_and_a_leaf_of_nothing(
    finished: RecentTraces,
) -> None:
    with tracer.start_as_current_span("GET /users") as server:
        with child("verify token", nests=True) as verify:
            with child("jwks fetch"):
                pass
        with child("rate limit"):
            with child("cache lookup"):  # not under the rate limit: it is not current
                pass
    (spans,) = finished.snapshot()
    parent = {s.name: s.parent.span_id if s.parent else None for s in spans}
    assert isinstance(server, Span) and isinstance(verify, Span)
    server_id, verify_id = server.get_span_context().span_id, verify.get_span_context().span_id
    assert parent["verify token"] == server_id
    assert parent["jwks fetch"] == verify_id
    assert parent["rate limit"] == server_id and parent["cache lookup"] == server_id


def test_a_failed_step_is_an_error_and_a_cancelled_one_is_not(finished: RecentTraces) -> None:
    with tracer.start_as_current_span("GET /users"):
        with pytest.raises(ConnectionError), child("cache lookup"):
            raise ConnectionError("redis went away")
        with pytest.raises(asyncio.CancelledError), child("rate limit"):
            raise asyncio.CancelledError  # the client left: no error of the gateway's
    (spans,) = finished.snapshot()
    by_name = {s.name: s for s in spans}
    failed, cancelled = by_name["cache lookup"], by_name["rate limit"]
    assert failed.status.status_code == StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert cancelled.status.status_code == StatusCode.UNSET and not cancelled.events
    assert failed.end_time is not None and cancelled.end_time is not None  # both ended
