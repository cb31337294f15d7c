"""Prometheus metrics (`GET /metrics`): requests by route and status, and their latency.

Each app gets its own registry, so tests that build several apps do not share counters. A client that went away
before its request was read counts under status "499" (nginx's "client closed request"): no answer was sent, and it
is no server error. With `METRICS_TOKEN` set, `/metrics` answers only `Authorization: Bearer <that token>`.
"""

from __future__ import annotations

import hmac
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import SecretStr
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLIENT_CLOSED = 499


class Metrics:
    def __init__(self, token: SecretStr | None = None) -> None:
        self._token = token.get_secret_value().encode() if token is not None else None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "payql_http_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "payql_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )

    async def endpoint(self, request: Request) -> Response:
        if self._token is not None and not _bearer_matches(request.headers.get("authorization", ""), self._token):
            return JSONResponse(
                {"error": "/metrics needs Authorization: Bearer <METRICS_TOKEN>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _bearer_matches(authorization: str, token: bytes) -> bool:
    """Whether the header is `Bearer <token>`. In constant time: how much of a guess matched must not show in the
    answer's timing. An empty token (`METRICS_TOKEN` set to nothing) lets no one in."""
    scheme, _, presented = authorization.strip().partition(" ")
    presented = presented.strip()
    return scheme.lower() == "bearer" and bool(presented) and hmac.compare_digest(presented.encode(), token)


class MetricsMiddleware:
    KNOWN = ("/graphql", "/webhooks/stripe", "/webhooks/yookassa", "/healthz", "/readyz", "/metrics")

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in self.KNOWN else "other"
        status = 500
        started = time.perf_counter()

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        except ClientDisconnect:
            status = CLIENT_CLOSED
            raise
        finally:
            self.metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
