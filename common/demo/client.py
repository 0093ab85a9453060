"""Send one request exactly as written, with http.client, and read the whole answer.

Why not aiohttp or urllib: both "help". They normalise the URL (`/a/../b` becomes `/b`,
`%2F` may be decoded), add `Accept`, `User-Agent` and `Accept-Encoding` headers, and follow
redirects. A demo of a gateway often shows what the gateway does with exactly those bytes,
so this client sends the path and query as written and no header beyond `Host` and, when
there is a body, `Content-Length`. (REST Client itself adds a `User-Agent`; no demo here
depends on it.) Redirects are not followed: `# expect:` names the first response's status.
"""

from __future__ import annotations

import http.client
import re
import time
from dataclasses import dataclass

from common.demo.parser import DemoError

_ABSOLUTE = re.compile(r"^(https?)://([^/?#]*)(.*)$", re.IGNORECASE)
_AUTHORITY = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?$")


@dataclass(frozen=True)
class SentRequest:
    """A request with every variable expanded and every header it will carry."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None

    def header(self, name: str) -> str | None:
        return _first(self.headers, name)


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return _first(self.headers, name)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    authority: str  # what `Host:` carries
    path: str  # the request-target: path and query, as written


def prepare(
    method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
) -> SentRequest:
    """Add `Host` and `Content-Length` unless the demo wrote them itself."""
    target = _split(url, headers)
    names = {name.lower() for name, _ in headers}
    extra: list[tuple[str, str]] = []
    if "host" not in names:
        extra.append(("Host", target.authority))
    if body is not None and not names & {"content-length", "transfer-encoding"}:
        headers = [*headers, ("Content-Length", str(len(body)))]
    return SentRequest(method, url, extra + headers, body)


def send(request: SentRequest, timeout: float = 10.0) -> Response:
    """Send `request` and read the full response within `timeout` seconds in total.

    A socket timeout alone bounds each read, not the whole exchange: a server that
    trickles a byte a second would never time out. So every read gets what is left of
    one deadline. Raises DemoError with a sentence, never a bare traceback.
    """
    target = _split(request.url, request.headers)
    deadline = time.monotonic() + timeout
    cls = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    conn = cls(target.host, target.port, timeout=timeout)
    response: http.client.HTTPResponse | None = None
    where = f"{request.method} {request.url}"
    try:
        # skip_host / skip_accept_encoding: http.client would add its own otherwise.
        conn.putrequest(request.method, target.path, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers:
            conn.putheader(name, value)
        conn.endheaders(request.body)
        sock = conn.sock
        assert sock is not None  # endheaders connected
        sock.settimeout(_left(deadline))
        response = conn.getresponse()
        chunks: list[bytes] = []
        while True:
            sock.settimeout(_left(deadline))
            chunk = response.read1(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return Response(response.status, response.reason, response.getheaders(), b"".join(chunks))
    except ConnectionRefusedError:
        raise DemoError(
            f"{where}: connection refused by {target.authority} (is the stage running?)"
        ) from None
    except TimeoutError:  # socket.timeout is an alias since 3.10
        raise DemoError(f"{where}: no complete response within {timeout:g} s") from None
    except http.client.RemoteDisconnected:
        raise DemoError(f"{where}: the server closed the connection without a response") from None
    except http.client.InvalidURL as exc:
        raise DemoError(f"{where}: cannot be sent as written ({exc})") from None
    except UnicodeEncodeError as exc:
        raise DemoError(
            f"{where}: {exc.object[exc.start : exc.end]!r} is not ASCII; percent-encode it"
        ) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise DemoError(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        if response is not None:
            response.close()
        conn.close()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _split(url: str, headers: list[tuple[str, str]]) -> _Target:
    """Host, port and request-target of `url`, without decoding or re-encoding anything."""
    match = _ABSOLUTE.match(url)
    if match:
        scheme, authority, rest = match.group(1).lower(), match.group(2), match.group(3)
    elif url.startswith("/"):
        # origin-form plus a Host header, as REST Client allows: `GET /users` + `Host: ...`
        host_header = _first(headers, "host")
        if host_header is None:
            raise DemoError(f"{url}: a URL without scheme and host needs a `Host:` header")
        scheme, authority, rest = "http", host_header, url
    else:
        raise DemoError(f"{url!r} is not a URL: it must start with http://, https:// or /")
    host_port = _AUTHORITY.match(authority)
    if not host_port:
        raise DemoError(f"{url}: cannot read host and port from {authority!r}")
    host = host_port.group(1).strip("[]")
    port = int(host_port.group(2) or (443 if scheme == "https" else 80))
    path = rest.split("#", 1)[0]  # a fragment never leaves the client
    if not path.startswith("/"):
        path = "/" + path  # `http://host` and `http://host?q` mean the path `/`
    return _Target(scheme, host, port, authority, path)


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    lower = name.lower()
    return next((value for key, value in headers if key.lower() == lower), None)
