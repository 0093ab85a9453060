"""Instructions per request, counted under valgrind's callgrind: the same request, the
same concerns, a number that does not move with the machine's mood.

CPU time per request is what a user pays, and `make bench-all` measures it; but on a
shared two-core VM the same build measured 207 to 432 µs within one run, more than any
concern costs, so a ratio of two stages' times says as much about the neighbours as
about the code. An instruction count holds still: the same build gives the same count to
within about one percent, run after run (the idle correction in count() is the least
exact part). It is not time (a cache miss costs more than an add, and callgrind does not
see the kernel), so both are printed: time for what it costs, instructions for which
change made it cheaper. Where the CPU exposes its counters, `perf stat -e instructions`
gives the same number at full speed; the VMs this was written on expose none, and
valgrind counts in software, some thirty times slower.

How: the gateway runs inside `valgrind --tool=callgrind --instr-atstart=no`, so start-up
and imports are not counted; after a warm-up, `callgrind_control -i on` starts the
count, `requests` requests go through one keep-alive connection one after another,
`-i off` stops it and `--dump` writes it down; then an idle window as long (see count()).
Without valgrind on PATH (Debian: `apt-get install valgrind`) the count is skipped with
a note. Nothing here runs in `make test`: it is a measurement, not a test.

With `cache=` (this machine's L2, `l2_of_this_machine()`), callgrind also simulates a
cache of that size and counts the misses: what an instruction count cannot weigh. A
request reads its code, its objects and the interpreter's tables; while all of that fits
in the core's L2 (1 MiB on the machine this was written on) a request finds it there,
and once it does not, every request fetches the excess again from L3 or memory, tens of
cycles a line. Simulated one connection at a time and without the kernel's share of the
cache, so the miss count is a floor; the cache simulation makes the count about twice as
slow.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from common.testing.gateway import start_gateway
from common.testing.processes import Proc

WARM_UP = 300  # requests before the count starts: pools connected, caches warm
START_TIMEOUT = 120.0  # imports run several times slower inside valgrind


# callgrind's names for the misses of its last-level cache: instruction fetches, data
# reads, data writes
LAST_LEVEL_MISSES = ("ILmr", "DLmr", "DLmw")


@dataclass(frozen=True)
class Cache:
    """A cache for callgrind to simulate as its last level (its sets must be a power of 2)."""

    size: int  # bytes
    ways: int
    line: int  # bytes

    def option(self) -> str:
        return f"--LL={self.size},{self.ways},{self.line}"

    def __str__(self) -> str:
        return f"{self.size // 1024:,} KiB, {self.ways}-way"


class Counted(NamedTuple):
    """Per request: instructions, and last-level misses when a cache was simulated."""

    instructions: float
    misses: float | None


def l2_of_this_machine(cpu: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> Cache | None:
    """The first core's L2 as Linux describes it in sysfs; None where it does not."""
    for index in sorted(cpu.glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2":
                continue
            size = (index / "size").read_text().strip()  # "1024K"
            kib = int(size.removesuffix("K")) if size.endswith("K") else int(size) // 1024
            cache = Cache(
                size=kib * 1024,
                ways=int((index / "ways_of_associativity").read_text()),
                line=int((index / "coherency_line_size").read_text()),
            )
        except (OSError, ValueError):
            return None
        sets = cache.size // (cache.ways * cache.line)
        return cache if sets > 0 and sets & (sets - 1) == 0 else None
    return None


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def count(
    stage: Path,
    config_text: str,
    where: Path,
    url_path: str,
    headers: Sequence[tuple[str, str]],
    requests: int,
    cache: Cache | None = None,
) -> Counted:
    """Instructions (and with `cache`, its misses) per request of `stage`'s gateway for
    `requests` GETs of `url_path`.

    Inside valgrind every request takes some thirty times longer, while the gateway's own
    timers (health checks every few seconds, the metrics' sync every second) keep the
    wall clock's pace: counted as they come, they would weigh thirty times what they
    weigh at full speed. So the same window is counted once more with no request in it,
    and that idle work is taken off.
    """
    run = Path(tempfile.mkdtemp(prefix=f"callgrind-{stage.name}-", dir=where))
    profile = run / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    if cache is not None:
        valgrind += ["--cache-sim=yes", cache.option()]
    valgrind.append(f"--callgrind-out-file={profile}")
    proc = start_gateway(
        stage, config_text, where, "--no-access-log", under=valgrind, timeout=START_TIMEOUT
    )
    try:
        connection = _connect(proc)
        _send(connection, url_path, headers, WARM_UP)
        _control(proc, "-i", "on")
        started = time.monotonic()
        _send(connection, url_path, headers, requests)
        busy_seconds = time.monotonic() - started
        _control(proc, "-i", "off")
        _control(proc, "--dump")  # the requests' count, in a part of its own
        _control(proc, "-i", "on")
        time.sleep(busy_seconds)  # a measuring window as long, with nothing sent
        _control(proc, "-i", "off")
        connection.close()
        proc.popen.send_signal(signal.SIGTERM)  # the idle count is written at exit
        proc.popen.wait(timeout=START_TIMEOUT)
    finally:
        proc.stop()
    busy = _totals([p for p in run.iterdir() if p != profile])
    idle = _totals([profile])
    instructions = (busy["Ir"] - idle["Ir"]) / requests
    if cache is None:
        return Counted(instructions, None)
    missed = sum(busy[event] - idle[event] for event in LAST_LEVEL_MISSES)
    return Counted(instructions, max(0.0, missed / requests))


def _connect(proc: Proc) -> http.client.HTTPConnection:
    where = urlsplit(proc.url)
    return http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=60)


def _send(
    connection: http.client.HTTPConnection,
    url_path: str,
    headers: Sequence[tuple[str, str]],
    times: int,
) -> None:
    for _ in range(times):
        connection.request("GET", url_path, headers=dict(headers))
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {url_path} answered {response.status}, not 200")


def _control(proc: Proc, *switch: str) -> None:
    command = ["callgrind_control", *switch, str(proc.pid)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def _totals(parts: Sequence[Path]) -> dict[str, int]:
    """Every event counted in `parts` (profile files callgrind wrote), summed: "Ir" is
    instructions; the cache simulation adds the misses."""
    if not parts:
        raise RuntimeError("callgrind wrote no profile")
    totals: dict[str, int] = {}
    for part in parts:
        names: list[str] = []
        found: list[int] | None = None
        for line in part.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("events:"):
                names = line.split()[1:]
            elif line.startswith(("summary:", "totals:")):
                found = [int(value) for value in line.split()[1:]]
        if found is None or not names:
            raise RuntimeError(f"callgrind wrote no total to {part}")
        for name, value in zip(names, found, strict=False):
            totals[name] = totals.get(name, 0) + value
    return totals
