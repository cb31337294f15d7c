"""The fakes send only what the providers' SDK types allow (issue #13): the checks themselves (tests/fakes/shapes.py),
and representative flows through the real SDKs whose every answer and event passes them. Every other test in
tests/fakes is checked the same way after it runs (tests/fakes/conftest.py), so a new endpoint or object in a fake is
covered as soon as a test drives it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe
from yookassa import Configuration, Payment, Payout, Refund

from fakes._http import FakeServer
from fakes.shapes import (
    Cursor,
    check_fake_output,
    check_stripe_answer,
    check_stripe_event,
    check_stripe_object,
    check_yookassa_answer,
    check_yookassa_notification,
    check_yookassa_object,
    stripe_endpoint,
)
from fakes.stripe_api import FakeStripe
from fakes.yookassa_api import FakeYooKassa

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content:DeprecationWarning"
)


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


def _refund(**changes: Any) -> dict[str, Any]:
    refund = {
        "id": "re_1",
        "object": "refund",
        "amount": 500,
        "balance_transaction": "txn_1",
        "charge": "ch_1",
        "created": 1_700_000_000,
        "currency": "usd",
        "metadata": {"payment_id": "p1"},
        "payment_intent": "pi_1",
        "reason": None,
        "status": "succeeded",
    }
    return refund | changes


def _event(obj: dict[str, Any], event_type: str = "refund.updated", **data: Any) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "api_version": stripe.api_version,
        "created": 1_700_000_000,
        "data": {"object": obj, **data},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


# ------------------------------------------------------------------------------------ the Stripe checks


_STRIPE_FIXTURES = json.loads((Path(__file__).parent / "spec" / "stripe_fixtures.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(_STRIPE_FIXTURES["resources"]))
def test_stripes_own_example_objects_pass(name: str) -> None:
    """No false alarms: the objects of Stripe's published fixtures (openapi/fixtures3.json) pass the checks. The
    fixtures are not regenerated with every spec change, so a field added since may be missing from them (the
    dispute's evidence_details.submission_method): only that is forgiven here."""
    problems: list[str] = []
    check_stripe_object(_STRIPE_FIXTURES["resources"][name], name, problems)
    assert [problem for problem in problems if ": missing (" not in problem] == []


def test_a_stripe_object_as_the_sdk_types_it_passes() -> None:
    assert check_stripe_answer("GET", "/v1/refunds/re_1?expand[]=charge", 200, _body(_refund())) == []
    listed = {"object": "list", "data": [_refund()], "has_more": False, "url": "/v1/refunds"}
    assert check_stripe_answer("GET", "/v1/refunds", 200, _body(listed)) == []
    assert check_stripe_event(_event(_refund(), previous_attributes={"status": "pending"})) == []


@pytest.mark.parametrize(
    ("refund", "problem"),
    [
        (_refund(livemode=False), ".livemode: not a field of Refund"),  # Stripe's refunds have no livemode
        (_refund(amount="5.00"), ".amount: str, not an integer"),
        (_refund(amount=True), ".amount: bool, not an integer"),
        (_refund(created=None), ".created: null, but the field is not nullable"),
        (_refund(reason="changed_mind"), ".reason: 'changed_mind' is not one of"),
        (_refund(metadata={"n": 1}), ".metadata.n: int, not a string"),
        (_refund(charge={"id": "ch_1", "object": "charge", "paid": "yes"}), ".charge.paid: str, not a boolean"),
        (_refund(object="charge"), ".object: 'charge' is not one of ['refund']"),
        ({key: value for key, value in _refund().items() if key != "currency"}, ".currency: missing (the SDK types"),
    ],
)
def test_a_stripe_object_off_the_sdk_types_fails(refund: dict[str, Any], problem: str) -> None:
    problems = check_stripe_answer("POST", "/v1/refunds", 200, _body(refund))
    assert any(problem in found for found in problems), problems


def test_an_answer_on_a_path_the_sdk_does_not_call_fails() -> None:
    problems = check_stripe_answer("GET", "/v1/refund_things/re_1", 200, _body(_refund()))
    assert problems == [
        (
            f"GET /v1/refund_things/re_1 → 200: the SDK ({stripe.VERSION}) has no endpoint GET "
            "/v1/refund_things/re_1: an answer no client can read"
        )
    ]
    # and an endpoint's answer must be the type that endpoint returns
    assert stripe_endpoint("GET", "/v1/refunds/re_1") is not None
    problems = check_stripe_answer("GET", "/v1/refunds/re_1", 200, _body({"object": "list", "data": []}))
    assert any(".object: 'list' is not one of ['refund']" in problem for problem in problems)


def test_stripe_errors_are_error_objects() -> None:
    error = {"error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}}
    assert check_stripe_answer("POST", "/v1/payment_intents/pi_1/confirm", 402, _body(error)) == []
    [problem] = check_stripe_answer("POST", "/v1/refunds", 400, _body({"error": {"type": "x", "reason": "y"}}))
    assert ".reason: not a field of ErrorObject" in problem
    assert check_stripe_answer("POST", "/v1/refunds", 400, _body({"message": "no"})) != []


def test_stripe_events_are_checked_down_to_the_object_they_carry() -> None:
    unknown = check_stripe_event(_event({"id": "x_1", "object": "refund_failure"}))
    assert "object 'refund_failure' is no object type of the SDK" in unknown[0]
    [wrong] = check_stripe_event(_event(_refund(amount=None)))
    assert "data.object.amount: null" in wrong
    [previous] = check_stripe_event(_event(_refund(), previous_attributes={"state": "pending"}))
    assert "previous_attributes.state: not a field of Refund" in previous
    [kind] = check_stripe_event(_event(_refund(), "refund.settled"))
    assert ".type: 'refund.settled' is not one of" in kind
    assert check_stripe_event(_event(_refund(), "charge.refund.updated")) == []
    [carried] = check_stripe_event(_event(_refund(), "charge.refunded"))
    assert carried == "event: a charge.refunded event carries a 'refund' object"


# ---------------------------------------------------------------------------------- the YooKassa checks


def _payment(**changes: Any) -> dict[str, Any]:
    payment = {
        "id": "2d2e1a1c-000f-5000-8000-1b2c3d4e5f60",
        "status": "canceled",
        "paid": False,
        "amount": {"value": "100.00", "currency": "RUB"},
        "created_at": "2026-01-01T00:00:00.000Z",
        "metadata": {},
        "recipient": {"account_id": "1", "gateway_id": "2"},
        "refundable": False,
        "test": True,
        "cancellation_details": {"party": "merchant", "reason": "canceled_by_merchant"},
    }
    return payment | changes


def test_a_yookassa_object_as_the_sdk_reads_it_passes() -> None:
    assert check_yookassa_object(_payment(), "payment", "payment") == []
    assert (
        check_yookassa_answer("GET", "/v3/payments?limit=1", 200, _body({"type": "list", "items": [_payment()]})) == []
    )
    notification = {"type": "notification", "event": "payment.canceled", "object": _payment()}
    assert check_yookassa_notification(_body(notification)) == []


@pytest.mark.parametrize(
    ("payment", "problem"),
    [
        (_payment(captured=True), "payment.captured: not a field of the SDK's PaymentResponse"),
        (_payment(amount={"value": "1.00", "currency": "RUB", "cents": 100}), "payment.amount.cents: not a field"),
        (_payment(status="failed"), "payment.status: 'failed' is not one of"),
        (_payment(cancellation_details={"party": "bank", "reason": "general_decline"}), "party: 'bank' is not one"),
        (_payment(cancellation_details={"party": "merchant", "reason": "oops"}), "reason: 'oops' is not one of"),
        (_payment(amount="100.00"), "the SDK's PaymentResponse refuses it"),
        # the SDK takes these unchecked: the API reference's types
        (_payment(paid="yes"), "payment.paid: 'yes' is not a boolean"),
        (_payment(created_at=1_700_000_000), "payment.created_at: 1700000000 is not an ISO 8601 UTC time"),
        (_payment(amount={"value": "1.5", "currency": "RUB"}), "payment.amount: {'value': '1.5'"),
        (_payment(metadata={"order": 7}), "payment.metadata: {'order': 7} is not an object of strings"),
    ],
)
def test_a_yookassa_object_off_the_sdk_models_fails(payment: dict[str, Any], problem: str) -> None:
    problems = check_yookassa_object(payment, "payment", "payment")
    assert len(problems) == 1, problems
    assert problem in problems[0]


def test_yookassa_reasons_are_those_of_the_object_kind() -> None:
    refund = {
        "id": "r1",
        "payment_id": "p1",
        "status": "canceled",
        "amount": {"value": "1.00", "currency": "RUB"},
        "created_at": "2026-01-01T00:00:00.000Z",
        "cancellation_details": {"party": "refund_network", "reason": "rejected_by_payee"},
    }
    assert check_yookassa_object(refund, "refund", "refund") == []
    details = {"party": "refund_network", "reason": "expired_on_capture"}  # a payment's reason, not a refund's
    [problem] = check_yookassa_object(refund | {"cancellation_details": details}, "refund", "refund")
    assert "cancellation_details.reason: 'expired_on_capture'" in problem


def test_yookassa_paths_errors_and_notifications_are_checked() -> None:
    [path] = check_yookassa_answer("POST", "/v3/deals", 200, _body({"id": "d1"}))
    assert "no YooKassa endpoint POST /v3/deals" in path
    error = {"type": "error", "id": str(uuid.uuid4()), "code": "invalid_request", "description": "Bad"}
    assert check_yookassa_answer("POST", "/v3/refunds", 400, _body(error)) == []
    [code] = check_yookassa_answer("POST", "/v3/refunds", 400, _body(error | {"code": "refund_failed"}))
    assert "code: 'refund_failed' is not one of" in code
    notification = {"type": "notification", "event": "refund.canceled", "object": {"id": "r1"}}
    [event] = check_yookassa_notification(_body(notification))
    assert "'refund.canceled' is no notification event of the SDK" in event
    lying = {"type": "notification", "event": "payment.succeeded", "object": _payment()}
    [status] = check_yookassa_notification(_body(lying))
    assert "a payment.succeeded notification about an object in status canceled" in status


# ------------------------------------------------------------------------------------- flows through SDKs


@pytest.fixture
def stripe_fake() -> Iterator[tuple[FakeStripe, stripe.StripeClient]]:
    telemetry = stripe.enable_telemetry
    stripe.enable_telemetry = False
    http_client = stripe.HTTPXClient(timeout=5, allow_sync_methods=True)
    with FakeStripe() as fake:
        yield fake, stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.url}, http_client=http_client)
    http_client.close()
    stripe.enable_telemetry = telemetry


