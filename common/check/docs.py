"""Rule 3: code quoted in the docs is the code in the repo.

A block whose info string names a file (```python title="gateway/proxy.py") must appear
in that file word for word; a line holding only `...` stands for skipped lines. This is
the cheap version of what FastAPI's docs_src and the Rust book do (include the file
instead of pasting it): we keep the readable paste and fail the build when it drifts.
"""

from __future__ import annotations

from pathlib import Path

from common.check import markdown
from common.check.model import RuleResult, Violation, rel
from common.check.stages import ARCHITECTURE, Stage

NAME = "docs"
DESCRIPTION = 'code blocks with title="path" appear word for word in that file'

GAP = "..."


def check(root: Path, stages: list[Stage]) -> RuleResult:
    result = RuleResult(NAME, DESCRIPTION)
    for stage in stages:
        arch = stage.path / ARCHITECTURE
        if arch.is_file():
            result.stages_checked += 1
            result.violations += check_document(root, arch, base=stage.path)
    readme = root / "README.md"
    if readme.is_file():
        result.violations += check_document(root, readme, base=root)
    return result


def check_document(root: Path, md: Path, base: Path) -> list[Violation]:
    """Every titled block of `md` against its file; titles are relative to `base`."""
    doc = markdown.read(md)
    md_rel = rel(md, root)
    where = "the repo root" if base == root else base.name
    violations = []
    for fence in doc.fences:
        if fence.end is None:
            violations.append(
                Violation(md_rel, fence.start, "code block is never closed (runs to end of file)")
            )
        title = fence.title
        if title is None:
            continue
        source = base / title
        if not source.is_file():
            violations.append(
                Violation(
                    md_rel,
                    fence.start,
                    f'code block quotes title="{title}", which does not exist in {where}',
                )
            )
            continue
        source_lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
        missing = first_unmatched(list(fence.lines), source_lines)
        if missing is not None:
            index, after = missing
            text = fence.lines[index].strip()
            # `after`: the line the previous `...` run ended on; the search started there.
            where_not = f"after {title}:{after}" if after else f"anywhere in {title}"
            violations.append(
                Violation(
                    md_rel,
                    fence.content_line(index),
                    f"code block at line {fence.start} has drifted from {title}: "
                    f"{text!r} (line {fence.content_line(index)}) not found {where_not}",
                )
            )
    return violations


def first_unmatched(block: list[str], source: list[str]) -> tuple[int, int] | None:
    """None if `block` appears in `source`; else (index of the first block line that could
    not be placed, the source line number after which it was looked for, 0 = anywhere).

    The block splits at `...` lines into runs of consecutive lines. Each run is placed at
    its earliest match after the previous run: taking the earliest spot never hurts a
    later run, so this greedy scan finds a match whenever one exists.
    """
    wanted = [line.rstrip() for line in block]
    have = [line.rstrip() for line in source]
    position = 0  # first source index the next run may start at
    run: list[int] = []
    for index in [*range(len(wanted)), None]:
        if index is not None and wanted[index].strip() != GAP:
            run.append(index)
            continue
        if run:
            texts = [wanted[i] for i in run]
            start = _find(texts, have, position)
            if start is None:
                # Report the first line of the longest prefix that cannot be placed, so
                # the message points at the line that changed, not the top of the run.
                matched = max(
                    (n for n in range(len(texts)) if _find(texts[:n], have, position) is not None),
                    default=0,
                )
                return run[matched], position
            position = start + len(texts)
            run = []
    return None


def _find(texts: list[str], have: list[str], start: int) -> int | None:
    for offset in range(start, len(have) - len(texts) + 1):
        if have[offset : offset + len(texts)] == texts:
            return offset
    return None
