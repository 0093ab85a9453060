"""What every rule returns: violations with a file, a line and a reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Violation:
    """One broken promise. `path` is relative to the repo root, `line` is 1-based."""

    path: str
    line: int | None
    reason: str

    def sort_key(self) -> tuple[str, int]:
        # Not the reason: a rule's own order (template order, say) breaks ties best.
        return (self.path, self.line or 0)

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path


@dataclass
class RuleResult:
    """The outcome of one rule over the whole repo."""

    rule: str
    description: str
    stages_checked: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations


def rel(path: Path, root: Path) -> str:
    """`path` relative to the repo root, with forward slashes, for messages."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
