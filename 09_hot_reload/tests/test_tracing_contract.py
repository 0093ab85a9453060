"""The tracing contract (common/contracts/tracing.py), run against this stage."""

from common.contracts.tracing import *  # noqa: F403
