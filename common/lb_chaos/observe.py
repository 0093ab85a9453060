"""What lb-chaos measures: every request's outcome, and the gateway's view of each target.

Two sources, kept apart on purpose. The client side (`Recorder.request`) is what users
saw: which backend answered (X-Served-By) and whether it was a 200. The gateway side
(`Recorder.states`, polled from the upstream view, /upstreams on the admin listener) is
what the balancer believed: healthy, unhealthy (failed active checks), or open or
half-open (failed requests opened its circuit breaker). "Time to eject"
is from a fault to the gateway's first non-healthy verdict on that backend; "time to
recover" is from the heal to its first successful answer through the gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

from common.testing.processes import Proc

UPSTREAMS_PATH = "/upstreams"  # on the admin listener, which every pool stage has
WINDOW = 2.0  # seconds of requests behind the live view's "share" column


@dataclass
class Recorder:
    start: float = field(default_factory=time.monotonic)
    # (t, backend or "-", ok) for every finished request; t in seconds since start.
    requests: list[tuple[float, str, bool]] = field(default_factory=list)
    recent: deque[tuple[float, str, bool]] = field(default_factory=deque)
    states: dict[str, str] = field(default_factory=dict)  # backend -> healthy/unhealthy/...
    # backend -> [(t, state)] every change the poller saw
    transitions: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    events: list[tuple[float, str]] = field(default_factory=list)  # for the live log

    def now(self) -> float:
        return time.monotonic() - self.start

    def request(self, backend: str, ok: bool) -> None:
        entry = (self.now(), backend, ok)
        self.requests.append(entry)
        self.recent.append(entry)
        while self.recent and self.recent[0][0] < entry[0] - WINDOW:
            self.recent.popleft()

    def state(self, backend: str, state: str) -> None:
        if self.states.get(backend) != state:
            t = self.now()
            if backend in self.states:  # the first reading is not a change
                self.event(f"gateway: users/{backend} is {state}", t)
            self.states[backend] = state
            self.transitions.setdefault(backend, []).append((t, state))

    def event(self, text: str, t: float | None = None) -> None:
        self.events.append((self.now() if t is None else t, text))

    def share(self) -> Counter[str]:
        """Successful answers per backend over the last WINDOW seconds."""
        return Counter(who for _, who, ok in self.recent if ok)

    def totals(self) -> tuple[Counter[str], Counter[str]]:
        ok, failed = Counter[str](), Counter[str]()
        for _, who, good in self.requests:
            (ok if good else failed)[who] += 1
        return ok, failed

    def first_state(self, backend: str, after: float, healthy: bool) -> float | None:
        for t, state in self.transitions.get(backend, []):
            if t >= after and (state == "healthy") == healthy:
                return t
        return None

    def first_answer(self, backend: str, after: float) -> float | None:
        for t, who, ok in self.requests:
            if t >= after and who == backend and ok:
                return t
        return None


async def drive_load(
    url: str, recorder: Recorder, stop: asyncio.Event, *, rate: float = 150, workers: int = 12
) -> None:
    """About `rate` requests/s over `workers` connections, until `stop` is set.

    Paced, not flat out: a closed loop on a 2-core machine would starve the health checks
    of CPU and make healthy backends look slow. With a slow backend a worker waits for its
    answer, so the rate dips there; the pacing catches up afterwards, at most one request
    per worker at a time, so the load stays bounded.
    """
    interval = workers / rate
    connector = TCPConnector(limit=workers)
    async with ClientSession(connector=connector, timeout=ClientTimeout(total=5)) as session:

        async def worker(offset: float) -> None:
            due = time.monotonic() + offset
            while not stop.is_set():
                try:
                    async with session.get(url) as response:
                        await response.read()
                        who = response.headers.get("X-Served-By", "-").partition("@")[0]
                        recorder.request(who.removeprefix("users/"), response.status == 200)
                except (ClientError, TimeoutError):
                    recorder.request("-", False)
                due = max(due + interval, time.monotonic() - interval)
                await asyncio.sleep(max(0.0, due - time.monotonic()))

        await asyncio.gather(*(worker(i * interval / workers) for i in range(workers)))


def upstreams_url(gateway: Proc) -> str:
    """Where `gateway` shows its upstream view: on its admin listener (stage 03 on)."""
    return gateway.admin_url + UPSTREAMS_PATH


async def poll_states(
    view_url: str, names: dict[str, str], recorder: Recorder, stop: asyncio.Event
) -> None:
    """Read the upstream view every 100 ms; `names` maps target URL -> backend name."""
    async with ClientSession(timeout=ClientTimeout(total=2)) as session:
        while not stop.is_set():
            try:
                async with session.get(view_url) as response:
                    body = await response.json()
                for pool in body["upstreams"].values():
                    for target in pool["targets"]:
                        if target["url"] in names:
                            recorder.state(names[target["url"]], target["state"])
            except (ClientError, TimeoutError, KeyError, ValueError):
                pass  # the gateway is busy or restarting: the next poll will tell
            await asyncio.sleep(0.1)
