"""One generation of the configuration: everything a gateway.toml describes, built, and
how a new generation takes over from the one serving.

A reload never edits what serves. It builds a whole new Generation beside it
(gateway/app.py's `build_generation`), and the swap is one assignment (reload/live.py).
What must survive the swap is carried over by identity, in two steps:

- at build time, without touching the old generation: a target that stays in its pool
  (same pool, same URL) is the same `Target` object, so its health, breaker and
  requests in flight come with it (balancing/upstreams.py); a pool whose bulkhead did not
  change keeps its `Bulkhead` (places taken, the queue);
- at take-over, just before the swap (`Generation.take_over`), each per-generation
  concern takes what the old one owns and must not lose: the health checker's session
  (and the checks restart over the new target list: new targets are probed, removed
  ones no longer), the issuers whose settings did not change (with their keys: no JWKS
  fetch), the verified tokens except those whose consumer or issuer changed, the
  counters the metrics read. Take-over does no I/O that can fail a reload: a new
  issuer's first key fetch may fail, as at start-up, and its tokens get 503 until one
  succeeds.

The old generation is then dropped, not closed: the requests still running on it finish
on it (their route, pool, limits), and the last one lets it go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp.typedefs import Handler

from gateway.auth.auth import Authenticator
from gateway.balancing import Upstreams
from gateway.channel.bulkhead import Bulkhead
from gateway.channel.channel import Channel
from gateway.channel.config import BulkheadConfig
from gateway.concern import Concern
from gateway.config import GatewayConfig
from gateway.observability.state import Observed
from gateway.ratelimit.limiter import Limiter


def config_digest(config: GatewayConfig) -> str:
    """The configuration's hash as /config, /metrics (gateway_build_info) and the logs
    show it: the same file gives the same digest in every worker."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:12]


def reuse_bulkhead(name: str, config: BulkheadConfig, before: Mapping[str, Bulkhead]) -> Bulkhead:
    """The pool's bulkhead as it was, if its numbers did not change; else a new one (the
    requests inside the old one finish there, and new ones count here)."""
    old = before.get(name)
    if old is not None and (old.max_concurrent, old.max_queue, old.queue_timeout) == (
        config.max_concurrent,
        config.max_queue,
        config.queue_timeout,
    ):
        return old
    return Bulkhead(name, config.max_concurrent, config.max_queue, config.queue_timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class Generation:
    number: int  # 1 at start, +1 for every successful reload
    config: GatewayConfig
    digest: str  # config_digest(config)
    handle: Handler  # route -> auth -> rate limit -> cache -> channel, composed once
    hidden: frozenset[str]  # the query parameters that carry credentials: the access log
    upstreams: Upstreams
    channel: Channel
    authenticator: Authenticator
    limiter: Limiter
    observed: Observed  # what the metrics and the dashboard read

    def concerns(self) -> Sequence[Concern]:
        """This generation's own concerns, in the order they start (gateway/concern.py)."""
        return (self.upstreams, self.channel, self.authenticator, self.limiter)

    async def take_over(self, previous: Generation) -> None:
        """Take what `previous` owns and must survive (see the module's docstring). The
        upstreams go last: theirs is the one step that changes `previous` (its health
        checks stop), so a failure in any step before it leaves `previous` as it was."""
        await self.authenticator.take_over(previous.authenticator)
        self.limiter.take_over(previous.limiter)
        await self.channel.take_over(previous.channel)
        await self.upstreams.take_over(previous.upstreams)
