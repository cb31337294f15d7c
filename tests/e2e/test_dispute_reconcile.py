"""Disputes that payql learns of from `payql reconcile` rather than from webhooks, and refunds of disputed payments.

Stripe's `charge.dispute.*` events can be lost like any other: reconcile re-reads every open dispute and applies it
through the path webhooks take (booked once however often it runs), and `payql reconcile --report` names what such
a dispute would change, changing nothing. A chargeback open or lost returns the money through the payer's bank, so
a refund of that payment is refused: by payql before Stripe is called when it knows of the dispute, and by Stripe
(`charge_disputed`) when it does not yet; either way `INVALID_STATE` and nothing half-written (CONTRACT.md
"Provider truth, disputes and failing closed").
"""

from __future__ import annotations

from typing import Any

import documents as doc
import pytest
from conftest import STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, stripe_api, stripe_cli, stripe_deliver, stripe_fake
from fakes.stripe_api import FakeStripe
from flows import available, completed_enroll, paid_intent
from sqlalchemy import func, select
from support import Api, User

from payql.cli import main
from payql.db import Database
from payql.models import Dispute, Enroll, LedgerAccount, LedgerEntry, LedgerTransaction, Payment, Refund
from payql.models.enums import DisputeStatus, RefundStatus

SECRET_KEY, WEBHOOK_SECRET = STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET

DISPUTE_EVENTS = (
    "charge.dispute.created",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_reinstated",
)
PAYMENT_DISPUTES = "query($id: ID!) { payment(id: $id) { id disputes { id status amount { amount currency } } } }"
PLATFORM = "{ platformBalances { currency providerCash { amount } providerFees { amount } } }"
# The refund mutation with the provider's code on its error.
REFUND = (
    "mutation($input: RefundInput!) { refund(input: $input) { refund { id status } "
    "payment { id status refundedAmount { amount } } errors { code field message providerCode } } }"
)


fake, api, cli = stripe_fake, stripe_api, stripe_cli  # the conftest fixtures, under this module's names


def reconcile(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["reconcile", "--older-than", "0", *args])
    return code, capsys.readouterr().out


deliver = stripe_deliver


def deliver_all(api: Api, fake: FakeStripe) -> None:
    for event in fake.events:
        if event["type"] in DISPUTE_EVENTS:
            assert deliver(api, fake, event) in {"processed", "duplicate"}


def platform(admin: User) -> dict[str, str]:
    (usd,) = admin.data(PLATFORM)["platformBalances"]
    return {name: value["amount"] for name, value in usd.items() if name != "currency"}


def dispute_status(user: User, payment_id: str) -> str:
    (dispute,) = user.data(PAYMENT_DISPUTES, id=payment_id)["payment"]["disputes"]
    status: str = dispute["status"]
    return status


def posted_kinds(db: Database) -> list[str]:
    with db.read() as session:
        return sorted(
            session.scalars(select(LedgerTransaction.kind).where(LedgerTransaction.cause_type == "dispute")).all()
        )


def books(db: Database) -> tuple[list[Any], list[Any], list[Any], int]:
    """Every row a refused refund or the report must leave alone."""
    with db.read() as session:
        payments = [(p.id, p.status, p.refunded_minor) for p in session.scalars(select(Payment).order_by(Payment.id))]
        refunds = [(r.id, r.status) for r in session.scalars(select(Refund).order_by(Refund.id))]
        disputes = [
            (d.id, d.status, d.withdrawn_minor, d.reinstated_minor, d.fee_minor)
            for d in session.scalars(select(Dispute).order_by(Dispute.id))
        ]
        postings = session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0
    return payments, refunds, disputes, postings


def refund_calls(fake: FakeStripe) -> int:
    return sum(1 for request in fake.requests if request.method == "POST" and request.path == "/v1/refunds")


# ------------------------------------------------------------------------------------------ reconcile


