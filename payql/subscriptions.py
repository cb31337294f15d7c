"""GraphQL subscriptions over WebSocket on `/graphql`, with the graphql-transport-ws protocol.

The protocol (github.com/enisdenjo/graphql-ws, PROTOCOL.md): the client offers the `graphql-transport-ws`
subprotocol (4406 otherwise) and sends `connection_init` within SUBSCRIPTION_INIT_TIMEOUT_MS (4408), once (4429);
its payload carries the token, `{"Authorization": "Bearer …"}`, verified like HTTP's header: a missing or bad one
closes 4403, a user with SUBSCRIPTION_MAX_CONNECTIONS connections open in this process already 4429. The server
answers `connection_ack`; then `subscribe` (before the ack: 4401; an id in use: 4409) starts an operation, which
sends `next` messages until the client's `complete`, or one `error` message that ends it. `ping` gets `pong`.
A message that is not one of these is 4400; one over SUBSCRIPTION_MAX_MESSAGE_BYTES is 1009.

An operation reads its object now and sends it, then reads it again after every committed change of what it read
(`payql.live`) and sends the answer when it differs from the last one sent. Each read is the operation executed
like a query, on the queries' worker threads, under the caller's visibility rules: another user's id, or an
unknown one, is an `error` with `NOT_FOUND`, as is any error at its root field. At most
SUBSCRIPTION_MAX_OPERATIONS run on one connection (more: `error` with `RATE_LIMITED`). When the token expires,
every operation gets an `error` with `UNAUTHENTICATED` and the connection closes 4403.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

import anyio
from graphql import GraphQLError
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry import Schema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from payql.auth import AuthError, Principal, bearer_token
from payql.graphql_view import _storable
from payql.live import Key, Live, Watch
from payql.schema.context import Context
from payql.schema.errors import INTERNAL
from payql.services import Services
from payql.workers import Pool, Workers

logger = logging.getLogger("payql.subscriptions")

PROTOCOL = "graphql-transport-ws"
BAD_MESSAGE = 4400
UNAUTHORIZED = 4401
FORBIDDEN = 4403
SUBPROTOCOL_NOT_ACCEPTABLE = 4406
INIT_TIMEOUT = 4408
SUBSCRIBER_EXISTS = 4409
TOO_MANY = 4429
MESSAGE_TOO_BIG = 1009
MAX_REASON = 120  # a close reason is at most 123 bytes


class Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason.encode()[:MAX_REASON].decode(errors="ignore")


def _error(message: str, code: str) -> list[dict[str, Any]]:
    return [{"message": message, "extensions": {"code": code}}]


def _token(header: object) -> str:
    """The token of connection_init's `Authorization` entry, or why there is none."""
    if not isinstance(header, str):
        raise AuthError('authentication required: send {"Authorization": "Bearer …"} in connection_init')
    token = bearer_token(header)
    if token is None:
        raise AuthError("malformed Authorization header")
    return token


def _stored(principal: Principal) -> Principal:
    """The principal, when the users table can hold it (as over HTTP)."""
    stored, error = _storable(principal, None)
    if stored is None:
        raise error or AuthError("invalid token")
    return stored


