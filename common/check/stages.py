"""Finding the stage folders and the files in them that count.

Shared by the drift rule and `python -m common.diff`, so "differs" means the same thing in
`make check` and in `make diff`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

STAGE_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+$")

# Things a run leaves behind, not things a reader wrote. `git status` ignores them too
# (.gitignore), but a checker that trusted .gitignore would need git; this list is short
# enough to keep by hand.
IGNORED_DIRS = frozenset(
    {"__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache", ".venv", ".run"}
)
IGNORED_SUFFIXES = (".pyc",)
ARCHITECTURE = "ARCHITECTURE.md"
# The benches' full tables for a stage (common/bench/measured.py): like ARCHITECTURE.md,
# the stage's own account of itself, never compared with the stage before.
MEASURED = "MEASURED.md"


@dataclass(frozen=True)
class Stage:
    number: int
    name: str
    path: Path


def find_stages(root: Path) -> list[Stage]:
    """The `NN_name` folders directly under `root`, sorted by number (then name)."""
    found = []
    for entry in root.iterdir():
        match = STAGE_NAME.match(entry.name)
        if match and entry.is_dir():
            found.append(Stage(int(match.group(1)), entry.name, entry))
    return sorted(found, key=lambda s: (s.number, s.name))


def is_ignored(relpath: str) -> bool:
    """True for paths (relative to a stage) that neither `check` nor `diff` compares."""
    parts = relpath.split("/")
    return any(p in IGNORED_DIRS for p in parts[:-1]) or parts[-1].endswith(IGNORED_SUFFIXES)


def stage_files(folder: Path, *, with_architecture: bool) -> dict[str, Path]:
    """Every compared file under `folder`: relative posix path -> absolute path."""
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        # Pruning in place stops os.walk from descending into .venv and friends at all,
        # which is most of what keeps `make check` fast on a used working tree.
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
        base = Path(dirpath)
        for name in filenames:
            if name.endswith(IGNORED_SUFFIXES):
                continue
            path = base / name
            relpath = path.relative_to(folder).as_posix()
            if relpath in (ARCHITECTURE, MEASURED) and not with_architecture:
                continue
            files[relpath] = path
    return files


def same_bytes(a: Path, b: Path) -> bool:
    """Byte-for-byte equality; sizes first, so most changed files cost one stat each."""
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def differing_files(
    old: Path, new: Path, *, with_architecture: bool
) -> tuple[dict[str, Path], dict[str, Path], list[str]]:
    """(files of old, files of new, sorted paths that were added, removed or edited)."""
    old_files = stage_files(old, with_architecture=with_architecture)
    new_files = stage_files(new, with_architecture=with_architecture)
    differing = [
        p
        for p in sorted(old_files.keys() | new_files.keys())
        if p not in old_files or p not in new_files or not same_bytes(old_files[p], new_files[p])
    ]
    return old_files, new_files, differing
