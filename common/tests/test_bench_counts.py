"""bench-all's counted section: what it judges from the instruction counts.

The counts come from valgrind (common/bench/instructions.py, minutes per run, not part of
`make test`); what is tested here is the judgement made from them, with made-up counts:
the ratios against their targets, the per-concern budget in µs at stage 01's rate, and
the fully traced row of 08 kept out of what "a concern adds"; the simulated L2's misses
beside them, the L2 as sysfs describes it, and the profiles' totals as callgrind writes
them.
"""

from __future__ import annotations

from pathlib import Path

from common.bench.bench_all import counted_section
from common.bench.instructions import Cache, _totals, l2_of_this_machine


def test_ratios_are_judged_on_the_counts_and_the_traced_row_adds_to_no_concern() -> None:
    counts = {
        "01_pass_through": 500_000.0,
        "06_authentication": 500_000.0,  # apart from 01: adds nothing as one concern
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


def test_the_simulated_l2s_misses_are_a_column_beside_the_counts() -> None:
    counts = {"01_pass_through": 500_000.0, "07_rate_limiting": 700_000.0}
    misses = {"01_pass_through": 600.0, "07_rate_limiting": 2_500.0}
    cache = Cache(size=1024 * 1024, ways=8, line=64)
    section = counted_section(counts, {"01_pass_through": 150.0}, 500, misses, cache)
    assert section.columns[-1] == "L2 misses/request"
    assert [row[-1] for row in section.rows] == ["600", "2,500"]
    assert any("1,024 KiB, 8-way" in note for note in section.notes)
    # the verdicts stay on the instructions: the misses explain, they do not judge
    assert [ok for claim, ok in section.verdicts if "x " in claim] == [True]
    plain = counted_section(counts, {"01_pass_through": 150.0}, 500)
    assert "L2 misses/request" not in plain.columns


def cache_dir(root: Path, size: str, ways: int = 8, line: int = 64) -> Path:
    for index, (level, what) in enumerate([(1, "32K"), (1, "32K"), (2, size), (3, "32768K")]):
        folder = root / f"index{index}"
        folder.mkdir(parents=True)
        (folder / "level").write_text(f"{level}\n")
        (folder / "size").write_text(f"{what}\n")
        (folder / "ways_of_associativity").write_text(f"{ways}\n")
        (folder / "coherency_line_size").write_text(f"{line}\n")
    return root


def test_the_l2_is_read_from_sysfs_and_refused_when_callgrind_could_not_simulate_it(
    tmp_path: Path,
) -> None:
    found = l2_of_this_machine(cache_dir(tmp_path / "a", "1024K"))
    assert found == Cache(size=1024 * 1024, ways=8, line=64)
    assert found is not None and found.option() == "--LL=1048576,8,64"
    # 1,280 KiB in 10 ways of 64 bytes is 2,048 sets; 1,280 KiB in 8 ways is 2,560: not
    # a power of two, which callgrind refuses, so no simulation rather than a wrong one
    assert l2_of_this_machine(cache_dir(tmp_path / "b", "1280K", ways=10)) is not None
    assert l2_of_this_machine(cache_dir(tmp_path / "c", "1280K", ways=8)) is None
    assert l2_of_this_machine(tmp_path / "none") is None


def test_every_event_of_a_profile_is_summed_over_its_parts(tmp_path: Path) -> None:
    first, second = tmp_path / "callgrind.out.1", tmp_path / "callgrind.out.2"
    first.write_text("events: Ir ILmr DLmr DLmw\nfn=(1) f\n1 2 3 4 5\nsummary: 100 1 2 3\n")
    second.write_text("events: Ir ILmr DLmr DLmw\ntotals: 50 1 1 1\n")
    assert _totals([first, second]) == {"Ir": 150, "ILmr": 2, "DLmr": 3, "DLmw": 4}
