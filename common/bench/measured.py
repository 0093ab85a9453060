"""A stage's MEASURED.md: every bench's full tables for that stage, written by the bench.

    make cache-bench ARGS=--write        runs, prints, and rewrites the `## make cache-bench`
                                         section of 05_cache_layer/MEASURED.md

ARCHITECTURE.md's "Measured" keeps the two or three numbers a reader needs and links
here; the tables live in one file per stage, one section per bench, each saying when and
where it ran. A bench rewrites its own section and leaves the others as they are, so a
stage measured by two benches (03: lb-bench and lb-chaos) keeps both.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

FILE = "MEASURED.md"
HEAD = (
    "# {stage}: measured\n\n"
    "The benches' full output for this stage, one section per bench, each rewritten by its\n"
    'bench (`make <bench> ARGS=--write`). ARCHITECTURE.md\'s "Measured" says what the\n'
    "numbers mean.\n"
)
SECTION = re.compile(r"(?m)^## ")


def write(stage: Path, bench: str, markdown: str, *, today: datetime.date | None = None) -> Path:
    """Put `markdown` under `## make <bench>` in `stage`/MEASURED.md, replacing the section
    of the same bench if there is one; return the file's path."""
    path = stage / FILE
    text = path.read_text(encoding="utf-8") if path.is_file() else HEAD.format(stage=stage.name)
    head, sections = _split(text)
    when = (today or datetime.date.today()).isoformat()
    title = f"## make {bench}"
    body = f"{title}\n\nRun on {when}.\n\n{markdown.strip()}\n"
    kept = [s for s in sections if not s.startswith(title + "\n")]
    path.write_text("\n".join([head.rstrip() + "\n", *sorted([*kept, body])]), encoding="utf-8")
    return path


def _split(text: str) -> tuple[str, list[str]]:
    """(what comes before the first section, each `## ` section with its body)."""
    starts = [m.start() for m in SECTION.finditer(text)]
    if not starts:
        return text, []
    ends = [*starts[1:], len(text)]
    return text[: starts[0]], [text[a:b].rstrip() + "\n" for a, b in zip(starts, ends, strict=True)]
