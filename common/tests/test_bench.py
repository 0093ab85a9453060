"""Smoke tests for the bench (common/bench): the origin frames HTTP right, the load
generator and the CPU meter give sensible numbers, and `python -m common.bench` prints a
table. Short runs (~0.5 s) only: these check the instrument, not the machine."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from common.bench import cpu, load
from common.bench.http1 import HEAD_END, message_end
from common.bench.origin import BODY_16K, SMALL_BODY, OriginProtocol
from common.testing.processes import REPO_ROOT, Proc, child_env, spawn

STAGE_01 = REPO_ROOT / "01_pass_through"


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = spawn(
        "origin",
        [sys.executable, "-m", "common.bench.origin"],
        log_dir=tmp_path_factory.mktemp("origin"),
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def baseline(origin: Proc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    argv = [sys.executable, "-m", "common.bench.baseline_proxy", "--upstream", origin.url]
    proc = spawn("baseline", argv, log_dir=tmp_path_factory.mktemp("baseline"))
    yield proc
    proc.stop()


def read_responses(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """(head, body) of `count` responses read from `sock`, framed by Content-Length."""
    buf, out = b"", list[tuple[bytes, bytes]]()
    while len(out) < count:
        head_end = buf.find(HEAD_END)
        end = None if head_end < 0 else message_end(buf, head_end, buf[:head_end].lower())
        if end is None:
            data = sock.recv(65536)
            assert data, f"connection closed after {len(out)} of {count} responses"
            buf += data
            continue
        out.append((buf[:head_end], buf[head_end + len(HEAD_END) : end]))
        buf = buf[end:]
    return out


def test_origin_answers_16k_exactly_and_pipelined_requests_in_order(origin: Proc) -> None:
    with socket.create_connection(("127.0.0.1", origin.port), timeout=5) as sock:
        # Two requests in one write: both answered, in order, on the same connection.
        sock.sendall(b"GET /16k HTTP/1.1\r\nHost: o\r\n\r\nGET /small HTTP/1.1\r\nHost: o\r\n\r\n")
        (head1, body1), (head2, body2) = read_responses(sock, 2)
        # And the connection is still usable afterwards (keep-alive).
        sock.sendall(b"GET /nope HTTP/1.1\r\nHost: o\r\n\r\n")
        [(head3, _)] = read_responses(sock, 1)
    assert head1.startswith(b"HTTP/1.1 200 ") and len(body1) == 16384 and body1 == BODY_16K
    assert head2.startswith(b"HTTP/1.1 200 ") and body2 == SMALL_BODY
    assert head3.startswith(b"HTTP/1.1 404 ")


def test_origin_c_paths_are_cacheable_counted_and_slow_on_request(origin: Proc) -> None:
    """The cache bench's paths: cacheable answers, a count of how many reached the
    origin, and a slow one that keeps concurrent misses concurrent."""
    with socket.create_connection(("127.0.0.1", origin.port), timeout=5) as sock:
        sock.sendall(b"GET /count HTTP/1.1\r\nHost: o\r\n\r\n")
        [(_, before)] = read_responses(sock, 1)
        sock.sendall(b"GET /c/a HTTP/1.1\r\nHost: o\r\n\r\nGET /c/m/1 HTTP/1.1\r\nHost: o\r\n\r\n")
        (head1, body1), (_, body2) = read_responses(sock, 2)
        start = time.monotonic()
        sock.sendall(b"GET /c/slow/1 HTTP/1.1\r\nHost: o\r\n\r\n")
        read_responses(sock, 1)
        slow = time.monotonic() - start
        sock.sendall(b"GET /count HTTP/1.1\r\nHost: o\r\n\r\n")
        [(_, after)] = read_responses(sock, 1)
    assert b"cache-control: max-age=3600" in head1.lower() and body1 == SMALL_BODY
    assert len(body2) == 256 * 1024
    assert slow >= 0.3
    assert int(after) - int(before) == 3


class _RecordingTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def test_origin_waits_for_a_request_that_arrives_byte_by_byte() -> None:
    # A request with a chunked body (what a streaming proxy may send even for a GET),
    # delivered one byte per read: exactly one answer, only after the last byte.
    request = b"GET /small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    protocol, transport = OriginProtocol(), _RecordingTransport()
    # the type ignore below: a stand-in transport for the test
    protocol.connection_made(transport)  # type: ignore[arg-type]
    for i in range(len(request) - 1):
        protocol.data_received(request[i : i + 1])
        assert transport.written == [], f"answered after {i + 1} of {len(request)} bytes"
    protocol.data_received(request[-1:])
    assert len(transport.written) == 1 and transport.written[0].endswith(SMALL_BODY)
    assert not transport.closed


async def test_load_generator_and_cpu_meter_give_sensible_numbers(
    origin: Proc, baseline: Proc
) -> None:
    direct = await load.run_builtin(origin.url + "/small", connections=4, duration=0.5, warmup=0.1)
    assert direct.requests > 0 and direct.errors == 0
    assert 0 < direct.p50_ms <= direct.p99_ms
    assert direct.meter_delta is None

    proxied = await load.run_builtin(
        baseline.url + "/16k",
        connections=4,
        duration=0.5,
        warmup=0.1,
        meter=lambda: cpu.tree_cpu_us(baseline.pid),
    )
    assert proxied.requests > 0 and proxied.errors == 0
    assert proxied.meter_delta is not None and proxied.meter_delta / proxied.requests > 0


WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:8080/small
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   251.30us   90.12us   3.10ms   92.00%
    Req/Sec    38.20k     1.10k   40.00k    70.00%
  Latency Distribution
     50%  240.00us
     75%  280.00us
     90%  320.00us
     99%    1.20ms
  114600 requests in 3.00s, 9.62MB read
  Socket errors: connect 0, read 1, write 0, timeout 0
  Non-2xx or 3xx responses: 4
Requests/sec:  38200.00
Transfer/sec:      3.21MB
"""


def test_wrk_output_is_parsed() -> None:
    requests, errors, seconds, p50, p99 = load.parse_wrk(WRK_OUTPUT)
    assert (requests, errors, seconds) == (114596, 5, 3.0)
    assert p50 == pytest.approx(0.24) and p99 == pytest.approx(1.2)


def run_bench_cli(*args: str) -> str:
    argv = [sys.executable, "-m", "common.bench", "--duration", "0.3", "--warmup", "0.1"]
    done = subprocess.run(
        [*argv, "--rounds", "1", "--markdown", *args],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_bench_prints_a_markdown_table_without_a_gateway() -> None:
    out = run_bench_cli("--no-gateway")
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == [
        "| origin direct",
        "| baseline aiohttp proxy",
    ] * 2
    assert "Machine: " in out
    assert "built-in load generator" in out or "wrk load generator" in out


@pytest.mark.skipif(
    not (STAGE_01 / "gateway" / "__main__.py").exists(),
    reason="01_pass_through/gateway does not exist yet: nothing to bench against the baseline",
)
def test_bench_measures_the_stage_01_gateway() -> None:
    out = run_bench_cli("--stage", "01_pass_through")
    gateway_rows = [line for line in out.splitlines() if line.startswith("| 01_pass_through")]
    assert len(gateway_rows) == 2, out
    for row in gateway_rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[5] == "0", f"gateway errors: {row}"  # errors column
        assert float(cells[6]) > 0 and cells[7].endswith("×")
    assert out.count("the target of ≤ 1.3×") == 2
