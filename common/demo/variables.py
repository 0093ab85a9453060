"""Expand `{{...}}` the way REST Client does: file, request and system variables.

- file variables: `@users = http://127.0.0.1:9001`; a value may use other variables, and is
  expanded each time it is used (so `@id = {{$guid}}` is a fresh id per use, as in VS Code);
- request variables: `{{login.response.body.$.token}}`, `{{login.response.headers.ETag}}`
  (also `request.` instead of `response.`, and `body.*` for the whole body), read from the
  latest answer of the earlier request marked `# @name login`;
- system variables: `{{$guid}}`, `{{$timestamp}}`, `{{$randomInt 1 100}}` (100 excluded),
  `{{$datetime rfc1123|iso8601}}` (both also take an offset: `{{$timestamp -1 h}}`) and
  `{{$processEnv NAME}}`.

Unlike REST Client, which leaves an unknown `{{name}}` in the text and sends it, this
raises: a test that sends `{{usres}}/users` should say so, not report a 404.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from common.demo.client import Response, SentRequest
from common.demo.parser import DemoError

_REFERENCE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
_JSON_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\[\s*['\"]([^'\"]*)['\"]\s*\]")
_OFFSET_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SYSTEM_VARIABLES = "$guid, $timestamp, $randomInt, $datetime, $processEnv"


@dataclass(frozen=True)
class Exchange:
    """What a named request sent and got: the source of its request variables."""

    request: SentRequest
    response: Response


def braces(reference: str) -> str:
    return "{{" + reference + "}}"


class Variables:
    """Everything `{{...}}` can name while a demo runs."""

    def __init__(
        self,
        file_variables: dict[str, str],
        request_names: set[str] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.file_variables = dict(file_variables)
        self.request_names = request_names or set()
        self.exchanges: dict[str, Exchange] = {}
        self.clock = clock
        self.rng = rng or random.Random()

    def remember(self, name: str, exchange: Exchange) -> None:
        self.exchanges[name] = exchange

    def expand(self, text: str, _chain: tuple[str, ...] = ()) -> str:
        return _REFERENCE.sub(lambda match: self._value(match.group(1), _chain), text)

    def _value(self, reference: str, chain: tuple[str, ...]) -> str:
        if reference.startswith("$"):
            return self._system(reference)
        if reference in self.file_variables:
            if reference in chain:
                circle = " -> ".join((*chain[chain.index(reference) :], reference))
                raise DemoError(f"variables refer to each other in a circle: {circle}")
            return self.expand(self.file_variables[reference], (*chain, reference))
        name, _, rest = reference.partition(".")
        if rest.split(".", 1)[0] in ("request", "response"):
            return self._from_request(name, rest, reference)
        raise DemoError(f"unknown variable {braces(reference)} (no @{reference} at the top)")

    def _from_request(self, name: str, path: str, reference: str) -> str:
        exchange = self.exchanges.get(name)
        if exchange is None:
            if name in self.request_names:
                raise DemoError(
                    f"{braces(reference)}: request {name!r} has no response yet"
                    " (it must come earlier in the file and get an answer)"
                )
            raise DemoError(f"{braces(reference)}: no request is named {name!r} (# @name)")
        side, _, part = path.partition(".")
        message = exchange.request if side == "request" else exchange.response
        kind, _, selector = part.partition(".")
        if kind == "headers" and selector:
            values = [v for k, v in message.headers if k.lower() == selector.lower()]
            if not values:
                raise DemoError(f"{braces(reference)}: the {side} has no {selector} header")
            return ", ".join(values)
        if kind == "body" and selector in ("*", ""):
            return (message.body or b"").decode("utf-8", errors="replace")
        if kind == "body" and selector.startswith("$"):
            try:
                return json_path(message.body or b"", selector)
            except DemoError as exc:
                raise DemoError(f"{braces(reference)}: {exc}") from None
        raise DemoError(
            f"{braces(reference)}: write {name}.{side}.body.$.field,"
            f" {name}.{side}.body.* or {name}.{side}.headers.Name"
        )

    def _system(self, reference: str) -> str:
        name, *args = reference.split()
        if name == "$guid" and not args:
            return str(uuid.uuid4())
        if name == "$timestamp":
            return str(int(self.clock() + _offset(reference, args)))
        if name == "$randomInt":
            if len(args) != 2 or not all(re.fullmatch(r"-?\d+", a) for a in args):
                raise DemoError(f"{braces(reference)}: write {{{{$randomInt min max}}}}")
            low, high = int(args[0]), int(args[1])
            if high <= low:
                raise DemoError(f"{braces(reference)}: max must be greater than min")
            return str(self.rng.randrange(low, high))  # max excluded, as in REST Client
        if name == "$datetime" and args and args[0] in ("rfc1123", "iso8601"):
            when = self.clock() + _offset(reference, args[1:])
            if args[0] == "rfc1123":
                return email.utils.formatdate(when, usegmt=True)
            stamp = datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
            return stamp.replace("+00:00", "Z")
        if name == "$processEnv" and len(args) == 1:
            if args[0] not in os.environ:
                raise DemoError(f"{braces(reference)}: the environment has no {args[0]}")
            return os.environ[args[0]]
        raise DemoError(
            f"{braces(reference)} is not a system variable this runner knows ({SYSTEM_VARIABLES})"
        )


def _offset(reference: str, args: list[str]) -> float:
    """`-1 h` -> -3600.0; REST Client's y and M units are left out (no fixed length)."""
    if not args:
        return 0.0
    if len(args) == 2 and re.fullmatch(r"-?\d+", args[0]) and args[1] in _OFFSET_SECONDS:
        return int(args[0]) * _OFFSET_SECONDS[args[1]]
    units = " ".join(_OFFSET_SECONDS)
    raise DemoError(f"{braces(reference)}: an offset is `<integer> <unit>`, unit one of {units}")


def json_path(body: bytes, path: str) -> str:
    """The value at `$.a.b[0]` in a JSON body: strings as they are, the rest as JSON."""
    try:
        value = json.loads(body)
    except ValueError:
        raise DemoError("the body is not JSON") from None
    position = 1  # after the `$`
    while position < len(path):
        step = _JSON_STEP.match(path, position)
        if not step:
            raise DemoError(f"cannot read the JSONPath {path!r} from {path[position:]!r} on")
        key = step.group(1) if step.group(1) is not None else step.group(3)
        if key is not None:
            if not isinstance(value, dict) or key not in value:
                raise DemoError(f"the body has nothing at {path[: step.end()]}")
            value = value[key]
        else:
            index = int(step.group(2))
            if not isinstance(value, list) or index >= len(value):
                raise DemoError(f"the body has nothing at {path[: step.end()]}")
            value = value[index]
        position = step.end()
    return value if isinstance(value, str) else json.dumps(value)
