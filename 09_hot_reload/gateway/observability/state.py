"""Each concern's own state and decisions, as metrics.

    gateway_upstream_target_up{upstream,target}            1 healthy, 0 not (active checks)
    gateway_upstream_breaker_state{upstream,target,state}  1 for the state it is in
    gateway_upstream_breaker_openings_total{upstream,target}
    gateway_upstream_target_in_flight{upstream,target}
    gateway_retries_total{reason}          the status retried, or refused, timeout, broken
    gateway_hedges_total, gateway_retry_budget_denied_total, gateway_shed_total
    gateway_bulkhead_in_use{upstream}, gateway_bulkhead_queued{upstream},
    gateway_bulkhead_rejected_total{upstream}, gateway_websockets_open,
    gateway_event_streams_open
    gateway_cache_results_total{result}    hit, miss, revalidated, collapsed, stored, ...
    gateway_cache_stored_bytes, gateway_cache_evictions_total, gateway_store_errors_total{store}
    gateway_auth_results_total{method,outcome}   method: key, jwt, none
    gateway_jwks_fetches_total{issuer,result}    result: ok, failed
    gateway_ratelimit_decisions_total{decision}  admitted, limited, fallback, failed_open, ...
    gateway_ratelimit_limit_decisions_total{route,limit,decision}   which limit refused

The concerns count these in plain dicts and ints: most since their own stages, for their
admin views; a few (retries by why, hedges, auth by method, decisions by limit, bypasses,
event streams) since this one. Counting each decision a second time into prometheus-client, on
the request path, would cost a lock per decision; so the numbers are copied into metric
families when they are read instead: when /metrics is asked (the worker that answers is
exact), and once a second in every worker (with --workers N the scrape adds up every
worker's files, and each is then at most a second old). A counter gets what its source
grew by since the last copy.

Every label value is a name from gateway.toml (pools, targets, issuers) or one of a fixed
set (outcomes, results, reasons): never anything a request carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.auth.auth import Authenticator
from gateway.auth.jwks import RemoteKeys
from gateway.balancing import Upstreams
from gateway.cache.cache import Cache
from gateway.channel.channel import Channel
from gateway.proxy import Proxy
from gateway.ratelimit.limiter import Limiter

STATES = ("closed", "open", "half-open")
Labels = tuple[str, ...]
Mode = Literal["liveall", "livesum"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """The concerns whose numbers become metrics (built in app.py)."""

    upstreams: Upstreams
    channel: Channel
    proxy: Proxy
    cache: Cache
    auth: Authenticator
    limiter: Limiter


class StateMetrics:
    def __init__(self, observed: Observed, registry: CollectorRegistry | None) -> None:
        self.observed = observed

        def counter(name: str, help: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, help, list(labels), registry=registry)

        def gauge(name: str, help: str, labels: Iterable[str], mode: Mode) -> Gauge:
            # mode: how the workers' values add up in one scrape (observability/workers.py).
            # `liveall` keeps one series per worker (a pid label): each balances, probes and
            # breaks on its own, and their views may differ.
            return Gauge(name, help, list(labels), registry=registry, multiprocess_mode=mode)

        target = ["upstream", "target"]
        self.target_up = gauge(
            "gateway_upstream_target_up", "1: the target passes its checks", target, "liveall"
        )
        self.breaker = gauge(
            "gateway_upstream_breaker_state",
            "1 for the breaker state each target is in",
            [*target, "state"],
            "liveall",
        )
        self.openings = counter(
            "gateway_upstream_breaker_openings", "Times a target's breaker opened", target
        )
        self.target_in_flight = gauge(
            "gateway_upstream_target_in_flight", "Requests at a target now", target, "livesum"
        )
        self.retries = counter("gateway_retries", "Tries sent again, by why", ["reason"])
        self.hedges = counter("gateway_hedges", "Second tries sent because the first was slow")
        self.budget_denied = counter(
            "gateway_retry_budget_denied", "Retries the retry budget did not allow"
        )
        self.shed = counter("gateway_shed", "Requests refused at the in-flight limit")
        pool = ["upstream"]
        self.bulkhead_in_use = gauge(
            "gateway_bulkhead_in_use", "Bulkhead places taken", pool, "livesum"
        )
        self.bulkhead_queued = gauge(
            "gateway_bulkhead_queued", "Requests waiting for a place", pool, "livesum"
        )
        self.bulkhead_rejected = counter(
            "gateway_bulkhead_rejected", "Requests the bulkhead turned away", pool
        )
        self.websockets = gauge("gateway_websockets_open", "WebSockets relayed now", (), "livesum")
        self.event_streams = gauge(
            "gateway_event_streams_open", "Server-Sent Events streams relayed now", (), "livesum"
        )
        self.cache_results = counter(
            "gateway_cache_results", "Cache lookups and stores, by result", ["result"]
        )
        self.cache_bytes = gauge(
            "gateway_cache_stored_bytes", "Bytes in the memory store", (), "livesum"
        )
        self.cache_evictions = counter(
            "gateway_cache_evictions", "Entries the memory store evicted for room"
        )
        self.store_errors = counter(
            "gateway_store_errors", "Failed calls to a shared store (Redis)", ["store"]
        )
        self.auth_results = counter(
            "gateway_auth_results",
            "Authentication decisions, by how the caller tried and what came of it",
            ["method", "outcome"],
        )
        self.jwks_fetches = counter(
            "gateway_jwks_fetches", "Key set fetches from an issuer", ["issuer", "result"]
        )
        self.decisions = counter(
            "gateway_ratelimit_decisions", "Rate-limit decisions and store trouble", ["decision"]
        )
        self.limit_decisions = counter(
            "gateway_ratelimit_limit_decisions",
            "Each limit's decisions, by route (methods and pattern) and limit name",
            ["route", "limit", "decision"],
        )
        # What each counter's source said at the last copy, by (family, labels).
        self._last: dict[tuple[int, Labels], float] = {}
        self._targets: set[Labels] = set()  # the targets' labels at the last copy

    def sync(self) -> None:
        """Copy every concern's numbers into the families."""
        o = self.observed
        targets: set[Labels] = set()
        for pool in o.upstreams:
            for row in pool.snapshot():
                labels = (pool.name, str(row["url"]))
                targets.add(labels)
                self.target_up.labels(*labels).set(row["state"] != "unhealthy")
                for state in STATES:
                    self.breaker.labels(*labels, state).set(row["circuit"] == state)
                self.target_in_flight.labels(*labels).set(row["in_flight"])
                self._add(self.openings, [(labels, row["opens"])])
        for gone in self._targets - targets:  # removed by a reload (gateway/reload/)
            self._forget(gone)
        self._targets = targets
        channel = o.channel
        self._add(self.retries, (((reason,), n) for reason, n in channel.retried.items()))
        self._add(self.hedges, [((), channel.hedges)])
        self._add(self.budget_denied, [((), channel.budget.denied)])
        self._add(self.shed, [((), channel.shedder.shed)])
        for name, bulkhead in channel.bulkheads.items():
            self.bulkhead_in_use.labels(name).set(bulkhead.in_use)
            self.bulkhead_queued.labels(name).set(bulkhead.queued)
            self._add(self.bulkhead_rejected, [((name,), bulkhead.rejected)])
        self.websockets.set(channel.websockets.open)
        self.event_streams.set(o.proxy.event_streams)
        self._add(self.cache_results, (((result,), n) for result, n in o.cache.counts.items()))
        self._store(o.cache.store.stats(), "cache")
        self._add(self.auth_results, o.auth.by_method.items())
        for issuer in o.auth.issuers.values():
            if isinstance(issuer.keys, RemoteKeys):
                keys, name = issuer.keys, issuer.name
                ok, failed = keys.fetches - keys.failures, keys.failures
                self._add(self.jwks_fetches, [((name, "ok"), ok), ((name, "failed"), failed)])
        self._add(self.decisions, (((d,), n) for d, n in o.limiter.counts.items()))
        self._add(self.limit_decisions, o.limiter.by_limit.items())
        self._store(o.limiter.store.stats(), "rate_limit")

    def _forget(self, labels: Labels) -> None:
        """A target a reload removed: its series go. With --workers N the values stay in
        the files the scrape reads (prometheus-client cannot delete them), so they are
        zeroed first: a removed target shows as down there, until the gateway restarts."""
        gauges = [self.target_up, self.target_in_flight]
        for gauge in gauges:
            gauge.labels(*labels).set(0)
        for state in STATES:
            self.breaker.labels(*labels, state).set(0)
        for gauge in gauges:
            gauge.remove(*labels)
        for state in STATES:
            self.breaker.remove(*labels, state)

    def _store(self, stats: Mapping[str, object], store: str) -> None:
        """A store's own numbers, as its stats() gives them (the memory and Redis stores
        of the cache and of the limiter say different things)."""
        if isinstance(size := stats.get("bytes"), int):
            self.cache_bytes.set(size)
        if isinstance(evictions := stats.get("evictions"), int):
            self._add(self.cache_evictions, [((), evictions)])
        if isinstance(errors := stats.get("errors"), int):
            self._add(self.store_errors, [((store,), errors)])

    def _add(self, family: Counter, values: Iterable[tuple[Labels, float]]) -> None:
        """Increase each child of `family` by what its source grew since the last copy."""
        for labels, now in values:
            key = (id(family), labels)
            grown = now - self._last.get(key, 0.0)
            if grown > 0:
                (family.labels(*labels) if labels else family).inc(grown)
            self._last[key] = now
