"""Where a Redis server is, for every concern that keeps shared state in one: the cache
(`[cache.redis]`, this stage) and, from stage 07, the rate limits (`[rate_limit.redis]`,
with a prefix of their own). One model, so a URL is checked the same way everywhere.
"""

from __future__ import annotations

from pydantic import field_validator

from gateway.validation import Seconds, Strict


class RedisConfig(Strict):
    url: str = "redis://127.0.0.1:6379/0"
    timeout: Seconds = 0.05
    prefix: str = "gateway:cache:"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://host:port/db (or rediss://, unix://) URL")
        return value
