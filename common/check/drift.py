"""Rule 2: a stage changes only the files its ARCHITECTURE.md says it changes.

Stages are copies, and copies drift: a bug fixed in stage 03 but not in 04 lives on in
every later stage. This rule makes the copy explicit. Every file that differs from the
previous stage must be covered by a bullet under "What changed since the previous stage",
and every bullet must cover a file that really differs. An uncovered difference is either
a forgotten bullet or a fix that did not travel forward; the message cannot tell which, a
reader of the diff can (`make propagate` carries a fix forward).

A bullet starts with one or more backticked paths, so a group reads as one line:

    - `gateway/routing.py` (changed): one file.
    - `gateway/balancing/` (added): a folder, every file under it.
    - `tests/test_lb_*.py` (added): a glob (`*`, `?`, `[...]`; `*` stays within a folder).
    - `tests/conftest.py`, `tests/stage_config.py` (changed): several, comma-separated.

A folder or glob must cover at least one differing file; it may also hold files that did
not change (a package where one module was edited still reads as "the package").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from common.check import markdown
from common.check.model import RuleResult, Violation, rel
from common.check.stages import ARCHITECTURE, Stage, differing_files, is_ignored

NAME = "drift"
DESCRIPTION = "files that differ from the previous stage are exactly those listed in 'What changed'"

SECTION = "what changed"
# The run of backticked tokens that opens a bullet: `- \`a.py\`, \`b/\` (changed): ...`. Only
# the opening run counts, so a backticked command later in a sentence is never a path.
BULLET = re.compile(r"^\s*[-*+]\s+((?:`[^`]+`(?:\s*(?:,|and)\s*)?)+)")
TOKEN = re.compile(r"`([^`]+)`")
GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Listed:
    path: str  # a file, a folder ending in "/", or a glob
    line: int

    @property
    def is_group(self) -> bool:
        return self.path.endswith("/") or bool(GLOB_CHARS & set(self.path))

    def covers(self, path: str) -> bool:
        if self.path.endswith("/"):
            return path.startswith(self.path)
        if self.is_group:
            # fnmatch's `*` crosses "/"; a folder boundary should stop it, as in a shell.
            return fnmatchcase(path, self.path) and path.count("/") == self.path.count("/")
        return path == self.path


def listed_files(doc: markdown.Document) -> list[Listed]:
    """The paths the "What changed" section lists, with the line of each bullet."""
    section = doc.section(SECTION)
    if section is None:
        return []
    found = []
    for number, text in section.lines:
        match = BULLET.match(text)
        if not match:
            continue
        for token in TOKEN.findall(match.group(1)):
            token = token.strip()
            # "Looks like a path": has a slash or a dot and no spaces. `make diff A=01 B=02`
            # as a bullet's first token is a command, not a file.
            if ("/" in token or "." in token) and not any(c.isspace() for c in token):
                token = token.removeprefix("./")
                if token != ARCHITECTURE:  # never compared, so listing it is harmless
                    found.append(Listed(token, number))
    return found


def check(root: Path, stages: list[Stage]) -> RuleResult:
    result = RuleResult(NAME, DESCRIPTION)
    for previous, stage in zip(stages, stages[1:], strict=False):
        result.stages_checked += 1
        result.violations += check_pair(root, previous, stage)
    return result


def check_pair(root: Path, previous: Stage, stage: Stage) -> list[Violation]:
    arch = stage.path / ARCHITECTURE
    arch_rel = rel(arch, root)
    old_files, new_files, differing = differing_files(
        previous.path, stage.path, with_architecture=False
    )
    pair = f"{previous.name} -> {stage.name}"
    if arch.is_file():
        doc = markdown.read(arch)
        section = doc.section(SECTION)
        listed = listed_files(doc)
        heading_line = section.heading.line if section else None
    else:
        listed, heading_line = [], None

    violations = []
    for path in differing:
        if not any(item.covers(path) for item in listed):
            if path not in old_files:
                how = f"is added (not in {previous.name})"
            elif path not in new_files:
                how = f"is removed (was in {previous.name})"
            else:
                how = f"differs from {previous.name}"
            violations.append(
                Violation(
                    arch_rel,
                    heading_line,
                    f"{pair}: {path} {how} but is not listed in {arch_rel} 'What changed'",
                )
            )

    for item in listed:
        if any(item.covers(path) for path in differing):
            continue
        reason = _why_not_differing(item, previous, stage, old_files, new_files)
        violations.append(Violation(arch_rel, item.line, f"{pair}: `{item.path}` {reason}"))
    return violations


def _why_not_differing(
    item: Listed,
    previous: Stage,
    stage: Stage,
    old_files: dict[str, Path],
    new_files: dict[str, Path],
) -> str:
    path = item.path
    if is_ignored(path):
        return "is a cache or build file, which is never compared: drop the bullet"
    if item.is_group:
        if any(item.covers(p) for p in (*old_files, *new_files)):
            return f"covers only files identical to {previous.name}"
        return f"matches no file in either stage ({previous.name}, {stage.name})"
    if path in old_files or path in new_files:
        return f"listed as changed but identical to {previous.name}"
    if (previous.path / path).is_dir() or (stage.path / path).is_dir():
        return f"is a folder: write it as `{path}/` to list every file in it"
    return f"listed but exists in neither stage ({previous.name}, {stage.name})"
