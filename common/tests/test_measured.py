"""A stage's MEASURED.md: each bench rewrites its own section and keeps the others."""

from __future__ import annotations

import datetime
from pathlib import Path

from common.bench.measured import write

DAY = datetime.date(2026, 12, 7)


def test_a_bench_writes_its_section_and_a_second_run_replaces_only_that(tmp_path: Path) -> None:
    stage = tmp_path / "03_load_balancing"
    stage.mkdir()
    write(stage, "lb-chaos", "| a |\n|---|\n| 1 |\n", today=DAY)
    write(stage, "lb-bench", "first run\n", today=DAY)
    write(stage, "lb-bench", "second run\n", today=datetime.date(2026, 12, 8))
    text = (stage / "MEASURED.md").read_text(encoding="utf-8")
    assert text.startswith("# 03_load_balancing: measured\n")
    assert "first run" not in text
    assert text.count("## make lb-bench\n") == 1 and "Run on 2026-12-08.\n\nsecond run" in text
    assert "## make lb-chaos\n\nRun on 2026-12-07.\n\n| a |\n|---|\n| 1 |\n" in text
    assert text.index("## make lb-bench") < text.index("## make lb-chaos")  # by name, stable
