"""The cache contract (common/contracts/cache.py), run against this stage."""

from common.contracts.cache import *  # noqa: F403
