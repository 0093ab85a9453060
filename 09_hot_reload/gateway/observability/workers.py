"""One scrape for N workers: prometheus-client's multiprocess mode.

With --workers N the admin port is shared like the public one (gateway/workers.py), so a
scrape reaches whichever worker the kernel picks, and a worker's own counters would be
1/N of the truth, a different 1/N on every scrape: rates that jump, sums that go down.
So the --workers parent makes a directory and names it in PROMETHEUS_MULTIPROC_DIR before
it starts the workers; prometheus-client then keeps every value in a memory-mapped file
per worker in it, and /metrics, in whichever worker answers, reads every worker's files
and adds them up.

What it costs: each increment or observation writes its new value into the mapped file
(under a lock, as in one process: no system call, but a struct pack and a page that the
kernel writes back), and a scrape reads N files. What it cannot do: exemplars (the
library drops them in this mode), custom collectors (only values written to the files
count), and gauges need a mode saying how workers add up (`livesum` for requests in
flight, `max` for the build info). Production gateways avoid the question with threads
(Envoy's stats are shared memory, one admin endpoint) or with a per-worker shared dict
(Kong's Prometheus plugin keeps counters in nginx's shared memory zone).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

SHARED_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own name for it


@contextmanager
def shared_metrics() -> Iterator[str]:
    """For the --workers parent: a fresh directory for the workers' metric files, named in
    the environment they inherit, and removed when they have all stopped. A fresh one on
    every start: files left by an earlier run would be added to this run's numbers."""
    path = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ[SHARED_DIR] = path
    try:
        yield path
    finally:
        del os.environ[SHARED_DIR]
        shutil.rmtree(path, ignore_errors=True)
