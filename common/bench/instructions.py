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
"""

from __future__ import annotations

import http.client
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from common.testing.gateway import start_gateway
from common.testing.processes import Proc

WARM_UP = 300  # requests before the count starts: pools connected, caches warm
START_TIMEOUT = 120.0  # imports run several times slower inside valgrind


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def count(
    stage: Path,
    config_text: str,
    where: Path,
    url_path: str,
    headers: Sequence[tuple[str, str]],
    requests: int,
) -> float:
    """Instructions per request of `stage`'s gateway for `requests` GETs of `url_path`.

    Inside valgrind every request takes some thirty times longer, while the gateway's own
    timers (health checks every few seconds, the metrics' sync every second) keep the
    wall clock's pace: counted as they come, they would weigh thirty times what they
    weigh at full speed. So the same window is counted once more with no request in it,
    and that idle work is taken off.
    """
    run = Path(tempfile.mkdtemp(prefix=f"callgrind-{stage.name}-", dir=where))
    profile = run / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
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
    busy = _total([p for p in run.iterdir() if p != profile])
    idle = _total([profile])
    return (busy - idle) / requests


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


def _total(parts: Sequence[Path]) -> int:
    """The instructions counted in `parts` (profile files callgrind wrote)."""
    if not parts:
        raise RuntimeError("callgrind wrote no profile")
    total = 0
    for part in parts:
        lines = part.read_text(encoding="utf-8", errors="replace").splitlines()
        found = [int(line.split()[1]) for line in lines if line.startswith(("summary:", "totals:"))]
        if not found:
            raise RuntimeError(f"callgrind wrote no total to {part}")
        total += max(found)
    return total
