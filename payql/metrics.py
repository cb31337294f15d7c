"""Prometheus metrics (`GET /metrics`): requests by route and status, and their latency; payments by outcome;
webhook lag and processing time.

| metric | labels | what |
|---|---|---|
| `payql_http_requests_total` | route, method, status | HTTP requests |
| `payql_http_request_seconds` | route | their latency (histogram) |
| `payql_payments_total` | provider, outcome | payment status changes, counted once each when its transaction commits |
| `payql_webhook_lag_seconds` | provider | from the event's creation at the provider to its processing (histogram) |
| `payql_webhook_processing_seconds` | provider, outcome | verifying and applying one delivery (histogram) |
| `payql_webhook_group_size` | | deliveries applied in one transaction (histogram; `services/webhooks.py`) |

`payql_payments_total` is fed by the database, not by the code that moves a payment: `Metrics.watch(db)` listens to
the sessions of the app's database (SQLAlchemy `after_flush`, `after_commit`, `after_transaction_end`), so whatever path
changed a payment's status (`services/lifecycle.py` is the only writer) is counted, and a transaction that rolls
back (a dry run, a lost race) counts nothing. `outcome` is the new status in lower case: `authorized`,
`succeeded`, `failed`, `canceled`, `partially_refunded`, `refunded`; the states before money is held (pending,
requires_action, processing) are not outcomes and are not counted. Only changes made in this process count: a
payment that `payql reconcile` (another process) settles is not in the server's counter.

The lag needs the event's creation time: Stripe sends it (`created`); a YooKassa notification carries none, so
YooKassa deliveries have a processing time but no lag.

Each app gets its own registry, so tests that build several apps do not share counters. A client that went away
before its request was read counts under status "499" (nginx's "client closed request"): no answer was sent, and it
is no server error. With `METRICS_TOKEN` set, `/metrics` answers only `Authorization: Bearer <that token>`.

Several workers (`payql serve --workers N`): each process counts its own requests, and a scrape reaches one of them.
With `PROMETHEUS_MULTIPROC_DIR` set to an empty directory (wiped at each start) before the server starts,
prometheus-client keeps every process's values in files there and `/metrics` adds them up across the workers
(its multiprocess mode). Without it, scrape each worker apart, or run one worker per container.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import SecretStr
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.attributes import get_history
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payql.db import Database
from payql.models import Payment
from payql.models.enums import PaymentStatus

CLIENT_CLOSED = 499
# The statuses that are an outcome of a payment (money held, taken, refused or given back).
OUTCOMES = frozenset(
    {
        PaymentStatus.AUTHORIZED,
        PaymentStatus.SUCCEEDED,
        PaymentStatus.FAILED,
        PaymentStatus.CANCELED,
        PaymentStatus.PARTIALLY_REFUNDED,
        PaymentStatus.REFUNDED,
    }
)
# Webhook lag: from a second (a delivery on time) to a day (Stripe retries for three days).
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32)
LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 21600, 86400)
_PENDING = "payql_payment_outcomes"


class Metrics:
    def __init__(self, token: SecretStr | None = None, *, multiprocess: bool = False) -> None:
        self._multiprocess = multiprocess
        self._token = token.get_secret_value().encode() if token is not None else None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "payql_http_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "payql_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.payments = Counter(
            "payql_payments",
            "Payment status changes, by the new status, counted when they commit",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.webhook_lag = Histogram(
            "payql_webhook_lag_seconds",
            "Seconds from an event's creation at the provider to its processing here",
            ["provider"],
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.webhook_seconds = Histogram(
            "payql_webhook_processing_seconds",
            "Seconds to verify and apply one webhook delivery",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.webhook_groups = Histogram(
            "payql_webhook_group_size",
            "Webhook deliveries whose payments were applied in one transaction (one commit)",
            buckets=GROUP_BUCKETS,
            registry=self.registry,
        )

    def webhook_group(self, size: int) -> None:
        """A group of deliveries committed together (services/webhooks.py, `_apply_group`)."""
        self.webhook_groups.observe(size)

    def webhook_done(self, provider: str, outcome: str, seconds: float, created_at: int | None) -> None:
        """One delivery verified and handled: its processing time, and its lag when the provider dated the event."""
        self.webhook_seconds.labels(provider.lower(), outcome).observe(seconds)
        if created_at is not None:
            self.webhook_lag.labels(provider.lower()).observe(max(0.0, time.time() - created_at))

    def watch(self, db: Database) -> Callable[[], None]:
        """Count the payment status changes that commit on `db`'s sessions; returns what stops it."""

        def flushed(session: Session, _context: object) -> None:
            for obj in (*session.new, *session.dirty):
                if not isinstance(obj, Payment):
                    continue
                # the attribute's own history: `inspect(obj).attrs` would build a view of every attribute first
                added = get_history(obj, "status").added
                if added and added[0] in OUTCOMES:
                    session.info.setdefault(_PENDING, []).append((obj.provider.value.lower(), added[0].value.lower()))

        def committed(session: Session) -> None:
            for provider, outcome in session.info.pop(_PENDING, ()):
                self.payments.labels(provider, outcome).inc()

        def ended(session: Session, transaction: SessionTransaction) -> None:
            if transaction.parent is None:  # rolled back or closed without a commit (a commit counted them)
                session.info.pop(_PENDING, None)

        hooks: list[tuple[str, Callable[..., Any]]] = [
            ("after_flush", flushed),
            ("after_commit", committed),
            ("after_transaction_end", ended),
        ]
        return db.listen(hooks)

    async def endpoint(self, request: Request) -> Response:
        if self._token is not None and not _bearer_matches(request.headers.get("authorization", ""), self._token):
            return JSONResponse(
                {"error": "/metrics needs Authorization: Bearer <METRICS_TOKEN>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(self._scraped()), media_type=CONTENT_TYPE_LATEST)

    def _scraped(self) -> CollectorRegistry:
        """This app's registry; in prometheus-client's multiprocess mode, every worker's values added up."""
        if not self._multiprocess:
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged


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