@pytest.mark.usefixtures("cli")
@pytest.mark.parametrize("won", [True, False], ids=["won", "lost"])
def test_a_dispute_whose_webhooks_were_lost_is_reported_then_booked_once_by_reconcile(
    api: Api, fake: FakeStripe, db: Database, capsys: pytest.CaptureFixture[str], won: bool
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    # payql hears of an inquiry (no money moves) ...
    inquiry = fake.open_dispute(intent_id, inquiry=True)
    assert deliver(api, fake, fake.events_of("charge.dispute.created")[-1]) == "processed"
    with db.read() as session:
        dispute_id = session.scalars(select(Dispute.id)).one()
    assert dispute_status(admin, payment_id) == "WARNING_NEEDS_RESPONSE"
    # ... and of nothing after: the chargeback's withdrawal, its close and (won) the reinstatement are lost
    fake.escalate_dispute(inquiry["id"])
    fake.close_dispute(inquiry["id"], won=won)
    before = books(db)

    # the report names what the provider shows and payql lacks, and changes nothing
    code, out = reconcile(capsys, "--report")
    assert code == 1, out
    final = "WON" if won else "LOST"
    assert f"dispute {dispute_id}: disputes {dispute_id}: status WARNING_NEEDS_RESPONSE -> {final}" in out, out
    assert f"dispute {dispute_id}: ledger_transactions (new): kind=dispute_withdrawn" in out
    assert f"dispute {dispute_id}: ledger_transactions (new): kind=dispute_fee" in out
    assert (f"dispute {dispute_id}: ledger_transactions (new): kind=dispute_reinstated" in out) is won
    assert books(db) == before

    # reconcile books it, through the webhooks' path, once however often it runs
    code, out = reconcile(capsys)
    assert code == 0, out
    assert "1 dispute(s) updated from the provider, 0 to retry" in out
    code, out = reconcile(capsys)
    assert (code, "0 dispute(s) updated from the provider, 0 to retry" in out) == (0, True), out
    assert dispute_status(admin, payment_id) == final
    kinds = ["dispute_fee", "dispute_withdrawn"]
    assert posted_kinds(db) == (sorted([*kinds, "dispute_reinstated"]) if won else kinds)
    assert available(mentor) == ("95.00" if won else "0.00")
    assert platform(admin) == {"providerCash": "85.00" if won else "-15.00", "providerFees": "15.00"}

    # the report is clean afterwards; the late webhooks change nothing
    code, out = reconcile(capsys, "--report")
    assert (code, "dispute" in out) == (0, False), out
    after = books(db)
    deliver_all(api, fake)
    assert books(db) == after


@pytest.mark.usefixtures("cli")
def test_a_dispute_none_of_whose_events_arrived_is_found_by_the_report_and_booked_once_by_reconcile_full(
    api: Api, fake: FakeStripe, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    # opened and lost at Stripe; not one of its events reaches payql
    dispute = fake.open_dispute(intent_id, reason="product_not_received")
    fake.close_dispute(dispute["id"], won=False)
    before = books(db)

    # the routine run re-reads the disputes payql knows: none
    code, out = reconcile(capsys)
    assert (code, "0 dispute(s) updated from the provider" in out) == (0, True), out
    assert books(db) == before

    # the report lists the disputes Stripe opened in the window (one paged list) and names this one
    listed = len([r for r in fake.requests if r.method == "GET" and r.path == "/v1/disputes"])
    code, out = reconcile(capsys, "--report")
    assert code == 1, out
    assert f"dispute {dispute['id']}: disputes (new): status=LOST amount_minor=10000 currency=USD" in out, out
    assert f"dispute {dispute['id']}: ledger_transactions (new): kind=dispute_withdrawn" in out
    assert len([r for r in fake.requests if r.method == "GET" and r.path == "/v1/disputes"]) == listed + 1
    assert books(db) == before

    # --full books it through the webhooks' path, once however often it runs
    code, out = reconcile(capsys, "--full")
    assert (code, "1 dispute(s) updated from the provider" in out) == (0, True), out
    code, out = reconcile(capsys, "--full")
    assert (code, "0 dispute(s) updated from the provider" in out) == (0, True), out
    assert dispute_status(admin, payment_id) == "LOST"
    assert available(mentor) == "0.00"
    assert posted_kinds(db) == ["dispute_fee", "dispute_withdrawn"]
    code, out = reconcile(capsys, "--report")
    assert (code, "0 difference(s), 0 not compared" in out) == (0, True), out

    # Stripe cannot list the disputes now: the report says so and exits 1
    fake.fail_next(count=1, status=500, path_prefix="/v1/disputes")
    code, out = reconcile(capsys, "--report")
    assert (code, "not compared: disputes: the provider could not list them" in out) == (1, True), out


@pytest.mark.usefixtures("cli")
def test_reconcile_retries_a_dispute_stripe_cannot_answer_now(
    api: Api, fake: FakeStripe, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    inquiry = fake.open_dispute(intent_id, inquiry=True)
    assert deliver(api, fake, fake.events_of("charge.dispute.created")[-1]) == "processed"
    fake.escalate_dispute(inquiry["id"])  # its events are lost
    before = books(db)

    fake.fail_next(count=1, status=500, path_prefix="/v1/disputes")
    code, out = reconcile(capsys)
    assert code == 1, out  # cron sees something left to retry
    assert "0 dispute(s) updated from the provider, 1 to retry" in out
    assert books(db) == before

    fake.fail_next(count=1, status=500, path_prefix="/v1/disputes")
    code, out = reconcile(capsys, "--report")
    assert (code, "1 not compared" in out) == (1, True), out

    assert reconcile(capsys)[0] == 0
    assert dispute_status(admin, payment_id) == "NEEDS_RESPONSE"
    assert available(mentor) == "0.00"
    assert posted_kinds(db) == ["dispute_fee", "dispute_withdrawn"]


# ------------------------------------------------------------------------------------------ currencies


def balances(admin: User) -> dict[str, dict[str, str]]:
    """The platform's providerCash and providerFees, by currency."""
    return {
        row["currency"]: {name: value["amount"] for name, value in row.items() if name != "currency"}
        for row in admin.data(PLATFORM)["platformBalances"]
    }


@pytest.mark.usefixtures("cli")
def test_a_dispute_settled_in_another_currency_takes_the_disputed_amount_and_books_the_fee_in_its_own(
    api: Api, fake: FakeStripe, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a 100.00 USD payment, completed, on a platform whose Stripe balance is kept in EUR
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    fake.balance_in("eur", "0.92")

    # when the charge is disputed: Stripe withdraws 92.00 EUR and a 15.00 EUR fee
    dispute = fake.open_dispute(intent_id)
    (withdrawal,) = fake.disputes[dispute["id"]]["balance_transactions"]
    assert (withdrawal["currency"], withdrawal["amount"], withdrawal["fee"]) == ("eur", -9200, 1500)
    deliver_all(api, fake)

    # then the payee's share goes back as for any chargeback (the disputed 100.00 USD, as the capture was booked),
    # and the fee is the platform's cost in the currency Stripe charged it in
    assert dispute_status(admin, payment_id) == "NEEDS_RESPONSE"
    assert available(mentor) == "0.00"
    assert balances(admin) == {
        "USD": {"providerCash": "0.00", "providerFees": "0.00"},
        "EUR": {"providerCash": "-15.00", "providerFees": "15.00"},
    }
    with db.read() as session:
        fees = session.scalars(
            select(LedgerAccount.currency)
            .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerTransaction.kind == "dispute_fee")
        ).all()
    assert fees == ["EUR", "EUR"]  # both lines of the fee's posting

    # won: the 100.00 USD come back split; the EUR fee stays; reconcile and its report find nothing more to do
    fake.close_dispute(dispute["id"], won=True)
    deliver_all(api, fake)
    assert available(mentor) == "95.00"
    assert balances(admin)["USD"] == {"providerCash": "100.00", "providerFees": "0.00"}
    assert reconcile(capsys, "--report")[0] == 0
    assert posted_kinds(db) == ["dispute_fee", "dispute_reinstated", "dispute_withdrawn"]


# ------------------------------------------------------------------------------------ refunds refused


@pytest.mark.parametrize("stage", ["needs_response", "under_review", "lost"])
def test_a_refund_of_a_payment_with_a_chargeback_open_or_lost_is_refused_before_stripe_is_called(
    api: Api, fake: FakeStripe, db: Database, stage: str
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    dispute = fake.open_dispute(intent_id, amount=4000)  # part of it disputed: the rest cannot be refunded either
    if stage == "under_review":
        fake.submit_evidence(dispute["id"])
    elif stage == "lost":
        fake.close_dispute(dispute["id"], won=False)
    deliver_all(api, fake)
    assert dispute_status(admin, payment_id) == stage.upper()
    before, calls = books(db), refund_calls(fake)

    for who, amount in ((mentor, None), (admin, {"amount": "10.00", "currency": "USD"})):
        refused = who.fails(REFUND, "INVALID_STATE", input={"paymentId": payment_id, "amount": amount})
        (error,) = refused["errors"]
        assert "disputed" in error["message"]
        assert error["providerCode"] is None  # payql's own refusal
        assert refused["refund"] is None

    assert refund_calls(fake) == calls  # Stripe was never asked
    assert books(db) == before  # nothing written: no refund row, no posting


@pytest.mark.parametrize("dispute", ["inquiry", "won"])
def test_a_payment_whose_dispute_is_an_inquiry_or_was_won_can_still_be_refunded(
    api: Api, fake: FakeStripe, db: Database, dispute: str
) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    opened = fake.open_dispute(intent_id, inquiry=dispute == "inquiry")
    if dispute == "won":
        fake.close_dispute(opened["id"], won=True)
    deliver_all(api, fake)

    refunded = mentor.ok(REFUND, input={"paymentId": payment_id, "amount": {"amount": "30.00", "currency": "USD"}})
    assert refunded["refund"]["status"] == "SUCCEEDED"
    assert refunded["payment"]["refundedAmount"]["amount"] == "30.00"
    assert available(mentor) == "66.50"  # 95.00 less the payee's 95% of 30.00


def test_stripe_refusing_a_refund_of_a_charge_disputed_unknown_to_payql_is_invalid_state_and_half_writes_nothing(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    fake.open_dispute(intent_id)  # its webhooks have not arrived yet
    with db.read() as session:
        postings = session.scalar(select(func.count()).select_from(LedgerTransaction))
    calls = refund_calls(fake)

    refused = mentor.fails(REFUND, "INVALID_STATE", input={"paymentId": payment_id})
    (error,) = refused["errors"]
    assert error["providerCode"] == "charge_disputed"
    assert error["message"] == "The payment is disputed (charged back): it cannot be refunded"  # payql's words
    assert "charged back; cannot issue" not in error["message"]
    assert refund_calls(fake) == calls + 1
    assert fake.refunds == {}

    # the refund's intent ends FAILED: no posting, the payment and the mentor's balance as they were
    with db.read() as session:
        (refund,) = session.scalars(select(Refund)).all()
        assert (refund.status, refund.failure_message) == (RefundStatus.FAILED, "provider_refused")
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == postings
        payment = session.get(Payment, payment_id)
        assert payment is not None
        assert (payment.status.value, payment.refunded_minor) == ("SUCCEEDED", 0)
    assert available(mentor) == "95.00"

    # the dispute's events then book the chargeback as usual, and payql refuses further refunds itself
    deliver_all(api, fake)
    assert dispute_status(admin, payment_id) == "NEEDS_RESPONSE"
    assert available(mentor) == "0.00"
    calls = refund_calls(fake)
    assert mentor.fails(REFUND, "INVALID_STATE", input={"paymentId": payment_id})["errors"][0]["providerCode"] is None
    assert refund_calls(fake) == calls


def test_cancelling_an_enroll_whose_payment_is_charged_back_is_refused_and_leaves_it_as_it_was(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, enroll_id, intent_id = paid_intent(api, fake, client, mentor)
    fake.open_dispute(intent_id)
    deliver_all(api, fake)
    before, calls = books(db), refund_calls(fake)
    with db.read() as session:
        status = session.scalars(select(Enroll.status).where(Enroll.id == enroll_id)).one()

    refused = client.fails(doc.CANCEL_ENROLL, "INVALID_STATE", id=enroll_id)
    assert "disputed" in refused["errors"][0]["message"]
    assert refund_calls(fake) == calls
    assert books(db) == before
    with db.read() as session:
        enroll = session.get(Enroll, enroll_id)
        assert enroll is not None
        assert (enroll.status, enroll.pending_action) == (status, None)  # as it was; nothing left for reconcile
    assert dispute_status(admin, payment_id) == DisputeStatus.NEEDS_RESPONSE.value
