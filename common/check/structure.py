"""Rule 1: every stage has the same shape, and its ARCHITECTURE.md follows the template.

The template is what lets a reader open any stage and find "Measured" in the same place;
a missing section is usually a section someone meant to write later.
"""

from __future__ import annotations

import re
from pathlib import Path

from common.check import markdown
from common.check.model import RuleResult, Violation, rel
from common.check.stages import ARCHITECTURE, IGNORED_DIRS, STAGE_NAME, Stage

NAME = "structure"
DESCRIPTION = "stage files, ARCHITECTURE.md sections in template order, a Mermaid diagram"

# (name in messages, the lower-case start a heading must have). The text after the keyword
# is free: "## Trade-offs, and what production gateways do" matches "trade-offs".
TEMPLATE = [
    ("Goal", "goal"),
    ("What changed", "what changed"),
    ("Diagram", "diagram"),
    ("Run it", "run it"),
    ("Try it", "try it"),
    ("How it works", "how it works"),
    ("Measured", "measured"),
    ("Trade-offs", "trade-offs"),
    ("Next", "next"),
]
DIAGRAM = 2
MAX_WORDS = 3000  # words as `wc -w` counts them, code blocks included
LOOKS_LIKE_A_STAGE = re.compile(r"^\d\d")


def check(root: Path, stages: list[Stage]) -> RuleResult:
    result = RuleResult(NAME, DESCRIPTION, stages_checked=len(stages))
    result.violations += _stage_names(root, stages)
    for stage in stages:
        result.violations += _stage_files(root, stage)
        arch = stage.path / ARCHITECTURE
        if arch.is_file():
            result.violations += check_architecture(markdown.read(arch), rel(arch, root))
    return result


def _stage_names(root: Path, stages: list[Stage]) -> list[Violation]:
    found = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and LOOKS_LIKE_A_STAGE.match(entry.name):
            if not STAGE_NAME.match(entry.name):
                found.append(
                    Violation(
                        entry.name,
                        None,
                        "looks like a stage but is not named NN_lowercase_name, "
                        "so no rule checks it",
                    )
                )
    by_number: dict[int, list[str]] = {}
    for stage in stages:
        by_number.setdefault(stage.number, []).append(stage.name)
    for number, names in by_number.items():
        if len(names) > 1:
            found.append(
                Violation(
                    names[1],
                    None,
                    f"stage number {number:02d} is used by {' and '.join(names)}: "
                    "`make diff` and the drift rule need one stage per number",
                )
            )
    return found


def _stage_files(root: Path, stage: Stage) -> list[Violation]:
    found = []
    for name in (ARCHITECTURE, "demo.http"):
        if not (stage.path / name).is_file():
            found.append(Violation(rel(stage.path / name, root), None, f"missing {name}"))
    tests = stage.path / "tests"
    if not tests.is_dir():
        found.append(Violation(rel(tests, root), None, "missing tests/ folder"))
    elif not any(
        not IGNORED_DIRS.intersection(p.relative_to(tests).parts) for p in tests.rglob("test_*.py")
    ):
        found.append(Violation(rel(tests, root), None, "tests/ holds no test_*.py file"))
    return found


def template_index(heading: str) -> int | None:
    text = heading.lower()
    return next((i for i, (_, start) in enumerate(TEMPLATE) if text.startswith(start)), None)


def check_architecture(doc: markdown.Document, path: str) -> list[Violation]:
    found: dict[int, markdown.Section] = {}
    order: list[int] = []
    violations = []
    for section in doc.sections():
        index = template_index(section.heading.text)
        if index is None:
            continue  # extra sections are allowed; the template is a floor, not a ceiling
        if index in found:
            first = found[index].heading.line
            violations.append(
                Violation(
                    path,
                    section.heading.line,
                    f"section '{TEMPLATE[index][0]}' appears again (first at line {first})",
                )
            )
            continue
        found[index] = section
        order.append(index)

    for index, (name, _) in enumerate(TEMPLATE):
        if index not in found:
            violations.append(Violation(path, None, f"missing section '## {name}'"))

    in_order = set(_longest_increasing(order))
    for index in order:
        if index not in in_order:
            violations.append(
                Violation(
                    path,
                    found[index].heading.line,
                    f"section '{TEMPLATE[index][0]}' is out of order: {_where(index)}",
                )
            )

    diagram = found.get(DIAGRAM)
    if diagram and not any(f.language == "mermaid" for f in diagram.fences):
        violations.append(
            Violation(path, diagram.heading.line, "the Diagram section has no ```mermaid block")
        )
    words = sum(len(line.split()) for line in doc.lines)
    if words > MAX_WORDS:
        violations.append(
            Violation(
                path,
                None,
                f"{words:,} words: at most {MAX_WORDS:,}, what a reader finishes in 15 minutes"
                " (the benches' tables belong in MEASURED.md)",
            )
        )
    return violations


def _where(index: int) -> str:
    if index == 0:
        return f"the template puts it first, before '{TEMPLATE[1][0]}'"
    if index == len(TEMPLATE) - 1:
        return f"the template puts it last, after '{TEMPLATE[index - 1][0]}'"
    before, after = TEMPLATE[index - 1][0], TEMPLATE[index + 1][0]
    return f"the template puts it after '{before}' and before '{after}'"


def _longest_increasing(seq: list[int]) -> list[int]:
    """The longest increasing subsequence: the sections we call "in order".

    With one misplaced section, every other section stays in the subsequence, so the
    report names the one section that moved rather than everything after it.
    """
    if not seq:
        return []
    best = [[x] for x in seq]
    for i in range(len(seq)):
        for j in range(i):
            if seq[j] < seq[i] and len(best[j]) + 1 > len(best[i]):
                best[i] = best[j] + [seq[i]]
    return max(best, key=len)
