"""`make check` on small made-up repos: a valid tree passes, each planted mistake is named.

Every test builds its own tree under tmp_path (the real repo is a moving target), breaks
exactly one thing, and asserts that the rule names the file and says why.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from common.check import demo_lint, docs, drift, structure
from common.check.__main__ import run_rules
from common.check.model import Violation
from common.check.stages import find_stages
from common.testing.processes import child_env

SECTIONS = [
    "Goal",
    "What changed since the previous stage",
    "Diagram",
    "Run it",
    "Try it",
    "How it works",
    "Measured",
    "Trade-offs, and what production gateways do",
    "Next",
]

APP_V1 = """\
def handle(request):
    route = lookup(request.path)
    return route(request)
"""

APP_V2 = """\
def handle(request):
    request_id = new_id()
    route = lookup(request.path)
    return route(request)
"""

DEMO = """\
@gateway = http://127.0.0.1:8080

### 1. A user through the gateway
# expect: 200
GET {{gateway}}/users/1

### 2. A POST with a body
# expect: 201
POST {{gateway}}/users
Content-Type: application/json

{"name": "ada"}
"""


def architecture(name: str, changed: list[str], how_it_works: str = "") -> str:
    """A template-complete ARCHITECTURE.md listing `changed` under "What changed"."""
    body = {
        "What changed since the previous stage": "\n".join(
            [f"- `{path}` (changed): why." for path in changed] + ["", "`make diff A=00 B=01`"]
        ),
        "Diagram": "```mermaid\nflowchart LR\n  client --> gateway\n```",
        "How it works": how_it_works or "Plain prose.",
    }
    parts = [f"# {name}: a stage\n"]
    for section in SECTIONS:
        parts.append(f"## {section}\n\n{body.get(section, 'Text.')}\n")
    return "\n".join(parts)


def write(root: Path, relpath: str, text: str) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Three valid stages: 01 edits app.py and adds extra.py, 02 removes extra.py."""
    quote = (
        '```python title="app.py"\ndef handle(request):\n    ...\n    return route(request)\n```'
    )
    stages = {
        "00_start": ({"app.py": APP_V1}, []),
        "01_ids": ({"app.py": APP_V2, "extra.py": "X = 1\n"}, ["app.py", "extra.py"]),
        "02_lean": ({"app.py": APP_V2}, ["extra.py"]),
    }
    for name, (files, changed) in stages.items():
        for relpath, text in files.items():
            write(tmp_path, f"{name}/{relpath}", text)
        write(tmp_path, f"{name}/demo.http", DEMO)
        write(tmp_path, f"{name}/tests/test_app.py", "def test_app():\n    pass\n")
        write(tmp_path, f"{name}/ARCHITECTURE.md", architecture(name, changed, quote))
    return tmp_path


def violations(rule: ModuleType, root: Path) -> list[Violation]:
    found: list[Violation] = rule.check(root, find_stages(root)).violations
    return found


def only(found: list[Violation]) -> Violation:
    assert len(found) == 1, found
    return found[0]


def test_the_valid_tree_passes_every_rule(repo: Path) -> None:
    results = run_rules(repo, find_stages(repo))
    assert [r.rule for r in results] == ["structure", "drift", "docs", "demo-lint"]
    assert all(r.passed for r in results), [r.violations for r in results]
    assert {r.rule: r.stages_checked for r in results} == {
        "structure": 3,
        "drift": 2,
        "docs": 3,
        "demo-lint": 3,
    }


# --- structure --------------------------------------------------------------------------


def test_structure_missing_section(repo: Path) -> None:
    arch = repo / "01_ids/ARCHITECTURE.md"
    arch.write_text(arch.read_text().replace("## Measured\n", ""))
    found = only(violations(structure, repo))
    assert found.path == "01_ids/ARCHITECTURE.md"
    assert found.reason == "missing section '## Measured'"


