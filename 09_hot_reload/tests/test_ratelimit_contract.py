"""The rate-limit contract (common/contracts/ratelimit.py), run against this stage."""

from common.contracts.ratelimit import *  # noqa: F403
