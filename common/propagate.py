"""`make propagate FROM=02`: carry a fix in one stage forward into every later stage.

The drift rule (`make check`) catches a fix that did not travel to a later stage only
while that stage's file is still a byte-identical copy. Once a later stage owns the file
(03's app.py differs from 02's on purpose), a fix to 02's copy is invisible to the rule.
This tool closes that gap: it takes the working-tree change of `FROM`'s files (what
`git diff HEAD` shows for that folder, plus files not yet tracked) and, for every later
stage and every changed file, does the first of these that applies:

- already there: the later file already has the change (it equals the new version, or
  the patch applies in reverse): nothing to do;
- copied: the later file was an unchanged copy of the old version: it becomes the new one
  (a file removed in FROM is removed there too, a new file is added where it is missing);
- patched: the later file differs, but the change applies to it cleanly (`git apply`, no
  fuzz): applied;
- conflict: none of the above. The file is left untouched and listed, for a person.

Stages are visited in order, so a fix copied into 03 is then compared with 04's copy of
03's old version. Nothing is committed; review with `git diff` and run `make check`.
Usage: python -m common.propagate FROM [--dry-run]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from common.check.stages import Stage, find_stages, is_ignored

REPO_ROOT = Path(__file__).resolve().parents[1]


class PropagateError(Exception):
    """Bad input (no such stage, not a git checkout): printed as is, exit status 2."""


@dataclass(frozen=True)
class Change:
    path: str  # relative to the stage folder
    old: bytes | None  # at HEAD; None: the file is new
    new: bytes | None  # in the working tree; None: the file was removed
    patch: str  # `git diff` of the file, paths relative to the stage folder ("" if binary)


def git(root: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    """`git args...` in `root`; its standard output. CalledProcessError when it fails."""
    done = subprocess.run(
        ["git", *args], cwd=root, input=stdin, capture_output=True, text=True, check=check
    )
    return done.stdout if done.returncode == 0 else ""


def head_version(root: Path, repo_path: str) -> bytes | None:
    """The file's bytes at HEAD (exactly: no newline translation), None if it is new."""
    shown = subprocess.run(["git", "show", f"HEAD:{repo_path}"], cwd=root, capture_output=True)
    return shown.stdout if shown.returncode == 0 else None


def changes(root: Path, stage: Stage) -> list[Change]:
    """What the working tree changed under `stage` since HEAD, file by file."""
    folder = stage.path.relative_to(root).as_posix()
    listed = git(root, "diff", "HEAD", "--name-only", "--", folder).splitlines()
    untracked = git(root, "ls-files", "--others", "--exclude-standard", "--", folder).splitlines()
    found = []
    for repo_path in sorted(set(listed) | set(untracked)):
        path = repo_path.removeprefix(folder + "/")
        if is_ignored(path):
            continue
        file = root / repo_path
        new = file.read_bytes() if file.is_file() else None
        # --relative: paths in the patch are the stage-relative ones, ready for any stage.
        patch = git(root, "diff", "HEAD", f"--relative={folder}", "--", repo_path)
        found.append(Change(path, head_version(root, repo_path), new, patch))
    return found


def apply_to(root: Path, change: Change, stage: Stage, dry_run: bool) -> str:
    """Carry one change into one later stage; the outcome, as a word for the table."""
    file = stage.path / change.path
    have = file.read_bytes() if file.is_file() else None
    if have == change.new:
        return "already there"
    if have == change.old:  # an unchanged copy (or absent in both): take the new version
        if not dry_run:
            if change.new is None:
                file.unlink()
            else:
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_bytes(change.new)
        return "copied"
    if have is None or change.old is None or change.new is None or not change.patch:
        return "conflict"  # added or removed on one side only, or a binary file
    base = ["apply", f"--directory={stage.path.relative_to(root).as_posix()}"]
    if applies(root, [*base, "--check", "--reverse"], change.patch):
        return "already there"
    if not applies(root, [*base, "--check"], change.patch):
        return "conflict"
    if not dry_run:
        git(root, *base, "-", stdin=change.patch)
    return "patched"


def applies(root: Path, args: list[str], patch: str) -> bool:
    done = subprocess.run(
        ["git", *args, "-"], cwd=root, input=patch, capture_output=True, text=True
    )
    return done.returncode == 0


def propagate(source: str, root: Path = REPO_ROOT, dry_run: bool = False) -> tuple[Table, int]:
    """Carry FROM's working-tree changes into every later stage: (the report, conflicts)."""
    stages = find_stages(root)
    matching = [s for s in stages if s.name == source or s.name[:2] == source.zfill(2)[:2]]
    if not matching:
        known = ", ".join(s.name for s in stages)
        raise PropagateError(f"FROM={source}: no such stage (stages: {known})")
    origin = matching[0]
    if git(root, "rev-parse", "--is-inside-work-tree", check=False).strip() != "true":
        raise PropagateError("not a git checkout: propagate compares the working tree with HEAD")
    later = [s for s in stages if s.number > origin.number]
    found = changes(root, origin)
    table = Table(title=f"make propagate FROM={origin.name}" + (" (dry run)" if dry_run else ""))
    table.add_column("file")
    for stage in later:
        table.add_column(stage.name)
    conflicts = 0
    styles = {"copied": "green", "patched": "green", "already there": "dim", "conflict": "red"}
    for change in found:
        row = [escape(change.path)]
        for stage in later:
            outcome = apply_to(root, change, stage, dry_run)
            conflicts += outcome == "conflict"
            row.append(f"[{styles[outcome]}]{outcome}[/]")
        table.add_row(*row)
    if not found:
        table.caption = f"no working-tree changes under {origin.name}/"
    return table, conflicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.propagate", description=__doc__)
    parser.add_argument(
        "source", metavar="FROM", help="the stage with the fix: 02 or 02_trie_routing"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would happen, change nothing"
    )
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    try:
        table, conflicts = propagate(args.source, dry_run=args.dry_run)
    except PropagateError as exc:
        Console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}")
        return 2
    console.print(table)
    if conflicts:
        console.print(
            f"[red]{conflicts} change(s) did not apply[/]: those files are untouched; carry the"
            " fix by hand, then `make check`."
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
