"""`payql reconcile --report`: every difference between payql's books and the provider's records, changing nothing.

Each difference is made at the Stripe fake behind payql's back (a payment whose webhook was lost, a refund made in
the dashboard, a refund whose call never came back), then the report must name it, exit 1 and leave every row as
it was; after `payql reconcile` has applied it, the report is clean and exits 0.
"""

from __future__ import annotations

import documents as doc
import httpx
import pytest
from conftest import STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, stripe_api, stripe_cli, stripe_fake
from fakes.stripe_api import FakeStripe
from flows import book, intent
from sqlalchemy import func, select
from support import Api

from payql.cli import main
from payql.db import Database
from payql.models import LedgerTransaction, Payment, Refund
from payql.models.enums import PaymentStatus, RefundStatus

SECRET_KEY, WEBHOOK_SECRET = STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET


PROVIDER_TIMEOUT_MS = 1000
fake, api, cli = stripe_fake, stripe_api, stripe_cli  # the conftest fixtures, under this module's names


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["reconcile", "--older-than", "0", *args])
    return code, capsys.readouterr().out


def books(db: Database) -> tuple[list[tuple[str, PaymentStatus, int]], list[tuple[str, RefundStatus]], int]:
    """Every row the report must leave alone."""
    with db.read() as session:
        payments = [(p.id, p.status, p.refunded_minor) for p in session.scalars(select(Payment).order_by(Payment.id))]
        refunds = [(r.id, r.status) for r in session.scalars(select(Refund).order_by(Refund.id))]
        postings = session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0
    return payments, refunds, postings


@pytest.mark.usefixtures("cli")
def test_the_report_names_a_payment_whose_webhook_was_lost_and_changes_nothing(
    api: Api, fake: FakeStripe, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment_id = intent(client, enrollId=book(client, mentor), provider="STRIPE", captureMethod="MANUAL")["payment"][
        "id"
    ]
    fake.customer_pays(next(iter(fake.payment_intents)))  # paid in the browser; the webhook is lost
    before = books(db)

    code, out = run(capsys, "--report")
    assert code == 1
    assert f"payments {payment_id}: status PENDING -> AUTHORIZED" in out
    assert "1 object(s) compared with their provider" in out
    assert books(db) == before  # the report changed nothing

    assert run(capsys)[0] == 0  # reconcile applies it
    code, out = run(capsys, "--report")
    assert (code, "0 difference(s), 0 not compared" in out) == (0, True), out


@pytest.mark.usefixtures("cli")
def test_the_report_names_a_refund_made_in_the_dashboard_and_the_postings_it_lacks(
    api: Api, fake: FakeStripe, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment_id = intent(client, enrollId=book(client, mentor), provider="STRIPE", captureMethod="AUTOMATIC")["payment"][
        "id"
    ]
    client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_visa")
    (intent_id,) = fake.payment_intents
    dashboard = httpx.post(
        f"{fake.url}/v1/refunds",
        data={"payment_intent": intent_id, "amount": "2500"},
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
    )
    assert dashboard.status_code == 200, dashboard.text
    before = books(db)

    code, out = run(capsys, "--report")
    assert code == 1
    assert "refunds (new): status=SUCCEEDED amount_minor=2500 currency=USD" in out, out
    assert f"payments {payment_id}: status SUCCEEDED -> PARTIALLY_REFUNDED" in out
    assert "ledger_transactions (new): kind=refund cause=refund" in out
    assert books(db) == before

    # the routine run re-reads only open objects (the refund's webhook is what tells it); --full applies the window
    assert run(capsys)[0] == 0
    assert run(capsys, "--report")[0] == 1
    assert run(capsys, "--full")[0] == 0
    code, out = run(capsys, "--report")
    assert code == 0, out
    with db.read() as session:
        assert session.scalars(select(Refund.amount_minor)).all() == [2500]
    assert "ledger_transactions" not in run(capsys, "--report")[1]  # posted once, by reconcile


@pytest.mark.usefixtures("cli")
def test_the_report_names_a_refund_whose_call_never_came_back(
    api: Api, fake: FakeStripe, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment_id = intent(client, enrollId=book(client, mentor), provider="STRIPE", captureMethod="AUTOMATIC")["payment"][
        "id"
    ]
    client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_visa")
    fake.fail_next(count=1, status=500, path_prefix="/v1/refunds")
    mentor.fails(doc.REFUND, "PROVIDER_UNAVAILABLE", input={"paymentId": payment_id})
    with db.read() as session:
        refund_id = session.scalars(select(Refund.id)).one()

    code, out = run(capsys, "--report")
    assert code == 1
    assert f"refund {refund_id}: it was never confirmed by the provider" in out
    assert fake.refunds == {}  # the report sent nothing
