"""Read a demo.http file (VS Code REST Client syntax) into requests that still hold `{{...}}`.

A demo.http is a plain text file the REST Client extension can send one request at a time:

    @users = http://127.0.0.1:9001          file variables, at the top

    ### 1. list the users                    a separator, with `N. title`
    # @name list                             optional: later requests may read its response
    # expect: 200                            the status this request must answer (our rule)
    GET {{users}}/users                      METHOD URL [HTTP/1.1]; no method means GET
        ?limit=10                            a long URL may go on with `?` or `&` lines
    Accept: application/json                 headers, until a blank line

    {"optional": "body"}                     the body, until the next `###`

Variables are not expanded here: request variables only exist once the request they name
has run. `common/demo/variables.py` expands them when the runner sends each request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


class DemoError(Exception):
    """Something wrong with a demo file or one of its requests, worded for its author."""


class DemoParseError(DemoError):
    """The file is not the REST Client syntax this runner understands."""


# REST Client knows the WebDAV verbs too; a demo of a gateway has no use for them, and a
# line starting with an unknown word is then read as a URL and fails loudly when sent.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"})

_SEPARATOR = re.compile(r"^###")
_TITLE = re.compile(r"^###\s*(\d+)\s*[.)]\s*(.*?)\s*$")
_FILE_VARIABLE = re.compile(r"^\s*@([^\s=]+)\s*=\s*(.*?)\s*$")
_COMMENT = re.compile(r"^\s*(?:#|//)")
_EXPECT = re.compile(r"^\s*(?:#+|//+)\s*expect\s*:\s*(.*?)\s*$", re.IGNORECASE)
_NAME = re.compile(r"^\s*(?:#+|//+)\s*@name(?:\s*=\s*|\s+)(\S+)\s*$")
_HTTP_VERSION = re.compile(r"\s+HTTP/\d(?:\.\d)?$")
_HEADER = re.compile(r"^([^\s:]+)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True)
class DemoRequest:
    """One request of a demo file, `{{variables}}` not yet expanded."""

    number: int  # the N of `### N. title` (its position in the file if the title has none)
    title: str
    line: int  # 1-based line of the request line (METHOD URL), for error messages
    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None
    expect: int | None = None  # from `# expect: NNN`
    name: str | None = None  # from `# @name reqName`

    @property
    def label(self) -> str:
        return f"{self.number}. {self.title}" if self.title else f"{self.number}."


@dataclass(frozen=True)
class DemoFile:
    path: Path
    variables: dict[str, str]  # `@name = value`, values unexpanded
    requests: list[DemoRequest]


def parse_demo(path: str | Path) -> list[DemoRequest]:
    """The requests of a demo file, in order (variables unexpanded)."""
    return load_demo(path).requests


def load_demo(path: str | Path) -> DemoFile:
    """The whole file: its `@variables` and its requests. Raises DemoParseError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DemoParseError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DemoParseError(f"{path}: cannot read it: {exc}") from None
    return parse_text(text, path)


def parse_text(text: str, path: Path = Path("demo.http")) -> DemoFile:
    lines = re.split(r"\r?\n", text)
    variables: dict[str, tuple[str, int]] = {}
    requests: list[DemoRequest] = []
    # Blocks start at each `###` line; the text before the first one is block 0, which
    # REST Client also treats as a request if it holds one (ours only hold variables).
    starts = [0] + [i for i, line in enumerate(lines) if _SEPARATOR.match(line)]
    ends = starts[1:] + [len(lines)]
    for start, end in zip(starts, ends, strict=True):
        if start == end:
            continue
        block = _Block(path, lines, start, end, variables)
        request = block.parse(default_number=len(requests) + 1)
        if request is not None:
            requests.append(request)
    return DemoFile(path, {name: value for name, (value, _) in variables.items()}, requests)


class _Block:
    """The lines from one `###` to the next: prelude, request line, headers, body."""

    def __init__(
        self,
        path: Path,
        lines: list[str],
        start: int,
        end: int,
        variables: dict[str, tuple[str, int]],
    ) -> None:
        self.path, self.lines, self.start, self.end = path, lines, start, end
        self.variables = variables

    def error(self, index: int, message: str) -> DemoParseError:
        return DemoParseError(f"{self.path}:{index + 1}: {message}")

    def parse(self, default_number: int) -> DemoRequest | None:
        number, title = default_number, ""
        first = self.start
        if _SEPARATOR.match(self.lines[first]):
            match = _TITLE.match(self.lines[first])
            if match:
                number, title = int(match.group(1)), match.group(2)
            else:
                title = self.lines[first].lstrip("#").strip()
            first += 1

        expect: int | None = None
        name: str | None = None
        index = first
        # Prelude: blank lines, comments (two of which mean something), file variables.
        while index < self.end:
            line = self.lines[index]
            if not line.strip():
                pass
            elif match := _EXPECT.match(line):
                if expect is not None:
                    raise self.error(index, "a second `# expect:` line (one per request)")
                expect = self._status(index, match.group(1))
            elif match := _NAME.match(line):
                name = match.group(1)
            elif _COMMENT.match(line):
                pass
            elif match := _FILE_VARIABLE.match(line):
                self._define(index, match.group(1), match.group(2))
            else:
                break
            index += 1
        if index == self.end:
            if expect is not None or name is not None:
                raise self.error(self.start, "this request has no request line (METHOD URL)")
            return None  # a block of comments and variables only

        request_line = index
        method, url = self._request_line(index)
        index += 1
        # A long URL may continue on lines that start with `?` or `&` (REST Client).
        while index < self.end and self.lines[index].lstrip().startswith(("?", "&")):
            url += self.lines[index].strip()
            index += 1

        headers: list[tuple[str, str]] = []
        while index < self.end and self.lines[index].strip():
            line = self.lines[index]
            if not _COMMENT.match(line):
                match = _HEADER.match(line.strip())
                if not match:
                    raise self.error(
                        index, f"expected a header `Name: value` or a blank line, got {line!r}"
                    )
                headers.append((match.group(1), match.group(2)))
            index += 1

        # Everything after the blank line is body, comments included (as REST Client sends
        # it); blank lines before the next `###` only separate requests.
        body_lines = self.lines[index + 1 : self.end]
        while body_lines and not body_lines[-1].strip():
            body_lines.pop()
        body = "\n".join(body_lines) if body_lines else None
        return DemoRequest(
            number, title, request_line + 1, method, url, headers, body, expect, name
        )

    def _status(self, index: int, text: str) -> int:
        if not re.fullmatch(r"[1-5]\d\d", text):
            raise self.error(index, f"`# expect:` wants a status code 100-599, got {text!r}")
        return int(text)

    def _define(self, index: int, name: str, value: str) -> None:
        if name in self.variables:
            first = self.variables[name][1]
            raise self.error(index, f"@{name} is already defined on line {first + 1}")
        self.variables[name] = (value, index)

    def _request_line(self, index: int) -> tuple[str, str]:
        text = _HTTP_VERSION.sub("", self.lines[index].strip())
        word, _, rest = text.partition(" ")
        if word in METHODS:
            url = rest.strip()
            if not url:
                raise self.error(index, f"{word} needs a URL")
            return word, url
        if word.upper() in METHODS and rest.strip():
            raise self.error(index, f"write the method in capitals: {word.upper()}")
        return "GET", text  # REST Client: a request line without a method is a GET
