"""The Redis store: one Lua script per decision, so every worker and instance shares
one exact limit.

Why a script: "read the state, decide, write the new state" as three commands from two
gateways interleaves (both read 99, both write 100, 101 requests got in). Redis runs a
script atomically, so the whole decision for every limit of the request is one step, and
the clock is Redis's own (`TIME`): gateways whose clocks disagree still agree on the
windows. The script is sent once (`SCRIPT LOAD`) and then called by its SHA-1
(`EVALSHA`); a Redis that restarted or was flushed answers NOSCRIPT, and the script is
loaded again and the call repeated.

Trouble: every call has a short timeout (50 ms). After `failures` failed calls in a row
the breaker opens and for `open_for` seconds the store does not even try, so a dead Redis
costs each request nothing, not 50 ms; then one call probes it. While it is down the
limiter applies the route's failure mode (open: admit; closed: 503) or the local fallback.
Envoy's global rate limit service has `failure_mode_deny`; Kong's rate-limiting plugin
has `fault_tolerant`; both default to letting traffic through.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import NoScriptError, RedisError

from .algorithms import Outcome
from .store import StoreUnavailable

log = logging.getLogger("gateway.ratelimit")

POOL_SIZE = 16  # connections to Redis per process
POOL_WAIT = 1.0  # seconds a decision may wait for one of them

# KEYS: one state key per limit. ARGV: n, then per limit: algorithm, requests, window (ms).
# Returns, per limit: allowed (0/1), remaining, reset (ms), retry (ms). The arithmetic is
# algorithms.py's, line for line.
DECIDE = """
-- Redis's clock, not the gateway's: every gateway asking agrees on what "now" is, and a
-- script may call TIME before it writes (Redis 5+ replicates the effects, not the script).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
-- Two passes: decide every limit first, write only if all of them admit. A request the
-- per-second limit refuses must not use up the hourly one (algorithms.py, all or none).
local out, writes, all = {}, {}, true
for i = 1, n do
  local algorithm = ARGV[i * 3 - 1]
  local limit = tonumber(ARGV[i * 3])
  local window = tonumber(ARGV[i * 3 + 1])
  local key = KEYS[i]
  local ok, remaining, reset, retry, value, ttl = 0, 0, 0, 0, nil, 0
  if algorithm == 'gcra' then
    -- The state is the theoretical arrival time (TAT): when the bucket is full again. A
    -- request moves it one interval later; refused if that lands more than a window ahead.
    local interval = window / limit
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    local new_tat = tat + interval
    local allow_at = new_tat - window
    if now < allow_at then
      reset, retry = tat - now, allow_at - now
    else
      ok = 1
      remaining = math.floor((window - (new_tat - now)) / interval + 1e-9)
      reset, value, ttl = new_tat - now, string.format('%.3f', new_tat), new_tat - now
    end
  elseif algorithm == 'strict_window' then
    -- The state is one string, 'index:c1,...,c11': the current bucket's number and the
    -- counts of the 11 buckets a window ending now can reach, oldest first. Moving to a
    -- later bucket shifts the counts left; buckets that fell out of every window drop off.
    local slots = 10
    local width = window / slots
    local index = math.floor(now / width)
    local counts = {}
    for j = 1, slots + 1 do counts[j] = 0 end
    local seen = redis.call('GET', key)
    if seen then
      local s_index, rest = string.match(seen, '^(%d+):(.*)$')
      local held = {}
      for c in string.gmatch(rest, '%d+') do held[#held + 1] = tonumber(c) end
      local shift = math.max(0, index - tonumber(s_index))
      if shift <= slots then
        for j = 1, slots + 1 - shift do counts[j] = held[j + shift] or 0 end
      end
    end
    local total = 0
    for j = 1, slots + 1 do total = total + counts[j] end
    if total + 1 > limit then
      local need, left = total + 1 - limit, 0
      retry = window
      for j = 1, slots + 1 do
        left = left + counts[j]
        if left >= need then
          retry = (index + j) * width - now
          break
        end
      end
      local last = slots + 1
      for j = slots + 1, 1, -1 do
        if counts[j] > 0 then
          last = j
          break
        end
      end
      reset = (index + last) * width - now
    else
      counts[slots + 1] = counts[slots + 1] + 1
      ok, remaining = 1, limit - total - 1
      reset = (index + slots + 1) * width - now
      value, ttl = string.format('%d:', index) .. table.concat(counts, ','), reset
    end
  else
    -- sliding_window and fixed_window: 'index:current:previous', the calendar window's
    -- number and its count (and the one before, for the sliding estimate).
    local index = math.floor(now / window)
    local elapsed = now - index * window
    local seen = redis.call('GET', key)
    local current, previous = 0, 0
    if seen then
      local s_index, s_current, s_previous = string.match(seen, '^(%d+):(%d+):(%d+)$')
      s_index, s_current, s_previous = tonumber(s_index), tonumber(s_current), tonumber(s_previous)
      if s_index == index then
        current, previous = s_current, s_previous
      elseif s_index == index - 1 and algorithm == 'sliding_window' then
        previous = s_current
      end
    end
    reset = window - elapsed
    if algorithm == 'sliding_window' then
      -- The previous window counts for the part of it the sliding window still covers.
      local weight = (window - elapsed) / window
      if previous * weight + current + 1 > limit + 1e-9 then
        if current + 1 <= limit and previous > 0 then
          retry = window * (1 - (limit - current - 1) / previous) - elapsed
        else
          local later = 0
          if current > limit - 1 then later = window * (1 - (limit - 1) / current) end
          retry = window - elapsed + later
        end
        if retry < 1 then retry = 1 end
      else
        ok, current = 1, current + 1
        remaining = math.floor(limit - (previous * weight + current) + 1e-9)
        if remaining < 0 then remaining = 0 end
        value, ttl = string.format('%d:%d:%d', index, current, previous), 2 * window
      end
    else
      if current + 1 > limit then
        retry = window - elapsed
      else
        ok, remaining = 1, limit - current - 1
        value, ttl = string.format('%d:%d:0', index, current + 1), window - elapsed
      end
    end
  end
  if ok == 0 then all = false end
  out[#out + 1] = ok
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(reset)
  out[#out + 1] = math.ceil(retry)
  writes[i] = {value, ttl}
end
-- Every key expires once its state no longer matters (a full bucket, a window gone), so
-- Redis holds only the callers of the last window or so, however many there ever were.
if all then
  for i = 1, n do
    redis.call('SET', KEYS[i], writes[i][1], 'PX', math.max(1, math.ceil(writes[i][2])))
  end
end
return out
"""

# Concurrency: a sorted set of the requests in flight, scored by when their lease ends, so
# that a gateway that died mid-request does not hold its places for ever.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])))
return 1
"""


class RedisStore:
    name = "redis"

    def __init__(
        self, url: str, *, timeout: float, prefix: str, failures: int, open_for: float
    ) -> None:
        self.url, self.prefix = url, prefix
        # A bounded pool that callers wait for: 2,000 requests at once must not become
        # 2,000 connections to Redis (each a TCP handshake and a HELLO, under the same
        # 50 ms). Waiting for a free connection is the gateway's own queue, not Redis
        # trouble, and has its own bound.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry_on_timeout=False,
        )
        self._redis = Redis.from_pool(pool)  # owns the pool: closed with it
        self._shas: dict[str, str] = {}
        self.failures_to_open, self.open_for = failures, open_for
        self.consecutive = 0
        self.open_until = 0.0
        self.errors = self.decisions = self.reloads = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        """Open the pool's connections and load the scripts before the first request: a
        burst should find them ready, not open sixteen connections under its own load."""
        try:
            await asyncio.gather(*(self._redis.ping() for _ in range(POOL_SIZE)))
            for script in (DECIDE, ACQUIRE):
                self._shas[script] = await self._redis.script_load(script)
        except (RedisError, OSError) as exc:
            log.warning(
                "redis at %s not ready at start-up (%s): limits will try it per request",
                self.url,
                exc,
            )

    async def _call(
        self, script: str, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> object:
        if time.monotonic() < self.open_until:
            raise StoreUnavailable("breaker open")
        try:
            sha = self._shas.get(script)
            if sha is None:
                sha = self._shas[script] = await self._redis.script_load(script)
            try:
                result = await self._redis.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:  # Redis restarted or was flushed: load it again
                self.reloads += 1
                self._shas[script] = await self._redis.script_load(script)
                result = await self._redis.evalsha(self._shas[script], len(keys), *keys, *args)
        except (RedisError, OSError) as exc:
            self.errors += 1
            self.consecutive += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            if self.consecutive >= self.failures_to_open:
                if self.open_until <= time.monotonic():
                    log.warning(
                        "redis at %s: %s; not asked for %.1f s",
                        self.url,
                        self.last_error,
                        self.open_for,
                    )
                self.open_until = time.monotonic() + self.open_for
            raise StoreUnavailable(self.last_error) from None
        if self.consecutive >= self.failures_to_open:
            log.warning("redis at %s answers again", self.url)
        self.consecutive = 0
        return result

    async def hit(
        self, keys: Sequence[str], limits: Sequence[tuple[str, int, float]]
    ) -> list[Outcome]:
        args: list[str | int | float] = [len(limits)]
        for algorithm, requests, window in limits:
            args += [algorithm, requests, window]
        raw = await self._call(DECIDE, [self.prefix + k for k in keys], args)
        self.decisions += 1
        # the type ignore below: the script returns a list of integers
        values = [int(v) for v in raw]  # type: ignore[attr-defined]
        return [
            Outcome(
                allowed=bool(values[i]),
                remaining=values[i + 1],
                reset_ms=float(values[i + 2]),
                retry_ms=float(values[i + 3]),
                state=None,  # the state stays in Redis
                ttl_ms=0.0,
            )
            for i in range(0, len(values), 4)
        ]

    async def acquire(self, key: str, most: int, lease_ms: float, token: str) -> bool:
        return bool(await self._call(ACQUIRE, [self.prefix + key], [most, lease_ms, token]))

    async def release(self, key: str, token: str) -> None:
        try:
            await self._redis.zrem(self.prefix + key, token)
        except (RedisError, OSError):
            pass  # its lease ends by itself

    async def forget(self, who: str) -> int:
        """Every limit's state for the key `who`, deleted (the admin listener's reset).
        SCAN, not KEYS: it does not block Redis for the other gateways meanwhile."""
        pattern = self.prefix + "*|" + re.sub(r"([*?\[\]\\])", r"\\\1", who)
        keys = [key async for key in self._redis.scan_iter(match=pattern, count=1000)]
        return int(await self._redis.delete(*keys)) if keys else 0

    def stats(self) -> dict[str, object]:
        return {
            "store": "redis",
            "url": self.url,
            "decisions": self.decisions,
            "errors": self.errors,
            "script_reloads": self.reloads,
            "breaker": "open" if time.monotonic() < self.open_until else "closed",
            "last_error": self.last_error,
        }

    async def close(self) -> None:
        await self._redis.aclose()
