"""Run every request of a demo.http against a live stage and compare with `# expect:`.

The stages' tests call `assert_demo(path, {"users": backend.url, ...})`: the overrides
replace the base-URL variables (fixed ports for humans, ephemeral ports in tests), every
request runs in file order, and one readable line per mismatch ends the test. Requests
run one after another on purpose: a demo is a story (create, then read what was created).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from common.demo.client import Response, SentRequest, prepare, send
from common.demo.parser import DemoError, DemoRequest, load_demo
from common.demo.variables import Exchange, Variables

BODY_PREVIEW = 200  # characters of a response body shown in a mismatch line


@dataclass
class DemoResult:
    request: DemoRequest
    status: int | None = None  # None: no response (see `error`)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    error: str | None = None
    sent: SentRequest | None = None  # what went on the wire, variables expanded
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.request.expect is not None
            and self.status == self.request.expect
        )

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((value for key, value in self.headers if key.lower() == lower), None)

    def problem(self) -> str:
        """One line saying what went wrong; empty when the result is as expected."""
        if self.ok:
            return ""
        request = self.request
        where = f"{request.label} (line {request.line})"
        if request.expect is None:
            return f"{where}: no `# expect: NNN` line"
        if self.sent is None:
            return f"{where}: expected {request.expect}, not sent: {self.error}"
        if self.status is None:
            return f"{where}: expected {request.expect}, got no response: {self.error}"
        sent = f"{self.sent.method} {self.sent.url}" if self.sent else request.url
        return (
            f"{where}: expected {request.expect}, got {self.status}"
            f" from {sent}; body: {preview(self.body)}"
        )


def preview(body: bytes, limit: int = BODY_PREVIEW) -> str:
    text = body.decode("utf-8", errors="replace")
    short = text[:limit] + ("..." if len(text) > limit else "")
    return repr(short) if short else "(empty)"


def build(request: DemoRequest, variables: Variables) -> SentRequest:
    """Expand every variable of `request`; add Host and Content-Length."""
    url = variables.expand(request.url).strip()
    headers = [(variables.expand(k), variables.expand(v)) for k, v in request.headers]
    body_text = variables.expand(request.body) if request.body is not None else None
    body: bytes | None = None
    if body_text is not None:
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        if content_type.lower().startswith("multipart/"):
            # multipart framing is CRLF by definition (RFC 2046); REST Client converts too
            body_text = body_text.replace("\n", "\r\n")
        body = body_text.encode("utf-8")
    return prepare(request.method, url, headers, body)


def run_demo(
    path: str | Path, overrides: dict[str, str] | None = None, *, timeout: float = 10.0
) -> list[DemoResult]:
    """Send every request in file order; one result each, whatever happened.

    Raises DemoError only for a file that cannot be read or an override that names no
    `@variable` (a typo there would otherwise test the fixed ports instead).
    """
    demo = load_demo(path)
    unknown = sorted(set(overrides or {}) - set(demo.variables))
    if unknown:
        have = ", ".join(f"@{name}" for name in demo.variables) or "none"
        raise DemoError(
            f"{demo.path}: cannot override {', '.join(unknown)}: no such @variable"
            f" (the file has: {have})"
        )
    names = {request.name for request in demo.requests if request.name}
    variables = Variables({**demo.variables, **(overrides or {})}, names)
    results: list[DemoResult] = []
    for request in demo.requests:
        result = DemoResult(request)
        results.append(result)
        started = time.monotonic()
        try:
            result.sent = build(request, variables)
            response: Response = send(result.sent, timeout)
        except DemoError as exc:
            result.error = str(exc)
            continue
        finally:
            result.seconds = time.monotonic() - started
        result.status, result.headers, result.body = (
            response.status,
            response.headers,
            response.body,
        )
        if request.name:
            variables.remember(request.name, Exchange(result.sent, response))
    return results


def assert_demo(
    path: str | Path, overrides: dict[str, str] | None = None, *, timeout: float = 10.0
) -> list[DemoResult]:
    """Run the whole demo, then fail with one line per request that did not answer as
    its `# expect:` says. Returns the results for further assertions."""
    results = run_demo(path, overrides, timeout=timeout)
    if not results:
        raise AssertionError(f"{path}: no requests found")
    problems = [result.problem() for result in results if not result.ok]
    if problems:
        raise AssertionError(
            f"{path}: {len(problems)} of {len(results)} requests did not answer as expected:\n"
            + "\n".join(f"  {line}" for line in problems)
        )
    return results
