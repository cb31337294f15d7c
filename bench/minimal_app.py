"""The stack's limit, for `make bench`'s ratios: a tiny Starlette app of its own (none of payql's middleware, no
GraphQL), SQLAlchemy Core statements built once at import, and on SQLite the handler runs inline on the event loop
(no thread hop; commits still run in a thread). `GET /raw/payments` answers the same JSON `data` as GraphQL's
`payments(first: 20)` of bench/run.py's LIST_QUERY (run.py checks they are equal before it measures);
`POST /raw/webhook` verifies Stripe's signature, inserts the delivery and updates the payment, no more, committing
deliveries that arrive together in one transaction as payql's webhooks do (`payql.services.grouping`): since
payql's route commits in groups, a baseline that committed each delivery alone would not be the stack's limit.

Only the engine is payql's (`make_engine`: the same pool and SQLite pragmas, `synchronous=FULL` included), so that
both routes pay the same price for a commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, Integer, bindparam, func, insert, or_, select, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payql.db import make_engine
from payql.models import Enroll, Payment, Refund, WebhookEvent, new_id, utcnow
from payql.models.enums import PaymentStatus, ProviderName, WebhookStatus
from payql.money import format_minor
from payql.services.grouping import Combiner, Job
from payql.services.queries import REFUNDS_CAP, encode_cursor
from payql.services.webhooks import GROUP_LIMIT
from payql.settings import Settings
from payql.workers import Threads

PAYMENTS, ENROLLS, REFUNDS = Payment.__table__, Enroll.__table__, Refund.__table__
MINE = or_(PAYMENTS.c.payer_id == bindparam("user"), PAYMENTS.c.payee_id == bindparam("user"))
PAGE = (
    select(PAYMENTS.c.id, PAYMENTS.c.status, PAYMENTS.c.amount_minor, PAYMENTS.c.currency, PAYMENTS.c.enroll_id)
    .where(MINE)
    .order_by(PAYMENTS.c.id.desc())
    .limit(bindparam("limit", type_=Integer))
)
COUNT = select(func.count()).select_from(PAYMENTS).where(MINE)
ENROLLS_OF = select(ENROLLS.c.id, ENROLLS.c.title, ENROLLS.c.status).where(
    ENROLLS.c.id.in_(bindparam("ids", expanding=True))
)
_RANKED = (
    select(
        REFUNDS.c.id,
        REFUNDS.c.payment_id,
        REFUNDS.c.amount_minor,
        REFUNDS.c.currency,
        REFUNDS.c.status,
        func.row_number().over(partition_by=REFUNDS.c.payment_id, order_by=REFUNDS.c.id).label("n"),
    )
    .where(REFUNDS.c.payment_id.in_(bindparam("ids", expanding=True)))
    .subquery()
)
REFUNDS_OF = (
    select(_RANKED.c.id, _RANKED.c.payment_id, _RANKED.c.amount_minor, _RANKED.c.currency, _RANKED.c.status)
    .where(_RANKED.c.n <= REFUNDS_CAP)
    .order_by(_RANKED.c.id)
)


def page_of(engine: Engine, user: str, first: int) -> dict[str, Any]:
    """`{"data": {"payments": …}}` exactly as payql's GraphQL answers LIST_QUERY."""
    with engine.connect() as connection:
        rows = connection.execute(PAGE, {"user": user, "limit": first + 1}).all()
        payments, has_next = rows[:first], len(rows) > first
        total = connection.execute(COUNT, {"user": user}).scalar_one()
        ids = [row.id for row in payments]
        enroll_ids = [row.enroll_id for row in payments if row.enroll_id]
        enrolls = {row.id: row for row in connection.execute(ENROLLS_OF, {"ids": enroll_ids})}
        refunds: dict[str, list[Any]] = defaultdict(list)
        for refund in connection.execute(REFUNDS_OF, {"ids": ids}):
            refunds[refund.payment_id].append(refund)
    edges = []
    for row in payments:
        enroll = enrolls.get(row.enroll_id) if row.enroll_id else None
        edges.append(
            {
                "node": {
                    "id": row.id,
                    "status": row.status.name,
                    "amount": {"amount": format_minor(row.amount_minor, row.currency), "currency": row.currency},
                    "enroll": (
                        {"id": enroll.id, "title": enroll.title, "status": enroll.status.name} if enroll else None
                    ),
                    "refunds": [
                        {
                            "id": refund.id,
                            "amount": {"amount": format_minor(refund.amount_minor, refund.currency)},
                            "status": refund.status.name,
                        }
                        for refund in refunds.get(row.id, [])
                    ],
                }
            }
        )
    page_info = {"hasNextPage": has_next, "endCursor": encode_cursor(payments[-1].id) if payments else None}
    return {"data": {"payments": {"totalCount": total, "pageInfo": page_info, "edges": edges}}}


