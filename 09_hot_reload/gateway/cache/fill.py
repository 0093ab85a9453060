"""A response on its way from the origin into the store, readable while it fills.

A fill is the `Sink` that proxy.relay writes the body into as the client receives it
(the tee): the client is never kept waiting for the store. It is also what makes request
coalescing work. The first request that misses a key becomes the fill's leader and goes
to the origin; requests for the same key that arrive while it is on its way follow it:
they wait for its response head (up to the lock timeout), and then either stream the
same body from the fill, chunk by chunk, as the leader's client gets it, or, when the
response turns out not to be storable (or not for them: Vary), go to the origin
themselves. Fifty concurrent misses are one origin request.

Memory: a fill holds at most `max_bytes` (the store's maximum object size); a body that
grows past it stops being kept, and a follower still reading it is cut off, like a
client whose upstream broke off (nginx's proxy_cache_lock and Varnish's waiting list
make the others wait for the whole object instead; Traffic Server reads while writing,
as this does). The body is copied into one buffer as it arrives, sized up front when the
response gave its Content-Length: one allocation per object, which is also the stored
body, instead of a list of chunks joined at the end (two copies at once, and a heap
fragmented by chunk-sized holes that the process never gives back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from .entry import Entry

State = Literal["waiting", "filling", "done", "broken"]


class Fill:
    def __init__(self, key: str, max_bytes: int) -> None:
        self.key = key
        self.max_bytes = max_bytes
        # The stored head (an Entry with no body yet), or None: not for the followers.
        self.head: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self.body = bytearray()
        self.size = 0  # bytes of the body arrived so far
        self.expected: int | None = None  # its Content-Length, when it gave one
        self.state: State = "waiting"
        self._more: asyncio.Future[None] | None = None
        self._on_done: Callable[[Fill, Entry], None] | None = None

    def begin(
        self, head: Entry, on_done: Callable[[Fill, Entry], None], length: int | None = None
    ) -> None:
        """The response is storable: its body (`length` bytes, when known) will come
        through write()."""
        self.state = "filling"
        self.expected = length
        if length is not None:
            self.body = bytearray(length)  # filled in place; no regrowing
        self._on_done = on_done
        if not self.head.done():
            self.head.set_result(head)

    def decline(self) -> None:
        """Nothing to share: the response is not storable, or never came."""
        if not self.head.done():
            self.head.set_result(None)
        if self.state in ("waiting", "filling"):
            self.state = "broken"
            self._wake()

    # --- the Sink side (proxy.relay) ------------------------------------------------------

    def write(self, chunk: bytes) -> None:
        if self.state != "filling":
            return
        start, end = self.size, self.size + len(chunk)
        if end > self.max_bytes or (self.expected is not None and end > self.expected):
            self.body = bytearray()  # too big to keep: the bound holds, followers are cut off
            self.decline()
            return
        if self.expected is not None:
            self.body[start:end] = chunk
        else:
            self.body += chunk
        self.size = end
        self._wake()

    def close(self, complete: bool) -> None:
        if self.state != "filling":
            return
        if not complete:
            self.decline()
            return
        self.state = "done"
        self._wake()
        head = self.head.result()
        assert head is not None and self._on_done is not None
        if self.expected is not None and self.size != self.expected:  # cut short
            self.decline()
            return
        head.body = self.body  # the buffer itself: never written again
        self._on_done(self, head)

    def read(self, offset: int) -> bytes:
        """What has arrived past `offset`, for a follower."""
        return bytes(memoryview(self.body)[offset : self.size])

    # --- the followers' side -------------------------------------------------------------

    async def more(self) -> None:
        """Wait until another chunk arrived, or the fill ended."""
        if self._more is None:
            self._more = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._more)

    def _wake(self) -> None:
        if self._more is not None:
            if not self._more.done():
                self._more.set_result(None)
            self._more = None
