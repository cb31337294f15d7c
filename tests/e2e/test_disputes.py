"""Stripe disputes (chargebacks) end to end: the fake opens and closes them and emits Stripe's `charge.dispute.*`
events; payql hears them through signed webhooks and shows them through GraphQL, with the books following the
funds Stripe withdraws and reinstates (CONTRACT.md "Disputes")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import documents as doc
import httpx
import pytest
from conftest import STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, TEST_SECRET, stripe_api, stripe_deliver, stripe_fake
from fakes.stripe_api import FakeStripe
from flows import available, book, completed_enroll, intent, paid_intent
from servers import payql
from sqlalchemy import select
from support import Api, User

from payql.db import Database
from payql.models import LedgerTransaction
from payql.services.checks import ledger_problems

SECRET_KEY, WEBHOOK_SECRET = STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET

DISPUTE_FIELDS = "id paymentId status amount { amount currency } reason evidenceDueBy createdAt"
PAYMENT_DISPUTES = "query($id: ID!) { payment(id: $id) { id disputes { " + DISPUTE_FIELDS + " } } }"
DISPUTES = (
    "query($status: DisputeStatus, $first: Int, $after: String) { disputes(status: $status, first: $first, "
    "after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { " + DISPUTE_FIELDS + " } } } }"
)
PLATFORM = (
    "{ platformBalances { currency revenue { amount } providerPayable { amount } escrow { amount } "
    "providerCash { amount } providerFees { amount } } }"
)
DISPUTE_EVENTS = (
    "charge.dispute.created",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_reinstated",
)


fake, api = stripe_fake, stripe_api  # the conftest fixtures, under this module's names


deliver = stripe_deliver


def dispute_events(fake: FakeStripe) -> list[dict[str, Any]]:
    return [event for event in fake.events if event["type"] in DISPUTE_EVENTS]


def deliver_new(api: Api, fake: FakeStripe, seen: set[str]) -> None:
    """Every dispute event the fake emitted since the last call, in Stripe's order."""
    for event in dispute_events(fake):
        if event["id"] not in seen:
            seen.add(event["id"])
            assert deliver(api, fake, event) == "processed"


def pending(user: User) -> str:
    """What the user has held or in escrow ("0.00" when nothing ever reached their books)."""
    accounts = user.data(doc.BALANCES)["balances"]["accounts"]
    amount: str = accounts[0]["pending"]["amount"] if accounts else "0.00"
    return amount


def platform(admin: User) -> dict[str, str]:
    (usd,) = admin.data(PLATFORM)["platformBalances"]
    return {name: value["amount"] for name, value in usd.items() if name != "currency"}


def payment_disputes(user: User, payment_id: str) -> list[dict[str, Any]]:
    disputes: list[dict[str, Any]] = user.data(PAYMENT_DISPUTES, id=payment_id)["payment"]["disputes"]
    return disputes


def posted_kinds(db: Database) -> list[str]:
    with db.read() as session:
        return sorted(
            session.scalars(select(LedgerTransaction.kind).where(LedgerTransaction.cause_type == "dispute")).all()
        )


def books_are_sound(db: Database) -> None:
    with db.read() as session:
        assert ledger_problems(session) == []


def ledger_check(database_url: str, cwd: Path) -> None:
    """`payql ledger check`, the operator's command, in its own process."""
    checked = payql("ledger", "check", env={"DATABASE_URL": database_url, "JWT_SECRET": TEST_SECRET}, cwd=cwd)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip().endswith("ledger check: ok")


