"""The RateLimit-Policy and RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-11).

    RateLimit-Policy: "burst";q=10;w=1, "hourly";q=1000;w=3600
    RateLimit: "burst";r=3;t=1, "hourly";r=991;t=3540

Both are Structured Fields (RFC 9651) Lists: each member a String naming a policy, with
integer parameters. In the policy: `q` the quota, `w` the window in seconds. In the
current state: `r` what remains, `t` seconds until the quota is whole again. Every
policy of the route is listed, the most exhausted first. They replace the earlier
drafts' `RateLimit-Limit` / `-Remaining` / `-Reset` trio (which GitHub and many APIs still
send as `X-RateLimit-*`); `Retry-After` (RFC 9110 §10.2.3) stays the answer on a 429.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .algorithms import Outcome
from .config import Limit


def policy_field(limits: Sequence[tuple[Limit, int]]) -> str:
    """`limits`: each limit with the requests it grants this caller (its plan's)."""
    return ", ".join(
        f'"{limit.name}";q={requests};w={max(1, math.ceil(limit.window_ms / 1000))}'
        for limit, requests in limits
    )


def state_field(limits: Sequence[Limit], outcomes: Sequence[Outcome]) -> str:
    if len(limits) == 1:  # the common case, without the sort
        o = outcomes[0]
        return f'"{limits[0].name}";r={o.remaining};t={math.ceil(o.reset_ms / 1000)}'
    pairs = sorted(zip(limits, outcomes, strict=True), key=lambda p: p[1].remaining)
    return ", ".join(
        f'"{limit.name}";r={o.remaining};t={math.ceil(o.reset_ms / 1000)}' for limit, o in pairs
    )
