"""Talking to a gateway on the wire, for the contract tests.

http.client and raw sockets, never aiohttp's or requests' client: those would normalise
the very things the contracts check (header case and order, percent-encoding, framing).
The echo helpers read the backend's `/echo` document (common/backends/README.md).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from common.testing.processes import HOST

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}
SANE_ID = re.compile(r"[\x21-\x7e]{1,200}")  # what a request id may look like


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]  # as received: order and repeats kept
    body: bytes

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    port: int,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | Iterable[bytes] | None = None,
    *,
    chunked: bool = False,
    timeout: float = 30,
) -> Reply:
    """One request on a fresh connection, headers exactly as given (plus Host)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = list(headers)
        has_host = any(n.lower() == "host" for n, _ in headers)
        conn.putrequest(method, target, skip_host=has_host, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif isinstance(body, bytes):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body, encode_chunked=chunked)
        return read_reply(conn.getresponse())
    finally:
        conn.close()


def read_reply(response: http.client.HTTPResponse) -> Reply:
    # For HEAD, http.client knows there is no body (the response was built with the
    # method) and read() returns b"" without touching the socket.
    return Reply(response.status, response.getheaders(), response.read())


def send_raw(port: int, data: bytes, method: str = "GET", timeout: float = 10) -> Reply:
    """Bytes as they are on the wire (malformed requests, non-ASCII header values)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return read_reply(response)


def echoed(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, (reply.status, reply.body[:300])
    echo: dict[str, Any] = reply.json()
    return echo


def echoed_header(echo: dict[str, Any], name: str) -> list[str]:
    """Every value the upstream received for `name` (the echo lowercases names)."""
    return [v for n, v in echo["headers"] if n == name.lower()]


def assert_problem(reply: Reply, status: int) -> dict[str, Any]:
    """An error the gateway produced itself: RFC 9457 JSON carrying the request id."""
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.header("Content-Type") == "application/problem+json"
    problem: dict[str, Any] = reply.json()
    assert PROBLEM_KEYS <= problem.keys(), problem
    assert problem["status"] == status
    assert problem["request_id"] == reply.header("X-Request-ID")
    assert SANE_ID.fullmatch(problem["request_id"])
    return problem


def forwarded_elements(value: str) -> list[dict[str, str]]:
    """RFC 7239 elements as dicts (lower-case keys, quotes removed)."""
    elements = []
    for element in value.split(","):
        pairs = (pair.strip().split("=", 1) for pair in element.split(";") if pair.strip())
        elements.append({k.lower(): v.strip('"') for k, v in pairs})
    return elements


def assert_cut_off(port: int, target: str) -> None:
    """The head arrives, then the connection closes before the body is complete."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()


def open_stream(port: int, target: str) -> tuple[http.client.HTTPConnection, Any, bytes]:
    """Start a /stream request and wait for its first line: the request is in flight."""
    conn = http.client.HTTPConnection(HOST, port, timeout=15)
    conn.request("GET", target)
    response = conn.getresponse()
    assert response.status == 200
    first = b""
    while b"\n" not in first:
        first += response.read1(65536)
    return conn, response, first