class Delivery(Job):
    """A verified delivery waiting for its group's transaction."""

    __slots__ = ("body", "event")

    def __init__(self, event: dict[str, Any], body: bytes) -> None:
        super().__init__()
        self.event = event
        self.body = body


_SETTLE = update(Payment).where(Payment.provider_payment_id == bindparam("ref")).values(status=PaymentStatus.SUCCEEDED)


def record(engine: Engine, group: list[Delivery]) -> None:
    """Record deliveries and settle their payments: one transaction for the group, one insert and one update
    (executemany), as payql's webhooks commit deliveries that arrive together (`payql.services.grouping`); a group
    that fails goes again one delivery at a time."""
    try:
        _record(engine, group)
    except Exception:  # noqa: BLE001 - each alone, so that one delivery's failure is its own
        for delivery in group:
            try:
                _record(engine, [delivery])
            except Exception as exc:  # noqa: BLE001 - raised in the delivery's own thread
                delivery.error = exc


def _record(engine: Engine, group: list[Delivery]) -> None:
    now = utcnow()
    with engine.begin() as connection:
        connection.execute(
            insert(WebhookEvent).returning(WebhookEvent.id),  # one multi-row INSERT, as payql's (insertmanyvalues)
            [
                {
                    "id": new_id("whk"),
                    "provider": ProviderName.STRIPE,
                    "dedupe_key": delivery.event["id"],
                    "event_type": delivery.event["type"],
                    "payload": delivery.body.decode(),
                    "headers": "{}",
                    "status": WebhookStatus.PROCESSED,
                    "attempts": 1,
                    "received_at": now,
                }
                for delivery in group
            ],
        )
        connection.execute(_SETTLE, [{"ref": delivery.event["data"]["object"]["id"]} for delivery in group])


def delivered(groups: Combiner[Delivery], secret: bytes, signature: str, body: bytes) -> bool:
    """Verify the delivery, then record it and settle its payment, in a group with the deliveries arriving at the
    same moment."""
    parts = dict(item.split("=", 1) for item in signature.split(","))
    expected = hmac.new(secret, f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts["v1"]):
        return False
    groups.submit(Delivery(json.loads(body), body))
    return True


def create(database_url: str) -> Starlette:
    engine = make_engine(database_url)
    inline = engine.dialect.name == "sqlite"  # one writer, and reads cost less than a thread hop
    secret = os.environ.get("STRIPE_WEBHOOK_SECRET", "").encode()
    groups: Combiner[Delivery] = Combiner(lambda group: record(engine, group), limit=GROUP_LIMIT, key=id)
    # the cheapest hop to a thread this stack has, payql's own (`payql.workers.Threads`), with as many threads as
    # payql's pools: the query pool's default on PostgreSQL, and the webhook pool's (MUTATION_THREADS), for groups as
    # large as the real route's
    reads = Threads(4, "minimal-read")  # `Settings.query_thread_count` on PostgreSQL
    deliveries = Threads(Settings.model_fields["mutation_threads"].default, "minimal-webhook")

    async def run(work: Callable[[], Any]) -> Any:
        return work() if inline else await reads.run(work)

    async def raw_payments(request: Request) -> Response:
        user = request.query_params["user"]
        first = int(request.query_params.get("first", "20"))
        return JSONResponse(await run(lambda: page_of(engine, user, first)))

    async def raw_webhook(request: Request) -> Response:
        body = await request.body()
        signature = request.headers["stripe-signature"]
        # a commit waits on fsync: in a thread, so that the loop reads the next requests meanwhile (inline, this
        # route ran at a third of the rate on SQLite)
        if not await deliveries.run(delivered, groups, secret, signature, body):
            return JSONResponse({"error": "bad signature"}, status_code=400)
        return JSONResponse({"status": "processed"})

    return Starlette(
        routes=[Route("/raw/payments", raw_payments), Route("/raw/webhook", raw_webhook, methods=["POST"])]
    )
