"""What both provider fakes share: a threaded loopback server that hands every request to the fake's
`_serve(method, path, headers, body)` and writes back what it answers (or nothing, for a dropped request), and
`FakeProvider`, the fake's life (start, `close`, running as a process of its own), request recording and failure
injection (`fail_next`'s rules, `hang_next`, `clear_failures`) around the hooks where the providers differ: parsing,
authentication, running a request, the error body."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, NamedTuple, Protocol, Self, TypeVar
from urllib.parse import urlsplit


class Reply(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def body(self) -> bytes: ...


class ProviderError(Exception):
    """An answer in the provider's error format, raised while a request is served and written as the reply."""

    status: int

    def wire(self) -> bytes:
        """The body of the answer, as the provider writes it."""
        raise NotImplementedError


@dataclass
class _Rule:
    """An injected failure or hang for the next `count` requests whose path starts with `path_prefix`."""

    count: int
    path_prefix: str
    method: str | None
    after_processing: bool
    hang: float | None = None  # seconds to sleep at that point
    failure: Callable[[], ProviderError] | None = None  # the error to answer with, made afresh for each request


class Received(NamedTuple):
    """A request as it came in, before the fake reads its parameters."""

    method: str
    target: str  # path and query, as requested
    path: str
    query: str
    headers: dict[str, str]  # as sent
    lower: dict[str, str]  # the same by lower-case name
    key: str | None  # a POST's idempotency key (the header `FakeProvider._key_header`)
    body: bytes


RequestT = TypeVar("RequestT")  # a request as the fake reads it
RecordT = TypeVar("RecordT")  # a request as the tests see it in `requests`
EventT = TypeVar("EventT")  # what the provider would notify the merchant of, in `events`


