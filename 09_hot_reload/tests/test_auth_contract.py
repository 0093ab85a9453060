"""The auth contract (common/contracts/auth.py), run against this stage."""

from common.contracts.auth import *  # noqa: F403
