"""`python -m common.diff A B`: what stage B changed, as a unified diff of two stage folders.

A and B are stage numbers (`01`) or folder names (`01_pass_through`). The files compared
are the ones `make check`'s drift rule compares (caches, .venv and .run left out), plus
ARCHITECTURE.md, which every stage rewrites and which a reader wants to see next to the
code it explains.

Added and removed files are shown in full, against /dev/null, the way `diff -ruN` and
`git diff` do: the new module *is* the lesson of most stages, and an "Only in" line would
hide it. `--brief` prints the `diff -rq` summary instead ("Files ... differ", "Only in").

Output is coloured only when stdout is a terminal, so `make diff A=01 B=02 > lesson.patch`
and `| less` get plain text. Exit codes: 0 when the diff was printed (differences are the
point, not an error, and `make` would report exit 1 as a failed target), 2 for a bad
argument.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from common.check.stages import Stage, find_stages, same_bytes, stage_files

DEFAULT_ROOT = Path(__file__).resolve().parents[1]
NO_NEWLINE = "\\ No newline at end of file\n"


class UsageError(Exception):
    """A bad argument: printed as one line, exit 2."""


def resolve_stage(arg: str, stages: list[Stage]) -> Stage:
    name = Path(arg.rstrip("/")).name  # accept `02_trie_routing/` from shell completion
    if re.fullmatch(r"\d{1,2}", name):
        matches = [s for s in stages if s.number == int(name)]
    else:
        matches = [s for s in stages if s.name == name]
    known = ", ".join(s.name for s in stages) or "none"
    if not matches:
        raise UsageError(f"unknown stage {arg!r}; known stages: {known}")
    if len(matches) > 1:
        names = ", ".join(s.name for s in matches)
        raise UsageError(f"stage number {arg!r} is ambiguous: {names}")
    return matches[0]


def _text(path: Path) -> list[str] | None:
    """The file's lines, or None for a binary file (a NUL byte, or not UTF-8)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def diff_file(
    relpath: str, old: Stage, new: Stage, old_path: Path | None, new_path: Path | None, context: int
) -> Iterator[str]:
    a = f"a/{old.name}/{relpath}" if old_path else "/dev/null"
    b = f"b/{new.name}/{relpath}" if new_path else "/dev/null"
    old_lines = _text(old_path) if old_path else []
    new_lines = _text(new_path) if new_path else []
    yield f"diff -ruN a/{old.name}/{relpath} b/{new.name}/{relpath}\n"
    if old_lines is None or new_lines is None:
        yield f"Binary files {a} and {b} differ\n"
        return
    yield f"--- {a}\n"
    yield f"+++ {b}\n"
    hunks = difflib.unified_diff(old_lines, new_lines, n=context)
    for line in list(hunks)[2:]:  # difflib's own ---/+++ lines carry no paths; ours do
        # difflib keeps a missing final newline as is; patch(1) wants the marker line.
        yield line if line.endswith("\n") else line + "\n" + NO_NEWLINE


def diff_stages(old: Stage, new: Stage, *, context: int = 3, brief: bool = False) -> str:
    old_files = stage_files(old.path, with_architecture=True)
    new_files = stage_files(new.path, with_architecture=True)
    out: list[str] = []
    for relpath in sorted(old_files.keys() | new_files.keys()):
        old_path, new_path = old_files.get(relpath), new_files.get(relpath)
        if old_path and new_path and same_bytes(old_path, new_path):
            continue
        if brief:
            out.append(_brief_line(relpath, old, new, old_path, new_path))
        else:
            out.extend(diff_file(relpath, old, new, old_path, new_path, context))
    return "".join(out)


def _brief_line(
    relpath: str, old: Stage, new: Stage, old_path: Path | None, new_path: Path | None
) -> str:
    if old_path and new_path:
        return f"Files {old.name}/{relpath} and {new.name}/{relpath} differ\n"
    stage = old if old_path else new
    folder, _, name = f"{stage.name}/{relpath}".rpartition("/")
    return f"Only in {folder}: {name}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.diff",
        description="Unified diff of two stage folders (caches ignored).",
    )
    parser.add_argument("a", metavar="A", help="older stage: number (01) or folder name")
    parser.add_argument("b", metavar="B", help="newer stage: number (02) or folder name")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="repo root")
    parser.add_argument("-U", "--unified", type=int, default=3, metavar="N", help="context lines")
    parser.add_argument("-q", "--brief", action="store_true", help="only name the files")
    args = parser.parse_args(argv)

    try:
        if not args.root.is_dir():
            raise UsageError(f"--root {args.root} is not a directory")
        stages = find_stages(args.root)
        old, new = resolve_stage(args.a, stages), resolve_stage(args.b, stages)
        text = diff_stages(old, new, context=max(args.unified, 0), brief=args.brief)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2

    try:
        if sys.stdout.isatty():
            _print_coloured(text, old, new)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    except BrokenPipeError:
        # `make diff ... | head`: the reader left; that is not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _print_coloured(text: str, old: Stage, new: Stage) -> None:
    # Imported here: rich costs ~100 ms to import and the piped path never needs it.
    from rich.console import Console
    from rich.syntax import Syntax

    console = Console()
    if not text:
        console.print(f"[dim]{old.name} and {new.name} have no differences (caches ignored)[/]")
        return
    console.print(
        Syntax(text.rstrip("\n"), "diff", theme="ansi_dark", background_color="default"),
        soft_wrap=True,
    )


if __name__ == "__main__":
    sys.exit(main())
