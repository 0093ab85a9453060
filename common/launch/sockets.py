"""Bind every listening socket before any process starts.

Why the launcher binds and the children inherit (`--fd N`) instead of each child binding
its own port:

- A busy port is found before anything starts, and reported with its owner's name. The
  alternative is a gateway that crashes three seconds in with "address already in use"
  while two backends keep running.
- `port = 0` works: the kernel picks a free port at bind time and the launcher knows it
  at once, with no "find a free port, close it, hope nobody takes it" race.
- Once the socket listens, connections queue in its backlog even before the child calls
  accept(); a health probe sent early simply waits for the server to come up.

systemd socket activation and the LISTEN_FDS protocol work the same way; so do zero-
downtime restarts (nginx, HAProxy, Envoy hot restart): the listening socket outlives the
process that serves it.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from common.launch.config import LaunchError

HOST = "127.0.0.1"

# How many not-yet-accepted connections the kernel queues. Linux caps it at
# net.core.somaxconn (4096 on recent kernels); 1024 is what most servers ask for.
BACKLOG = 1024


class PortsBusy(LaunchError):
    """Some of the ports are taken; `ports` says which."""

    def __init__(self, message: str, ports: list[int]) -> None:
        super().__init__(message)
        self.ports = ports


def bind_all(wanted: Iterable[tuple[str, int]]) -> dict[str, socket.socket]:
    """Bind and listen on every (name, port); all or nothing.

    A busy port raises LaunchError naming each port and the process that needed it; the
    sockets bound so far are closed again, so a failed launch leaves nothing behind.
    """
    bound: dict[str, socket.socket] = {}
    problems: list[str] = []
    busy: list[int] = []
    for name, port in wanted:
        try:
            bound[name] = _listen(port)
        except OSError as e:
            problems.append(_explain(name, port, e))
            busy += [port] if e.errno == errno.EADDRINUSE else []
    if problems:
        for sock in bound.values():
            sock.close()
        raise PortsBusy("\n".join(problems), busy)
    return bound


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR lets a restarted launcher bind a port that still has connections
        # in TIME_WAIT from the previous run. It does not let two processes listen on the
        # same port (that would be SO_REUSEPORT), so a real conflict still fails here.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        # On Linux, bind() can succeed on a port another SO_REUSEADDR socket has bound
        # but not yet listened on; listen() is where that conflict shows.
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    # Inheritable: the fd survives exec() in the child (Python makes new fds
    # non-inheritable by default, PEP 446). pass_fds= at spawn does the same per child.
    sock.set_inheritable(True)
    return sock


def _explain(name: str, port: int, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return (
            f"port {port} ({name}) is already in use: stop whatever listens there"
            f" (`ss -ltnp 'sport = :{port}'` shows it), or change the port in services.toml"
        )
    if e.errno == errno.EACCES:
        return f"port {port} ({name}): permission denied (ports below 1024 need privileges)"
    return f"port {port} ({name}): cannot listen on {HOST}: {e.strerror or e}"