class FakeProvider(ABC, Generic[RequestT, RecordT, EventT]):
    """A provider's API on 127.0.0.1 (port 0: any free one), served on a thread until `close()`. State sits behind
    `_lock`; `requests` records every request, `events` what the provider would notify, and `server_errors` every
    exception inside the fake (a test should see none). A subclass sets its own state first and calls
    `super().__init__(port)` last: that starts serving."""

    _key_header: str  # the idempotency key's header, lower-case

    def __init__(self, port: int = 0) -> None:
        self.requests: list[RecordT] = []
        self.events: list[EventT] = []
        self.server_errors: list[str] = []
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._rules: list[_Rule] = []
        self._server = FakeServer(self, port)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving: wake hung requests (they are dropped unanswered), close the socket, join every thread."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def forward_events(self, to: str | None, delivery: Callable[[EventT], tuple[str, bytes, dict[str, str]]]) -> int:
        """Serve until Ctrl-C, for a person driving the fake (its `main`); with `to`, POST every new event there as
        `delivery` says (a label to print, the body, the headers) and print the answer."""
        import httpx  # noqa: PLC0415 (only here: the fakes themselves need no HTTP client)

        sent = 0
        try:
            while True:
                time.sleep(0.2)
                if to is None:
                    continue
                with self._lock:
                    events = list(self.events[sent:])
                for event in events:
                    label, body, headers = delivery(event)
                    try:
                        answer = httpx.post(to, content=body, headers=headers, timeout=10)
                        print(f"{label} -> {answer.status_code}", flush=True)  # noqa: T201
                    except httpx.HTTPError as exc:
                        print(f"{label} -> {exc}", flush=True)  # noqa: T201
                sent += len(events)
        except KeyboardInterrupt:
            return 0

    # ------------------------------------------------------------------------------ failure injection

    def hang_next(
        self,
        count: int = 1,
        seconds: float = 10,
        path_prefix: str | None = None,
        *,
        method: str | None = None,
        after_processing: bool = False,
    ) -> None:
        """Sleep `seconds` before processing (or, with `after_processing`, before answering) the next `count` matching
        requests, so that the client's timeout fires first. When the sleep ends the request is still processed, as
        the provider would after the client gave up; `close()` cuts the sleep short and drops the request unanswered
        (and unprocessed, if it hung before processing)."""
        self._add_rule(count, path_prefix, method, after_processing, hang=seconds)

    def clear_failures(self) -> None:
        with self._lock:
            self._rules.clear()

    def _add_rule(
        self,
        count: int,
        path_prefix: str | None,
        method: str | None,
        after_processing: bool,
        *,
        hang: float | None = None,
        failure: Callable[[], ProviderError] | None = None,
    ) -> None:
        rule = _Rule(count, self._rule_prefix(path_prefix), method, after_processing, hang, failure)
        with self._lock:
            self._rules.append(rule)

    def _rule_prefix(self, path_prefix: str | None) -> str:
        """The path prefix a rule matches: every path when none is given."""
        return path_prefix or ""

    def _take_rule(self, method: str, path: str) -> _Rule | None:
        for rule in self._rules:
            if rule.method in {None, method} and path.startswith(rule.path_prefix):
                rule.count -= 1
                if rule.count <= 0:
                    self._rules.remove(rule)
                return rule
        return None

    def _survive(self, rule: _Rule | None, *, after_processing: bool) -> bool:
        """Apply an injected hang or failure at this point of the request; False when the fake is closing."""
        if rule is None or rule.after_processing != after_processing:
            return True
        if rule.hang is not None and self._closing.wait(rule.hang):
            return False
        if rule.failure is not None:
            raise rule.failure()
        return True

    # ------------------------------------------------------------------------------------------ serving

    def _serve(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply | None:
        """Record the request; answer the pages and test controls outside the API; else authenticate, apply an
        injected failure or hang, and run the request (under the lock). None: dropped, the fake is closing."""
        url = urlsplit(target)
        lower = {name.lower(): value for name, value in headers.items()}
        key = lower.get(self._key_header) if method == "POST" else None
        request, record = self._receive(Received(method, target, url.path, url.query, headers, lower, key, body))
        with self._lock:
            self.requests.append(record)
        outside = self._outside_api(method, url.path)
        if outside is not None:
            return outside
        try:
            self._authenticate(request)
            with self._lock:
                rule = self._take_rule(method, url.path)
            if not self._survive(rule, after_processing=False):
                return None
            with self._lock:
                reply = self._execute(request)
            if not self._survive(rule, after_processing=True):
                return None
        except ProviderError as error:
            return self._reply(request, error.status, error.wire())
        return reply

    @abstractmethod
    def _receive(self, received: Received) -> tuple[RequestT, RecordT]:
        """Read a request's parameters: what the fake works with, and what `requests` records."""

    @abstractmethod
    def _outside_api(self, method: str, path: str) -> Reply | None:
        """The answer for a page a customer visits or a test control (`/_fake/…`); None for an API request."""

    @abstractmethod
    def _authenticate(self, request: RequestT) -> None:
        """Raise the provider's error for a request without valid credentials."""

    @abstractmethod
    def _execute(self, request: RequestT) -> Reply:
        """Run an API request (called under the lock)."""

    @abstractmethod
    def _reply(self, request: RequestT, status: int, body: bytes) -> Reply:
        """An error answer to `request` with the provider's headers."""


class Sent(NamedTuple):
    """One answer the fake wrote on the wire, kept for tests/fakes/test_fake_shapes.py (the shape checks)."""

    method: str
    target: str  # path and query, as requested
    status: int
    content_type: str
    body: bytes


class FakeServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    request_queue_size = 128  # socketserver's 5 drops connections when many clients call at once (concurrent runs)
    live: weakref.WeakSet[FakeServer] = weakref.WeakSet()  # servers not yet collected, for the shape checks

    def __init__(self, fake: FakeProvider[Any, Any, Any], port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.fake = fake
        self.sent: list[Sent] = []  # every answer written, in order (list.append is atomic across handler threads)
        self._connections: set[socket.socket] = set()  # open client connections, each with its handler thread
        self._connections_lock = threading.Lock()
        FakeServer.live.add(self)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        # A handler waiting for the next request on an idle keep-alive connection would hold `server_close`'s join
        # for its whole timeout: shutting its socket down ends that wait at once (it reads end of stream).
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # the client closed it first
                connection.shutdown(socket.SHUT_RDWR)
        super().server_close()

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # a client that gave up (hang_next) is expected; anything else is a bug
            self.fake.server_errors.append(repr(error))


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer
    # Persistent connections, as the providers' APIs keep them (Stripe's SDK and httpx reuse one per host): a client
    # pays for a connection (and this server for a thread) once, not per request. `FakeServer.server_close` ends
    # the idle ones.
    protocol_version = "HTTP/1.1"
    timeout = 30
    # TCP_NODELAY on every connection, as the providers' front ends set it (nginx's `tcp_nodelay on`): an answer
    # goes out as two writes (headers, then body), and with Nagle's algorithm the body waited for the client's
    # delayed ACK of the headers, about 40 ms, on every call of a kept-alive connection.
    disable_nagle_algorithm = True

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
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        content_type = next((value for name, value in reply.headers.items() if name.lower() == "content-type"), "")
        self.server.sent.append(Sent(self.command, self.path, reply.status, content_type, reply.body))
