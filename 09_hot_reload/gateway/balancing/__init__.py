"""Load balancing: upstream pools of targets, pluggable strategies, health checks, breakers.

target.py      Target: url, weight, requests in flight, health state
strategies.py  the Strategy interface; round robin, smooth weighted RR, least conns/P2C;
               STRATEGIES, the registry of every strategy by name
ring.py        consistent hashing: the ring, virtual nodes, bounded loads
keys.py        where the hash key comes from: header, cookie, client address, path
breaker.py     circuit breakers: open on failures, half-open to probe, close again
active.py      active health: probe every target on a timer
pool.py        UpstreamPool: pick, acquire a lease, report, why nothing is available
config.py      the [upstreams.NAME] sections of gateway.toml
upstreams.py   every pool built from config, with its health-check tasks
"""

from .active import ActiveHealthChecker, ActivePolicy, Probe, http_probe
from .breaker import BreakerPolicy, CircuitBreaker, is_failure
from .config import BreakerConfig, HealthConfig, TargetConfig, UpstreamConfig, unknown_upstreams
from .keys import KeySource
from .pool import Lease, NoHealthyTarget, UpstreamPool
from .ring import ConsistentHash, HashRing, hash64
from .strategies import STRATEGIES, LeastConnections, RoundRobin, Strategy, WeightedRoundRobin
from .target import Clock, Target, TargetHealth
from .upstreams import Upstreams, build_pool

__all__ = [
    "STRATEGIES",
    "ActiveHealthChecker",
    "ActivePolicy",
    "BreakerConfig",
    "BreakerPolicy",
    "CircuitBreaker",
    "Clock",
    "ConsistentHash",
    "HashRing",
    "HealthConfig",
    "KeySource",
    "Lease",
    "LeastConnections",
    "NoHealthyTarget",
    "Probe",
    "RoundRobin",
    "Strategy",
    "Target",
    "TargetConfig",
    "TargetHealth",
    "UpstreamConfig",
    "UpstreamPool",
    "Upstreams",
    "WeightedRoundRobin",
    "build_pool",
    "hash64",
    "http_probe",
    "is_failure",
    "unknown_upstreams",
]
