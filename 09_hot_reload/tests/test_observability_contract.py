"""The observability contract (common/contracts/observability.py), run against this stage."""

from common.contracts.observability import *  # noqa: F403
