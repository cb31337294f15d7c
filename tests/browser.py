"""A headless Chromium for the tests that need a real browser (GraphiQL), driven over the Chrome DevTools Protocol.

`Chromium` starts Debian's `chromium` (`CHROMIUM` overrides the path) with no network beyond loopback: every host
name resolves to nothing and everything that is not 127.0.0.1 goes to a proxy on a port nobody listens on.
`Page` is one tab's CDP session over its websocket (the `websockets` library uvicorn[standard] brings): `call`
sends a command and returns its result, and keeps every event that arrives meanwhile in `events`, so a test can
see each request the page made and each error it logged.

No driver library: the few commands used here (Page.navigate, Runtime.evaluate, the Network and Log events) are a
small stable part of the protocol, and Playwright or Selenium would add a dependency and their own browser
management for them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
from servers import free_port
from websockets.sync.client import ClientConnection, connect

START_TIMEOUT = 20.0


def chromium_path() -> str:
    """The browser, or a failure that says how to get it (`make test` installs it when missing)."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "chromium is not installed: the GraphiQL browser test needs it. `make test` installs it "
            "(apt-get install -y chromium), or set CHROMIUM to a Chromium or Chrome binary",
            pytrace=False,
        )
    return found


class CdpError(AssertionError):
    pass


class Page:
    """One tab over CDP."""

    def __init__(self, websocket_url: str) -> None:
        self._stack = contextlib.ExitStack()
        self._socket: ClientConnection = self._stack.enter_context(
            connect(websocket_url, max_size=None, open_timeout=10)
        )
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        self._stack.close()

    def call(self, method: str, timeout: float = 10, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._socket.recv(timeout=max(0.0, deadline - time.monotonic())))
            if message.get("id") == message_id:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        """The expression's value in the page (awaited when it is a promise); a thrown exception fails the test."""
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise CdpError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 10) -> Any:
        """Poll until the expression is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.evaluate(expression):
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; page errors: {self.errors()}")

    def requests(self) -> list[dict[str, Any]]:
        return [event["params"]["request"] for event in self.events if event["method"] == "Network.requestWillBeSent"]

    def errors(self) -> list[str]:
        """Uncaught exceptions, console errors, browser log errors and failed loads, as text."""
        found = []
        for event in self.events:
            params = event["params"]
            if event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(f"exception: {details.get('exception', {}).get('description') or details['text']}")
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] in {"error", "assert"}:
                found.append(f"console.{params['type']}: {[arg.get('value') for arg in params['args']]}")
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry']['text']} ({params['entry'].get('url', '')})")
            elif event["method"] == "Network.loadingFailed":
                found.append(f"failed load: {params.get('errorText')} (request {params['requestId']})")
        return found


class Chromium:
    """`with Chromium() as browser: page = browser.page()`; headless, its own profile, loopback only."""

    def __init__(self) -> None:
        self._binary = chromium_path()
        self._profile = Path(tempfile.mkdtemp(prefix="payql-chromium-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._pages: list[Page] = []
        self._port = 0

    def __enter__(self) -> Self:
        dead_port = free_port()  # bound and released: nothing listens there
        self._process = subprocess.Popen(  # noqa: S603 - the browser, with arguments from this module
            [
                self._binary,
                "--headless",
                "--no-sandbox",  # the tests may run as root, where Chromium's sandbox refuses to start
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--proxy-server=http://127.0.0.1:{dead_port}",
                "--proxy-bypass-list=127.0.0.1",
                f"--user-data-dir={self._profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        active = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while not (active.exists() and active.read_text().strip()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"{self._binary} did not start its DevTools endpoint in {START_TIMEOUT} s")
            time.sleep(0.05)
        self._port = int(active.read_text().split()[0])
        return self

    def page(self) -> Page:
        """The first tab, with the Page, Runtime, Log and Network events on."""
        targets = httpx.get(f"http://127.0.0.1:{self._port}/json/list", timeout=5).json()
        tab = next(target for target in targets if target["type"] == "page")
        page = Page(tab["webSocketDebuggerUrl"])
        self._pages.append(page)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        return page

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for page in self._pages:
            page.close()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)