def _server_of(fake: FakeStripe | FakeYooKassa) -> FakeServer:
    return next(server for server in list(FakeServer.live) if server.fake is fake)


def _checked(fake: FakeStripe | FakeYooKassa) -> list[str]:
    return check_fake_output(fake, _server_of(fake).sent, Cursor())


def test_stripe_flows_send_only_what_the_sdk_types_allow(stripe_fake: tuple[FakeStripe, stripe.StripeClient]) -> None:
    fake, client = stripe_fake
    v1 = client.v1
    customer = v1.customers.create(params={"email": "a@example.com"})
    card = {"allowed_payment_method_types": ["card"], "customer": customer.id}
    for capture in ("automatic", "automatic_async", "manual"):
        intent = v1.payment_intents.create(
            params={"amount": 1000, "currency": "usd", "capture_method": capture, **card}  # type: ignore[typeddict-item]
        )
        v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
        if capture == "manual":
            v1.payment_intents.capture(intent.id, params={"amount_to_capture": 600})
        v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})
    paid = intent
    declined = v1.payment_intents.create(params={"amount": 1000, "currency": "usd", **card})  # type: ignore[typeddict-item]
    with pytest.raises(stripe.CardError):
        v1.payment_intents.confirm(declined.id, params={"payment_method": "pm_card_chargeDeclined"})
    secure = v1.payment_intents.create(params={"amount": 1000, "currency": "usd", **card})  # type: ignore[typeddict-item]
    v1.payment_intents.confirm(secure.id, params={"payment_method": "pm_card_threeDSecure2Required"})
    fake.fail_action(secure.id)
    v1.payment_intents.cancel(secure.id)
    slow = v1.payment_intents.create(params={"amount": 1000, "currency": "usd", **card})  # type: ignore[typeddict-item]
    fake.set_processing(slow.id)
    fake.settle_processing(slow.id, succeeded=False)

    v1.refunds.create(params={"payment_intent": paid.id, "amount": 100})
    fake.refunds_pending = True
    pending = v1.refunds.create(params={"payment_intent": paid.id, "amount": 100})
    fake.settle_refund(pending.id, "failed")
    with pytest.raises(stripe.InvalidRequestError):
        v1.refunds.create(params={"payment_intent": paid.id, "amount": 10**6})
    v1.refunds.list(params={"payment_intent": paid.id, "limit": 1})

    line = {"price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "credits"}}, "quantity": 1}
    session_params: Any = {"mode": "payment", "line_items": [line], "success_url": "https://shop.example/ok"}
    session = v1.checkout.sessions.create(params=session_params)
    fake.pay_checkout(session.id)
    v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    v1.checkout.sessions.expire(v1.checkout.sessions.create(params=session_params).id)

    transfer = v1.transfers.create(params={"amount": 300, "currency": "usd", "destination": "acct_1"})
    v1.transfers.retrieve(transfer.id)
    events = v1.events.list(params={"limit": 3})
    v1.events.list(params={"limit": 3, "starting_after": events.data[-1].id})
    v1.events.retrieve(events.data[0].id)
    fake.fail_next(status=429)
    with pytest.raises(stripe.RateLimitError):
        v1.customers.retrieve(customer.id)

    assert _checked(fake) == []
    kinds = {event["data"]["object"]["object"] for event in fake.events}
    assert {"customer", "payment_intent", "charge", "refund", "checkout.session", "transfer"} <= kinds


def _sign_in(fake: FakeYooKassa, account_id: str, secret_key: str) -> None:
    Configuration.configure(account_id, secret_key)
    Configuration.api_url = fake.url + "/v3"  # configure() resets api_url


@pytest.fixture
def yookassa_fake() -> Iterator[FakeYooKassa]:
    settings = ("account_id", "secret_key", "api_url")
    saved = {name: getattr(Configuration, name) for name in settings}
    with FakeYooKassa(shop_id="100500", secret_key="test_shapes") as fake:
        _sign_in(fake, fake.shop_id, fake.secret_key)
        yield fake
    for name, value in saved.items():
        setattr(Configuration, name, value)


def test_yookassa_flows_send_only_what_the_sdk_models_allow(yookassa_fake: FakeYooKassa) -> None:
    fake = yookassa_fake
    confirmation = {"type": "redirect", "return_url": "https://shop.example/back"}

    def pay(*, capture: bool, value: str = "100.00") -> str:
        payment = Payment.create(
            {"amount": {"value": value, "currency": "RUB"}, "capture": capture, "confirmation": confirmation},
            str(uuid.uuid4()),
        )
        return str(payment.id)

    held, captured = pay(capture=False), pay(capture=True)
    fake.customer_pays(held)
    fake.customer_pays(captured)
    Payment.capture(held, {"amount": {"value": "60.00", "currency": "RUB"}}, str(uuid.uuid4()))
    canceled = pay(capture=False)
    fake.customer_pays(canceled)
    Payment.cancel(canceled, str(uuid.uuid4()))  # YooKassa cancels only waiting_for_capture payments
    fake.customer_declines(pay(capture=False))
    fake.customer_abandons(pay(capture=False))
    expiring = pay(capture=False)
    fake.customer_pays(expiring)
    fake.expire_hold(expiring)
    Payment.find_one(held)
    Payment.list({"limit": 2})

    Refund.create({"payment_id": captured, "amount": {"value": "10.00", "currency": "RUB"}}, str(uuid.uuid4()))
    fake.refunds_pending = True
    for _ in range(3):
        Refund.create({"payment_id": captured, "amount": {"value": "1.00", "currency": "RUB"}}, str(uuid.uuid4()))
    pending = [refund_id for refund_id, refund in fake.refunds.items() if refund["status"] == "pending"]
    fake.settle_refund(pending[0])
    fake.settle_refund(pending[1], "canceled", "rejected_by_payee")
    first = Refund.list({"payment_id": captured, "limit": 2})
    Refund.list({"payment_id": captured, "limit": 2, "cursor": first.next_cursor})
    Refund.find_one(pending[2])

    # payouts go with the payout gateway's agent id and secret key, where the fake asks for them (#13 item 5)
    _sign_in(fake, getattr(fake, "agent_id", fake.shop_id), getattr(fake, "payout_secret_key", fake.secret_key))
    card = {"type": "bank_card", "card": {"number": "2200000000000004"}}
    payout = Payout.create({"amount": {"value": "5.00", "currency": "RUB"}, "payout_destination_data": card}, "k1")
    fake.settle_payout(payout.id, "canceled", "insufficient_funds")
    Payout.find_one(payout.id)
    _sign_in(fake, fake.shop_id, fake.secret_key)
    fake.fail_next(status=500, path_prefix="/payments/")
    with pytest.raises(Exception):  # noqa: B017, PT011 (any SDK error: the body is what is checked)
        Payment.find_one(held)

    assert _checked(fake) == []
    events = {event for event, _ in fake.events}
    assert {"payment.waiting_for_capture", "payment.succeeded", "payment.canceled", "refund.succeeded"} <= events
    assert "payout.canceled" in events
