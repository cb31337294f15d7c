"""A graphql-transport-ws client over a real socket (the `websockets` library), for the subscription tests."""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Self

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

PROTOCOL = "graphql-transport-ws"
PAYMENT_UPDATED = "subscription($id: ID!) { paymentUpdated(id: $id) { id status capturedAmount { amount } } }"
ENROLL_UPDATED = "subscription($id: ID!) { enrollUpdated(id: $id) { id status payment { id status } } }"
WAIT = 5.0  # seconds a test waits for a message it expects (the machine is shared; delivery is a push, not a poll)


class LiveClient:
    """One WebSocket connection to `/graphql`, speaking graphql-transport-ws."""

    def __init__(self, http_url: str, *, subprotocols: list[str] | None = None) -> None:
        self.url = http_url.replace("http://", "ws://", 1) + "/graphql"
        self._subprotocols = [PROTOCOL] if subprotocols is None else subprotocols
        self.ws: ClientConnection
        self._opened: Any

    def __enter__(self) -> Self:
        self._opened = connect(self.url, subprotocols=self._subprotocols, max_size=None, open_timeout=10)  # type: ignore[arg-type]
        self.ws = self._opened.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._opened.__exit__(kind, error, traceback)

    def send(self, message: dict[str, Any] | str) -> None:
        self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        return message

    def init(self, token: str | None) -> dict[str, Any]:
        self.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"} if token else {}})
        return self.recv()

    def subscribe(self, op_id: str, query: str, **variables: Any) -> None:
        self.send({"type": "subscribe", "id": op_id, "payload": {"query": query, "variables": variables}})

    def closed(self, timeout: float = WAIT) -> tuple[int, str]:
        """The close code and reason the server ended the connection with (messages before it are skipped)."""
        try:
            while True:
                self.ws.recv(timeout=timeout)
        except ConnectionClosed as closed:
            frame = closed.rcvd
        if frame is None:
            raise AssertionError("the connection ended without a close frame")
        return frame.code, frame.reason
