"""GET /dashboard on the admin listener: a live page, with no build step.

    /dashboard            the page (dashboard.html): charts drawn by uPlot, vendored
    /dashboard/data       what the page polls every two seconds, as JSON
    /dashboard/uplot.js, /dashboard/uplot.css, /dashboard/dashboard.js

Per route: requests a second, p50 and p99 latency and the share of 5xx answers, over the
last five minutes; the cache's hit ratio, auth's refusals and the rate limiter's
decisions a second; every pool's targets with their health and breaker; and the last
traces as waterfalls, so that a retried request shows where its time went.

The numbers come from the metrics themselves, read every two seconds (`Sampler`): the
same registry /metrics serves, so with --workers N every worker's page shows the whole
gateway, and the dashboard can never disagree with Prometheus. Rates and quantiles come
from the difference between two readings, as Prometheus's `rate` and
`histogram_quantile` compute them (linear within a bucket). The pools and the traces are
the answering worker's own (each balances and traces on its own; the pid says which).

A production gateway leaves the page to Grafana over Prometheus, and the traces to
Jaeger or Tempo; this one is for a reader who has neither running, and it costs nothing
until someone opens it but one reading every two seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry.sdk.trace import ReadableSpan
from prometheus_client import CollectorRegistry

from gateway.concern import AdminView

from .state import Observed
from .tracing import RecentTraces

EVERY = 2.0  # seconds between readings
KEEP = 150  # readings: five minutes
ASSETS = resources.files(__package__)
UPLOT = "third_party/uplot"  # uPlot 1.6.32 (MIT), as npm ships it: see its LICENSE
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


@dataclass
class Reading:
    """The metrics at one moment: cumulative counts, as Prometheus stores them."""

    at: float
    requests: dict[str, float] = field(default_factory=dict)  # by route
    errors: dict[str, float] = field(default_factory=dict)  # 5xx, by route
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)  # route -> le -> n
    cache: dict[str, float] = field(default_factory=dict)  # by result
    auth: dict[str, float] = field(default_factory=dict)  # by outcome
    limits: dict[str, float] = field(default_factory=dict)  # by decision


def read(registry: CollectorRegistry) -> Reading:
    reading = Reading(at=time.time())
    for family in registry.collect():
        for s in family.samples:
            labels, value = s.labels, s.value
            if s.name == "gateway_requests_total":
                route = labels["route"]
                reading.requests[route] = reading.requests.get(route, 0.0) + value
                if labels["code"] >= "500":
                    reading.errors[route] = reading.errors.get(route, 0.0) + value
            elif s.name == "gateway_request_duration_seconds_bucket":
                le = float(labels["le"])
                per = reading.buckets.setdefault(labels["route"], {})
                per[le] = per.get(le, 0.0) + value
            elif s.name == "gateway_cache_results_total":
                reading.cache[labels["result"]] = value
            elif s.name == "gateway_auth_results_total":
                outcome = labels["outcome"]
                reading.auth[outcome] = reading.auth.get(outcome, 0.0) + value
            elif s.name == "gateway_ratelimit_decisions_total":
                reading.limits[labels["decision"]] = value
    return reading


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """The q-quantile of what was observed between two readings of a histogram's
    cumulative buckets, in seconds, interpolated within its bucket (histogram_quantile)."""
    bounds = sorted(after)
    counts = [after[le] - before.get(le, 0.0) for le in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank, lower, below = q * counts[-1], 0.0, 0.0
    for le, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if le == float("inf"):
                return lower  # past the last finite bucket: its bound is all we know
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return None


class Dashboard:
    def __init__(
        self,
        registry: CollectorRegistry,
        observed: Observed,
        sync: Callable[[], None],
        recent: RecentTraces,
    ) -> None:
        self.registry, self.observed, self.sync, self.recent = registry, observed, sync, recent
        self.readings: deque[Reading] = deque(maxlen=KEEP + 1)
        self._task: asyncio.Task[None] | None = None

    def watch(self, observed: Observed) -> None:
        """After a reload: the new generation's pools (gateway/reload/)."""
        self.observed = observed

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_reading())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _keep_reading(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                self.sync()  # the concerns' numbers into the families, then read them
                self.readings.append(read(self.registry))
                await asyncio.sleep(EVERY)

    def admin_views(self) -> list[AdminView]:
        return [
            AdminView(path="/dashboard", page=asset("dashboard.html")),
            AdminView(path="/dashboard/data", show=self.data),
            AdminView(path="/dashboard/dashboard.js", page=asset("dashboard.js")),
            AdminView(path="/dashboard/uplot.js", page=asset(f"{UPLOT}/uPlot.iife.min.js")),
            AdminView(path="/dashboard/uplot.css", page=asset(f"{UPLOT}/uPlot.min.css")),
        ]

    # --- what the page polls -----------------------------------------------------------

    async def data(self) -> dict[str, object]:
        readings = list(self.readings)
        pairs = list(zip(readings[:-1], readings[1:], strict=True))
        names = sorted({route for _, b in pairs for route in b.requests})
        routes: dict[str, dict[str, list[float | None]]] = {
            route: {"rps": [], "p50_ms": [], "p99_ms": [], "error_rate": []} for route in names
        }
        hit_ratio: list[float | None] = []
        refused: list[float] = []
        admitted: list[float] = []
        limited: list[float] = []
        for a, b in pairs:
            seconds = max(b.at - a.at, 1e-9)
            for route, series in routes.items():
                count = grown(a.requests, b.requests, [route])
                series["rps"].append(count / seconds)
                errors = grown(a.errors, b.errors, [route])
                series["error_rate"].append(errors / count if count else None)
                before, after = a.buckets.get(route, {}), b.buckets.get(route, {})
                for q, name in ((0.5, "p50_ms"), (0.99, "p99_ms")):
                    value = quantile(q, before, after)
                    series[name].append(None if value is None else value * 1000)
            hits = grown(a.cache, b.cache, ["hit", "hit-stale"])
            looked = hits + grown(a.cache, b.cache, ["miss", "revalidate"])
            hit_ratio.append(hits / looked if looked else None)
            refusals = [outcome for outcome in b.auth if outcome != "accepted"]
            refused.append(grown(a.auth, b.auth, refusals) / seconds)
            admitted.append(grown(a.limits, b.limits, ["admitted"]) / seconds)
            limited.append(grown(a.limits, b.limits, ["limited"]) / seconds)
        return {
            "every": EVERY,
            "times": [b.at for _, b in pairs],
            "routes": routes,
            "cache_hit_ratio": hit_ratio,
            "auth_refused": refused,
            "ratelimit_admitted": admitted,
            "ratelimit_limited": limited,
            "pools": {
                pool.name: [
                    {k: row[k] for k in ("url", "state", "circuit", "in_flight", "opens")}
                    for row in pool.snapshot()
                ]
                for pool in self.observed.upstreams
            },
            "traces": [waterfall(spans) for spans in self.recent.snapshot()[:10]],
        }


def grown(before: dict[str, float], after: dict[str, float], keys: list[str]) -> float:
    """How much the counters `keys` grew between two readings."""
    return sum(after.get(k, 0.0) - before.get(k, 0.0) for k in keys)


def waterfall(spans: list[ReadableSpan]) -> dict[str, Any]:
    """One trace for the page: its spans as bars, offsets from the first span's start."""
    ordered = sorted(spans, key=lambda s: s.start_time or 0)
    start = ordered[0].start_time or 0
    root = next((s for s in ordered if s.parent is None or not s.parent.is_valid), ordered[0])
    bars = []
    for span in ordered:
        context = span.get_span_context()
        bars.append(
            {
                "name": span.name,
                "id": f"{context.span_id:016x}" if context else "",
                "parent": f"{span.parent.span_id:016x}" if span.parent else None,
                "offset_ms": ((span.start_time or start) - start) / 1e6,
                "duration_ms": ((span.end_time or start) - (span.start_time or start)) / 1e6,
                "error": not span.status.is_ok,
                "attributes": {k: str(v) for k, v in (span.attributes or {}).items()},
            }
        )
    context = root.get_span_context()
    return {
        "trace_id": f"{context.trace_id:032x}" if context else "",
        "name": root.name,
        "duration_ms": ((root.end_time or start) - start) / 1e6,
        "spans": bars,
    }


def asset(name: str) -> Handler:
    """A file of this package as a page: read once, served from memory."""
    body = (ASSETS / name).read_bytes()
    suffix = name[name.rfind(".") :]
    content_type = CONTENT_TYPES[suffix]

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    return page
