"""Just enough Markdown for the rules: ATX headings, fenced code blocks, and sections.

A full parser (markdown-it, which rich already pulls in) would do, but the rules need line
numbers for every finding and only three constructs, so a line scanner is shorter and
reports exactly what it saw. It follows CommonMark where it matters: a fence is ``` or ~~~
(three or more), indented at most three spaces, closed by the same character at least as
many times; a `#` line inside a fence is code, not a heading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
TITLE = re.compile(r"""\btitle=(?:"([^"]*)"|'([^']*)'|(\S+))""")


@dataclass(frozen=True)
class Fence:
    start: int  # line of the opening fence (1-based)
    end: int | None  # line of the closing fence; None if the block runs to the end of file
    info: str
    lines: tuple[str, ...]  # the content, with the fence's own indentation removed

    @property
    def language(self) -> str:
        return self.info.split()[0].lower() if self.info.split() else ""

    @property
    def title(self) -> str | None:
        match = TITLE.search(self.info)
        if not match:
            return None
        return next(g for g in match.groups() if g is not None)

    def content_line(self, index: int) -> int:
        """The .md line number of content line `index` (0-based)."""
        return self.start + 1 + index


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    line: int


@dataclass
class Section:
    """A level-2 heading and everything up to the next heading of level 1 or 2."""

    heading: Heading
    end: int  # last line of the section (inclusive)
    lines: list[tuple[int, str]] = field(default_factory=list)  # prose lines, not code
    fences: list[Fence] = field(default_factory=list)


@dataclass
class Document:
    path: Path
    lines: list[str]
    headings: list[Heading]
    fences: list[Fence]

    def sections(self) -> list[Section]:
        tops = [h for h in self.headings if h.level <= 2]
        in_code = self._code_lines()
        result = []
        for i, heading in enumerate(tops):
            if heading.level != 2:
                continue
            end = tops[i + 1].line - 1 if i + 1 < len(tops) else len(self.lines)
            section = Section(heading, end)
            section.lines = [
                (n, self.lines[n - 1]) for n in range(heading.line + 1, end + 1) if n not in in_code
            ]
            section.fences = [f for f in self.fences if heading.line < f.start <= end]
            result.append(section)
        return result

    def section(self, prefix: str) -> Section | None:
        """The first level-2 section whose heading starts with `prefix` (any case)."""
        for section in self.sections():
            if section.heading.text.lower().startswith(prefix.lower()):
                return section
        return None

    def _code_lines(self) -> set[int]:
        lines: set[int] = set()
        for f in self.fences:
            lines.update(range(f.start, (f.end or len(self.lines)) + 1))
        return lines


def parse(text: str, path: Path) -> Document:
    lines = text.splitlines()
    headings: list[Heading] = []
    fences: list[Fence] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        opening = FENCE_OPEN.match(line)
        if opening and not (opening.group(2)[0] == "`" and "`" in opening.group(3)):
            indent, marker, info = len(opening.group(1)), opening.group(2), opening.group(3)
            closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            j = i + 1
            while j < len(lines) and not closing.match(lines[j]):
                j += 1
            body = tuple(_dedent(lines[k], indent) for k in range(i + 1, min(j, len(lines))))
            end = j + 1 if j < len(lines) else None
            fences.append(Fence(i + 1, end, info.strip(), body))
            i = j + 1
            continue
        heading = HEADING.match(line)
        if heading:
            headings.append(Heading(len(heading.group(1)), (heading.group(2) or "").strip(), i + 1))
        i += 1
    return Document(path, lines, headings, fences)


def read(path: Path) -> Document:
    return parse(path.read_text(encoding="utf-8", errors="replace"), path)


def _dedent(line: str, indent: int) -> str:
    # CommonMark removes up to the opening fence's indentation from each content line.
    stripped = 0
    while stripped < indent and stripped < len(line) and line[stripped] == " ":
        stripped += 1
    return line[stripped:]
