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
