"""The routing contract (common/contracts/routing.py), run against this stage's gateway:
end to end through a live gateway, plus the property tests on its trie and normaliser."""

from common.contracts.routing import *  # noqa: F403
from common.contracts.routing_properties import *  # noqa: F403
