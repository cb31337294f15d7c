"""Stripe for real: the official SDK, unchanged, against the stateful fake in tests/fakes/stripe_api.py."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import documents as doc
import httpx
from conftest import STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, make_settings, stripe_api, stripe_fake
from fakes.stripe_api import FakeStripe
from flows import book, intent
from sqlalchemy import func, select
from support import Api, User

from payql.app import create_app
from payql.db import Database
from payql.models import Payment, Refund, WebhookEvent

SECRET_KEY, WEBHOOK_SECRET = STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET


fake, api = stripe_fake, stripe_api  # the conftest fixtures, under this module's names


def deliver(api: Api, fake: FakeStripe, event: dict[str, Any], **kwargs: Any) -> Any:
    body, headers = fake.signed_delivery(event, WEBHOOK_SECRET, **kwargs)
    return api.request("POST", "/webhooks/stripe", content=body, headers=headers)


def latest(fake: FakeStripe, event_type: str) -> dict[str, Any]:
    events = fake.events_of(event_type)
    assert events, f"the fake recorded no {event_type}"
    event: dict[str, Any] = events[-1]
    return event


def count(db: Database, model: type) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def stripe_enroll(client: User, provider: User, capture: str = "AUTOMATIC", amount: str = "100.00") -> dict[str, Any]:
    enroll_id = book(client, provider, amount, "USD")
    return intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod=capture)


def test_seeds_000_flow_intent_client_pays_webhook_then_partial_and_full_refund(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")

    created = stripe_enroll(client, mentor)
    payment = created["payment"]
    intent_id = created["clientSecret"].split("_secret_")[0]
    assert payment["mock"] is False
    assert intent_id in fake.payment_intents
    assert fake.payment_intents[intent_id]["amount"] == 10000
    assert fake.payment_intents[intent_id]["metadata"]["payment_id"] == payment["id"]

    # the client pays in the browser; Stripe tells us with a signed webhook
    fake.customer_pays(intent_id, "pm_card_visa")
    answer = deliver(api, fake, latest(fake, "payment_intent.succeeded"))
    assert answer.status_code == 200
    assert answer.json() == {"status": "processed"}
    assert client.data(doc.PAYMENT, id=payment["id"])["payment"]["status"] == "SUCCEEDED"

    partial = mentor.ok(
        doc.REFUND, input={"paymentId": payment["id"], "amount": {"amount": "25.00", "currency": "USD"}}
    )
    assert partial["payment"]["status"] == "PARTIALLY_REFUNDED"
    (refund,) = fake.refunds.values()
    assert refund["amount"] == 2500
    assert refund["payment_intent"] == intent_id
    full = mentor.ok(doc.REFUND, input={"paymentId": payment["id"], "reason": "FRAUDULENT"})
    assert full["payment"]["status"] == "REFUNDED"
    assert sorted(r["amount"] for r in fake.refunds.values()) == [2500, 7500]
    assert {r["reason"] for r in fake.refunds.values()} == {"requested_by_customer", "fraudulent"}
    refund_keys = [r.idempotency_key for r in fake.requests if r.path == "/v1/refunds" and r.method == "POST"]
    assert len(refund_keys) == 2
    assert all(refund_keys)
    assert len(set(refund_keys)) == 2


def test_manual_capture_happens_when_the_client_confirms_the_enroll(api: Api, fake: FakeStripe) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    created = stripe_enroll(client, mentor, capture="MANUAL")
    intent_id = created["clientSecret"].split("_secret_")[0]
    fake.customer_pays(intent_id, "pm_card_visa")
    held = client.ok(doc.CONFIRM, paymentId=created["payment"]["id"])["payment"]
    assert held["status"] == "AUTHORIZED"
    assert fake.payment_intents[intent_id]["status"] == "requires_capture"

    enroll_id = held["enroll"]["id"]
    mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    mentor.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    done = client.ok(doc.CONFIRM_ENROLL, id=enroll_id)

    assert done["enroll"]["status"] == "COMPLETED"
    assert done["payment"]["status"] == "SUCCEEDED"
    assert done["payment"]["payeeAmount"]["amount"] == "95.00"
    assert fake.payment_intents[intent_id]["status"] == "succeeded"
    captures = [r for r in fake.requests if r.path.endswith("/capture")]
    assert len(captures) == 1
    assert captures[0].idempotency_key  # ours


def test_server_side_confirm_declines_then_pays(api: Api, fake: FakeStripe) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment_id = stripe_enroll(client, mentor)["payment"]["id"]

    declined = client.fails(
        doc.CONFIRM, "PAYMENT_DECLINED", paymentId=payment_id, paymentMethod="pm_card_chargeDeclined"
    )
    assert declined["payment"]["status"] == "PENDING"
    assert declined["payment"]["failureCode"] == "card_declined"
    assert declined["errors"][0]["message"] == "The card was declined"  # payql's words; the code is failureCode
    short = client.fails(
        doc.CONFIRM,
        "PAYMENT_DECLINED",
        paymentId=payment_id,
        paymentMethod="pm_card_visa_chargeDeclinedInsufficientFunds",
    )
    assert short["payment"]["failureCode"] == "insufficient_funds"

    paid = client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_visa")["payment"]
    assert paid["status"] == "SUCCEEDED"
    assert paid["failureCode"] is None


def test_authentication_required_then_completed(api: Api, fake: FakeStripe) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    created = stripe_enroll(client, mentor)
    payment_id = created["payment"]["id"]
    intent_id = created["clientSecret"].split("_secret_")[0]

    waiting = client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_authenticationRequired")["payment"]
    assert waiting["status"] == "REQUIRES_ACTION"
    fake.complete_action(intent_id)
    assert client.ok(doc.CONFIRM, paymentId=payment_id)["payment"]["status"] == "SUCCEEDED"


def test_credit_package_through_checkout_grants_credits_once(api: Api, fake: FakeStripe) -> None:
    buyer, admin = api.user("buyer"), api.user("admin", "admin")
    created = intent(buyer, packageCode="standard", returnUrl="https://spa.example/credits")
    (session_id,) = fake.checkout_sessions
    assert created["checkoutUrl"] == fake.checkout_sessions[session_id]["url"]
    assert fake.checkout_sessions[session_id]["client_reference_id"] == created["payment"]["id"]
    assert fake.checkout_sessions[session_id]["amount_total"] == 10000
    assert buyer.data(doc.CREDIT_BALANCE)["balances"]["credits"] == 0

    fake.pay_checkout(session_id, "pm_card_visa")
    completed = latest(fake, "checkout.session.completed")
    for _ in range(3):
        assert deliver(api, fake, completed).status_code == 200
    assert deliver(api, fake, latest(fake, "payment_intent.succeeded")).status_code == 200

    assert buyer.data(doc.CREDIT_BALANCE)["balances"]["credits"] == 1100
    buyer.ok(doc.SPEND_CREDITS, input={"credits": 330})
    refunded = admin.ok(doc.REFUND, input={"paymentId": created["payment"]["id"]})
    assert refunded["refund"]["amount"]["amount"] == "70.00"
    (refund,) = fake.refunds.values()
    assert refund["amount"] == 7000
    assert buyer.data(doc.CREDIT_BALANCE)["balances"]["credits"] == 0


def test_an_unpaid_or_expired_checkout_grants_nothing(api: Api, fake: FakeStripe) -> None:
    buyer = api.user("buyer")
    created = intent(buyer, packageCode="trial")
    (session_id,) = fake.checkout_sessions

    fake.expire_checkout(session_id)
    assert deliver(api, fake, latest(fake, "checkout.session.expired")).status_code == 200

    assert buyer.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "CANCELED"
    assert buyer.data(doc.CREDIT_BALANCE)["balances"]["credits"] == 0


def test_a_webhook_delivered_five_times_is_processed_once(api: Api, fake: FakeStripe, db: Database) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    created = stripe_enroll(client, mentor)
    fake.customer_pays(created["clientSecret"].split("_secret_")[0], "pm_card_visa")
    event = latest(fake, "payment_intent.succeeded")

    answers = [deliver(api, fake, event).json()["status"] for _ in range(5)]

    assert answers == ["processed", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert count(db, WebhookEvent) == 1
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "SUCCEEDED"


def test_a_refund_event_before_the_success_event_ends_right(api: Api, fake: FakeStripe, db: Database) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    created = stripe_enroll(client, mentor)
    intent_id = created["clientSecret"].split("_secret_")[0]
    fake.customer_pays(intent_id, "pm_card_visa")
    # a refund made at Stripe's dashboard, whose events reach us before the payment's
    made = httpx.post(
        f"{fake.url}/v1/refunds",
        data={"payment_intent": intent_id, "amount": "4000"},
        headers={"Authorization": f"Bearer {SECRET_KEY}"},
    )
    assert made.status_code == 200

    assert deliver(api, fake, latest(fake, "refund.created")).status_code == 200
    assert deliver(api, fake, latest(fake, "payment_intent.succeeded")).status_code == 200

    payment = client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]
    assert payment["status"] == "PARTIALLY_REFUNDED"
    assert payment["refundedAmount"]["amount"] == "40.00"
    assert count(db, Refund) == 1


def test_bad_signature_stale_timestamp_and_malformed_body_are_refused(api: Api, fake: FakeStripe, db: Database) -> None:
    event = {
        "id": "evt_forged",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_x", "object": "payment_intent"}},
    }
    body, headers = fake.signed_delivery(event, "whsec_not_ours")
    assert api.request("POST", "/webhooks/stripe", content=body, headers=headers).status_code == 400

    stale = deliver(api, fake, event, timestamp=int(time.time()) - 3600)
    assert stale.status_code == 400

    unsigned = api.request("POST", "/webhooks/stripe", content=json.dumps(event).encode())
    assert unsigned.status_code == 400

    garbage = b"{not json"
    signature = fake.sign(garbage, WEBHOOK_SECRET)
    assert (
        api.request("POST", "/webhooks/stripe", content=garbage, headers={"Stripe-Signature": signature}).status_code
        == 400
    )
    assert count(db, WebhookEvent) == 0


def test_a_signature_timestamp_from_the_future_is_refused(api: Api, fake: FakeStripe, db: Database) -> None:
    # given a real payment_intent.succeeded event, signed with our secret
    client, mentor = api.user("client"), api.user("mentor", "provider")
    created = stripe_enroll(client, mentor)
    fake.customer_pays(created["clientSecret"].split("_secret_")[0], "pm_card_visa")
    event = latest(fake, "payment_intent.succeeded")

    # when it claims to be signed a day from now (a captured signature replayable for a day), or just past tolerance
    tomorrow = deliver(api, fake, event, timestamp=int(time.time()) + 86_400)
    too_soon = deliver(api, fake, event, timestamp=int(time.time()) + 600)

    # then both are refused like a bad signature, and nothing was processed
    assert (tomorrow.status_code, too_soon.status_code) == (400, 400)
    assert "signature" in tomorrow.text
    assert count(db, WebhookEvent) == 0
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] != "SUCCEEDED"

    # and a clock a little ahead of ours (within the 300 s tolerance) is still fine
    ahead = deliver(api, fake, event, timestamp=int(time.time()) + 60)
    assert (ahead.status_code, ahead.json()) == (200, {"status": "processed"})
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "SUCCEEDED"


def test_an_unknown_event_type_is_acknowledged(api: Api, fake: FakeStripe, db: Database) -> None:
    event = {
        "id": "evt_unknown_1",
        "object": "event",
        "type": "customer.created",
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }

    answer = deliver(api, fake, event)

    assert answer.status_code == 200
    assert answer.json() == {"status": "ignored"}
    assert count(db, WebhookEvent) == 1


def test_an_outage_during_create_intent_leaves_nothing_half_written_and_a_retry_creates_once(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    enroll_id = book(client, mentor)
    ask = {"enrollId": enroll_id, "provider": "STRIPE", "idempotencyKey": "pay-1"}

    fake.fail_next(count=1, status=500, path_prefix="/v1/payment_intents")
    failed = client.fails(doc.CREATE_INTENT, "PROVIDER_UNAVAILABLE", input=ask)
    assert failed["payment"] is None

    started = time.monotonic()
    fake.hang_next(count=1, seconds=10, path_prefix="/v1/payment_intents")
    client.fails(doc.CREATE_INTENT, "PROVIDER_UNAVAILABLE", input=ask)
    assert time.monotonic() - started < 5

    created = client.ok(doc.CREATE_INTENT, input=ask)
    assert created["payment"]["status"] == "PENDING"
    assert len(fake.payment_intents) == 1
    assert count(db, Payment) == 1


def test_concurrent_first_uses_of_one_key_make_one_provider_call(api: Api, fake: FakeStripe, db: Database) -> None:
    """Six requests with one key at once: one executes (Stripe sees one create), the others wait and replay it."""
    client, mentor = api.user("client"), api.user("mentor", "provider")
    enroll_id = book(client, mentor)
    ask = {"enrollId": enroll_id, "provider": "STRIPE", "idempotencyKey": "tap-tap-tap"}
    fake.hang_next(count=1, seconds=0.5, path_prefix="/v1/payment_intents", method="POST")  # they overlap

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: client.ok(doc.CREATE_INTENT, input=ask), range(6)))

    assert len({a["payment"]["id"] for a in answers}) == 1
    assert len({a["clientSecret"] for a in answers}) == 1
    creates = [r for r in fake.requests if r.method == "POST" and r.path == "/v1/payment_intents"]
    assert len(creates) == 1
    assert count(db, Payment) == 1


def test_an_outage_during_refund_refunds_once_on_retry(api: Api, fake: FakeStripe, db: Database) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment_id = stripe_enroll(client, mentor)["payment"]["id"]
    client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_visa")
    ask = {"paymentId": payment_id, "amount": {"amount": "10.00", "currency": "USD"}, "idempotencyKey": "refund-1"}

    fake.fail_next(count=1, status=500, path_prefix="/v1/refunds")
    mentor.fails(doc.REFUND, "PROVIDER_UNAVAILABLE", input=ask)
    started = time.monotonic()
    fake.hang_next(count=1, seconds=10, path_prefix="/v1/refunds")
    mentor.fails(doc.REFUND, "PROVIDER_UNAVAILABLE", input=ask)  # the deadline, not the hang, ends the call
    assert time.monotonic() - started < 5
    # the pending refund still counts against what is left
    mentor.fails(
        doc.REFUND, "INVALID_INPUT", input={"paymentId": payment_id, "amount": {"amount": "90.01", "currency": "USD"}}
    )

    done = mentor.ok(doc.REFUND, input=ask)
    assert done["refund"]["status"] == "SUCCEEDED"
    assert len(fake.refunds) == 1
    assert count(db, Refund) == 1


def test_webhooks_need_the_secret_when_keys_are_set(database_url: str, db: Database, fake: FakeStripe) -> None:
    settings = make_settings(database_url, stripe_secret_key=SECRET_KEY, stripe_api_base=fake.url)
    with Api(create_app(settings, db=db), settings) as client:
        body, headers = fake.signed_delivery(
            {"id": "evt_1", "object": "event", "type": "x", "data": {"object": {}}}, WEBHOOK_SECRET
        )
        assert client.request("POST", "/webhooks/stripe", content=body, headers=headers).status_code == 500


def test_a_failing_delivery_is_recorded_answered_500_and_processed_once_on_retry(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    created = stripe_enroll(client, mentor)
    fake.customer_pays(created["clientSecret"].split("_secret_")[0], "pm_card_visa")
    event = latest(fake, "payment_intent.succeeded")

    fake.fail_next(count=1, status=500, path_prefix="/v1/payment_intents/", method="GET")
    assert deliver(api, fake, event).status_code == 500
    with db.read() as session:
        (row,) = session.scalars(select(WebhookEvent))
        assert (row.status.value, row.attempts) == ("FAILED", 1)
        assert "ProviderUnavailable" in (row.error or "")
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "PENDING"

    assert deliver(api, fake, event).json() == {"status": "processed"}
    assert deliver(api, fake, event).json() == {"status": "duplicate"}
    with db.read() as session:
        (row,) = session.scalars(select(WebhookEvent))
        assert (row.status.value, row.attempts, row.error) == ("PROCESSED", 2, None)
    assert client.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]["status"] == "SUCCEEDED"