def test_a_chargeback_on_a_completed_enroll_takes_the_payee_share_and_books_the_fee(
    api: Api, fake: FakeStripe, db: Database, database_url: str, tmp_path: Path
) -> None:
    # given a completed enroll: 95.00 available to the mentor, 5.00 the platform's fee
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    assert platform(admin) == {
        "revenue": "5.00",
        "providerPayable": "95.00",
        "escrow": "0.00",
        "providerCash": "100.00",
        "providerFees": "0.00",
    }

    # when the cardholder's bank disputes the charge and Stripe withdraws the funds and its fee
    dispute = fake.open_dispute(intent_id, reason="fraudulent")
    deliver_new(api, fake, set())

    # then the dispute shows on the payment, and the 100.00 is reversed like a refund: the mentor's share and the
    # platform's fee go back out with the cash, and the 15.00 dispute fee is the platform's cost
    (shown,) = payment_disputes(client, payment_id)
    assert shown["paymentId"] == payment_id
    assert shown["status"] == "NEEDS_RESPONSE"
    assert shown["amount"] == {"amount": "100.00", "currency": "USD"}
    assert shown["reason"] == "fraudulent"
    assert shown["evidenceDueBy"] is not None
    (withdrawal,) = dispute["balance_transactions"]
    assert (withdrawal["amount"], withdrawal["fee"], withdrawal["reporting_category"]) == (-10000, 1500, "dispute")
    assert available(mentor) == "0.00"
    assert platform(admin) == {
        "revenue": "0.00",
        "providerPayable": "0.00",
        "escrow": "0.00",
        "providerCash": "-15.00",
        "providerFees": "15.00",
    }
    assert posted_kinds(db) == ["dispute_fee", "dispute_withdrawn"]
    ledger_check(database_url, tmp_path)


