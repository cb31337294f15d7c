"""The composition root: `create_app(settings)` builds everything; nothing is built at import time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from payql import graphiql, mockpages, ratelimit
from payql.auth import JWTAuthBackend
from payql.bootstrap import bootstrap
from payql.db import Database
from payql.graphql_view import GraphQLView
from payql.http_edge import CallerLogMiddleware, EdgeMiddleware
from payql.live import Live
from payql.metrics import Metrics, MetricsMiddleware
from payql.models.enums import ProviderName
from payql.providers.base import PaymentProvider
from payql.schema import build_schema
from payql.services import Services
from payql.settings import Settings, load_settings
from payql.subscriptions import SubscriptionEndpoint
from payql.webhooks.routes import webhook_route
from payql.workers import Workers

logger = logging.getLogger("payql.app")


def create_app(
    settings: Settings | None = None,
    *,
    providers: dict[ProviderName, PaymentProvider] | None = None,
    db: Database | None = None,
) -> Starlette:
    """Build the ASGI app. Tests pass their own settings, database and providers."""
    settings = settings or load_settings()
    services = bootstrap(settings, db=db, providers=providers)
    db = services.db
    schema = build_schema(settings)
    workers = Workers(settings)
    view = GraphQLView(schema, services, workers)
    metrics = Metrics(settings.metrics_token, multiprocess=settings.prometheus_multiproc_dir is not None)
    services.on_close.append(metrics.watch(db))
    services.webhooks.on_group = metrics.webhook_group
    live = Live(settings)  # subscriptions' hub: woken by every committed change, from any process (payql.live)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Few threads: each request's work is CPU-bound Python under the GIL, and many threads only convoy.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.query_thread_count
        await anyio.to_thread.run_sync(services.catalogue.sync, db)
        await live.start()
        try:
            yield
        finally:
            await live.stop()
            services.close()

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        if not await anyio.to_thread.run_sync(db.ping):
            return JSONResponse({"status": "unavailable", "reason": "database"}, status_code=503)
        if not await anyio.to_thread.run_sync(ratelimit.redis_answers, settings.redis_url):
            # Still ready: every request is served, only rate limits are counted per process meanwhile.
            return JSONResponse({"status": "degraded", "reason": "redis", "rateLimits": "in-process"})
        return JSONResponse({"status": "ready"})

    routes = [
        Route("/graphql", view.handle, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", SubscriptionEndpoint(schema, services, workers, live).handle),
        Route("/webhooks/stripe", webhook_route(services, ProviderName.STRIPE, workers, metrics), methods=["POST"]),
        Route("/webhooks/yookassa", webhook_route(services, ProviderName.YOOKASSA, workers, metrics), methods=["POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics.endpoint),
        *graphiql.routes(settings),  # GraphiQL's own files, outside production
        *mockpages.routes(services),  # the mock hosted checkout: mock mode outside production only
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(EdgeMiddleware),  # outermost: its headers go on every answer, and it sees client disconnects
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(AuthenticationMiddleware, backend=JWTAuthBackend(services.verifier)),
            Middleware(CallerLogMiddleware),  # after authentication: the log lines name the caller
        ],
    )
    app.state.services = services
    app.state.live = live
    return app


def services_of(app: Starlette) -> Services:
    services: Services = app.state.services
    return services
