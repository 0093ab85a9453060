"""Traces (OpenTelemetry): where one request spent its time, in this gateway and beyond.

    GET /users/{id}                      server span, named by method and route
      ├─ rate limit                      the decision (its Redis call, with Redis)
      ├─ cache lookup
      ├─ upstream try  attempt=1 target=http://...:9001   failed: refused
      ├─ backoff       0.025 s
      └─ upstream try  attempt=2 target=http://...:9002   200

W3C trace context in and out: a request whose `traceparent` names a trace continues it
(its `tracestate` too), and the gateway's span becomes the parent of what the upstream
does; a request without one starts a trace. Every try carries its own `traceparent` to
the upstream, so a service's spans hang under the try that reached it. The request id
(X-Request-ID) stays what it was: it names a request, a trace id names a trace.

Sampling is decided once, at the head: a request that arrives with a sampled parent is
always traced and one with an unsampled parent never (`ParentBased`, the SDK's default),
one without a parent is traced with the configured probability, and the decision travels
on in the `traceparent` flag, so that every service of a trace follows it and traces
arrive whole. The demo samples everything; gateway.toml says what production does. An
unsampled request costs one random draw and the header it passes on (`Tracing.begin`);
the children below are not made at all (`child`).

Finished spans go to an OTLP/HTTP collector in batches (a thread of the SDK's, never the
event loop), and the last traces stay in memory for the dashboard (`RecentTraces`).
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar, Token
from types import TracebackType
from typing import NamedTuple

from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from gateway.concern import AdminView

from .config import TracingConfig
from .labels import method_label

PROPAGATOR = TraceContextTextMapPropagator()
# A proxy until `Tracing` installs the provider; every concern's spans come from it.
tracer = trace.get_tracer("gateway")


class Tracing:
    """The process's tracer provider: sampler, exporter, the ring of recent traces."""

    def __init__(self, config: TracingConfig, *, stage: str) -> None:
        self.config = config
        self.ratio = config.sample_ratio if config.enabled else 0.0
        resource = Resource.create({"service.name": config.service_name, "service.version": stage})
        # The head decision for a request without a trace is `begin`'s own (below); what
        # reaches the SDK without a parent was chosen to be sampled, and a parent's flag
        # decides the rest: ParentBased, as the SDK's default sampler is.
        self.provider = TracerProvider(sampler=ParentBased(ALWAYS_ON), resource=resource)
        self.recent = RecentTraces(config.keep_traces)
        self.provider.add_span_processor(self.recent)
        if config.otlp_endpoint:
            # Imported when used: the exporter and protobuf add a tenth of a second to
            # every start of a gateway that exports nothing.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint, timeout=5)
            delay = config.export_delay * 1000
            self.provider.add_span_processor(
                BatchSpanProcessor(exporter, schedule_delay_millis=delay)
            )
        # One provider per process, set once: the concerns' spans find it through the
        # global API (a second gateway built in one process keeps the first's).
        trace.set_tracer_provider(self.provider)

    def begin(self, request: web.Request) -> Begun | Token[str | None]:
        """The request's span, current until `end`: a child of the trace its
        `traceparent` names, or the root of a new one.

        Most requests are not sampled, and for a root that is decided here, before the
        SDK is asked: its way to a span that records nothing (the sampler, the span
        objects, the context it attaches) was most of what tracing cost a request. Such a
        request gets a trace id and a span id all the same, as the SDK would make them,
        already written as the `traceparent` the channel passes upstream with the sampled
        flag off (`unsampled_root`): the services see one trace whoever samples it. What
        `end` gets back is then only ROOT's token: not even a Begun is made."""
        if "traceparent" not in request.headers and random.random() >= self.ratio:
            return ROOT.set(unsampled_root())
        parent = PROPAGATOR.extract(request.headers)
        span = tracer.start_span(request.method, context=parent, kind=SpanKind.SERVER)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return Begun(span, token, SAMPLED.set(True) if span.is_recording() else None)

    def end(
        self, begun: Begun | Token[str | None], request: web.Request, route: str, status: int
    ) -> None:
        if isinstance(begun, Token):  # an unsampled root: nothing was made but its ids
            ROOT.reset(begun)
            return
        span = begun.span
        if span.is_recording():
            span.update_name(f"{method_label(request.method)} {route}")
            span.set_attribute("http.request.method", request.method)
            span.set_attribute("http.route", route)
            span.set_attribute("url.path", request.path)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        if begun.sampled is not None:
            SAMPLED.reset(begun.sampled)
        otel_context.detach(begun.token)

    # --- the concern -----------------------------------------------------------------

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        """Export what is still batched, then stop the exporter's thread (which may wait
        for the collector: not on the event loop)."""
        await asyncio.to_thread(self.provider.shutdown)

    def admin_views(self) -> Sequence[AdminView]:
        return ()


