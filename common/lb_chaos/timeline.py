"""What lb-chaos does to the backends, and when.

Six users backends, a to f, behind one pool. On the timeline (seconds from the start of
the load, the full run; `--short` scales every time by SHORT_SCALE):

    0   steady load, about 150 requests/s
    6   kill b (SIGKILL: a crash, its connections are simply refused)
    12  slow c down: every request waits 250 ms first
    18  d fails half its requests (503), /health still passes
    26  heal: restart b on its old port, reset c's and d's chaos
    40  end

Each fault is one `Fault`; the summary reports, per fault, how long the gateway took to
stop sending that backend traffic (eject) and to use it again after the heal (recover).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["kill", "slow", "flaky", "heal"]

SLOW_MS = 250
FLAKY_RATE = 0.5
SHORT_SCALE = 0.4


@dataclass(frozen=True)
class Step:
    at: float  # seconds from the start of the load
    action: Action
    backend: str  # "b"; "" for heal, which heals every fault at once
    label: str


@dataclass(frozen=True)
class Timeline:
    steps: tuple[Step, ...]
    end: float

    def scaled(self, factor: float) -> Timeline:
        steps = tuple(Step(s.at * factor, s.action, s.backend, s.label) for s in self.steps)
        return Timeline(steps, self.end * factor)


FULL = Timeline(
    (
        Step(6, "kill", "b", "kill b"),
        Step(12, "slow", "c", f"slow c +{SLOW_MS} ms"),
        Step(18, "flaky", "d", f"d fails {FLAKY_RATE:.0%}"),
        Step(26, "heal", "", "heal b, c, d"),
    ),
    end=40,
)
SHORT = FULL.scaled(SHORT_SCALE)
BACKENDS = ("a", "b", "c", "d", "e", "f")


def phases(timeline: Timeline) -> list[tuple[str, float, float]]:
    """(name, start, end) of every stretch between two steps: the summary's rows."""
    edges = [0.0, *(s.at for s in timeline.steps), timeline.end]
    names = ["steady", *(s.label for s in timeline.steps)]
    return [(names[i], edges[i], edges[i + 1]) for i in range(len(names))]