def test_structure_section_out_of_order(repo: Path) -> None:
    arch = repo / "00_start/ARCHITECTURE.md"
    text = arch.read_text()
    text = text.replace("## Try it\n\nText.\n", "").replace(
        "## Goal", "## Try it\n\nText.\n\n## Goal"
    )
    arch.write_text(text)
    found = only(violations(structure, repo))
    assert found.path == "00_start/ARCHITECTURE.md"
    assert found.line == 3
    assert "'Try it' is out of order" in found.reason
    assert "after 'Run it' and before 'How it works'" in found.reason


def test_structure_diagram_without_mermaid(repo: Path) -> None:
    arch = repo / "02_lean/ARCHITECTURE.md"
    arch.write_text(arch.read_text().replace("```mermaid", "```text"))
    assert "no ```mermaid block" in only(violations(structure, repo)).reason


def test_structure_missing_demo_http(repo: Path) -> None:
    (repo / "01_ids/demo.http").unlink()
    found = only(violations(structure, repo))
    assert (found.path, found.reason) == ("01_ids/demo.http", "missing demo.http")


def test_structure_tests_folder_without_test_files(repo: Path) -> None:
    (repo / "02_lean/tests/test_app.py").rename(repo / "02_lean/tests/conftest.py")
    found = only(violations(structure, repo))
    assert (found.path, found.reason) == ("02_lean/tests", "tests/ holds no test_*.py file")


def test_structure_an_architecture_a_reader_cannot_finish(repo: Path) -> None:
    arch = repo / "02_lean/ARCHITECTURE.md"
    arch.write_text(arch.read_text() + "\n" + "word " * 3000 + "\n")
    found = only(violations(structure, repo))
    assert found.path == "02_lean/ARCHITECTURE.md"
    assert "words: at most 3,000" in found.reason and "MEASURED.md" in found.reason


# --- drift ------------------------------------------------------------------------------


def test_drift_a_stages_measured_md_is_its_own_like_its_architecture(repo: Path) -> None:
    write(repo, "02_lean/MEASURED.md", "# 02_lean: measured\n")  # 01 has none: not "added"
    assert violations(drift, repo) == []


def test_drift_ignores_caches(repo: Path) -> None:
    write(repo, "01_ids/__pycache__/app.cpython-311.pyc", "bytecode")
    write(repo, "01_ids/.pytest_cache/v/cache", "x")
    write(repo, "01_ids/.run/gateway.pid", "123")
    assert violations(drift, repo) == []


def test_drift_unlisted_changed_file(repo: Path) -> None:
    write(repo, "02_lean/app.py", APP_V2 + "# a fix that did not travel forward\n")
    found = only(violations(drift, repo))
    assert found.path == "02_lean/ARCHITECTURE.md"
    assert found.reason == (
        "01_ids -> 02_lean: app.py differs from 01_ids but is not listed in "
        "02_lean/ARCHITECTURE.md 'What changed'"
    )


def test_drift_listed_but_identical(repo: Path) -> None:
    arch = repo / "02_lean/ARCHITECTURE.md"
    arch.write_text(
        arch.read_text().replace("- `extra.py`", "- `app.py` (changed): no.\n- `extra.py`")
    )
    found = only(violations(drift, repo))
    assert found.path == "02_lean/ARCHITECTURE.md"
    assert found.reason == "01_ids -> 02_lean: `app.py` listed as changed but identical to 01_ids"
    assert found.line is not None
    assert arch.read_text().splitlines()[found.line - 1].startswith("- `app.py`")


def test_drift_listed_but_in_neither_stage(repo: Path) -> None:
    arch = repo / "02_lean/ARCHITECTURE.md"
    arch.write_text(arch.read_text().replace("- `extra.py`", "- `gateway/gone.py` x\n- `extra.py`"))
    assert "listed but exists in neither stage" in only(violations(drift, repo)).reason


def test_drift_added_file_unlisted(repo: Path) -> None:
    write(repo, "02_lean/gateway/new.py", "pass\n")
    found = only(violations(drift, repo))
    assert found.reason.startswith("01_ids -> 02_lean: gateway/new.py is added (not in 01_ids)")


def test_drift_removed_file_unlisted(repo: Path) -> None:
    arch = repo / "02_lean/ARCHITECTURE.md"
    arch.write_text(arch.read_text().replace("- `extra.py` (changed): why.\n", ""))
    found = only(violations(drift, repo))
    assert found.reason.startswith("01_ids -> 02_lean: extra.py is removed (was in 01_ids)")


