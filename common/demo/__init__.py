"""Run a stage's demo.http (VS Code REST Client syntax) against the live stage.

    from common.demo import assert_demo
    assert_demo("demo.http", {"users": backend.url})   # in a stage's tests

    python -m common.demo 00_services/demo.http --var users=http://127.0.0.1:9001

Modules: `parser` reads the file, `variables` expands `{{...}}`, `client` sends one request
byte for byte, `runner` runs them all and compares with each `# expect:` line.
"""

from common.demo.client import Response, SentRequest
from common.demo.parser import (
    DemoError,
    DemoFile,
    DemoParseError,
    DemoRequest,
    load_demo,
    parse_demo,
)
from common.demo.runner import DemoResult, assert_demo, run_demo

__all__ = [
    "DemoError",
    "DemoFile",
    "DemoParseError",
    "DemoRequest",
    "DemoResult",
    "Response",
    "SentRequest",
    "assert_demo",
    "load_demo",
    "parse_demo",
    "run_demo",
]
