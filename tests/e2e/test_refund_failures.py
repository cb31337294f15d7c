"""Refunds that fail (#13 items 1-4, CONTRACT.md "Refunds that fail"): a Stripe refund that succeeded and fails weeks
later, and one that goes pending -> failed, end FAILED; the refund's own postings are reversed exactly, its amount is
refundable again, the payment's refunded amount and status follow, and a package's credits return to their lot.

Through the public interfaces only: GraphQL, Stripe's signed webhooks and `payql reconcile`, with the official SDK
against the stateful fake (tests/fakes/stripe_api.py). The `db` fixture runs `payql ledger check` after each test;
`books` below checks that every platform account the payment touched ends where the money really is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import documents as doc
import httpx
import pytest
from conftest import (
    STRIPE_SECRET_KEY,
    STRIPE_WEBHOOK_SECRET,
    stripe_api,
    stripe_cli,
    stripe_deliver,
    stripe_fake,
)
from fakes.stripe_api import FakeStripe
from flows import available, book, intent
from sqlalchemy import select
from support import Api, User

from payql.cli import main
from payql.db import Database
from payql.models import WebhookEvent
from payql.models.enums import WebhookStatus

SECRET_KEY, WEBHOOK_SECRET = STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET

PAYMENT = """
query($id: ID!) {
  payment(id: $id) {
    id status capturedAmount { amount } refundedAmount { amount }
    platformFee { amount } taxAmount { amount } payeeAmount { amount }
    refunds { id status failureReason amount { amount } }
  }
}
"""

Reconcile = Callable[[], str]


PROVIDER_TIMEOUT_MS = 3000
fake, api, cli = stripe_fake, stripe_api, stripe_cli  # the conftest fixtures, under this module's names


@pytest.fixture
def reconcile(cli: None, capsys: pytest.CaptureFixture[str]) -> Reconcile:
    """`payql reconcile --older-than 0`, as an operator runs it."""

    def run() -> str:
        capsys.readouterr()
        assert main(["reconcile", "--older-than", "0"]) == 0
        return capsys.readouterr().out

    return run


deliver = stripe_deliver


def events_of(fake: FakeStripe, event_type: str, refund_id: str) -> list[dict[str, Any]]:
    return [event for event in fake.events_of(event_type) if event["data"]["object"]["id"] == refund_id]


def late_failure(api: Api, fake: FakeStripe, refund_id: str, reason: str = "expired_or_canceled_card") -> None:
    """Stripe fails the refund after the fact and sends its three events, each processed once."""
    fake.fail_refund(refund_id, reason)
    (first,) = events_of(fake, "charge.refund.updated", refund_id)
    assert deliver(api, fake, first) == "processed"
    for event_type in ("refund.updated", "refund.failed"):
        assert deliver(api, fake, events_of(fake, event_type, refund_id)[-1]) == "processed"
    assert deliver(api, fake, first) == "duplicate"


def stripe_refund_of(fake: FakeStripe, refund_id: str) -> str:
    (found,) = [obj["id"] for obj in fake.refunds.values() if obj["metadata"].get("refund_id") == refund_id]
    return found


def paid(client: User, mentor: User, fake: FakeStripe, amount: str = "100.00") -> dict[str, Any]:
    """An enroll paid with automatic capture: the money waits in escrow until the enroll completes."""
    enroll_id = book(client, mentor, amount, "USD")
    created = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")
    payment: dict[str, Any] = client.ok(doc.CONFIRM, paymentId=created["payment"]["id"], paymentMethod="pm_card_visa")[
        "payment"
    ]
    assert payment["status"] == "SUCCEEDED"
    return payment


def complete(client: User, mentor: User, enroll_id: str) -> None:
    mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    mentor.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    assert client.ok(doc.CONFIRM_ENROLL, id=enroll_id)["enroll"]["status"] == "COMPLETED"


def refund(user: User, payment_id: str, amount: str | None = None) -> dict[str, Any]:
    ask: dict[str, Any] = {"paymentId": payment_id}
    if amount is not None:
        ask["amount"] = {"amount": amount, "currency": "USD"}
    result: dict[str, Any] = user.ok(doc.REFUND, input=ask)
    return result


def books(admin: User, currency: str = "USD") -> dict[str, str]:
    (row,) = [row for row in admin.data(doc.PLATFORM_BALANCES)["platformBalances"] if row["currency"] == currency]
    return {name: value["amount"] for name, value in row.items() if name != "currency"}


def test_a_refund_from_escrow_that_fails_late_is_reversed_and_its_amount_is_refundable_again(
    api: Api, fake: FakeStripe
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    payment_id = paid(client, mentor, fake)["id"]
    refunded = refund(mentor, payment_id, "30.00")
    assert refunded["payment"]["status"] == "PARTIALLY_REFUNDED"
    stripe_id = stripe_refund_of(fake, refunded["refund"]["id"])
    old_success = events_of(fake, "refund.created", stripe_id)

    late_failure(api, fake, stripe_id)

    payment = client.data(PAYMENT, id=payment_id)["payment"]
    assert (payment["status"], payment["refundedAmount"]["amount"]) == ("SUCCEEDED", "0.00")
    assert payment["refunds"] == [
        {"id": refunded["refund"]["id"], "status": "FAILED", "failureReason": "expired_or_canceled_card",
         "amount": {"amount": "30.00"}}
    ]  # fmt: skip
    assert (books(admin)["escrow"], books(admin)["providerCash"]) == ("100.00", "100.00")

    # a late, out-of-order success event changes nothing: the refund stays FAILED
    assert deliver(api, fake, old_success[0]) == "processed"
    assert client.data(PAYMENT, id=payment_id)["payment"]["refunds"][0]["status"] == "FAILED"

    # the whole amount is refundable again
    again = refund(mentor, payment_id)
    assert again["refund"]["amount"]["amount"] == "100.00"
    assert again["payment"]["status"] == "REFUNDED"
    assert (books(admin)["escrow"], books(admin)["providerCash"]) == ("0.00", "0.00")


def test_a_refund_after_the_split_that_fails_late_leaves_the_next_refunds_exact(api: Api, fake: FakeStripe) -> None:
    # 100.01 USD at Stripe's 5 %: fee 5.00, payee 95.01; refunds that do not divide it evenly
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    payment = paid(client, mentor, fake, "100.01")
    complete(client, mentor, payment["enroll"]["id"])
    first = refund(mentor, payment["id"], "33.33")
    second = refund(mentor, payment["id"], "20.00")
    assert second["payment"]["refundedAmount"]["amount"] == "53.33"

    late_failure(api, fake, stripe_refund_of(fake, first["refund"]["id"]), "lost_or_stolen_card")

    shown = client.data(PAYMENT, id=payment["id"])["payment"]
    assert (shown["status"], shown["refundedAmount"]["amount"]) == ("PARTIALLY_REFUNDED", "20.00")
    assert [r["failureReason"] for r in shown["refunds"]] == ["lost_or_stolen_card", None]
    # the second refund took back 1.00 of the fee (⌊5333·500/10001⌋ − ⌊3333·500/10001⌋); it alone stands now
    assert books(admin)["revenue"] == "4.00"
    assert available(mentor) == "76.01"

    rest = refund(mentor, payment["id"])
    assert (rest["refund"]["amount"]["amount"], rest["payment"]["status"]) == ("80.01", "REFUNDED")
    # everything is back to the payer: not a cent of fee, payee share or cash is left over
    assert books(admin) == {
        "revenue": "0.00", "tax": "0.00", "providerPayable": "0.00", "escrow": "0.00",
        "payoutsInFlight": "0.00", "providerCash": "0.00",
    }  # fmt: skip
    assert available(mentor) == "0.00"


def test_an_escrow_refund_that_fails_after_the_enroll_completed_reaches_the_split(api: Api, fake: FakeStripe) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    payment = paid(client, mentor, fake)
    first = refund(mentor, payment["id"], "40.00")  # from escrow
    complete(client, mentor, payment["enroll"]["id"])  # the 60.00 left is split: 57.00 / 3.00
    assert available(mentor) == "57.00"

    late_failure(api, fake, stripe_refund_of(fake, first["refund"]["id"]))

    # the 40.00 is the platform's again, and is released to the split like the rest
    shown = client.data(PAYMENT, id=payment["id"])["payment"]
    assert (shown["status"], shown["refundedAmount"]["amount"]) == ("SUCCEEDED", "0.00")
    assert (shown["platformFee"]["amount"], shown["payeeAmount"]["amount"]) == ("5.00", "95.00")
    assert available(mentor) == "95.00"
    assert books(admin) == {
        "revenue": "5.00", "tax": "0.00", "providerPayable": "95.00", "escrow": "0.00",
        "payoutsInFlight": "0.00", "providerCash": "100.00",
    }  # fmt: skip

    # and a refund of it all now reverses that whole split
    assert refund(mentor, payment["id"])["payment"]["status"] == "REFUNDED"
    assert set(books(admin).values()) == {"0.00"}


def test_a_package_refund_that_fails_late_gives_the_credits_back(api: Api, fake: FakeStripe, db: Database) -> None:
    buyer, admin = api.user("buyer"), api.user("admin", "admin")
    created = intent(buyer, packageCode="standard", returnUrl="https://spa.example/credits")
    payment_id = created["payment"]["id"]
    (session_id,) = fake.checkout_sessions
    fake.pay_checkout(session_id, "pm_card_visa")
    assert deliver(api, fake, fake.events_of("checkout.session.completed")[-1]) == "processed"
    assert buyer.data(doc.CREDIT_BALANCE)["balances"]["credits"] == 1100
    refunded = refund(admin, payment_id)
    assert buyer.data(doc.CREDIT_BALANCE)["balances"]["credits"] == 0
    stripe_id = stripe_refund_of(fake, refunded["refund"]["id"])

    # the refund's own event names the PaymentIntent, not the Checkout Session: it still finds the payment
    assert deliver(api, fake, events_of(fake, "refund.created", stripe_id)[0]) == "processed"
    late_failure(api, fake, stripe_id)

    shown = admin.data(PAYMENT, id=payment_id)["payment"]
    assert (shown["status"], shown["refundedAmount"]["amount"]) == ("SUCCEEDED", "0.00")
    assert shown["refunds"][0]["status"] == "FAILED"
    assert buyer.data(doc.CREDIT_BALANCE)["balances"]["credits"] == 1100
    currency = created["payment"]["amount"]["currency"]
    assert (books(admin, currency)["revenue"], books(admin, currency)["providerCash"]) == ("100.00", "100.00")
    with db.read() as session:
        logged = set(session.scalars(select(WebhookEvent.status)))
    assert logged == {WebhookStatus.PROCESSED}  # not one refund event was ignored


def test_a_pending_refund_that_fails_is_seen_by_reconcile_and_frees_its_amount(
    api: Api, fake: FakeStripe, reconcile: Reconcile
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    payment_id = paid(client, mentor, fake)["id"]
    fake.refunds_pending = True
    pending = refund(mentor, payment_id, "70.00")
    assert pending["refund"]["status"] == "PENDING"
    blocked = mentor.fails(
        doc.REFUND, "INVALID_INPUT", input={"paymentId": payment_id, "amount": {"amount": "50.00", "currency": "USD"}}
    )
    assert "exceeds what is left" in blocked["errors"][0]["message"]

    fake.fail_refund(stripe_refund_of(fake, pending["refund"]["id"]), "declined")  # its webhook is lost
    reconcile()

    shown = client.data(PAYMENT, id=payment_id)["payment"]
    assert shown["refunds"][0]["status"] == "FAILED"
    assert shown["refunds"][0]["failureReason"] == "declined"
    assert (shown["status"], shown["refundedAmount"]["amount"]) == ("SUCCEEDED", "0.00")
    fake.refunds_pending = False
    assert refund(mentor, payment_id, "50.00")["payment"]["status"] == "PARTIALLY_REFUNDED"
    assert books(admin)["escrow"] == "50.00"
    reconcile()  # a second run changes nothing
    assert client.data(PAYMENT, id=payment_id)["payment"]["refundedAmount"]["amount"] == "50.00"


def test_refunds_beyond_stripes_first_page_are_all_read(api: Api, fake: FakeStripe) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment = paid(client, mentor, fake)
    intent_id = next(pi for pi, obj in fake.payment_intents.items() if obj["metadata"]["payment_id"] == payment["id"])
    # 101 refunds of 0.01 made in Stripe's dashboard: more than one page of Stripe's largest (100)
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {SECRET_KEY}"}) as dashboard:
        for _ in range(101):
            assert dashboard.post("/v1/refunds", data={"payment_intent": intent_id, "amount": "1"}).status_code == 200
    oldest = next(iter(fake.refunds))

    assert deliver(api, fake, fake.events_of("refund.created")[-1]) == "processed"
    shown = client.data(PAYMENT, id=payment["id"])["payment"]
    assert shown["refundedAmount"]["amount"] == "1.01"

    # the oldest (on the second page) fails late: seen too
    late_failure(api, fake, oldest)
    assert client.data(PAYMENT, id=payment["id"])["payment"]["refundedAmount"]["amount"] == "1.00"


def test_a_late_failure_never_reopens_a_payment_whose_enroll_is_being_paid_again(api: Api, fake: FakeStripe) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    first = paid(client, mentor, fake)
    refunded = refund(mentor, first["id"])
    assert refunded["payment"]["status"] == "REFUNDED"
    # the client pays the enroll again: an enroll has one open payment, and now it is this one
    again = intent(client, enrollId=first["enroll"]["id"], provider="STRIPE", captureMethod="AUTOMATIC")

    late_failure(api, fake, stripe_refund_of(fake, refunded["refund"]["id"]))

    # the late failure is applied (the refund FAILED, its postings reversed) without reopening the first payment
    shown = client.data(PAYMENT, id=first["id"])["payment"]
    assert (shown["status"], shown["refundedAmount"]["amount"]) == ("REFUNDED", "0.00")
    assert shown["refunds"][0]["status"] == "FAILED"
    assert client.data(PAYMENT, id=again["payment"]["id"])["payment"]["status"] == "PENDING"


def refund_lists(fake: FakeStripe) -> int:
    return sum(1 for r in fake.requests if r.method == "GET" and r.path == "/v1/refunds")


def test_a_payment_event_lists_refunds_only_when_payql_holds_a_succeeded_refund(api: Api, fake: FakeStripe) -> None:
    """The refund list is a second request per event: a payment event skips it while payql holds no succeeded
    refund of the payment, and reads it (seeing a late failure that sent no refund event yet) once it does."""
    client, mentor = api.user("client"), api.user("mentor", "provider")
    paid(client, mentor, fake)
    (succeeded,) = fake.events_of("payment_intent.succeeded")  # the first payment's: the only one yet
    lists = refund_lists(fake)
    assert deliver(api, fake, succeeded) == "processed"
    assert refund_lists(fake) == lists  # nothing to learn: one request, the PaymentIntent

    second = paid(client, mentor, fake)
    stripe_id = stripe_refund_of(fake, refund(mentor, second["id"], "40.00")["refund"]["id"])
    fake.fail_refund(stripe_id)  # its refund events are lost; the payment's own event arrives
    (late,) = fake.events_of("payment_intent.succeeded")[-1:]
    assert deliver(api, fake, late) == "processed"
    assert refund_lists(fake) == lists + 1
    payment = client.data(PAYMENT, id=second["id"])["payment"]
    assert (payment["refunds"][0]["status"], payment["refundedAmount"]["amount"]) == ("FAILED", "0.00")


@pytest.mark.parametrize("outage", ["503", "hang"])
def test_a_late_failure_whose_refund_list_cannot_be_read_is_answered_500_and_booked_on_the_retry(
    api: Api, fake: FakeStripe, outage: str
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    payment_id = paid(client, mentor, fake)["id"]
    stripe_id = stripe_refund_of(fake, refund(mentor, payment_id, "30.00")["refund"]["id"])
    fake.fail_refund(stripe_id)
    (updated,) = events_of(fake, "charge.refund.updated", stripe_id)
    before = (client.data(PAYMENT, id=payment_id)["payment"], books(admin))

    # Stripe cannot list the refunds as the event arrives
    if outage == "hang":
        fake.hang_next(seconds=5, path_prefix="/v1/refunds", method="GET")
    else:
        fake.fail_next(status=int(outage), path_prefix="/v1/refunds", method="GET")
    body, headers = fake.signed_delivery(updated, WEBHOOK_SECRET)
    failed = api.request("POST", "/webhooks/stripe", content=body, headers=headers)

    # then the delivery is answered 500 (Stripe sends it again) and nothing moved
    assert failed.status_code == 500
    assert (client.data(PAYMENT, id=payment_id)["payment"], books(admin)) == before

    # and Stripe's next attempt books the failure, once
    assert deliver(api, fake, updated) == "processed"
    assert deliver(api, fake, updated) == "duplicate"
    payment = client.data(PAYMENT, id=payment_id)["payment"]
    assert (payment["refunds"][0]["status"], payment["refundedAmount"]["amount"]) == ("FAILED", "0.00")
    assert books(admin)["escrow"] == "100.00"
