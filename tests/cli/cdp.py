"""A small Chrome DevTools Protocol client for tests: headless Chromium driven over one
WebSocket (wsproto, already installed with FiftyOne's server), no Playwright and no
browser download."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import psutil
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

CHROMIUM = Path("/usr/bin/chromium")
#: Flags that work as root in a container, and keep the browser off the network.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-crash-reporter", "--disable-dev-shm-usage",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0")


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium with one page; ``close()`` ends it."""

    def __init__(self, profile: Path, *, width: int = 1400, height: int = 900,
                 executable: Path = CHROMIUM, timeout: float = 60.0) -> None:
        self.profile = Path(profile)
        self.profile.mkdir(parents=True, exist_ok=True)
        self.log = (self.profile / "chromium.log").open("w")
        self.process = subprocess.Popen(
            [str(executable), *FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self._id = 0
        try:
            port = self._devtools_port(timeout)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            page = next(t for t in targets if t.get("type") == "page")
            self._connect(page["webSocketDebuggerUrl"], timeout)
            self.call("Page.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode}: "
                                   f"{(self.profile / 'chromium.log').read_text()[-2000:]}")
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise BrowserError(f"chromium wrote no DevToolsActivePort within {timeout} s")

    def _connect(self, url: str, timeout: float) -> None:
        parts = urlparse(url)
        self.socket = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.socket.sendall(self.ws.send(Request(host=f"{parts.hostname}:{parts.port}",
                                                 target=parts.path)))
        self._text: list[str] = []
        self._messages: list[str] = []
        while True:
            for event in self._events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise BrowserError(f"DevTools refused the WebSocket ({event.status_code})")

    def _events(self):
        data = self.socket.recv(1 << 20)
        if not data:
            raise BrowserError("DevTools closed the connection")
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, Ping):
                self.socket.sendall(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                raise BrowserError("DevTools closed the WebSocket")
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self._messages.append("".join(self._text))
                    self._text = []
            else:
                yield event

    def call(self, method: str, **params) -> dict:
        """Send one command, return its result (events that arrive meanwhile are dropped)."""
        self._id += 1
        self.socket.sendall(self.ws.send(TextMessage(
            data=json.dumps({"id": self._id, "method": method, "params": params}))))
        while True:
            while self._messages:
                reply = json.loads(self._messages.pop(0))
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise BrowserError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            for _ in self._events():
                pass

    def before_each_page(self, script: str) -> None:
        self.call("Page.addScriptToEvaluateOnNewDocument", source=script)

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:60]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real (trusted) left click in the middle of the first element ``selector``
        matches (the App's menus ignore synthetic DOM events)."""
        middle = self.evaluate(
            f"(() => {{const e = document.querySelector({json.dumps(selector)}); if (!e) "
            f"return null; const r = e.getBoundingClientRect(); "
            f"return [r.x + r.width / 2, r.y + r.height / 2]}})()")
        if middle is None:
            raise BrowserError(f"nothing on the page matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=middle[0], y=middle[1],
                      button="left", clickCount=1)

    def text(self) -> str:
        """What the page shows: its visible text and the values of its inputs."""
        return self.evaluate(
            "document.body ? [document.body.innerText, ...Array.from("
            "document.querySelectorAll('input'), i => i.value)].join('\\n') : ''") or ""

    def wait_for(self, check, timeout: float = 60.0, what: str = "the page"):
        """Poll ``check(browser)`` until it returns something truthy; fail with the page text."""
        deadline = time.monotonic() + timeout
        while True:
            found = check(self)
            if found:
                return found
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout} s waiting for {what}; the page "
                                   f"shows: {' '.join(self.text().split())[:1500]!r}")
            time.sleep(0.25)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        Path(path).write_bytes(data)
        return data

    def close(self) -> None:
        sock = getattr(self, "socket", None)
        if sock is not None:
            sock.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(20)
        # Helpers that outlived the browser (none, normally): only ours, by their profile.
        for leftover in psutil.process_iter(["cmdline"]):
            if f"--user-data-dir={self.profile}" in (leftover.info["cmdline"] or []):
                leftover.kill()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
