"""The seam a concern plugs into: what it runs at start and close, and what it shows on
the admin listener.

A concern (load balancing here; the channel, the cache, auth and rate limits later) is
one object built in app.py from its own config section. Besides its place in the
request path (a middleware, or the handler's channel), it may need work done in the
running event loop (open connections, start health checks, fetch keys) and undone on
shutdown, and it may have state an operator wants to read or change. Both go through
this one interface, so adding a concern adds one line to app.py's `concerns` list
instead of one more argument to every central function:

    concerns: list[Concern] = [upstreams, channel, authenticator, limiter, cache]

app.py starts them in that order and closes them in the reverse one, and the admin
listener (admin.py) serves every view they return. It is a typing.Protocol: a concern
needs no base class, only these three methods, and mypy checks each against it where the
list is built. No registry, no entry points, no discovery: the list in app.py is the
whole truth. Envoy's filters and Kong's plugins are found by name from configuration,
which a gateway with third-party extensions needs and a teaching one does not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp.typedefs import Handler

Show = Callable[[], Awaitable[dict[str, object]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminView:
    """One page of the admin listener: GET `path` answers `show()` as JSON (with the pid
    of the worker that answered), or, for a page that is not JSON (/metrics), `page`
    answers it whole; each of `actions` is a POST endpoint, by its path (which may hold a
    {placeholder}, e.g. "/upstreams/{pool}/reset")."""

    path: str
    show: Show | None = None
    page: Handler | None = None
    actions: Mapping[str, Handler] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.show is None) == (self.page is None):
            raise ValueError(f"admin view {self.path}: give show or page, not both")


class Concern(Protocol):
    async def start(self) -> None:
        """Called inside the running event loop, before the first request."""

    async def close(self) -> None:
        """Called on shutdown, after the requests in flight finished."""

    def admin_views(self) -> Sequence[AdminView]:
        """What the concern shows (and lets an operator change) on the admin listener."""
