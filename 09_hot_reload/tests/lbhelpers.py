"""Helpers for the balancing tests: a clock that only moves when told, requests, targets."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.balancing import Target


class FakeClock:
    """time.monotonic stand-in: ejections expire when the test advances it, not by sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeRequest:
    """The three attributes of aiohttp's web.Request that a KeySource reads."""

    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    remote: str | None = "127.0.0.1"


def make_targets(n: int, weights: list[int] | None = None) -> list[Target]:
    weights = weights or [1] * n
    return [Target(f"http://127.0.0.1:{9001 + i}", w) for i, w in enumerate(weights)]
