"""uvloop when the platform has it, the standard asyncio loop otherwise.

uvloop (libuv underneath) roughly halves the per-request cost of asyncio's own machinery.
Every process of the bench uses the same choice, so the comparison stays fair; the gateway
makes its own choice (DESIGN.md: uvloop where available).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

try:
    import uvloop
except ImportError:  # Windows, PyPy: the standard loop still works, only slower
    uvloop = None  # type: ignore[assignment]  # the name is the module or None


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """What `asyncio.Runner(loop_factory=...)` and `web.run_app(loop=...)` should use."""
    return uvloop.new_event_loop if uvloop is not None else asyncio.new_event_loop


def loop_name() -> str:
    return "uvloop" if uvloop is not None else "asyncio"
