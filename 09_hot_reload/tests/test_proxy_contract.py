"""The proxy contract (common/contracts/proxy.py), run against this stage's gateway."""

from common.contracts.proxy import *  # noqa: F403
