"""Which headers cross the gateway, and what the gateway adds on the way.

HTTP splits headers in two kinds (RFC 9110 §7.6.1):

- end-to-end headers belong to the message and must reach the other end unchanged:
  Content-Type, Set-Cookie, Authorization, Cache-Control, ... (all of them, repeated ones
  included, in their order: two Set-Cookie lines are two cookies, and folding them into
  one comma-separated line breaks cookies whose Expires contains a comma);
- hop-by-hop headers describe one TCP connection and die with it: Connection,
  Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade, Proxy-Authenticate,
  Proxy-Authorization, the obsolete Proxy-Connection, and *every header that the
  Connection header names* (`Connection: close, X-Secret` makes X-Secret hop-by-hop).

A proxy has two connections, so it removes the hop-by-hop headers in both directions
and lets its HTTP stack write its own: the client may send its body chunked while the
gateway sends it to the upstream with a Content-Length, or the other way round.
Forwarding `Transfer-Encoding: chunked` on top of a body that is not chunked is how
request smuggling starts. nginx and Envoy both do this stripping; Envoy also rejects
requests that carry TE values other than "trailers".

Then the gateway says who asked, because the upstream now sees the gateway's address:

- X-Forwarded-For: the client chain, *appended to* (a proxy in front of us may have
  started it), X-Forwarded-Proto and X-Forwarded-Host: the scheme and Host the client
  used. De-facto standards, which every framework reads.
- Forwarded (RFC 7239): the standard that folds those three into one header,
  `for=192.0.2.7;host="api.example:8080";proto=http`, one element per proxy.
- Via (RFC 9110 §7.6.3): which protocol versions and proxies the message went through,
  in both directions. It lets a server (or a loop detector) see the proxy chain.

Who to trust is the hard part in production: X-Forwarded-For from the internet is
whatever the client typed. Envoy's `xff_num_trusted_hops` and nginx's `set_real_ip_from`
say how many entries on the right were written by your own proxies. This gateway appends
faithfully and trusts nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache

from aiohttp import HttpVersion, HttpVersion11, web
from multidict import CIMultiDict, CIMultiDictProxy

# Lower-case: CIMultiDict lookups are case-insensitive anyway.
HOP_BY_HOP = (
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
)

# RFC 9110 §5.6.2 token: what a header name, a method name or a bare Forwarded value may be
# made of. The one definition in the gateway: config checks method names with it, the
# router and the hash keys of later stages check names with it too.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# The pseudonym this gateway writes into Via (a real deployment might use its hostname).
VIA_NAME = "gateway"
REQUEST_ID = "X-Request-ID"


def strip_hop_by_hop(headers: CIMultiDict[str]) -> None:
    """Remove the hop-by-hop headers, and the ones Connection names, in place."""
    if "connection" in headers:
        # Read the named headers before Connection itself goes: tokens are
        # comma-separated and may repeat over several Connection lines.
        for value in headers.getall("connection"):
            for token in value.split(","):
                if token := token.strip():
                    headers.popall(token, None)
    for name in HOP_BY_HOP:
        if name in headers:
            del headers[name]  # removes every occurrence


def to_upstream(request: web.Request, *, preserve_host: bool, request_id: str) -> CIMultiDict[str]:
    """The headers the upstream receives for `request`."""
    incoming = request.headers
    headers = CIMultiDict(incoming)  # one C-level copy, order and repeats kept
    strip_hop_by_hop(headers)
    host = request.host  # the Host header, or our own address for an HTTP/1.0 client
    if not preserve_host:
        # Without a Host header aiohttp writes the upstream's (host:port from its URL).
        # Virtual hosts upstream usually need that; preserve_host is for upstreams that
        # build absolute links from the name the client used.
        headers.popall("Host", None)
    # The gateway's HTTP server already answered "100 Continue" to the client (aiohttp
    # does it before the handler runs); asking the upstream again would only add a
    # round trip. Envoy does the same by default.
    headers.popall("Expect", None)

    client = request.remote or "unknown"
    scheme = request.scheme
    # Several X-Forwarded-For (or Forwarded) lines are one list (RFC 9110 §5.3): join
    # them and append our element, so there is exactly one line after us.
    headers["X-Forwarded-For"] = _append(incoming.getall("X-Forwarded-For", ()), client)
    headers["X-Forwarded-Proto"] = scheme
    headers["X-Forwarded-Host"] = host
    headers["Forwarded"] = _append(
        incoming.getall("Forwarded", ()), _forwarded_element(client, host, scheme)
    )
    headers["Via"] = _append(incoming.getall("Via", ()), _via(request.version))
    headers[REQUEST_ID] = request_id
    return headers


def to_client(
    incoming: CIMultiDictProxy[str], version: HttpVersion | None, *, request_id: str
) -> CIMultiDict[str]:
    """The headers the client receives from the upstream's response. `version` is the
    upstream's (aiohttp types it Optional: it is None only before the head was read)."""
    headers = CIMultiDict(incoming)
    strip_hop_by_hop(headers)
    headers["Via"] = _append(incoming.getall("Via", ()), _via(version or HttpVersion11))
    headers[REQUEST_ID] = request_id
    return headers


def _append(existing: list[str] | tuple[()], value: str) -> str:
    return ", ".join([*existing, value]) if existing else value


@lru_cache(maxsize=16)
def _via(version: HttpVersion) -> str:
    return f"{version.major}.{version.minor} {VIA_NAME}"


# The same few clients ask for the same few hosts over and over: remember the last
# thousand elements instead of re-checking and quoting them on every request.
@lru_cache(maxsize=1024)
def _forwarded_element(client: str, host: str, scheme: str) -> str:
    """One RFC 7239 element: `for=192.0.2.7;host="api.example:8080";proto=http`."""
    return f"for={_node(client)};host={_quoted(host)};proto={scheme}"


def _node(ip: str) -> str:
    """RFC 7239 §6: an IPv6 address is bracketed and quoted, `for="[2001:db8::1]"`."""
    return f'"[{ip}]"' if ":" in ip else ip


def _quoted(value: str) -> str:
    """A token as is, anything else (host:port has a colon) as a quoted-string."""
    if TOKEN.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
