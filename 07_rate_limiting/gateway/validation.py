"""The building blocks every gateway.toml model shares: strictness, and the common units.

One definition, imported by every config model of the stage (later stages add models of
their own: upstream pools, cache policy, consumers), so "strict" and "a duration in
seconds" mean the same thing in every section of the file.
"""

from __future__ import annotations

from typing import Annotated, Any

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


def describe(shown: str, err: Any) -> str:
    """One pydantic error as `file: routes[1].upstream: reason (got value)`.

    A whole section's input (a dict: a cross-field error of a section) is not repeated
    after the reason; the reason names its key itself.
    """
    key = ""
    for part in err["loc"]:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    reason = _REASONS.get(err["type"]) or err["msg"].removeprefix("Value error, ")
    if err["type"] not in _REASONS and not isinstance(err["input"], dict):
        got = repr(err["input"])
        reason += f" (got {got if len(got) <= 60 else got[:57] + '...'})"
    return f"{shown}: {key or '(top level)'}: {reason}"
