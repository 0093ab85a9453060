"""Where consistent hashing finds a request's key: `hash_key` in gateway.toml.

    header:X-User-ID    the first value of that request header
    cookie:session      the value of that cookie
    client_ip           the address of the TCP peer
    path                the normalised path that was routed, without the query string

Pick the thing whose requests benefit from landing on the same target: the user (their
session cache is warm there), the path (a per-resource cache), the client. nginx writes
the same as `hash $http_x_user_id consistent`; Envoy as a `hash_policy` list (header,
cookie, connection_properties.source_ip, ...).

`path` is the path the router matched (gateway/pathsafety.py normalised it), never the
raw bytes: `/users//me` and `/users/me` are one resource to the router, so they must be
one key too, or a per-resource cache behind the ring is split in two.

`client_ip` is the TCP peer. Behind another proxy or load balancer that is the proxy,
for every request; a gateway in that position hashes X-Forwarded-For's first trusted hop
instead, which needs the list of trusted proxies (a later concern). A request without
the key (no such header) gets None, and the strategy spreads those requests rather than
sending them all to the target that owns the empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, cast

from gateway.headers import TOKEN

Kind = Literal["header", "cookie", "client_ip", "path"]
SPECS = "header:NAME | cookie:NAME | client_ip | path"


class KeyedRequest(Protocol):
    """The parts of an aiohttp web.Request a key is read from (tests pass a stand-in)."""

    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def cookies(self) -> Mapping[str, str]: ...
    @property
    def remote(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class KeySource:
    kind: Kind
    name: str = ""

    @classmethod
    def parse(cls, spec: str) -> KeySource:
        """`header:X-User-ID` -> KeySource("header", "X-User-ID"); ValueError says why not."""
        kind, colon, name = spec.partition(":")
        if kind in ("client_ip", "path"):
            if colon:
                raise ValueError(f"{kind!r} takes no name (write just {kind!r})")
            return cls(cast(Kind, kind))  # `in` a tuple does not narrow str to the Literal
        if kind in ("header", "cookie"):
            if not TOKEN.fullmatch(name):
                raise ValueError(f"{kind}: needs a {kind} name, e.g. '{kind}:X-User-ID'")
            return cls(cast(Kind, kind), name)
        raise ValueError(f"must be one of {SPECS}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind

    def extract(self, request: KeyedRequest, path: str) -> str | None:
        """The request's key, or None when it has none (an empty value counts as none).

        `path`: the normalised path the request was routed by (routing.RouteMatch.path).
        """
        if self.kind == "header":
            value = request.headers.get(self.name)  # case-insensitive in aiohttp
        elif self.kind == "cookie":
            value = request.cookies.get(self.name)
        elif self.kind == "client_ip":
            value = request.remote
        else:
            value = path
        return value or None
