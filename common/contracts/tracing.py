"""The tracing contract: what every stage from 08 on tells a trace collector.

A stage runs it from `tests/test_tracing_contract.py`:

    from common.contracts.tracing import *  # noqa: F403

with the `stage_dir` and `render` fixtures of its conftest.py. The gateway exports to a
real OTLP/HTTP receiver (below, in this process), whose requests are decoded with the
protobuf messages of opentelemetry-proto, not with the exporter's own code.

- W3C trace context: a request's `traceparent` continues upstream with the same trace
  id and the gateway's try as parent; a request without one starts a trace; the request
  id is untouched;
- the span tree of a request that was retried once: the server span (named by method and
  route, child of the caller's span), two tries under it (attempt, target, why the first
  failed, why the second was sent) and the backoff between them;
- sampling at the head: with a ratio of 0, a request without a sampled parent exports
  nothing (and still passes a trace id on); one with a sampled parent is traced;
- the JSON access log line carries the trace id; the latency histogram, an exemplar.

Run against stage 07 it fails: 07 neither continues traces nor exports spans.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from common.contracts.upstreams import refused_port
from common.contracts.wire import send
from common.testing.gateway import Render, start_gateway
from common.testing.processes import Proc, start_backend
from common.testing.specs import (
    ChannelSpec,
    GatewaySpec,
    HealthSpec,
    ObservabilitySpec,
    PoolSpec,
    RouteSpec,
    targets,
)


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf, every span kept."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                message = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    for resource in message.resource_spans:
                        for scope in resource.scope_spans:
                            receiver.spans.extend(scope.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test says what went wrong

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def trace(self, trace_id: str, until: str, timeout: float = 10.0) -> list[Span]:
        """The spans of `trace_id` once one named `until` has arrived (the exporter
        batches); what arrived by then after `timeout`."""
        wanted = bytes.fromhex(trace_id)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [s for s in self.spans if s.trace_id == wanted]
            if any(s.name == until for s in found) or time.monotonic() > deadline:
                return found
            time.sleep(0.05)  # the exporter sends when its batch is due: poll what came

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_backend("users", "a", log_dir=tmp_path_factory.mktemp("trace-origin"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def dead_port() -> Iterator[int]:
    with refused_port() as port:
        yield port


def traced_gateway(origin: Proc, dead_port: int, receiver: Receiver, stage_dir: Path,
                   render: Render, where: Path, ratio: float = 1.0) -> Proc:  # fmt: skip
    # Two targets, the first refusing: every other request is refused there and retried on
    # the other (the breaker never opens: 1,000 failures in a row would be needed).
    dead = f"http://127.0.0.1:{dead_port}"
    never = HealthSpec(active=False, consecutive_failures=1000)
    spec = GatewaySpec(
        [RouteSpec("/mixed", "mixed", strip_prefix=True, channel=ChannelSpec(attempts=2)),
         RouteSpec("/direct", origin.url, strip_prefix=True)],
        pools={"mixed": PoolSpec(targets(dead, origin.url), health=never)},
        access_log=True,
        observability=ObservabilitySpec(sample_ratio=ratio, otlp_endpoint=receiver.url,
                                        access_log_format="json"),
    )  # fmt: skip
    return start_gateway(stage_dir, render(spec), where)


@pytest.fixture(scope="module")
def gateway(origin: Proc, dead_port: int, receiver: Receiver, stage_dir: Path, render: Render,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:  # fmt: skip
    proc = traced_gateway(origin, dead_port, receiver, stage_dir, render,
                          tmp_path_factory.mktemp("trace-gateway"))  # fmt: skip
    yield proc
    proc.stop()


def traceparent(sampled: bool = True) -> tuple[str, str, str]:
    """(header value, trace id, span id) of a new caller's span."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}", trace_id, span_id


def upstream_headers(body: bytes) -> dict[str, str]:
    """What the echo endpoint says the upstream received."""
    return {name.lower(): value for name, value in json.loads(body)["headers"]}


def attributes(span: Span) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for kv in span.attributes:
        field = kv.value.WhichOneof("value")
        found[kv.key] = getattr(kv.value, field) if field else None
    return found


def test_a_callers_trace_continues_upstream(gateway: Proc) -> None:
    header, trace_id, span_id = traceparent()
    sent = [("traceparent", header), ("tracestate", "vendor=x"), ("X-Request-ID", "r-1")]
    reply = send(gateway.port, "GET", "/direct/echo", sent)
    assert reply.status == 200
    seen = upstream_headers(reply.body)
    version, upstream_trace, parent, flags = seen["traceparent"].split("-")
    assert (version, upstream_trace) == ("00", trace_id)
    assert int(flags, 16) & 1 == 1  # sampled, as the caller said
    assert parent != span_id  # the gateway's span is the upstream's parent now
    assert seen["tracestate"] == "vendor=x"
    assert seen["x-request-id"] == "r-1" and reply.header("X-Request-ID") == "r-1"


