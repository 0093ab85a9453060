"""`--watch`: reload when the config file changes, with nobody sending SIGHUP.

watchfiles (inotify on Linux, through a small Rust library) reports changes to the
folder the file is in, not to the file itself: an editor that saves by writing a new file
and renaming it over the old one (vim, most IDEs, `cp` over it through a temporary) leaves
the watched inode behind, and a watch on the file alone would go deaf after the first
save (traefik#5589 is that bug). Changes are gathered for DEBOUNCE_MS first, so one save
(a write, a rename, a metadata change) is one reload, and a file saved half-written and
then whole is read whole.

With --workers N every worker watches for itself and reloads on its own: they read the
same file, so they reach the same generation (GET /config shows whether they did).
Traefik watches its files the same way; nginx, HAProxy and Envoy's file-based mode wait to
be told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from watchfiles import awatch

log = logging.getLogger("gateway.reload")

DEBOUNCE_MS = 200  # one save, one reload


async def watch(path: Path, reload: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
    """Call `reload()` after every change to `path` until `stop` is set."""
    target = path.resolve()
    log.info("watching %s: a change reloads it", path)
    async for changes in awatch(target.parent, debounce=DEBOUNCE_MS, stop_event=stop):
        if any(Path(changed).resolve() == target for _, changed in changes):
            await reload()
