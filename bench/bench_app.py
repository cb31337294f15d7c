"""The app the benchmark serves: payql as `create_app` builds it, and beside it (not inside it) the minimal app of
bench/minimal_app.py under `/raw/`, the stack's limit. A path dispatch in front of both is all they share, so that
one uvicorn worker serves both and the ratios compare like with like. payql's app also gets the webhook route cut
short at each stage (bench/webhook_stages.py), for `bench/webhooks_pg.py --stages`."""

from __future__ import annotations

import minimal_app
import webhook_stages
from starlette.types import ASGIApp, Receive, Scope, Send

from payql.app import create_app
from payql.settings import Settings


def create_with_webhooks() -> ASGIApp:
    settings = Settings()
    payql = create_app(settings)
    webhook_stages.add_stage_routes(payql)
    minimal = minimal_app.create(settings.database_url)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/raw/"):
            await minimal(scope, receive, send)
        else:
            await payql(scope, receive, send)  # and the lifespan: payql's start-up and shutdown

    return app
