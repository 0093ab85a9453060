"""Prometheus metrics: RED per route (rate, errors, duration), the upstreams' time, and
GET /metrics on the admin listener.

    gateway_requests_total{route,method,code,source}   every answer the client got
                                                       (and `consumer`, when asked for)
    gateway_request_duration_seconds{route}            histogram: the whole request
    gateway_upstream_duration_seconds{upstream}        histogram: each try, until its head
    gateway_requests_in_flight                         requests inside the gateway now
    gateway_build_info{stage,config_hash}              1: which code, which gateway.toml

The names follow the shape dashboards and alerts for other gateways expect (Kong's
kong_http_requests_total and its latency histograms, Envoy's upstream_rq and rq_time);
ARCHITECTURE.md puts them side by side.

`route` is the route as configured (`/users`, `/api/v1/users/{id}`), never the raw path:
a label value is a series, and a raw path would make one per user id, per typo, per
scanner's probe, until the scrape is megabytes and the Prometheus server runs out of
memory. A request no route matched (404, 400, 431) counts under one value (labels.py).
`method` is one of the standard methods or `_OTHER` (OpenTelemetry's convention): a
client may send any token as a method. `code` is the status the client got. `source`
says who made that answer (Kong's label): `upstream` when the gateway relayed a service's
answer, `gateway` when it made one itself (a 401, a 429, a 504, a cache hit), so "our
503s" and "their 503s" are two lines on a graph. The gateway's own time is the request's
duration less the upstream's.

prometheus-client does the exposition (the library every Python exporter uses), but not
the counting on the request path: there, each increment would take a lock and each
observation walk the buckets in Python, three metric calls per request that cost more than
some concerns do. The middleware counts into plain ints and lists instead (`Tally`), and
`sync` adds them into the families when /metrics is asked and once a second, as it does
the concerns' own numbers (state.py): another worker's numbers are at most a second old
in a scrape, less than one scrape interval. A sampled request's latency is observed
straight away, so that its exemplar is the library's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from bisect import bisect_left
from collections.abc import Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.auth.identity import IDENTITY
from gateway.concern import AdminView

from .state import Observed, StateMetrics
from .tracing import current_ids, traced
from .workers import SHARED_DIR

# Seconds. Prometheus's default buckets start at 5 ms, where a gateway's own answers (a
# cache hit, a 401) are long done: these start at 0.5 ms and end at 10 s, the longest
# deadline worth a bucket. Fourteen buckets per series: each is a series of its own, so
# more resolution costs memory in every Prometheus that scrapes this.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BOUNDS = (*BUCKETS, float("inf"))  # prometheus-client's upper bounds, +Inf last

Counted = tuple[str, str, int, str, str]  # route, method, code, source, consumer
SYNC_SECONDS = 1.0  # how old, at most, another worker's numbers are in a scrape


class Metrics:
    """The metric families of one gateway process, and the RED middleware that feeds them."""

    def __init__(
        self, *, stage: str, config_text: str, consumers: frozenset[str] | None = None
    ) -> None:
        # `consumers`: the configured consumers' ids when [observability] consumer_label
        # is on (the label's only values, with "(other)" and ""); None: no such label.
        self.consumers = consumers
        # With --workers N the series live in files every worker writes and the scrape
        # sums (workers.py); then the families are registered nowhere, and /metrics reads
        # the files. With one worker they live in this process's own registry.
        shared = os.environ.get(SHARED_DIR)
        own = None if shared else CollectorRegistry()
        self.requests = Counter(
            "gateway_requests",
            "Answers the clients got, by route, method, status code and who made them",
            ["route", "method", "code", "source", *(["consumer"] if consumers is not None else [])],
            registry=own,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from the request's arrival to its answer, by route",
            ["route"],
            buckets=BUCKETS,
            registry=own,
        )
        self.upstream = Histogram(
            "gateway_upstream_duration_seconds",
            "Time from sending a try upstream to its response head, by upstream pool",
            ["upstream"],
            buckets=BUCKETS,
            registry=own,
        )
        self.in_flight = Gauge(
            "gateway_requests_in_flight",
            "Requests inside the gateway now",
            registry=own,
            multiprocess_mode="livesum",  # every live worker's, added up
        )
        build = Gauge(
            "gateway_build_info",
            "Always 1: the stage that runs and the hash of its gateway.toml",
            ["stage", "config_hash"],
            registry=own,
            multiprocess_mode="max",  # the workers agree: one series, not one per pid
        )
        config_hash = hashlib.sha256(config_text.encode()).hexdigest()[:12]
        build.labels(stage, config_hash).set(1)
        self._build, self._stage, self._config_hash = build, stage, config_hash
        # Live configuration (gateway/reload/): counted when a reload happens, which is
        # rare, so straight into the families.
        self.reloads = Counter(
            "gateway_config_reloads",
            "Configuration reloads, by result (ok, failed: the old one serves on)",
            ["result"],
            registry=own,
        )
        self.generation = Gauge(
            "gateway_config_generation",
            "The configuration generation serving (1 at start, +1 per successful reload)",
            registry=own,
            multiprocess_mode="liveall",  # one per worker: a disagreement shows
        )
        self.generation.set(1)
        self.last_reload = Gauge(
            "gateway_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully (at start, or a reload)",
            registry=own,
            multiprocess_mode="max",
        )
        self.last_reload.set_to_current_time()
        self._own = own
        # What a scrape reads: this process's families, or every worker's files.
        self.exposed = own if own is not None else CollectorRegistry()
        if shared:
            # prometheus-client leaves this constructor unannotated (it registers itself).
            MultiProcessCollector(self.exposed, shared)  # type: ignore[no-untyped-call]
        self._exposition = make_aiohttp_handler(self.exposed)
        self.state: StateMetrics | None = None
        # Requests inside the gateway now, counted by the middleware in a plain int: the
        # gauge gets it when read (sync), not at two locked writes per request.
        self.inside = 0
        self._syncing: asyncio.Task[None] | None = None
        # What the request path counted since the last sync, per label set: all values
        # come from the config or a fixed list, so these dicts are as bounded as the
        # series are.
        self._counted: dict[Counted, int] = {}
        self._timed: dict[str, Tally] = {}
        self._upstreams: dict[str, Tally] = {}

    # --- the request path: the middleware (middleware.py) calls these ---------------

    def record(
        self, route: str, method: str, code: int, source: str, consumer: str, seconds: float
    ) -> None:
        """One answered request: counted, and its time observed."""
        key = (route, method, code, source, consumer)
        counted = self._counted
        counted[key] = counted.get(key, 0) + 1
        if traced() and (ids := current_ids()) is not None:
            # An exemplar: this observation's trace. A latency spike on a graph then links
            # to a trace of a request inside it (OpenMetrics only, and never with
            # --workers N: the multiprocess files keep no exemplars). Sampled requests are
            # few: they pay the library's own observe().
            self.duration.labels(route).observe(seconds, {"trace_id": ids[0]})
            return
        tally = self._timed.get(route)
        if tally is None:
            tally = self._timed[route] = Tally()
        tally.add(seconds)

    def consumer_of(self, request: web.Request) -> str:
        """The consumer label's value: a configured consumer's id, "(other)" for a caller
        that is none (a token's subject is the IdP's to choose: never a label value), ""
        for no caller at all."""
        identity = request.get(IDENTITY)
        if identity is None or self.consumers is None:
            return ""
        return identity.consumer_id if identity.consumer_id in self.consumers else "(other)"

    def upstream_time(self, pool: str, seconds: float) -> None:
        """One try's time to its response head (or its failure), from the channel."""
        tally = self._upstreams.get(pool)
        if tally is None:
            tally = self._upstreams[pool] = Tally()
        tally.add(seconds)

    def watch(self, observed: Observed, consumers: frozenset[str] | None = None) -> None:
        """Each concern's own numbers too (state.py), once the concerns exist; after a
        reload, the new generation's (their counts go on: reload/generation.py), and, with
        the consumer label on, its consumers' ids as the label's values."""
        if self.state is None:
            self.state = StateMetrics(observed, self._own)
        else:
            self.state.observed = observed
        if self.consumers is not None and consumers is not None:
            self.consumers = consumers

    def reloaded(self, *, ok: bool, generation: int, config_hash: str | None) -> None:
        """A reload's result; when it succeeded, the new generation and config hash."""
        self.reloads.labels("ok" if ok else "failed").inc()
        if ok and config_hash is not None:
            self.generation.set(generation)
            self.last_reload.set_to_current_time()
            if config_hash != self._config_hash:
                self._build.labels(self._stage, self._config_hash).set(0)
                self._build.labels(self._stage, config_hash).set(1)
                self._config_hash = config_hash

    # --- the admin listener --------------------------------------------------------------

    def admin_views(self) -> Sequence[AdminView]:
        return (AdminView(path="/metrics", page=self._page),)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        self.sync()  # this worker's numbers as of now
        # prometheus-client's own handler: the text format, or OpenMetrics when the
        # scraper's Accept header asks for it (Prometheus does), gzip when it may.
        return await self._exposition(request)

    def sync(self) -> None:
        """Copy what is counted in plain numbers into the families: the RED numbers, the
        requests in flight (the middleware's `inside`) and each concern's numbers
        (state.py)."""
        for key, n in self._counted.items():
            if n:
                route, method, code, source, consumer = key
                labels = [route, method, str(code), source]
                if self.consumers is not None:
                    labels.append(consumer)
                self.requests.labels(*labels).inc(n)
                self._counted[key] = 0
        for route, tally in self._timed.items():
            tally.flush(self.duration.labels(route))
        for pool, tally in self._upstreams.items():
            tally.flush(self.upstream.labels(pool))
        self.in_flight.set(self.inside)
        if self.state is not None:
            self.state.sync()

    async def _keep_synced(self) -> None:
        """Once a second, for the scrapes other workers answer (--workers N)."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(SYNC_SECONDS)
                self.sync()

    async def start(self) -> None:
        self._syncing = asyncio.create_task(self._keep_synced())

    async def close(self) -> None:
        if self._syncing is not None:
            self._syncing.cancel()
            await asyncio.gather(self._syncing, return_exceptions=True)
        self.sync()  # with --workers N a worker's files outlive it: its last second too


class Tally:
    """One histogram series' observations since the last sync: a count per bucket and a
    sum, in plain numbers (one C bisect and two additions per observation)."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets = [0] * len(BOUNDS)
        self.total = 0.0

    def add(self, seconds: float) -> None:
        # The first upper bound >= seconds, as prometheus-client's observe() finds it.
        self.buckets[bisect_left(BOUNDS, seconds)] += 1
        self.total += seconds

    def flush(self, child: Histogram) -> None:
        """Add the tally into the histogram's series and start again. prometheus-client
        has no public call that adds n observations at once: this writes the two fields
        observe() writes, `_buckets` (one value per bound, not cumulative) and `_sum`.
        The library is pinned, and a unit test compares this with observe()'s result."""
        if not any(self.buckets):
            return
        for value, n in zip(child._buckets, self.buckets, strict=True):
            if n:
                value.inc(n)
        child._sum.inc(self.total)
        self.buckets = [0] * len(BOUNDS)
        self.total = 0.0
