"""bench-all's counted section: what it judges from the instruction counts.

The counts come from valgrind (common/bench/instructions.py, minutes per run, not part of
`make test`); what is tested here is the judgement made from them, with made-up counts:
the ratios against their targets, the per-concern budget in µs at stage 01's rate, and
the fully traced row of 08 kept out of what "a concern adds".
"""

from __future__ import annotations

from common.bench.bench_all import counted_section


def test_ratios_are_judged_on_the_counts_and_the_traced_row_adds_to_no_concern() -> None:
    counts = {
        "01_pass_through": 500_000.0,
        "07_rate_limiting": 720_000.0,  # 1.44x: within 1.45x
        "08_observability": 800_000.0,  # 1.11x: over 1.10x
        "08_observability @100%": 1_800_000.0,  # a million more: not a concern's cost
        "09_hot_reload": 805_000.0,  # 1.006x: within 1.03x
    }
    section = counted_section(counts, {"01_pass_through": 150.0}, requests=500)
    verdicts = dict(section.verdicts)
    met = {claim.split(" ")[0]: ok for claim, ok in verdicts.items() if "x " in claim}
    assert met == {"07_rate_limiting": True, "08_observability": False, "09_hot_reload": True}
    # 150 µs for 500k instructions: 0.3 ns each. The most any concern adds is 07's 220k
    # (66 µs, over 25); the traced row's million is not counted as a concern.
    budget = next(claim for claim in verdicts if claim.startswith("no concern adds"))
    assert "07_rate_limiting" in budget and "66 µs" in budget
    assert verdicts[budget] is False
    traced = next(row for row in section.rows if row[0] == "08_observability @100%")
    assert traced[4] == "+1,000.0k"  # shown over its own stage, 08


def test_without_valgrind_the_section_says_how_to_get_it() -> None:
    section = counted_section({}, {"01_pass_through": 150.0}, requests=500)
    assert section.verdicts == []
    assert any("apt-get install valgrind" in note for note in section.notes)
