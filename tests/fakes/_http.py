"""The HTTP plumbing both provider fakes share: a threaded loopback server that hands every request to the fake's
`_serve(method, path, headers, body)` and writes back what it answers (or nothing, for a dropped request)."""

from __future__ import annotations

import sys
import weakref
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple, Protocol


class Reply(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def body(self) -> bytes: ...


class Served(Protocol):
    server_errors: list[str]

    def _serve(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply | None: ...


class Sent(NamedTuple):
    """One answer the fake wrote on the wire, kept for tests/fakes/test_fake_shapes.py (the shape checks)."""

    method: str
    target: str  # path and query, as requested
    status: int
    content_type: str
    body: bytes


class FakeServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    live: weakref.WeakSet[FakeServer] = weakref.WeakSet()  # servers not yet collected, for the shape checks

    def __init__(self, fake: Served, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.fake = fake
        self.sent: list[Sent] = []  # every answer written, in order (list.append is atomic across handler threads)
        FakeServer.live.add(self)

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a client that gave up (hang_next) is expected; anything else is a bug
            self.fake.server_errors.append(repr(error))


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.0"  # one request per connection: close() never waits on an idle keep-alive socket
    timeout = 30

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = self.server.fake._serve(self.command, self.path, dict(self.headers.items()), body)
        if reply is None:  # dropped: the fake is closing while this request hung
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        content_type = next((value for name, value in reply.headers.items() if name.lower() == "content-type"), "")
        self.server.sent.append(Sent(self.command, self.path, reply.status, content_type, reply.body))
