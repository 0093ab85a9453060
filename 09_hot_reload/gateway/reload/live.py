"""The configuration serving now, and the one way to replace it.

    SIGHUP                 reload (with --workers N, the parent passes it to every worker)
    --watch                reload when the file changes (reload/watch.py)
    POST /reload           reload, and answer when every worker runs the result (or why not)
    GET  /config           this worker's generation and digest; with --workers, every one's

A reload reads gateway.toml again and checks it as start-up does (syntax, every key,
routes to unknown pools, bad key hashes), and also that nothing it cannot change at run
time changed (reload/fixed.py). Then it builds the whole new generation off to the side
(gateway/app.py's `build_generation`), lets it take over what survives (reload/
generation.py), and swaps it in with one assignment: `self.current = new`. Any error on
the way leaves the old generation serving untouched, and says why with file, line and
key: in the log, in the /reload answer, and in gateway_config_reloads_total{result=
"failed"}. Nothing is ever half applied, because nothing is applied before the swap.

Why one assignment is enough: the event loop runs one callback at a time, so between two
requests' reads of `current` the swap either happened or did not. A request reads it once
(`handle`) and runs on that generation to its end; every request that starts after the
swap, on a new connection or an old keep-alive one, runs on the new one. A multi-threaded
gateway needs an atomic pointer for the same thing (Envoy's thread-local snapshots, an
RCU swap); nginx sidesteps it with new worker processes, and its old ones serve their
keep-alive connections on the old configuration until those close (the complaint of
caddy#809 and envoy#44116 that this design avoids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.concern import AdminView
from gateway.config import ConfigError, GatewayConfig
from gateway.errors import problem_response
from gateway.observability.metrics import Metrics

from .fixed import fixed_changes
from .generation import Generation
from .watch import watch
from .workers import Status, publish, read_all, reload_everywhere, shared

log = logging.getLogger("gateway.reload")

# Reads gateway.toml again (with the command line's overrides): a ConfigError if bad.
Load = Callable[[], GatewayConfig]
Build = Callable[[GatewayConfig, Generation], Generation]
# How long POST /reload waits for every worker (a new issuer's key fetch is the slow part).
RELOAD_TIMEOUT = 30.0


class ReloadFailed(Exception):
    """The configuration was not applied; the message says why (file, line, key)."""


class Live:
    def __init__(
        self,
        first: Generation,
        *,
        build: Build,
        load: Load | None,
        shown: str,
        metrics: Metrics,
        watch: bool = False,
    ) -> None:
        self.current = first
        self._build, self._load, self._shown, self._metrics = build, load, shown, metrics
        self._watch = watch and load is not None  # --watch (reload/watch.py)
        self._stop_watching = asyncio.Event()
        self._watching: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one reload at a time
        self._swapped: list[Callable[[Generation], None]] = []
        self.attempts = 0
        self.last_error: str | None = None

    def middleware(self) -> Middleware:
        """The last middleware of the application: the current generation's chain from
        here on. It never calls aiohttp's handler (`unreachable`, on a catch-all route):
        the generation's router decides, and a request target aiohttp's router would
        not even match, such as `*`, still gets the routing middleware's 400."""

        @web.middleware
        async def live(request: web.Request, handler: Handler) -> web.StreamResponse:
            # The one read of the configuration per request (reload/chain.py).
            return await self.current.handle(request)

        return live

    async def unreachable(self, request: web.Request) -> web.StreamResponse:
        """The public application's aiohttp handler: live.middleware never calls it."""
        raise AssertionError("live.middleware answers every request")

    def hidden(self) -> frozenset[str]:
        """For the access log: the query parameters whose values it must not write."""
        return self.current.hidden

    def on_swap(self, callback: Callable[[Generation], None]) -> None:
        """`callback(new)` right after each swap (the metrics and the dashboard follow)."""
        self._swapped.append(callback)

    # --- reloading -----------------------------------------------------------------------

    def check(self) -> GatewayConfig:
        """The file read and checked as a reload would, without building anything."""
        if self._load is None:
            raise ReloadFailed("this gateway was not started from a file: nothing to reload")
        try:
            config = self._load()
        except ConfigError as exc:
            raise ReloadFailed(str(exc)) from None
        problems = fixed_changes(self.current.config, config, self._shown)
        if problems:
            raise ReloadFailed("\n".join(problems))
        return config

    def _checked(self) -> None:
        """check(), counted and logged as a failed reload when it fails (here, in the
        worker that was asked: the others never hear of it)."""
        try:
            self.check()
        except ReloadFailed as exc:
            self._failed(str(exc))
            raise

    async def reload(self) -> Generation:
        """Read, check, build, take over, swap; ReloadFailed (nothing changed) if not."""
        async with self._lock:
            old = self.current
            self.attempts += 1
            try:
                config = self.check()
                new = self._build(config, old)
                await new.take_over(old)  # changes `old` only in its last step
            except ReloadFailed as exc:
                self._failed(str(exc))
                raise
            except Exception as exc:  # a bug, not the file: still nothing applied
                log.exception("reload failed while building")
                self._failed(f"{self._shown}: {type(exc).__name__}: {exc}")
                raise ReloadFailed(self.last_error or "") from None
            self.current = new  # the swap
            for callback in self._swapped:
                callback(new)
            self.last_error = None
            self._metrics.reloaded(ok=True, generation=new.number, config_hash=new.digest)
            self._publish()
            log.info(
                "configuration generation %d (%s) serving: %d routes",
                new.number,
                new.digest,
                len(config.routes),
            )
            return new

    def _failed(self, message: str) -> None:
        self.last_error = message
        self._metrics.reloaded(ok=False, generation=self.current.number, config_hash=None)
        self._publish()
        for line in message.splitlines():
            log.error("reload refused, generation %d serves on: %s", self.current.number, line)

    async def _reload_logged(self) -> None:
        """SIGHUP's and --watch's reload: nobody to answer, so its outcome is only logged,
        counted and published (by reload())."""
        with contextlib.suppress(ReloadFailed):
            await self.reload()

    def _publish(self) -> None:
        directory = shared()
        if directory is not None:
            publish(directory, self._status())

    def _status(self) -> Status:
        current = self.current
        return Status(
            pid=os.getpid(),
            generation=current.number,
            digest=current.digest,
            attempts=self.attempts,
            error=self.last_error,
        )

    # --- a concern (gateway/concern.py) --------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload_logged()))
        if self._watch:
            path = Path(self._shown)
            self._watching = asyncio.create_task(
                watch(path, self._reload_logged, self._stop_watching)
            )
        self._publish()

    async def close(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._watching is not None:
            self._stop_watching.set()
            await asyncio.gather(self._watching, return_exceptions=True)

    async def close_current(self) -> None:
        """At shutdown: close the generation serving then (the earlier ones were taken
        over, and own nothing left to close)."""
        for concern in reversed(self.current.concerns()):
            await concern.close()

    def admin_views(self) -> Sequence[AdminView]:
        return (AdminView(path="/config", show=self._show, actions={"/reload": self._reload}),)

    async def _show(self) -> dict[str, object]:
        directory = shared()
        shown: dict[str, object] = {
            "generation": self.current.number,
            "digest": self.current.digest,
            "reloads": self.attempts,
            "last_error": self.last_error,
        }
        if directory is not None:
            workers = read_all(directory)
            shown["workers"] = [_row(s) for s in sorted(workers.values(), key=lambda s: s.pid)]
        return shown

    async def _reload(self, request: web.Request) -> web.StreamResponse:
        """POST /reload: 200 with every worker's generation and digest once all run the
        new file; 422 (problem+json) with the reasons when it was refused, nothing
        changed; 504 if a worker did not answer in time."""
        directory = shared()
        try:
            if directory is None:
                await self.reload()
                return web.json_response({"pid": os.getpid(), "workers": [_row(self._status())]})
            self._checked()  # a bad file is answered here, without disturbing any worker
            workers = await reload_everywhere(directory, RELOAD_TIMEOUT)
        except ReloadFailed as exc:
            return _refused(request, str(exc))
        except TimeoutError:
            return problem_response(
                504,
                "Gateway Timeout",
                f"not every worker reloaded within {RELOAD_TIMEOUT:.0f} s: see GET /config",
                instance=request.path,
            )
        errors = sorted({s.error for s in workers.values() if s.error})
        if errors:
            return _refused(request, "\n".join(errors))
        rows = [_row(s) for s in sorted(workers.values(), key=lambda s: s.pid)]
        return web.json_response({"pid": os.getpid(), "workers": rows})


def _row(status: Status) -> dict[str, object]:
    return {"pid": status.pid, "generation": status.generation, "digest": status.digest}


def _refused(request: web.Request, reasons: str) -> web.Response:
    return problem_response(
        422,
        "Configuration Not Applied",
        f"{reasons}\nthe configuration serving is unchanged",
        instance=request.path,
    )