def test_drift_counts_only_the_what_changed_section(repo: Path) -> None:
    # A path bullet elsewhere is prose, not a claim about the diff.
    arch = repo / "02_lean/ARCHITECTURE.md"
    arch.write_text(arch.read_text().replace("## Next\n\nText.", "## Next\n\n- `app.py` next."))
    assert violations(drift, repo) == []


def test_drift_a_folder_bullet_covers_every_file_under_it(repo: Path) -> None:
    write(repo, "02_lean/gateway/pkg/a.py", "A = 1\n")
    write(repo, "02_lean/gateway/pkg/sub/b.py", "B = 1\n")
    arch = repo / "02_lean/ARCHITECTURE.md"
    bullet = "- `gateway/pkg/` (added): a package.\n- `extra.py`"
    arch.write_text(arch.read_text().replace("- `extra.py`", bullet))
    assert violations(drift, repo) == []
    # Without the trailing slash it reads as a file, and the rule says how to write it.
    arch.write_text(arch.read_text().replace("`gateway/pkg/`", "`gateway/pkg`"))
    reasons = [v.reason for v in violations(drift, repo)]
    expected = "`gateway/pkg` is a folder: write it as `gateway/pkg/` to list every file in it"
    assert f"01_ids -> 02_lean: {expected}" in reasons


def test_drift_a_glob_bullet_stays_within_its_folder(repo: Path) -> None:
    write(repo, "02_lean/tests/test_new_one.py", "def test_a():\n    pass\n")
    write(repo, "02_lean/tests/deep/test_new_two.py", "def test_b():\n    pass\n")
    arch = repo / "02_lean/ARCHITECTURE.md"
    arch.write_text(
        arch.read_text().replace(
            "- `extra.py`", "- `tests/test_new_*.py` (added): x.\n- `extra.py`"
        )
    )
    found = only(violations(drift, repo))  # `*` does not cross into tests/deep/
    assert found.reason.startswith("01_ids -> 02_lean: tests/deep/test_new_two.py is added")


def test_drift_several_paths_in_one_bullet(repo: Path) -> None:
    write(repo, "02_lean/one.py", "pass\n")
    arch = repo / "02_lean/ARCHITECTURE.md"
    arch.write_text(
        arch.read_text().replace("- `extra.py` (changed)", "- `extra.py`, `one.py` (x)")
    )
    assert violations(drift, repo) == []


def test_drift_a_group_that_covers_no_change_is_named(repo: Path) -> None:
    arch = repo / "02_lean/ARCHITECTURE.md"
    arch.write_text(
        arch.read_text().replace("- `extra.py`", "- `tests/` (changed): no.\n- `extra.py`")
    )
    found = only(violations(drift, repo))
    assert found.reason == "01_ids -> 02_lean: `tests/` covers only files identical to 01_ids"


# --- docs -------------------------------------------------------------------------------


def test_docs_exact_block_and_block_with_gap_match(repo: Path) -> None:
    exact = (
        '```python title="app.py"\n    route = lookup(request.path)\n    return route(request)\n```'
    )
    arch = repo / "01_ids/ARCHITECTURE.md"
    arch.write_text(arch.read_text().replace("Plain prose.", exact))  # the fixture's is a gap
    assert violations(docs, repo) == []


def test_docs_drifted_block(repo: Path) -> None:
    drifted = '~~~py title="app.py"\ndef handle(request):\n    ...\n    return route(req)\n~~~'
    arch = repo / "02_lean/ARCHITECTURE.md"
    text = arch.read_text() + "\n" + drifted + "\n"
    arch.write_text(text)
    found = only(violations(docs, repo))
    assert found.path == "02_lean/ARCHITECTURE.md"
    assert found.line is not None
    assert text.splitlines()[found.line - 1] == "    return route(req)"
    assert "has drifted from app.py" in found.reason
    assert "'return route(req)' (line 51) not found after app.py:1" in found.reason


