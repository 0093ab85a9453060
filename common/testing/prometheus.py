"""A real Prometheus server for a test: it scrapes a gateway's admin listener, and the
test reads the numbers back through Prometheus's HTTP API.

A parser in the test proves the text parses; only the server proves that what a real
deployment scrapes, stores and computes (`increase`, `histogram_quantile`) comes out
right: content negotiation, OpenMetrics, label escaping, counters that must never go
down. The binary is Debian's `prometheus` package (`.ci/run` installs it). Where there
is none the test is skipped with how to get it, except under CI (`CI` set), where a
missing binary is a failure: a skipped test there would pass without proving anything.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HOST = "127.0.0.1"
INSTALL = (
    "sudo apt-get install prometheus (Debian, Ubuntu), or a release from prometheus.io on PATH"
)


def prometheus_binary() -> str:
    """The `prometheus` on PATH; skips the test without one (fails it under CI)."""
    found = shutil.which("prometheus")
    if found is None:
        message = f"no prometheus binary on PATH: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


class Prometheus:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port, self.proc, self.log = port, proc, log

    def query(self, promql: str) -> list[dict[str, object]]:
        """An instant query's result vector ([] while there is nothing yet)."""
        url = f"http://{HOST}:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        result: list[dict[str, object]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single value of a query that gives one series, None while it gives none."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, result
        sample = result[0]["value"]
        assert isinstance(sample, list)
        return float(sample[1])

    def wait_for(self, promql: str, expected: float, timeout: float = 30.0) -> float | None:
        """Ask `promql` until it gives `expected` (each scrape is a second apart); the
        last answer otherwise, for the test's assertion to show."""
        deadline = time.monotonic() + timeout
        got = self.value(promql)
        while got != expected and time.monotonic() < deadline:
            time.sleep(0.2)  # Prometheus has no push: polling its API is how it is read
            got = self.value(promql)
        return got


def _free_port() -> int:
    # Prometheus cannot take an inherited socket: the port is chosen here, released, and
    # bound by the server a moment later (start() tries again if someone took it).
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def prometheus(scraping: str, where: Path, interval: float = 1.0) -> Iterator[Prometheus]:
    """A Prometheus server scraping `scraping` (host:port) every `interval` seconds, its
    data under `where`; stopped (and its data gone with `where`) on exit."""
    binary = prometheus_binary()
    config = where / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {round(interval * 1000)}ms\n"
        f"  evaluation_interval: {round(interval * 1000)}ms\n"
        "scrape_configs:\n"
        "  - job_name: gateway\n"
        f"    static_configs: [{{targets: ['{scraping}']}}]\n"
    )
    log = where / "prometheus.log"
    for _ in range(3):
        port = _free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={where / 'data'}",
                 f"--web.listen-address={HOST}:{port}"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        server = Prometheus(port, proc, log)
        try:
            if _ready(server, timeout=30.0):
                break
        except BaseException:
            _stop(proc)
            raise
        _stop(proc)
    else:
        raise RuntimeError(f"prometheus did not start; its log:\n{log.read_text()[-2000:]}")
    try:
        yield server
    finally:
        _stop(proc)


def _ready(server: Prometheus, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False  # exited: most likely the port was taken meanwhile
        try:
            with urllib.request.urlopen(f"http://{HOST}:{server.port}/-/ready", timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
