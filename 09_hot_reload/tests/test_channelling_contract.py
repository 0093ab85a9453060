"""The channelling contract (common/contracts/channelling.py), run against this stage."""

from common.contracts.channelling import *  # noqa: F403
