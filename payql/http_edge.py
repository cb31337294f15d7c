"""The HTTP edge: one pure ASGI middleware, outermost, around every route.

- Every answer gets `X-Content-Type-Options: nosniff` and an `X-Request-ID`: the client's, when it is at most 64
  safe characters (it reaches logs and answers, so nothing that could forge a log line or carry markup), else a
  fresh one. The id is put in the scope (`request_id_of`), so that the GraphQL view logs and answers the same id,
  and opens the request's log record (`payql.logs`): every line logged while the request runs carries it. An answer
  sent without an outcome noted (by GraphQL or a webhook) gets `ok`, or `HTTP_<status>` from 400 up.
- API answers (`/graphql`, the webhooks, `/metrics`, `/readyz`, `/healthz`) get `Cache-Control: no-store`: they are
  per caller, or live state.
- A client that goes away before its body is read (Starlette's `ClientDisconnect`) is the client's doing: one INFO
  line, not an ERROR traceback from the server. `MetricsMiddleware` counts it as status 499.
- An unexpected exception still answers a JSON 500 with these headers before it goes on to be logged as an error.

Pure ASGI rather than `BaseHTTPMiddleware`: nothing is buffered, and no extra task per request.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payql import logs
from payql.auth import principal_from_scope

logger = logging.getLogger("payql.http")

API_PATHS = frozenset({"/graphql", "/webhooks/stripe", "/webhooks/yookassa", "/metrics", "/readyz", "/healthz"})
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_STATE_KEY = "request_id"


def _chosen_id(given: str | None) -> str:
    if given is not None and _SAFE_ID.fullmatch(given):
        return given
    return secrets.token_hex(8)


def request_id_of(scope: Scope) -> str:
    """The id `EdgeMiddleware` chose for this request (a fresh one when the app runs without it)."""
    state: dict[str, Any] = scope.setdefault("state", {})
    chosen = state.get(_STATE_KEY)
    if not isinstance(chosen, str):
        chosen = state[_STATE_KEY] = _chosen_id(None)
    return chosen


class EdgeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _chosen_id(Headers(scope=scope).get("x-request-id"))
        scope.setdefault("state", {})[_STATE_KEY] = request_id
        log = logs.begin_request(request_id)
        path = scope.get("path", "")
        api = path in API_PATHS
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if log.outcome is None:
                    status = message["status"]
                    log.outcome = "ok" if status < 400 else f"HTTP_{status}"  # noqa: PLR2004
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                headers["X-Content-Type-Options"] = "nosniff"
                if api and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            logger.info(
                "%s %s: the client went away before its request was read (request %s)",
                scope.get("method"),
                path,
                request_id,
            )
        except Exception:
            if not started:
                await _answer_500(send_with_headers, path, request_id)
            raise


class CallerLogMiddleware:
    """Inside authentication: notes the caller's user id on the request's log record."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            principal, _ = principal_from_scope(scope)
            if principal is not None:
                logs.note(user=logs.printable(principal.user_id))
        await self.app(scope, receive, send)


async def _answer_500(send: Send, path: str, request_id: str) -> None:
    """What Starlette would answer (a plain-text 500), as JSON with the request id, in the shape of the route."""
    if path == "/graphql":
        extensions = {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
        body: dict[str, Any] = {"errors": [{"message": "Internal server error", "extensions": extensions}]}
    else:
        body = {"error": "internal server error", "requestId": request_id}
    content = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": content})