def test_docs_gap_keeps_order(repo: Path) -> None:
    # `...` skips lines forward only: the lines after it must come later in the file.
    backwards = (
        '```python title="app.py"\n    return route(request)\n...\ndef handle(request):\n```'
    )
    write(repo, "README.md", backwards.replace('title="app.py"', 'title="00_start/app.py"'))
    found = only(violations(docs, repo))
    assert found.path == "README.md"
    assert "'def handle(request):' (line 4) not found after 00_start/app.py:3" in found.reason


def test_docs_missing_file(repo: Path) -> None:
    arch = repo / "00_start/ARCHITECTURE.md"
    arch.write_text(arch.read_text().replace('title="app.py"', 'title="gateway/app.py"'))
    found = only(violations(docs, repo))
    assert (
        found.reason == 'code block quotes title="gateway/app.py", which does not exist in 00_start'
    )


# --- demo.http lint ---------------------------------------------------------------------


def lint_with(repo: Path, text: str) -> Violation:
    write(repo, "01_ids/demo.http", text)
    found = only(violations(demo_lint, repo))
    assert found.path == "01_ids/demo.http"
    return found


def test_demo_variable_after_first_request(repo: Path) -> None:
    found = lint_with(repo, DEMO + "\n@late = 1\n")
    assert found.line == len(DEMO.splitlines()) + 2
    assert "variable @late comes after the first '###'" in found.reason


def test_demo_missing_expect(repo: Path) -> None:
    found = lint_with(repo, DEMO.replace("# expect: 201\n", ""))
    assert (found.line, found.reason) == (7, "request has no '# expect: NNN' line")


def test_demo_two_expects(repo: Path) -> None:
    found = lint_with(repo, DEMO.replace("# expect: 200\n", "# expect: 200\n# expect: 404\n"))
    assert found.line == 5
    assert "2 '# expect:' lines (4, 5)" in found.reason


def test_demo_assertion_line(repo: Path) -> None:
    found = lint_with(repo, DEMO + "\n?? status == 201\n")
    assert found.reason.startswith("'??' assertion line")


def test_demo_script_line(repo: Path) -> None:
    found = lint_with(repo, DEMO + "\n> {% client.global.set('x', 1) %}\n")
    assert found.reason.startswith("'> {%' script")


def test_demo_title_equal_to_variable(repo: Path) -> None:
    found = lint_with(repo, DEMO.replace("### 2. A POST with a body", "### 2. gateway"))
    assert (found.line, found.reason) == (
        7,
        "title 'gateway' equals the variable @gateway (line 1)",
    )


def test_demo_title_without_number_and_missing_request_line(repo: Path) -> None:
    write(repo, "00_start/demo.http", DEMO.replace("### 1.", "###").replace("GET {{", "{{"))
    reasons = [v.reason for v in violations(demo_lint, repo)]
    assert reasons == [
        "'### A user through the gateway' is not of the form '### N. what it shows'",
        "expected a request line (METHOD URL), found '{{gateway}}/users/1'",
    ]


# --- the command ------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "common.check", *args],
        capture_output=True,
        text=True,
        env=child_env({"COLUMNS": "200"}),
        timeout=30,
    )


def test_cli_exit_codes(repo: Path) -> None:
    ok = run_cli("--root", str(repo))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all checks passed" in ok.stdout

    shutil.rmtree(repo / "00_start/tests")
    bad = run_cli("--root", str(repo))
    assert bad.returncode == 1
    assert "FAIL  structure" in bad.stdout
    assert "00_start/tests  missing tests/ folder" in bad.stdout

    nowhere = run_cli("--root", str(repo / "missing"))
    assert nowhere.returncode == 2
    assert "is not a directory" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr


def test_code_blocks_are_not_headings_or_bullets(repo: Path) -> None:
    # A fenced block that shows the template, or a bullet list, is an example, not a claim.
    example = "````text\n## Goal\n- `gateway/nowhere.py` (added): x\n````"
    arch = repo / "01_ids/ARCHITECTURE.md"
    arch.write_text(arch.read_text().replace("`make diff A=00 B=01`", example))
    assert violations(structure, repo) == []
    assert violations(drift, repo) == []
