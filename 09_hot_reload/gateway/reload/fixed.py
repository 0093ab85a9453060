"""What a reload cannot change, and the message that says so.

Some settings are not the configuration of requests but of the process: the sockets it
listens on (the public and admin addresses: other processes already connect there; the
worker count is a command-line option, never in the file), the upstream connection pool
and its limits, the cache and rate-limit stores (their entries and counters are the
state a reload keeps; another store would start empty), the metrics and traces (their
families and exporters are made once per process), the process-wide in-flight limit and
retry budget. A reload that changes any of them is refused whole, naming each key, and
the gateway serves on unchanged: restart it to change those. nginx refuses the same way
for what its master process owns, and Envoy's listeners and clusters can change only
through their own xDS resources.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.validation import line_of

# Key paths in gateway.toml; a section named alone is fixed whole.
FIXED: tuple[tuple[str, ...], ...] = (
    ("server",),
    ("admin",),
    ("connections",),
    ("cache",),
    ("observability",),
    ("retry_budget",),
    ("rate_limit", "store"),
    ("rate_limit", "redis"),
    ("rate_limit", "max_keys"),
)


def fixed_changes(old: GatewayConfig, new: GatewayConfig, shown: str) -> list[str]:
    """One `file:line: key: reason` message for each fixed key whose value changed."""
    before, after = old.model_dump(), new.model_dump()
    try:
        text = Path(shown).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""  # the messages go without line numbers
    problems = []
    for path in FIXED:
        for key, was, now in _differences(_at(before, path), _at(after, path), path):
            line = line_of(text, key) if text else None
            where = shown if line is None else f"{shown}:{line}"
            problems.append(
                f"{where}: {'.'.join(key)}: cannot change while the gateway runs"
                f" (was {was!r}, now {now!r}); restart the gateway to change it"
            )
    return problems


def _at(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _differences(
    was: Any, now: Any, key: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(key path, old value, new value) for every leaf that differs."""
    if isinstance(was, dict) and isinstance(now, dict):
        for name in sorted(was.keys() | now.keys()):
            yield from _differences(was.get(name), now.get(name), (*key, name))
    elif was != now:
        yield key, was, now