def test_a_request_without_a_trace_starts_one(gateway: Proc) -> None:
    first = upstream_headers(send(gateway.port, "GET", "/direct/echo").body)["traceparent"]
    second = upstream_headers(send(gateway.port, "GET", "/direct/echo").body)["traceparent"]
    assert first.split("-")[1] != second.split("-")[1]  # a new trace each
    assert int(first.split("-")[1], 16) != 0


def test_the_span_tree_of_a_retried_request(
    gateway: Proc, receiver: Receiver, dead_port: int
) -> None:
    for _ in range(6):  # round robin: one of two requests meets the refusing target first
        header, trace_id, caller = traceparent()
        reply = send(gateway.port, "GET", "/mixed/echo", [("traceparent", header)])
        assert reply.status == 200
        if reply.header("X-Attempt-Count") == "2":
            break
    else:
        pytest.fail("no request was retried")
    spans = receiver.trace(trace_id, until="GET /mixed")  # the server span ends last
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    # (and the cache's lookup: the route caches by default, and this answer says nothing)
    assert sorted(by_name) == ["GET /mixed", "backoff", "cache lookup", "upstream try"]
    (server,) = by_name["GET /mixed"]
    assert server.kind == Span.SPAN_KIND_SERVER
    assert server.parent_span_id.hex() == caller  # the caller's span is its parent
    assert attributes(server)["http.route"] == "/mixed"
    assert attributes(server)["http.response.status_code"] == 200
    tries = sorted(by_name["upstream try"], key=lambda s: attributes(s)["gateway.attempt"])
    assert [attributes(t)["gateway.attempt"] for t in tries] == [1, 2]
    assert all(t.parent_span_id == server.span_id for t in tries)
    first, second = (attributes(t) for t in tries)
    assert first["error.type"] == "refused"
    assert first["url.full"] == f"http://127.0.0.1:{dead_port}"
    assert second["http.response.status_code"] == 200 and second["gateway.retry_of"] == "refused"
    assert second["url.full"] != first["url.full"]
    (backoff,) = by_name["backoff"]
    assert backoff.parent_span_id == server.span_id
    assert attributes(backoff)["gateway.retry_of"] == "refused"
    # In time order: the first try, the wait, the second.
    assert tries[0].end_time_unix_nano <= backoff.start_time_unix_nano
    assert backoff.end_time_unix_nano <= tries[1].start_time_unix_nano
    # The upstream's parent is the second try.
    parent = upstream_headers(reply.body)["traceparent"].split("-")[2]
    assert parent == tries[1].span_id.hex()


def test_the_json_access_log_leads_to_the_trace(gateway: Proc) -> None:
    header, trace_id, _ = traceparent()
    assert send(gateway.port, "GET", "/direct/users/1", [("traceparent", header)]).status == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the line is written after the answer left
        lines = [json.loads(line) for line in gateway.log_path.read_text().splitlines()
                 if line.startswith("{") and trace_id in line]  # fmt: skip
        if lines:
            break
        time.sleep(0.02)
    assert len(lines) == 1, "no JSON access line with the trace id"
    assert lines[0]["status"] == 200 and lines[0]["target"] == "/direct/users/1"
    assert len(lines[0]["span_id"]) == 16


def test_the_latency_histogram_links_to_a_trace(gateway: Proc) -> None:
    import urllib.request

    header, trace_id, _ = traceparent()
    assert send(gateway.port, "GET", "/direct/users/1", [("traceparent", header)]).status == 200
    request = urllib.request.Request(gateway.admin_url + "/metrics")
    request.add_header("Accept", "application/openmetrics-text; version=1.0.0")
    with urllib.request.urlopen(request, timeout=10) as reply:
        text = reply.read().decode()
    exemplars = [line for line in text.splitlines()
                 if line.startswith("gateway_request_duration_seconds_bucket")
                 and 'route="/direct"' in line and " # {" in line]  # fmt: skip
    assert any(f'trace_id="{trace_id}"' in line for line in exemplars), exemplars[:5]


def test_sampling_is_decided_at_the_head(
    origin: Proc, dead_port: int, receiver: Receiver, stage_dir: Path, render: Render,
    tmp_path: Path,
) -> None:  # fmt: skip
    proc = traced_gateway(origin, dead_port, receiver, stage_dir, render, tmp_path, ratio=0.0)
    try:
        # No parent: not sampled, nothing exported, and still a trace id passed on.
        reply = send(proc.port, "GET", "/direct/echo")
        _, unsampled, _, flags = upstream_headers(reply.body)["traceparent"].split("-")
        assert int(flags, 16) & 1 == 0  # the sampled bit (W3C trace-flags)
        # A sampled parent: traced whatever the ratio (every process of a trace agrees).
        header, trace_id, _ = traceparent(sampled=True)
        assert send(proc.port, "GET", "/direct/users/1", [("traceparent", header)]).status == 200
        names = [s.name for s in receiver.trace(trace_id, until="GET /direct")]
        assert "GET /direct" in names and "upstream try" in names
        # By now the unsampled request's spans would have arrived too, had there been any.
        assert receiver.trace(unsampled, until="GET /direct", timeout=0.5) == []
    finally:
        proc.stop()
