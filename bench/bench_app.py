"""The app the benchmark serves: payql as `create_app` builds it, plus `GET /raw/payments`, the same page as a
minimal Starlette + SQLAlchemy Core JSON route (the stack's limit), mounted only here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from payql.app import create_app, services_of
from payql.models import Enroll, Payment, Refund
from payql.money import format_minor
from payql.settings import Settings


def create() -> Starlette:
    app = create_app(Settings())
    db = services_of(app).db

    def raw_payments(request: Request) -> Response:
        user = request.query_params["user"]
        first = int(request.query_params.get("first", "20"))
        with db.engine.connect() as connection:
            payments = connection.execute(
                select(Payment.__table__)
                .where(or_(Payment.payer_id == user, Payment.payee_id == user))
                .order_by(Payment.id.desc())
                .limit(first)
            ).all()
            ids = [row.id for row in payments]
            enroll_ids = [row.enroll_id for row in payments if row.enroll_id]
            enrolls = {
                row.id: row for row in connection.execute(select(Enroll.__table__).where(Enroll.id.in_(enroll_ids)))
            }
            refunds: dict[str, list[Any]] = {}
            for row in connection.execute(select(Refund.__table__).where(Refund.payment_id.in_(ids))):
                refunds.setdefault(row.payment_id, []).append(row)
        body = [
            {
                "id": row.id,
                "status": row.status,
                "amount": {"amount": format_minor(row.amount_minor, row.currency), "currency": row.currency},
                "enroll": (
                    {
                        "id": row.enroll_id,
                        "title": enrolls[row.enroll_id].title,
                        "status": enrolls[row.enroll_id].status,
                    }
                    if row.enroll_id in enrolls
                    else None
                ),
                "refunds": [
                    {"id": r.id, "amount": {"amount": format_minor(r.amount_minor, r.currency)}, "status": r.status}
                    for r in refunds.get(row.id, [])
                ],
            }
            for row in payments
        ]
        return JSONResponse({"data": {"payments": body}})

    app.router.routes.append(Route("/raw/payments", raw_payments))
    return app


def add_minimal_webhook(app: Starlette) -> None:
    """`POST /raw/webhook`: verify Stripe's signature, insert the delivery, update the payment. No more."""
    import hashlib  # noqa: PLC0415
    import hmac  # noqa: PLC0415
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415

    from sqlalchemy import insert, update  # noqa: PLC0415

    from payql.models import WebhookEvent, new_id, utcnow  # noqa: PLC0415
    from payql.models.enums import PaymentStatus, ProviderName, WebhookStatus  # noqa: PLC0415

    secret = os.environ["STRIPE_WEBHOOK_SECRET"].encode()
    db = services_of(app).db

    def minimal(request: Request, body: bytes) -> Response:
        parts = dict(item.split("=", 1) for item in request.headers["stripe-signature"].split(","))
        expected = hmac.new(secret, f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts["v1"]):
            return JSONResponse({"error": "bad signature"}, status_code=400)
        event = json.loads(body)
        with db.engine.begin() as connection:
            connection.execute(
                insert(WebhookEvent).values(
                    id=new_id("whk"),
                    provider=ProviderName.STRIPE,
                    dedupe_key=event["id"],
                    event_type=event["type"],
                    payload=body.decode(),
                    headers="{}",
                    status=WebhookStatus.PROCESSED,
                    attempts=1,
                    received_at=utcnow(),
                )
            )
            connection.execute(
                update(Payment)
                .where(Payment.provider_payment_id == event["data"]["object"]["id"])
                .values(status=PaymentStatus.SUCCEEDED)
            )
        return JSONResponse({"status": "processed"})

    async def raw_webhook(request: Request) -> Response:
        import anyio.to_thread  # noqa: PLC0415

        body = await request.body()
        return await anyio.to_thread.run_sync(minimal, request, body)

    app.router.routes.append(Route("/raw/webhook", raw_webhook, methods=["POST"]))


def create_with_webhooks() -> Starlette:
    app = create()
    add_minimal_webhook(app)
    return app
