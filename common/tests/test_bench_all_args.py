"""bench-all on some stages alone (`--only 01,07 --rounds 12`): what it accepts, and that a
row's "added" and the per-concern budget speak only of the stage right before it; and,
when the counts judge the targets, the times printed beside them without a verdict.

The sections are built from made-up results, as test_bench_counts.py does: running the
gateways is the bench's job, not `make test`'s.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest

from common.bench.bench_all import counted_section, stage_numbers, timed_section
from common.bench.load import LoadResult


def test_only_takes_stage_numbers_and_refuses_what_is_not_a_stage() -> None:
    assert stage_numbers("01,07") == {1, 7}
    assert stage_numbers("1, 7") == {1, 7}
    with pytest.raises(argparse.ArgumentTypeError, match="the stages are 01, 02"):
        stage_numbers("01,42")
    with pytest.raises(argparse.ArgumentTypeError, match="not stage numbers"):
        stage_numbers("first,last")


def runs(*cpu_us: float) -> list[LoadResult]:
    """One timed round per value: 1,000 answers, `cpu_us` of the gateway's CPU each."""
    return [
        LoadResult(
            tool="built-in",
            requests=1000,
            errors=0,
            seconds=1.0,
            p50_ms=2.0,
            p99_ms=5.0,
            meter_delta=us * 1000,
        )
        for us in cpu_us
    ]


def test_two_stages_apart_are_judged_on_their_ratio_and_not_as_one_concern() -> None:
    section = timed_section(
        {"01_pass_through": runs(150, 160, 140), "07_rate_limiting": runs(210, 230, 200)},
        rounds=3,
        seconds=1.0,
        pinned="",
    )
    assert [row[-1] for row in section.rows] == ["-", "-"]  # 07 over 01 is six concerns
    verdicts = dict(section.verdicts)
    assert not any(claim.startswith("no concern adds") for claim in verdicts)
    ratio = next(claim for claim in verdicts if claim.startswith("07_rate_limiting"))
    assert "1.40x" in ratio and verdicts[ratio] is True  # 210/150, 230/160, 200/140


def test_the_stage_right_before_is_what_a_concern_adds() -> None:
    section = timed_section(
        {"06_authentication": runs(200, 200), "07_rate_limiting": runs(230, 230)},
        rounds=2,
        seconds=1.0,
        pinned="",
    )
    assert section.rows[1][-1] == "+30 µs"
    budget = next(claim for claim, _ in section.verdicts if claim.startswith("no concern"))
    assert dict(section.verdicts)[budget] is False  # 30 µs: over the 25 allowed


def test_counted_rows_apart_add_nothing_and_the_rate_is_the_first_stages() -> None:
    counts = {"01_pass_through": 500_000.0, "07_rate_limiting": 700_000.0}
    section = counted_section(counts, {"01_pass_through": 150.0}, requests=500)
    assert section.rows[1][4] == "-" and section.rows[1][5] == "-"
    assert not any(claim.startswith("no concern adds") for claim, _ in section.verdicts)
    apart = counted_section(
        {"07_rate_limiting": 700_000.0, "08_observability": 760_000.0},
        {"07_rate_limiting": 210.0},
        requests=500,
    )
    budget = next(claim for claim, _ in apart.verdicts if claim.startswith("no concern"))
    assert "at 07's rate" in budget  # 0.3 ns an instruction, as 07 ran: 18 µs
    assert "18 µs" in budget


def test_when_the_counts_judge_the_times_are_shown_beside_the_targets_not_judged() -> None:
    results = {
        "01_pass_through": runs(150, 160),
        "06_authentication": runs(200, 200),
        "07_rate_limiting": runs(240, 256),  # 1.60x 01: over 1.45x; +40 µs over 06
    }
    judged = dict(timed_section(results, rounds=2, seconds=1.0, pinned="").verdicts)
    shown = timed_section(results, rounds=2, seconds=1.0, pinned="", judged=False)
    beside = dict(shown.verdicts)
    ratio = next(claim for claim in beside if claim.startswith("07_rate_limiting"))
    budget = next(claim for claim in beside if claim.startswith("no concern adds"))
    # judged on the times, both fail; shown beside the counts, neither is a verdict, and
    # each says in words that the time alone would not have met its target
    assert [ok for claim, ok in judged.items() if "200" not in claim] == [False, False]
    assert beside[ratio] is None and beside[budget] is None
    assert "over it in time" in ratio and "over it in time" in budget
    assert any("counted table below" in note for note in shown.notes)
    # an error is still an error: that verdict stays, counted or not
    failing = dict(results)
    failing["07_rate_limiting"] = [replace(run, errors=3) for run in runs(240)] + runs(256)
    errors = timed_section(failing, rounds=2, seconds=1.0, pinned="", judged=False).verdicts
    assert ("every request answered 200 (3 errors)", False) in errors


def test_a_timed_ratio_within_its_target_says_so_when_the_counts_judge() -> None:
    results = {"01_pass_through": runs(150), "07_rate_limiting": runs(210)}  # 1.40x
    shown = dict(timed_section(results, rounds=1, seconds=1.0, pinned="", judged=False).verdicts)
    ratio = next(claim for claim in shown if claim.startswith("07_rate_limiting"))
    assert shown[ratio] is None and "within it in time too" in ratio