def test_a_dispute_won_gives_the_funds_back_but_not_the_fee(
    api: Api, fake: FakeStripe, db: Database, database_url: str, tmp_path: Path
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    seen: set[str] = set()
    dispute = fake.open_dispute(intent_id)
    deliver_new(api, fake, seen)
    assert available(mentor) == "0.00"

    # when the platform submits evidence and wins
    fake.submit_evidence(dispute["id"])
    deliver_new(api, fake, seen)
    assert payment_disputes(admin, payment_id)[0]["status"] == "UNDER_REVIEW"
    fake.close_dispute(dispute["id"], won=True)
    deliver_new(api, fake, seen)

    # then the withdrawal is reversed exactly; Stripe keeps its dispute fee (the reinstatement carries no fee)
    assert fake.disputes[dispute["id"]]["balance_transactions"][1]["fee"] == 0
    assert payment_disputes(admin, payment_id)[0]["status"] == "WON"
    assert available(mentor) == "95.00"
    assert platform(admin) == {
        "revenue": "5.00",
        "providerPayable": "95.00",
        "escrow": "0.00",
        "providerCash": "85.00",
        "providerFees": "15.00",
    }
    assert posted_kinds(db) == ["dispute_fee", "dispute_reinstated", "dispute_withdrawn"]
    ledger_check(database_url, tmp_path)


def test_a_dispute_lost_leaves_the_reversal(api: Api, fake: FakeStripe, db: Database) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    seen: set[str] = set()
    dispute = fake.open_dispute(intent_id, reason="product_not_received")
    deliver_new(api, fake, seen)
    before = platform(admin)

    fake.close_dispute(dispute["id"], won=False)
    deliver_new(api, fake, seen)

    assert [event["type"] for event in dispute_events(fake)][-1] == "charge.dispute.closed"  # nothing reinstated
    assert payment_disputes(client, payment_id)[0]["status"] == "LOST"
    assert available(mentor) == "0.00"
    assert platform(admin) == before
    assert posted_kinds(db) == ["dispute_fee", "dispute_withdrawn"]
    books_are_sound(db)


def test_dispute_events_twice_late_and_out_of_order_end_in_the_same_books(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    dispute = fake.open_dispute(intent_id)
    fake.submit_evidence(dispute["id"])
    fake.close_dispute(dispute["id"], won=True)
    events = dispute_events(fake)
    assert [event["type"] for event in events] == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
    ]

    # the last event first: payql re-reads the dispute and books all that Stripe shows, once
    assert deliver(api, fake, events[-1]) == "processed"
    assert payment_disputes(admin, payment_id)[0]["status"] == "WON"
    books = platform(admin)
    assert books["providerCash"] == "85.00"
    # then the older events, each twice: nothing moves back, nothing is booked again
    for event in reversed(events[:-1]):
        assert deliver(api, fake, event) == "processed"
        assert deliver(api, fake, event) == "duplicate"
    assert deliver(api, fake, events[-1]) == "duplicate"

    assert payment_disputes(admin, payment_id)[0]["status"] == "WON"
    assert platform(admin) == books
    assert available(mentor) == "95.00"
    assert posted_kinds(db) == ["dispute_fee", "dispute_reinstated", "dispute_withdrawn"]
    books_are_sound(db)


def test_an_early_status_after_the_close_does_not_reopen_the_dispute(api: Api, fake: FakeStripe, db: Database) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    seen: set[str] = set()
    dispute = fake.open_dispute(intent_id)
    fake.close_dispute(dispute["id"], won=False)
    deliver_new(api, fake, seen)
    assert payment_disputes(admin, payment_id)[0]["status"] == "LOST"

    # Stripe's object itself shows an earlier status again (a stale read): payql keeps LOST
    fake.disputes[dispute["id"]]["status"] = "needs_response"
    assert deliver(api, fake, fake.events_of("charge.dispute.created")[-1] | {"id": "evt_replayed_later"}) == (
        "processed"
    )
    assert payment_disputes(admin, payment_id)[0]["status"] == "LOST"
    books_are_sound(db)


def test_a_chargeback_before_completion_comes_out_of_escrow(api: Api, fake: FakeStripe, db: Database) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, enroll_id, intent_id = paid_intent(api, fake, client, mentor)
    assert pending(mentor) == "95.00"
    seen: set[str] = set()
    dispute = fake.open_dispute(intent_id)
    deliver_new(api, fake, seen)

    assert pending(mentor) == "0.00"
    assert platform(admin)["escrow"] == "0.00"
    assert platform(admin)["providerCash"] == "-15.00"

    # won before the enroll completes: back in escrow; the completion then splits it as usual
    fake.close_dispute(dispute["id"], won=True)
    deliver_new(api, fake, seen)
    assert platform(admin)["escrow"] == "100.00"
    mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    mentor.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    assert available(mentor) == "95.00"
    assert platform(admin) == {
        "revenue": "5.00",
        "providerPayable": "95.00",
        "escrow": "0.00",
        "providerCash": "85.00",
        "providerFees": "15.00",
    }
    assert payment_disputes(client, payment_id)[0]["status"] == "WON"
    books_are_sound(db)


def test_a_chargeback_on_a_credit_package_reverses_the_sale(api: Api, fake: FakeStripe, db: Database) -> None:
    buyer, admin = api.user("buyer"), api.user("root", "admin")
    created = intent(buyer, packageCode="standard", returnUrl="https://spa.example/credits")
    (session_id,) = fake.checkout_sessions
    fake.pay_checkout(session_id, "pm_card_visa")
    assert deliver(api, fake, fake.events_of("checkout.session.completed")[-1]) == "processed"
    assert platform(admin)["revenue"] == "100.00"

    intent_id = fake.checkout_sessions[session_id]["payment_intent"]
    fake.open_dispute(intent_id, reason="unrecognized")
    deliver_new(api, fake, set())

    (shown,) = payment_disputes(buyer, created["payment"]["id"])
    assert shown["status"] == "NEEDS_RESPONSE"
    assert shown["reason"] == "unrecognized"
    assert platform(admin) == {
        "revenue": "0.00",
        "providerPayable": "0.00",
        "escrow": "0.00",
        "providerCash": "-15.00",
        "providerFees": "15.00",
    }
    # a package has no payee: only an admin lists its dispute
    assert buyer.data(DISPUTES)["disputes"]["totalCount"] == 0
    assert admin.data(DISPUTES)["disputes"]["totalCount"] == 1
    books_are_sound(db)


def test_who_sees_a_dispute(api: Api, fake: FakeStripe, db: Database) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    stranger = api.user("stranger", "provider")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    dispute = fake.open_dispute(intent_id)
    deliver_new(api, fake, set())

    # the payer and the payee see it on the payment; the payee and an admin list it
    assert len(payment_disputes(client, payment_id)) == 1
    assert len(payment_disputes(mentor, payment_id)) == 1
    listed = mentor.data(DISPUTES)["disputes"]
    assert listed["totalCount"] == 1
    assert listed["edges"][0]["node"]["paymentId"] == payment_id
    assert admin.data(DISPUTES)["disputes"]["totalCount"] == 1
    assert admin.data(DISPUTES, status="NEEDS_RESPONSE")["disputes"]["totalCount"] == 1
    assert admin.data(DISPUTES, status="WON")["disputes"]["totalCount"] == 0
    # the payer's list holds what they earn, not what they paid; a stranger sees nothing
    assert client.data(DISPUTES)["disputes"]["totalCount"] == 0
    assert stranger.data(DISPUTES)["disputes"]["totalCount"] == 0
    hidden = stranger.gql(PAYMENT_DISPUTES, id=payment_id)
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert api.anonymous().gql(DISPUTES)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # pages as the other lists do
    page = admin.data(DISPUTES, first=0)["disputes"]
    assert page["edges"] == []
    assert page["pageInfo"]["hasNextPage"] is True
    assert admin.gql(DISPUTES, first=101)["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    assert fake.disputes[dispute["id"]]["status"] == "needs_response"
    books_are_sound(db)


def test_a_dispute_heard_before_the_payment_itself_books_the_capture_first(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    # given a payment whose success webhook has not arrived (payql still shows it PENDING)
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    enroll_id = book(client, mentor, "100.00", "USD")
    created = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")
    intent_id = created["clientSecret"].split("_secret_")[0]
    fake.customer_pays(intent_id, "pm_card_visa")
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "PENDING"

    # when only the dispute's withdrawal is heard
    fake.open_dispute(intent_id)
    assert deliver(api, fake, fake.events_of("charge.dispute.funds_withdrawn")[-1]) == "processed"

    # then payql learned the capture (into escrow) and reversed the dispute from it
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "SUCCEEDED"
    assert platform(admin) == {
        "revenue": "0.00",
        "providerPayable": "0.00",
        "escrow": "0.00",
        "providerCash": "-15.00",
        "providerFees": "15.00",
    }
    assert len(payment_disputes(client, created["payment"]["id"])) == 1
    books_are_sound(db)


def test_an_inquiry_moves_no_money_until_it_escalates(api: Api, fake: FakeStripe, db: Database) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    seen: set[str] = set()
    inquiry = fake.open_dispute(intent_id, inquiry=True, reason="general")
    deliver_new(api, fake, seen)
    assert payment_disputes(client, payment_id)[0]["status"] == "WARNING_NEEDS_RESPONSE"
    assert available(mentor) == "95.00"
    assert posted_kinds(db) == []

    fake.escalate_dispute(inquiry["id"])
    deliver_new(api, fake, seen)
    assert payment_disputes(client, payment_id)[0]["status"] == "NEEDS_RESPONSE"
    assert available(mentor) == "0.00"
    assert platform(admin)["providerFees"] == "15.00"
    books_are_sound(db)


def test_refresh_applies_what_the_webhooks_missed_through_the_same_path(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    dispute = fake.open_dispute(intent_id)
    assert deliver(api, fake, fake.events_of("charge.dispute.created")[-1]) == "processed"
    disputes = api.app.state.services.disputes
    (dispute_id,) = disputes.open_ids()

    # the withdrawal, the close and the reinstatement were never delivered: reconcile re-reads the dispute
    fake.close_dispute(dispute["id"], won=True)
    assert disputes.refresh(dispute_id) is True
    assert disputes.refresh(dispute_id) is False  # nothing more to apply
    assert disputes.open_ids() == []
    assert payment_disputes(admin, payment_id)[0]["status"] == "WON"
    assert available(mentor) == "95.00"
    assert platform(admin)["providerCash"] == "85.00"
    assert posted_kinds(db) == ["dispute_fee", "dispute_reinstated", "dispute_withdrawn"]
    books_are_sound(db)


def test_a_dispute_on_a_payment_payql_never_made_is_acknowledged_and_ignored(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    made_elsewhere = httpx.post(
        f"{fake.url}/v1/payment_intents",
        data={"amount": "700", "currency": "usd", "allowed_payment_method_types[]": "card"},
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
        timeout=5,
    ).json()
    fake.customer_pays(made_elsewhere["id"], "pm_card_visa")
    fake.open_dispute(made_elsewhere["id"])
    for event in dispute_events(fake):
        assert deliver(api, fake, event) == "ignored"
    assert posted_kinds(db) == []
    assert api.user("root", "admin").data(DISPUTES)["disputes"]["totalCount"] == 0


def test_part_of_escrow_disputed_then_won_after_the_release_comes_back_split(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, enroll_id, intent_id = paid_intent(api, fake, client, mentor)
    seen: set[str] = set()
    # 40.00 of the 100.00 disputed while it waits in escrow
    dispute = fake.open_dispute(intent_id, amount=4000)
    deliver_new(api, fake, seen)
    assert platform(admin)["escrow"] == "60.00"

    # the enroll completes: what escrow holds is split (57.00 the mentor's, 3.00 the platform's)
    mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    mentor.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    assert available(mentor) == "57.00"

    # won afterwards: the 40.00 comes back split as the release would have split it
    fake.close_dispute(dispute["id"], won=True)
    deliver_new(api, fake, seen)
    assert available(mentor) == "95.00"
    assert platform(admin) == {
        "revenue": "5.00",
        "providerPayable": "95.00",
        "escrow": "0.00",
        "providerCash": "85.00",
        "providerFees": "15.00",
    }
    assert payment_disputes(client, payment_id)[0]["amount"]["amount"] == "40.00"
    books_are_sound(db)


@pytest.mark.parametrize("outage", ["500", "429", "hang"])
def test_an_outage_while_reading_the_dispute_writes_nothing_and_the_retry_books_it_once(
    api: Api, fake: FakeStripe, db: Database, outage: str
) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("root", "admin")
    payment_id, intent_id = completed_enroll(api, fake, client, mentor)
    books = platform(admin)
    fake.open_dispute(intent_id)
    withdrawn = fake.events_of("charge.dispute.funds_withdrawn")[-1]

    # when Stripe cannot be read as the event arrives
    if outage == "hang":
        fake.hang_next(seconds=5, path_prefix="/v1/disputes")
    else:
        fake.fail_next(status=int(outage), path_prefix="/v1/disputes")
    body, headers = fake.signed_delivery(withdrawn, WEBHOOK_SECRET)
    failed = api.request("POST", "/webhooks/stripe", content=body, headers=headers)

    # then the delivery is answered 500 (Stripe sends it again), and nothing of the dispute is written
    assert failed.status_code == 500
    assert payment_disputes(admin, payment_id) == []
    assert platform(admin) == books
    assert posted_kinds(db) == []

    # and Stripe's next attempt books it, once
    assert deliver(api, fake, withdrawn) == "processed"
    assert deliver(api, fake, withdrawn) == "duplicate"
    assert payment_disputes(admin, payment_id)[0]["status"] == "NEEDS_RESPONSE"
    assert available(mentor) == "0.00"
    assert posted_kinds(db) == ["dispute_fee", "dispute_withdrawn"]
    books_are_sound(db)
