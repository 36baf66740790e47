"""A real browser for tests: Debian's Chromium, headless, driven over the DevTools protocol.

`make test` installs `chromium` where it is missing. The browser starts with no network beyond
loopback (the machine's network is closed, and the report needs none), in a fresh profile, and is
killed when the block ends.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import websocket

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError(
            "Debian's chromium is not installed: `make test` installs it (apt-get install chromium)"
        )
    return found


class Page:
    """One tab, attached over the browser's DevTools websocket."""

    def __init__(self, socket: websocket.WebSocket, session: str) -> None:
        self._socket, self._session = socket, session
        self._ids = itertools.count(100)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        return _call(self._socket, self._ids, method, params, session=self._session)

    def open(self, url: str, *, timeout: float = 20) -> None:
        self.send("Page.enable")
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate("document.readyState") == "complete":
                return
            time.sleep(0.05)
        raise TimeoutError(f"{url} did not finish loading in {timeout} s")

    def evaluate(self, expression: str) -> Any:
        answer = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"the page threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def screenshot(self, path: Path, *, width: int = 1500) -> Path:
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)") or 1000)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _call(
    socket: websocket.WebSocket, ids: Iterator[int], method: str, params: dict[str, Any], session: str = ""
) -> dict[str, Any]:
    call_id = next(ids)
    message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
    if session:
        message["sessionId"] = session
    socket.send(json.dumps(message))
    while True:
        answer = json.loads(socket.recv())
        if answer.get("id") == call_id:
            if "error" in answer:
                raise RuntimeError(f"{method}: {answer['error']}")
            return answer.get("result", {})  # type: ignore[no-any-return]


@contextmanager
def browser_page() -> Iterator[Page]:
    with tempfile.TemporaryDirectory(prefix="rebuilder-chromium-", ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its helpers are killed with it
        )
        try:
            endpoint = _devtools_endpoint(process)
            socket = websocket.create_connection(endpoint, timeout=30, suppress_origin=True)
            ids = itertools.count(1)
            target = _call(socket, ids, "Target.createTarget", {"url": "about:blank"})["targetId"]
            session = _call(socket, ids, "Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            yield Page(socket, session)
            socket.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _devtools_endpoint(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        found = re.search(r"DevTools listening on (ws://\S+)", line)
        if found:
            return found.group(1)
    raise RuntimeError("chromium did not start: " + "".join(seen[-20:]))
