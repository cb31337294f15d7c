"""The real webhook route cut short, for `bench/webhooks_pg.py --stages`: where a delivery's cost goes under load.

Each stage is `POST /bench/stages/<stage>/webhooks/stripe` inside payql's own app, so that it goes through the same
middleware, the same route (`payql.webhooks.routes.webhook_route`: the bounded body, the hop to a thread, the
signature check) and the same `WebhookService` code as `/webhooks/stripe`, and answers `processed` once its stage
is done:

- `verify`: the route up to the signature check and the event's parsing; the service does nothing.
- `look-up`: + the grouped look-up of the event's log row and payment (`WebhookService._look_up_group`).
- `re-fetch`: + the re-fetch from the provider (the SDK's request, the fake's answer) and the hand-off to the apply
  group, whose transaction writes nothing.
- `bare-apply`: + an apply cut down to the minimal route's own writes (`bench/minimal_app.py`): the group's log rows
  in one insert, one Core UPDATE of each payment's status, one commit. No ORM, no lifecycle, no ledger, no counters.

The real route beside them does all of the last and the real apply. The stages use private parts of
`payql.services.webhooks` on purpose: they are that service, stopped early, not a copy of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import bindparam, update
from starlette.applications import Starlette
from starlette.routing import Route

from payql.app import services_of
from payql.models import Payment
from payql.models.enums import ProviderName
from payql.providers.base import ProviderEvent
from payql.services import Services
from payql.services.webhooks import (
    _EVENT_ROWS,
    _INSERT_EVENTS,
    Delivery,
    Outcome,
    WebhookService,
    _Apply,
    _LookUp,
)
from payql.webhooks.routes import webhook_route
from payql.workers import Workers

STAGES = ("verify", "look-up", "re-fetch", "bare-apply")
_STATUS = update(Payment).where(Payment.id == bindparam("payment")).values(status=bindparam("status"))


def path(stage: str) -> str:
    return f"/bench/stages/{stage}/webhooks/stripe"


class StagedWebhooks(WebhookService):
    """payql's webhook service, stopped after `stage`."""

    def __init__(self, stage: str, services: Services) -> None:
        if stage not in STAGES:
            raise ValueError(f"no stage {stage!r}: one of {', '.join(STAGES)}")
        super().__init__(services.db, services.payments, services.payouts, services.enrolls, disputes=services.disputes)
        self.stage = stage

    def receive(
        self, provider: ProviderName, event: ProviderEvent, body: bytes, headers: dict[str, str], sender_ip: str | None
    ) -> Outcome:
        if self.stage == "verify":
            return Outcome.PROCESSED
        if self.stage == "look-up":
            self._look_ups.submit(_LookUp(Delivery(provider, event, body, headers, sender_ip)))
            return Outcome.PROCESSED
        return super().receive(provider, event, body, headers, sender_ip)

    def _apply_group(self, jobs: list[_Apply]) -> None:
        if self.stage == "re-fetch":
            return
        rows: list[dict[str, Any]] = []
        with self._db.uow() as uow:
            session = uow.session
            session.info[_EVENT_ROWS] = rows
            for job in jobs:
                job.store(session, job.status)  # the delivery's log row, as the real group builds it
            connection = session.connection()
            _INSERT_EVENTS.execute(connection, rows)
            connection.execute(_STATUS, [{"payment": job.payment_id, "status": job.answer.status} for job in jobs])
            uow.commit()


def add_stage_routes(app: Starlette) -> None:
    """Add a route per stage to payql's `app` (before its first request: its middleware wraps them too)."""
    services = services_of(app)
    workers = Workers(services.settings)  # the same pools as the real route's, of their own
    for stage in STAGES:
        staged = dataclasses.replace(services, webhooks=StagedWebhooks(stage, services), on_close=[])
        route = webhook_route(staged, ProviderName.STRIPE, workers)
        app.router.routes.append(Route(path(stage), route, methods=["POST"]))
