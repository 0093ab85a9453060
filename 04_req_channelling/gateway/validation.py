"""The building blocks every gateway.toml model shares: strictness, and the common units.

One definition, imported by every config model of the stage (later stages add models of
their own: upstream pools, cache policy, consumers), so "strict" and "a duration in
seconds" mean the same thing in every section of the file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

# Timeouts and the like are capped at an hour: a larger value is almost certainly a unit
# mistake (milliseconds typed into a seconds field), and it is better caught at start-up.
Seconds = Annotated[float, Field(gt=0, le=3600)]
Port = Annotated[int, Field(ge=0, le=65535)]


# strict=True: TOML has real types, so `port = "8080"` is a mistake worth reporting, not a
# string to coerce. extra="forbid": a misspelt key (`strip_prefx = true`) fails loudly
# instead of being ignored while the default silently applies. frozen=True: the config is
# read once at start-up and shared by every request; nothing may change it underneath them.
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# pydantic's wording for the errors people actually make, said the way a reader expects.
_REASONS = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
}


def describe(shown: str, err: Any, *, text: str = "", model: type[BaseModel] | None = None) -> str:
    """One pydantic error as `file:line: routes[1].upstream: reason (got value)`.

    A whole section's input (a dict: a cross-field error of a section) is not repeated
    after the reason; the reason names its key itself. With the file's `text`, the line
    the key is written on; with the root `model`, an unknown key gets the known one it
    most resembles (`acess_log` -> did you mean 'access_log'?).
    """
    loc = tuple(err["loc"])
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    reason = _REASONS.get(err["type"]) or err["msg"].removeprefix("Value error, ")
    if err["type"] not in _REASONS and not isinstance(err["input"], dict):
        got = repr(err["input"])
        reason += f" (got {got if len(got) <= 60 else got[:57] + '...'})"
    if err["type"] == "extra_forbidden" and model is not None and loc:
        close = difflib.get_close_matches(str(loc[-1]), known_keys(model, loc[:-1]), n=1)
        if close:
            reason += f" (did you mean {close[0]!r}?)"
    line = line_of(text, loc) if text and loc else None
    where = shown if line is None else f"{shown}:{line}"
    return f"{where}: {key or '(top level)'}: {reason}"


# --- where in the file, and what was meant -----------------------------------------------
# tomllib parses into plain dicts and keeps no positions, so the line of a key is found
# again in the text: table headers tracked as the parser would ([[routes]] counted, so
# routes[2] is the third), then `key =` inside the table. Good enough for the files people
# write; a key it cannot place is reported without a line rather than with a wrong one.

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")


def line_of(text: str, loc: Sequence[str | int]) -> int | None:
    """The 1-based line where the key (or the section) at `loc` is written, or None."""
    *table_path, key = loc
    want = tuple(table_path)
    assign = re.compile(rf"""^\s*["']?{re.escape(str(key))}["']?\s*=""")
    inline = re.compile(rf"""[{{,]\s*["']?{re.escape(str(key))}["']?\s*=""")
    arrays: dict[tuple[str | int, ...], int] = {}  # [[name]] tables seen, by resolved path
    table: tuple[str | int, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header is not None:
            table = ()
            names = [part.strip().strip("\"'") for part in header.group(2).split(".")]
            for i, name in enumerate(names):
                table += (name,)
                if i == len(names) - 1 and header.group(1) == "[[":
                    arrays[table] = arrays.get(table, 0) + 1
                if table in arrays:
                    table += (arrays[table] - 1,)
            if table == tuple(loc):  # the error is the section's own: its header line
                return number
            continue
        if table == want and assign.match(line):
            return number
        # A key inside an inline table of this table: `retries = { attmpts = 2 }`.
        if len(want) > len(table) and want[: len(table)] == table and inline.search(line):
            outer = str(want[len(table)])
            if re.match(rf"""^\s*["']?{re.escape(outer)}["']?\s*=""", line):
                return number
    return None


def known_keys(model: type[BaseModel], path: Sequence[str | int]) -> list[str]:
    """The keys the section at `path` accepts, as written in gateway.toml (aliases)."""
    current: type[BaseModel] | None = model
    parts = list(path)
    while parts and current is not None:
        part = parts.pop(0)
        if isinstance(part, int):
            continue  # an element of a list: the same model
        field = next(
            (f for name, f in current.model_fields.items() if part in (name, f.alias)), None
        )
        if field is None:
            return []
        current, mapping = _model_in(field.annotation)
        if mapping and parts:
            parts.pop(0)  # a dict's key ([upstreams.NAME]): any name
    if current is None:
        return []
    return sorted(f.alias or name for name, f in current.model_fields.items())


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The config model inside an annotation (`list[Route]`, `dict[str, Pool] | None`),
    and whether a dict's key comes before it."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    mapping = get_origin(annotation) in (dict, Mapping)
    for arg in get_args(annotation)[1:] if mapping else get_args(annotation):
        found, inner = _model_in(arg)
        if found is not None:
            return found, mapping or inner
    return None, False


# A key path as the messages write it: routes[1].upstream, consumers[0].api_keys[2].hash.
_KEY = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*$")
_KEY_PART = re.compile(r"([A-Za-z_]\w*)|\[(\d+)\]")


def placed(problems: Iterable[str], shown: str, text: str) -> list[str]:
    """Problems found after validation (`file: routes[1].upstream: reason`: keys that only
    make sense together, routes that conflict, unknown pools) with the line their key is
    written on, as describe() gives pydantic's own errors. One it cannot place stays as
    it is."""
    found = []
    head = f"{shown}: "
    for problem in problems:
        key, _, reason = problem.removeprefix(head).partition(": ")
        if problem.startswith(head) and reason and _KEY.match(key):
            loc: list[str | int] = [name or int(i) for name, i in _KEY_PART.findall(key)]
            line = line_of(text, loc)
            if line is not None:
                problem = f"{shown}:{line}: {key}: {reason}"
        found.append(problem)
    return found
