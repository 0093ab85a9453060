"""Whose budget a request spends.

- `consumer`: the identity auth (stage 06) verified; on a public route, where nobody is
  verified, the client address instead (a limit keyed on a header the client chooses
  would be a limit the client chooses);
- `api_key`: the API key's id (one budget per key, so a consumer's two keys are two
  budgets), else as `consumer`;
- `client_ip`: the peer address, or, when the peer is a trusted proxy, the address it
  says it forwarded for: X-Forwarded-For read from the right, the first address that is
  not a trusted proxy (the leftmost entries are whatever the client wrote);
- `header:NAME`: that header's value (a tenant id set by a trusted front end), else the
  client address.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence

from aiohttp import web

from gateway.auth.identity import Identity

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_KEY = 128  # a longer value (a header) is kept as its hash: bounded memory per key


class ClientAddress:
    def __init__(self, trusted: Sequence[str]) -> None:
        self.trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in trusted
        )

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def of(self, request: web.Request) -> str:
        peer = request.remote or "-"
        if not self.trusted or not self._is_trusted(peer):
            return peer
        hops = [
            h.strip()
            for line in request.headers.getall("X-Forwarded-For", [])
            for h in line.split(",")
            if h.strip()
        ]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer


def key_of(
    request: web.Request, kind: str, addresses: ClientAddress, identity: Identity | None
) -> str:
    """Whose count a request is: `kind` as the route's limit names it; `identity` is auth's
    (None on a public route)."""
    if kind == "api_key" and identity is not None and identity.credential.startswith("key:"):
        return "key:" + identity.credential[4:]
    if kind in ("consumer", "api_key") and identity is not None:
        return "consumer:" + identity.consumer_id
    if kind.startswith("header:"):
        value = request.headers.get(kind[7:])
        if value:
            if len(value) > MAX_KEY:
                value = hashlib.sha256(value.encode()).hexdigest()
            return kind + ":" + value
    return "ip:" + addresses.of(request)
