"""CPU time of a process tree, read from Linux's /proc, and CPU pinning.

Requests per second on a shared 2-core laptop move by 30% from one run to the next; CPU
time per request moves far less, because time a process spends *waiting* for a core does
not count as its CPU time. So the bench's headline is

    proxy CPU µs per request = (utime + stime after - before) / requests served

over the measured window. utime and stime are fields 14 and 15 of /proc/<pid>/stat, in
clock ticks (usually 100 per second: 10 ms resolution, fine over a window of seconds).
The whole tree is summed because `--workers N` runs N child processes; a process that
exits inside the window takes its ticks with it (no gateway worker should).
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str]:
    """The fields after `comm` (which may hold spaces and parentheses itself)."""
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """`pid` and every live descendant of it (a scan of /proc: children files need
    CONFIG_PROC_CHILDREN, which not every kernel has)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def cpu_us(pid: int) -> float:
    """utime + stime of `pid` alone, in microseconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) * 1_000_000 / CLOCK_TICKS


def tree_cpu_us(pid: int) -> float:
    """utime + stime of `pid` and its live descendants, in microseconds."""
    total = 0.0
    for member in process_tree(pid):
        try:
            total += cpu_us(member)
        except (OSError, ValueError, IndexError):
            pass  # exited between the scan and the read
    return total


def available_cores() -> list[int]:
    """The cores this process may run on (what a container or taskset allows)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def pin_tree(pid: int, cores: set[int]) -> None:
    """Move every thread of `pid` and its descendants onto `cores`.

    Affinity is per thread and inherited at creation, so threads that already exist (a
    thread pool for DNS, say) must be moved one by one: sched_setaffinity on a pid moves
    only that pid's main thread.
    """
    for member in process_tree(pid):
        try:
            tids = [int(t) for t in os.listdir(PROC / str(member) / "task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cores)
            except ProcessLookupError:
                pass
