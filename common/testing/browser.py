"""A real browser for a test: headless Chromium, driven over the DevTools protocol.

The protocol is JSON over one WebSocket (the `websockets` package is already here for
the backends), so no WebDriver layer is needed: open a page, evaluate JavaScript in it,
collect what its console and its uncaught exceptions said, take a screenshot. Debian's
`chromium` package is the browser (`.ci/run` installs it). Where there is none the test
is skipped with how to get it, except under CI (`CI` set), where that is a failure.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

INSTALL = "sudo apt-get install chromium (Debian, Ubuntu), or Chrome on PATH"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> str:
    """A Chromium on PATH; skips the test without one (fails it under CI)."""
    for name in NAMES:
        found = shutil.which(name)
        if found is not None:
            return found
    message = f"no Chromium on PATH: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Page:
    """One tab: commands in, events kept (console errors, uncaught exceptions)."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.errors: list[str] = []  # console.error, uncaught exceptions, failed loads

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        ask = next(self.ids)
        self.socket.send(json.dumps({"id": ask, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == ask:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
            self.errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values only)."""
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']['text']}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Evaluate until the expression is truthy (a page that polls draws when it can)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.1)  # the page is in another process: asking again is all there is

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(data["data"]))


@contextmanager
def browser_page(url: str, where: Path, width: int = 1280, height: int = 1400) -> Iterator[Page]:
    """Headless Chromium with `url` loaded; the browser stopped on exit."""
    binary = chromium_binary()
    profile = where / "chromium-profile"
    profile.mkdir()
    # With --disable-dev-shm-usage Chromium keeps its shared memory in TMPDIR, in folders
    # it does not always remove when it is stopped: give it a folder of its own, removed
    # below. A short path: its sockets live there too, and a socket's path is at most
    # 107 bytes (a folder under pytest's tmp_path made Chromium abort).
    scratch = Path(tempfile.mkdtemp(prefix="chromium-"))
    proc = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-dev-shm-usage", f"--window-size={width},{height}",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    try:
        port = _devtools_port(profile, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            targets = json.loads(reply.read())
        tab = next(t for t in targets if t["type"] == "page")
        with connect(tab["webSocketDebuggerUrl"], max_size=None) as socket:
            page = Page(socket)
            for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
                page.call(domain)
            page.call("Page.navigate", url=url)
            page.wait_for("document.readyState === 'complete'")
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """Chromium writes the port it chose into the profile once it listens."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode}")
        if marker.is_file() and (text := marker.read_text().split()):
            return int(text[0])
        time.sleep(0.05)  # a file the browser writes: nothing to wait on but the file
    raise RuntimeError("chromium did not open its DevTools port")
