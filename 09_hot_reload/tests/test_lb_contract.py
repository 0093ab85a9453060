"""The load-balancing contract (common/contracts/lb.py), run against this stage."""

from common.contracts.lb import *  # noqa: F403