class Begun(NamedTuple):
    """A request the SDK was asked about: its span (recording or not) and what to undo."""

    span: Span
    token: Token[Context]  # otel_context.attach's, for detach
    sampled: Token[bool] | None  # SAMPLED.set's, for reset; None when not recording


Attributes = Mapping[str, AttributeValue]


# Is the current request sampled? A context variable of its own, set by `begin`: asked
# for every step of every request, and reading it is one C call, where asking the
# current span is a walk through OpenTelemetry's context API.
SAMPLED: ContextVar[bool] = ContextVar("sampled", default=False)
traced = SAMPLED.get
# The `traceparent` of the current request when it is an unsampled root (Tracing.begin):
# "00-<trace id, 32 hex digits>-<span id, 16>-00".
ROOT: ContextVar[str | None] = ContextVar("root", default=None)
UNTRACED: AbstractContextManager[None] = nullcontext()
_NO_TRACE, _NO_SPAN = bytes(16), bytes(8)


def unsampled_root() -> str:
    """The `traceparent` of a new trace that is not sampled (version 00, flags 00): a
    trace id and a span id random and never 0, as the SDK's RandomIdGenerator makes them.

    One draw of 24 random bytes written as hex: formatting two large ints with `:032x`
    took twice as long, and this runs for nearly every request."""
    raw = random.randbytes(24)
    while raw[:16] == _NO_TRACE or raw[16:] == _NO_SPAN:  # 0 is the invalid id
        raw = random.randbytes(24)
    ids = raw.hex()
    return f"00-{ids[:32]}-{ids[32:]}-00"


def child(
    name: str, attributes: Attributes | None = None, *, nests: bool = False
) -> AbstractContextManager[object]:
    """A span under the current one while the block runs, or, when the request is not
    sampled (most are not, and a child costs more than most steps), nothing at all.

    `nests`: the block makes spans of its own (a token's check fetches keys), so this
    one becomes the current span while it runs. Otherwise it does not: making a span
    current is a context attached and detached again through a generator, about a
    tenth of what a sampled request costs when every step does it."""
    if not SAMPLED.get():
        return UNTRACED
    if nests:
        return tracer.start_as_current_span(name, attributes=attributes)
    return Leaf(tracer.start_span(name, attributes=attributes))


class Leaf(AbstractContextManager[Span]):
    """A span that nothing nests under, ended with its block. An exception is recorded
    on it as `start_as_current_span` records one: an event, and the status ERROR."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def __enter__(self) -> Span:
        return self.span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, Exception):  # not a CancelledError: a client leaving is no error
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        self.span.end()


def start_child(name: str, attributes: Attributes) -> Span | None:
    """`child` for code that cannot be a `with` block (the channel's try): end it with
    `end_child`."""
    if not SAMPLED.get():
        return None
    return tracer.start_span(name, attributes=attributes)


def end_child(span: Span | None, status: int | None, error: str | None = None) -> None:
    """End a `start_child` span with the HTTP status it got, or the error it ended in."""
    if span is None:
        return
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if error is not None:
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def inject(headers: MutableMapping[str, str], span: Span | None = None) -> None:
    """`traceparent` (and `tracestate`) for the upstream: `span`'s, or the current one's."""
    if span is None and (root := ROOT.get()) is not None:
        # An unsampled root (most requests): the header as the propagator would write it,
        # for a context the SDK was never asked to make.
        headers["traceparent"] = root
        return
    where = None if span is None else trace.set_span_in_context(span)
    PROPAGATOR.inject(headers, context=where)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current request's span, sampled or not, for the
    log and the exemplars; None outside a request (or with tracing off)."""
    if (root := ROOT.get()) is not None:
        return root[3:35], root[36:52]
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


class RecentTraces(SpanProcessor):
    """The last `keep` traces' finished spans, in memory, for the dashboard's waterfalls:
    bounded by traces and by spans per trace, so a retry storm cannot grow it."""

    MAX_SPANS = 64

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.traces: OrderedDict[int, list[ReadableSpan]] = OrderedDict()

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.get_span_context()
        if ctx is None or self.keep == 0:
            return
        spans = self.traces.get(ctx.trace_id)
        if spans is None:
            spans = self.traces[ctx.trace_id] = []
            while len(self.traces) > self.keep:
                self.traces.popitem(last=False)
        if len(spans) < self.MAX_SPANS:
            spans.append(span)

    def snapshot(self) -> list[list[ReadableSpan]]:
        """The kept traces, newest first."""
        return [list(spans) for spans in reversed(self.traces.values())]
