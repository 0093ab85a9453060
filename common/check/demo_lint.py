"""Rule 4: demo.http is plain REST Client syntax that the stage's tests can run.

The file has two readers: VS Code's REST Client (a person clicking "Send Request") and
common/demo/ (the tests, which send every request and compare the status with the
`# expect:` line). REST Client-only features (`??` assertions, `> {% %}` scripts) would be
sent as the request body by anything else, so they are banned, and every request must
carry exactly one expected status for the tests to check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from common.check.model import RuleResult, Violation, rel
from common.check.stages import Stage

NAME = "demo-lint"
DESCRIPTION = "demo.http: variables first, '### N. title', one '# expect: NNN', a request line"

VARIABLE = re.compile(r"^@([A-Za-z_][\w.-]*)\s*=")
SEPARATOR = re.compile(r"^###")
TITLE = re.compile(r"^###\s+\d+\.\s+\S")
EXPECT = re.compile(r"^#\s*expect\b", re.IGNORECASE)
EXPECT_VALID = re.compile(r"^#\s*expect:\s*(\d{3})\s*$")
METHODS = "GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|TRACE|CONNECT"
REQUEST_LINE = re.compile(rf"^({METHODS})\s+\S+(\s+HTTP/\d(\.\d)?)?\s*$")


@dataclass
class Request:
    title_line: int
    raw: str  # the whole `###` line
    lines: list[tuple[int, str]] = field(default_factory=list)


def check(root: Path, stages: list[Stage]) -> RuleResult:
    result = RuleResult(NAME, DESCRIPTION)
    for stage in stages:
        demo = stage.path / "demo.http"
        if demo.is_file():  # a missing file is the structure rule's finding
            result.stages_checked += 1
            text = demo.read_text(encoding="utf-8", errors="replace")
            result.violations += lint(text, rel(demo, root))
    return result


def lint(text: str, path: str) -> list[Violation]:
    violations: list[Violation] = []

    def report(line: int | None, reason: str) -> None:
        violations.append(Violation(path, line, reason))

    variables: dict[str, int] = {}
    requests: list[Request] = []
    preamble: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith("??"):
            report(number, "'??' assertion line: REST Client-only syntax, sent as body elsewhere")
        if re.match(r"^>\s*\{%", stripped):
            report(number, "'> {%' script: REST Client-only syntax, sent as body elsewhere")
        variable = VARIABLE.match(line)
        if variable:
            variables.setdefault(variable.group(1), number)
            if requests:
                report(
                    number,
                    f"variable @{variable.group(1)} comes after the first '###' "
                    f"(line {requests[0].title_line}): all @variables go at the top",
                )
            continue
        if SEPARATOR.match(line):
            requests.append(Request(number, line.rstrip()))
        elif requests:
            requests[-1].lines.append((number, line))
        else:
            preamble.append((number, line))

    for number, line in preamble:
        if REQUEST_LINE.match(line.strip()):
            report(number, "request before the first '###': every request starts with '### N.'")
    if not requests:
        report(None, "no requests: each one starts with a '### N. title' line")
    for request in requests:
        violations += _lint_request(request, variables, path)
    return violations


def _lint_request(request: Request, variables: dict[str, int], path: str) -> list[Violation]:
    found = []
    line = request.title_line
    if not TITLE.match(request.raw):
        found.append(
            Violation(path, line, f"{request.raw!r} is not of the form '### N. what it shows'")
        )
    # DESIGN.md's rule. REST Client names requests (`# @name login`) in the same namespace
    # as file variables (`{{login.response...}}` vs `{{login}}`), so a title that spells a
    # variable's name reads as one and invites exactly that mix-up.
    title = request.raw[3:].strip()
    after_number = re.sub(r"^\d+\.\s*", "", title)
    for candidate in dict.fromkeys([title, after_number]):
        if candidate in variables:
            found.append(
                Violation(
                    path,
                    line,
                    f"title {candidate!r} equals the variable @{candidate} "
                    f"(line {variables[candidate]})",
                )
            )

    expects = [(n, text) for n, text in request.lines if EXPECT.match(text.strip())]
    if not expects:
        found.append(Violation(path, line, "request has no '# expect: NNN' line"))
    elif len(expects) > 1:
        lines = ", ".join(str(n) for n, _ in expects)
        found.append(
            Violation(
                path,
                expects[1][0],
                f"request has {len(expects)} '# expect:' lines ({lines}); exactly one is allowed",
            )
        )
    for number, text in expects:
        if not EXPECT_VALID.match(text.strip()):
            found.append(
                Violation(
                    path, number, f"{text.strip()!r}: expected '# expect: NNN' (3-digit status)"
                )
            )

    first = next(
        ((n, t.strip()) for n, t in request.lines if t.strip() and not _is_comment(t)), None
    )
    if first is None:
        found.append(Violation(path, line, "request has no request line (METHOD URL)"))
    elif not REQUEST_LINE.match(first[1]):
        found.append(
            Violation(path, first[0], f"expected a request line (METHOD URL), found {first[1]!r}")
        )
    return found


def _is_comment(line: str) -> bool:
    stripped = line.lstrip()
    return stripped.startswith("#") or stripped.startswith("//")
