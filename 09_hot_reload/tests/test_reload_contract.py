"""The live-configuration contract (common/contracts/reload.py), run against this stage."""

from common.contracts.reload import *  # noqa: F403