class SubscriptionEndpoint:
    """The WebSocket side of `/graphql`: one `_Connection` per socket."""

    def __init__(self, schema: Schema, services: Services, workers: Workers, live: Live) -> None:
        self.schema = schema
        self.services = services
        self.settings = services.settings
        self.workers = workers
        self.live = live

    async def handle(self, websocket: WebSocket) -> None:
        offered = [part.strip() for part in websocket.headers.get("sec-websocket-protocol", "").split(",")]
        if PROTOCOL not in offered:
            await websocket.accept()
            await websocket.close(SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")
            return
        await websocket.accept(subprotocol=PROTOCOL)
        await _Connection(self, websocket).run()


class _Connection:
    def __init__(self, endpoint: SubscriptionEndpoint, websocket: WebSocket) -> None:
        self.endpoint = endpoint
        self.settings = endpoint.settings
        self.websocket = websocket
        self.principal: Principal | None = None
        self.expires_at = 0.0  # the event loop's time when the token expires
        self.operations: dict[str, _Operation] = {}
        self._send_lock = asyncio.Lock()
        self._counted = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        init_deadline = loop.time() + self.settings.subscription_init_timeout_ms / 1000
        try:
            while True:
                deadline = self.expires_at if self.principal is not None else init_deadline
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await self._receive()
                except TimeoutError:
                    if self.principal is None:
                        raise Close(INIT_TIMEOUT, "Connection initialisation timeout") from None
                    await self._expire()
                    raise Close(FORBIDDEN, "token expired") from None
                await self._handle(message)
        except Close as close:
            await self._stop_operations()
            with contextlib.suppress(Exception):  # the client may be gone already
                await self.websocket.close(close.code, close.reason)
        except WebSocketDisconnect:
            pass
        finally:
            await self._stop_operations()
            if self._counted and self.principal is not None:
                connections = self.endpoint.live.connections
                connections[self.principal.user_id] -= 1
                if connections[self.principal.user_id] <= 0:
                    del connections[self.principal.user_id]

    async def _receive(self) -> dict[str, Any]:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data: str | bytes | None = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        if len(data.encode() if isinstance(data, str) else data) > self.settings.subscription_max_message_bytes:
            raise Close(MESSAGE_TOO_BIG, f"message larger than {self.settings.subscription_max_message_bytes} bytes")
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError):
            raise Close(BAD_MESSAGE, "Invalid message received: not JSON") from None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
            raise Close(BAD_MESSAGE, "Invalid message received: no type")
        return parsed

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.websocket.send_text(json.dumps(message))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "connection_init":
            await self._init(message.get("payload"))
        elif kind == "ping":
            await self._send({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self._subscribe(message)
        elif kind == "complete":
            op_id = message.get("id")
            operation = self.operations.pop(op_id, None) if isinstance(op_id, str) else None
            if operation is not None:
                operation.stop()
        else:
            raise Close(BAD_MESSAGE, f"Invalid message received: unknown type {kind[:40]!r}")

    async def _init(self, payload: object) -> None:
        if self.principal is not None:
            raise Close(TOO_MANY, "Too many initialisation requests")
        if payload is not None and not isinstance(payload, dict):
            raise Close(BAD_MESSAGE, "Invalid message received: the payload must be an object")
        header = (payload or {}).get("Authorization", (payload or {}).get("authorization"))
        verifier = self.endpoint.services.verifier
        try:
            token = _token(header)
            if verifier.uses_jwks:
                principal, expires = await asyncio.to_thread(verifier.verify_until, token)
            else:
                principal, expires = verifier.verify_until(token)
            stored = _stored(principal)
        except AuthError as exc:
            raise Close(FORBIDDEN, f"Forbidden: {exc.message}") from None
        connections = self.endpoint.live.connections
        if connections[stored.user_id] >= self.settings.subscription_max_connections:
            limit = self.settings.subscription_max_connections
            raise Close(TOO_MANY, f"too many connections: at most {limit} per user")
        connections[stored.user_id] += 1
        self._counted = True
        self.principal = stored
        self.expires_at = asyncio.get_running_loop().time() + max(0.0, expires - verifier.now())
        await self._send({"type": "connection_ack"})

    async def _subscribe(self, message: dict[str, Any]) -> None:
        if self.principal is None:
            raise Close(UNAUTHORIZED, "Unauthorized")
        op_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(op_id, str) or not op_id or not isinstance(payload, dict):
            raise Close(BAD_MESSAGE, "Invalid message received: subscribe needs an id and a payload")
        query = payload.get("query")
        variables = payload.get("variables")
        operation_name = payload.get("operationName")
        if (
            not isinstance(query, str)
            or not (variables is None or isinstance(variables, dict))
            or not (operation_name is None or isinstance(operation_name, str))
        ):
            raise Close(BAD_MESSAGE, "Invalid message received: query, variables or operationName")
        if op_id in self.operations:
            raise Close(SUBSCRIBER_EXISTS, f"Subscriber for {op_id[:60]} already exists")
        if len(self.operations) >= self.settings.subscription_max_operations:
            limit = self.settings.subscription_max_operations
            errors = _error(f"at most {limit} subscriptions per connection", "RATE_LIMITED")
            await self._send({"id": op_id, "type": "error", "payload": errors})
            return
        operation = _Operation(self, op_id, query, variables, operation_name)
        self.operations[op_id] = operation
        operation.task.add_done_callback(lambda done: self._forget(operation, done))

    def _forget(self, operation: _Operation, task: asyncio.Task[None]) -> None:
        op_id = operation.op_id
        if self.operations.get(op_id) is operation:
            del self.operations[op_id]
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if isinstance(exc, WebSocketDisconnect | OSError | RuntimeError):  # the client went away mid-send
            logger.info("subscription %s ended: the connection closed", op_id[:40])
        else:
            logger.error("subscription %s failed", op_id[:40], exc_info=exc)

    async def _expire(self) -> None:
        """The token expired: every operation ends with UNAUTHENTICATED."""
        ids = list(self.operations)
        await self._stop_operations()
        for op_id in ids:
            with contextlib.suppress(Exception):
                await self._send({"id": op_id, "type": "error", "payload": _error("token expired", "UNAUTHENTICATED")})

    async def _stop_operations(self) -> None:
        operations = list(self.operations.values())
        self.operations.clear()
        for operation in operations:
            operation.stop()
        # Shielded: even when this handler is being cancelled, a read under way in a worker thread is waited for,
        # so that its session is closed before the server (and its engine) may be shut down.
        with anyio.CancelScope(shield=True):
            for operation in operations:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await operation.task


class _Operation:
    """One subscription: read, send if changed, wait for a change of what it read, again."""

    def __init__(
        self, connection: _Connection, op_id: str, query: str, variables: dict[str, Any] | None, name: str | None
    ) -> None:
        self.connection = connection
        self.endpoint = connection.endpoint
        self.op_id = op_id
        self.query = query
        self.variables = variables
        self.operation_name = name
        self.reading = False
        self.stopped = False
        self.task = asyncio.create_task(self.run(), name=f"payql-subscription-{op_id[:40]}")

    def stop(self) -> None:
        """End it: at once while it waits for a change; after the read under way otherwise (a read is never
        abandoned mid-way in its worker thread, whose session must be closed before the engine may be)."""
        self.stopped = True
        if not self.reading:
            self.task.cancel()

    async def run(self) -> None:
        live = self.endpoint.live
        watch: Watch | None = None
        last: str | None = None
        try:
            while True:
                if watch is not None:
                    await watch.changed.wait()
                    watch.changed.clear()
                self.reading = True
                try:
                    answer, keys = await self._read()
                finally:
                    self.reading = False
                if answer is None or self.stopped:
                    return  # an error message ended it
                if answer != last:
                    last = answer
                    await self.connection._send({"id": self.op_id, "type": "next", "payload": json.loads(answer)})  # noqa: SLF001
                if watch is None or keys != watch.keys:
                    if watch is not None:
                        live.unwatch(watch)
                    watch = live.watch(keys)
                    watch.changed.set()  # read once more: a change committed before the watch began is not missed
        finally:
            if watch is not None:
                live.unwatch(watch)

    async def _read(self) -> tuple[str | None, frozenset[Key]]:
        """The operation's answer now as canonical JSON (None after sending the error that ends it), and what it
        read."""
        endpoint = self.endpoint
        principal = self.connection.principal
        request_id = f"ws-{uuid.uuid4().hex[:16]}"

        def execute() -> tuple[ExecutionResult, frozenset[Key]]:
            context = Context(services=endpoint.services, principal=principal, auth_error=None, request_id=request_id)
            try:
                result = endpoint.schema.execute_sync(
                    self.query,
                    variable_values=self.variables,
                    context_value=context,
                    operation_name=self.operation_name,
                    allowed_operation_types={OperationType.SUBSCRIPTION},
                )
                return result, frozenset(context.watched)
            finally:
                context.close()

        try:
            result, keys = await endpoint.workers.run(Pool.QUERIES, execute)
        except InvalidOperationTypeError:
            message = "only subscriptions are served over WebSocket: send queries and mutations over HTTP"
            await self._fail(_error(message, "BAD_REQUEST"))
            return None, frozenset()
        except CannotGetOperationTypeError as exc:
            await self._fail(_error(exc.as_http_error_reason(), "BAD_REQUEST"))
            return None, frozenset()
        except Exception:  # the database went away, say: the client is told, the details are logged
            logger.exception("subscription %s could not be read (request %s)", self.op_id[:40], request_id)
            await self._fail(
                [{"message": "Internal server error", "extensions": {"code": INTERNAL, "requestId": request_id}}]
            )
            return None, frozenset()
        errors: list[GraphQLError] = list(result.errors or [])
        if result.data is None or any(error.path is not None and len(error.path) == 1 for error in errors):
            # nothing to show (not valid, or the root field failed: NOT_FOUND, UNAUTHENTICATED)
            await self._fail([error.formatted for error in errors] or _error("no result", "BAD_REQUEST"))
            return None, frozenset()
        body: dict[str, Any] = {"data": result.data}
        if errors:
            body["errors"] = [error.formatted for error in errors]
        return json.dumps(body, sort_keys=True, default=str), keys

    async def _fail(self, errors: list[Any]) -> None:
        await self.connection._send({"id": self.op_id, "type": "error", "payload": errors})  # noqa: SLF001
