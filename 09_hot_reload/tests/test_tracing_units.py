"""The trace context of a request that is not sampled, made without the SDK (tracing.py)."""

from __future__ import annotations

import re

from aiohttp.test_utils import make_mocked_request
from gateway.observability.config import TracingConfig
from gateway.observability.tracing import ROOT, Tracing, current_ids, inject, unsampled_root

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
