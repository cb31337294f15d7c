"""The Stripe fake, driven through the real `stripe` SDK (sync methods over HTTPX), never patched."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx
import pytest
import stripe

from fakes.stripe_api import FakeStripe, parse_form

# stripe's HTTPXClient passes the form body as `data=<str>`, which httpx deprecates; under `-W error` every POST
# would fail with APIConnectionError("A DeprecationWarning was raised"). The warning is the SDK's, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Use 'content=<...>' to upload raw bytes/text content:DeprecationWarning"
)

WEBHOOK_SECRET = "whsec_test_fake"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    telemetry = stripe.enable_telemetry
    stripe.enable_telemetry = False
    with FakeStripe(secret_key="sk_test_fake") as server:
        yield server
    stripe.enable_telemetry = telemetry


@pytest.fixture(autouse=True)
def _clean_fake(fake: FakeStripe) -> Iterator[None]:
    fake.refunds_pending = False
    yield
    fake.clear_failures()
    assert fake.server_errors == []


@contextmanager
def stripe_client(
    fake: FakeStripe, *, timeout: float = 2, retries: int = 0, key: str | None = None
) -> Iterator[stripe.StripeClient]:
    http_client = stripe.HTTPXClient(timeout=timeout, allow_sync_methods=True)
    try:
        yield stripe.StripeClient(
            key or fake.secret_key,
            base_addresses={"api": fake.url},
            http_client=http_client,
            max_network_retries=retries,
        )
    finally:
        http_client.close()


@pytest.fixture
def client(fake: FakeStripe) -> Iterator[stripe.StripeClient]:
    with stripe_client(fake) as sdk:
        yield sdk


def create_intent(client: stripe.StripeClient, amount: int = 1000, **params: object) -> stripe.PaymentIntent:
    return client.v1.payment_intents.create(
        params={"amount": amount, "currency": "usd", "allowed_payment_method_types": ["card"], **params}  # type: ignore[typeddict-item]
    )


def paid_intent(client: stripe.StripeClient, amount: int = 1000) -> stripe.PaymentIntent:
    intent = create_intent(client, amount)
    return client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})


# ------------------------------------------------------------------------------------------------ wire format


def test_parse_form_builds_nested_dicts_and_lists() -> None:
    encoded = (
        "metadata[payment_id]=x&metadata[0]=zero&line_items[0][price_data][unit_amount]=100"
        "&line_items[0][quantity]=2&line_items[1][quantity]=1&expand[]=latest_charge&expand[]=customer&amount=5"
    )
    assert parse_form(encoded) == {
        "metadata": {"payment_id": "x", "0": "zero"},
        "line_items": [{"price_data": {"unit_amount": "100"}, "quantity": "2"}, {"quantity": "1"}],
        "expand": ["latest_charge", "customer"],
        "amount": "5",
    }


def test_wrong_secret_key_is_refused(fake: FakeStripe) -> None:
    with stripe_client(fake, key="sk_test_wrong") as sdk, pytest.raises(stripe.AuthenticationError) as raised:
        sdk.v1.customers.create(params={"email": "a@example.com"})
    assert raised.value.http_status == 401
    assert raised.value.user_message is not None
    assert raised.value.user_message.startswith("Invalid API Key provided")


def test_unknown_parameters_and_missing_objects_are_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "payment_method_types": ["card"]})  # type: ignore[typeddict-unknown-key]
    assert (raised.value.code, raised.value.param) == ("parameter_unknown", "payment_method_types")

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.create(params={"amount": 10, "currency": "usd"})
    assert raised.value.code == "amount_too_small"

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.retrieve("pi_missing")
    assert (raised.value.http_status, raised.value.code) == (404, "resource_missing")


def test_customers(client: stripe.StripeClient, fake: FakeStripe) -> None:
    customer = client.v1.customers.create(params={"email": "a@example.com", "name": "A", "metadata": {"user": "1"}})
    assert customer.id.startswith("cus_")
    fetched = client.v1.customers.retrieve(customer.id)
    assert (fetched.email, fetched.name, fetched.metadata.to_dict(), fetched.livemode) == (
        "a@example.com",
        "A",
        {"user": "1"},
        False,
    )
    intent = create_intent(client, customer=customer.id)
    assert intent.customer == customer.id
    with pytest.raises(stripe.InvalidRequestError) as raised:
        create_intent(client, customer="cus_missing")
    assert (raised.value.http_status, raised.value.code, raised.value.param) == (400, "resource_missing", "customer")


# ------------------------------------------------------------------------------------------- payment intents


def test_automatic_intent_is_created_confirmed_and_charged(client: stripe.StripeClient, fake: FakeStripe) -> None:
    intent = create_intent(client, metadata={"payment_id": "p1"}, description="Enroll")
    assert intent.object == "payment_intent"
    assert intent.status == "requires_payment_method"
    assert intent.client_secret == f"{intent.id}_secret_{intent.client_secret.split('_secret_')[1]}"
    assert (intent.amount, intent.currency, intent.amount_capturable, intent.amount_received) == (1000, "usd", 0, 0)
    assert intent.latest_charge is None
    assert intent.last_payment_error is None
    assert intent.metadata.to_dict() == {"payment_id": "p1"}

    confirmed = client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    assert (confirmed.status, confirmed.amount_received) == ("succeeded", 1000)
    assert isinstance(confirmed.latest_charge, str)
    assert confirmed.latest_charge.startswith("ch_")

    fetched = client.v1.payment_intents.retrieve(intent.id, params={"expand": ["latest_charge"]})
    charge = fetched.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert (charge.amount, charge.amount_captured, charge.amount_refunded) == (1000, 1000, 0)
    assert (charge.captured, charge.refunded, charge.status, charge.payment_intent) == (
        True,
        False,
        "succeeded",
        intent.id,
    )
    assert charge.metadata.to_dict() == {"payment_id": "p1"}
    types = [event["type"] for event in fake.events if event["data"]["object"].get("id") == intent.id]
    assert types == ["payment_intent.created", "payment_intent.succeeded"]


def test_dashboard_payment_methods_need_a_return_url_for_a_server_side_confirm(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    intent = client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "eur", "automatic_payment_methods": {"enabled": True}}
    )
    assert intent.automatic_payment_methods is not None
    with pytest.raises(stripe.InvalidRequestError, match="return_url"):
        client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    confirmed = client.v1.payment_intents.confirm(
        intent.id, params={"payment_method": "pm_card_visa", "return_url": "https://shop.example/back"}
    )
    assert confirmed.status == "succeeded"

    no_redirects = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "eur",
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    assert no_redirects.status == "succeeded"
    created = next(e for e in fake.events_of("payment_intent.created") if e["data"]["object"]["id"] == no_redirects.id)
    assert created["data"]["object"]["status"] == "requires_confirmation"


def test_manual_capture_holds_then_captures_part_and_releases_the_rest(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    intent = create_intent(client, capture_method="manual")
    held = client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    assert (held.status, held.amount_capturable, held.amount_received) == ("requires_capture", 1000, 0)
    assert fake.charges[held.latest_charge]["captured"] is False
    assert fake.events_of("payment_intent.amount_capturable_updated")[-1]["data"]["object"]["id"] == intent.id

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 1001})
    assert raised.value.code == "amount_too_large"

    captured = client.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 600})
    assert (captured.status, captured.amount_received, captured.amount_capturable) == ("succeeded", 600, 0)
    charge = fake.charges[captured.latest_charge]
    assert (charge["amount_captured"], charge["amount_refunded"], charge["refunded"]) == (600, 400, False)
    released = client.v1.refunds.list(params={"payment_intent": intent.id})
    assert [(refund.amount, refund.reason) for refund in released.data] == [(400, None)]

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.capture(intent.id)
    assert raised.value.code == "payment_intent_unexpected_state"

    with pytest.raises(stripe.InvalidRequestError) as raised:  # only the captured 600 can be refunded
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 601})
    assert raised.value.code == "amount_too_large"


def test_cancel(client: stripe.StripeClient, fake: FakeStripe) -> None:
    fresh = create_intent(client)
    canceled = client.v1.payment_intents.cancel(fresh.id, params={"cancellation_reason": "requested_by_customer"})
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "requested_by_customer")
    assert isinstance(canceled.canceled_at, int)
    assert fake.events_of("payment_intent.canceled")[-1]["data"]["object"]["id"] == fresh.id

    held = create_intent(client, capture_method="manual")
    held = client.v1.payment_intents.confirm(held.id, params={"payment_method": "pm_card_visa"})
    released = client.v1.payment_intents.cancel(held.id)
    assert (released.status, released.amount_capturable) == ("canceled", 0)
    charge = fake.charges[held.latest_charge]
    assert (charge["captured"], charge["amount_refunded"], charge["refunded"]) == (False, 1000, True)

    succeeded = paid_intent(client)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.cancel(succeeded.id)
    assert raised.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.confirm(canceled.id, params={"payment_method": "pm_card_visa"})
    assert raised.value.code == "payment_intent_unexpected_state"


@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("4000000000000002", "card_declined", "generic_decline"),
        ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("4000000000009995", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
        ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
    ],
)
def test_declines_raise_card_errors_and_leave_the_intent_retryable(
    client: stripe.StripeClient, fake: FakeStripe, payment_method: str, code: str, decline_code: str
) -> None:
    intent = create_intent(client)
    with pytest.raises(stripe.CardError) as raised:
        client.v1.payment_intents.confirm(intent.id, params={"payment_method": payment_method})
    error = raised.value
    assert (error.http_status, error.code) == (402, code)
    assert error.error is not None
    assert error.error.decline_code == decline_code
    assert error.error.type == "card_error"
    assert error.error.payment_intent is not None
    assert error.error.payment_intent.status == "requires_payment_method"

    fetched = client.v1.payment_intents.retrieve(intent.id)
    assert fetched.status == "requires_payment_method"
    assert fetched.last_payment_error is not None
    assert (fetched.last_payment_error.code, fetched.last_payment_error.decline_code) == (code, decline_code)
    assert fake.charges[fetched.latest_charge]["status"] == "failed"
    assert fake.events_of("payment_intent.payment_failed")[-1]["data"]["object"]["id"] == intent.id

    retried = client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    assert retried.status == "succeeded"
    assert retried.last_payment_error is None


def test_unknown_payment_method_is_refused(client: stripe.StripeClient) -> None:
    intent = create_intent(client)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_nope"})
    assert (raised.value.code, raised.value.param) == ("resource_missing", "payment_method")


def test_authentication_required(client: stripe.StripeClient, fake: FakeStripe) -> None:
    intent = create_intent(client)
    pending = client.v1.payment_intents.confirm(
        intent.id, params={"payment_method": "4000002500003155", "return_url": "https://shop.example/back"}
    )
    assert pending.status == "requires_action"
    assert pending.next_action is not None
    assert pending.next_action.type == "redirect_to_url"
    assert pending.next_action.redirect_to_url is not None
    assert pending.next_action.redirect_to_url.return_url == "https://shop.example/back"
    assert fake.events_of("payment_intent.requires_action")[-1]["data"]["object"]["id"] == intent.id

    fake.complete_action(intent.id)
    assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"

    held = create_intent(client, capture_method="manual")
    client.v1.payment_intents.confirm(held.id, params={"payment_method": "pm_card_authenticationRequired"})
    failed = fake.fail_action(held.id)
    assert failed["status"] == "requires_payment_method"
    assert failed["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    fake.customer_pays(held.id, "pm_card_authenticationRequired")
    assert fake.complete_action(held.id)["status"] == "requires_capture"


def test_customer_pays_in_the_browser(client: stripe.StripeClient, fake: FakeStripe) -> None:
    intent = create_intent(client)
    declined = fake.customer_pays(intent.id, "pm_card_chargeDeclined")
    assert declined["status"] == "requires_payment_method"
    assert declined["last_payment_error"]["decline_code"] == "generic_decline"
    paid = fake.customer_pays(intent.id)
    assert paid["status"] == "succeeded"
    assert client.v1.payment_intents.retrieve(intent.id).amount_received == 1000

    slow = create_intent(client)
    assert fake.set_processing(slow.id)["status"] == "processing"
    assert client.v1.payment_intents.retrieve(slow.id).status == "processing"
    assert fake.settle_processing(slow.id)["status"] == "succeeded"
    failing = create_intent(client)
    fake.set_processing(failing.id)
    assert fake.settle_processing(failing.id, succeeded=False)["status"] == "requires_payment_method"
    assert [event["type"] for event in fake.events if event["data"]["object"].get("id") == slow.id] == [
        "payment_intent.created",
        "payment_intent.processing",
        "payment_intent.succeeded",
    ]


def test_async_methods_work_the_same(fake: FakeStripe) -> None:
    async def scenario() -> tuple[str, str]:
        http_client = stripe.HTTPXClient(timeout=2)
        sdk = stripe.StripeClient(
            fake.secret_key, base_addresses={"api": fake.url}, http_client=http_client, max_network_retries=0
        )
        try:
            intent = await sdk.v1.payment_intents.create_async(
                params={"amount": 1200, "currency": "usd", "capture_method": "manual", "metadata": {"a": "1", "b": "2"}}
            )
            await sdk.v1.payment_intents.confirm_async(
                intent.id, params={"payment_method": "pm_card_visa", "return_url": "https://shop.example/back"}
            )
            captured = await sdk.v1.payment_intents.capture_async(intent.id, params={"metadata": {"a": "", "c": "3"}})
            other = await sdk.v1.payment_intents.create_async(params={"amount": 1200, "currency": "usd"})
            with pytest.raises(stripe.CardError):
                await sdk.v1.payment_intents.confirm_async(
                    other.id, params={"payment_method": "pm_card_chargeDeclined", "return_url": "https://x.example"}
                )
            return captured.status, ",".join(sorted(captured.metadata.to_dict()))
        finally:
            await http_client.close_async()

    assert anyio.run(scenario) == ("succeeded", "b,c")


# --------------------------------------------------------------------------------------------- idempotency


def test_idempotent_create_replays_the_first_answer(client: stripe.StripeClient, fake: FakeStripe) -> None:
    params: stripe.params.PaymentIntentCreateParams = {"amount": 1500, "currency": "usd", "metadata": {"p": "1"}}
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "create-1"})
    count = len(fake.payment_intents)
    again = client.v1.payment_intents.create(params=params, options={"idempotency_key": "create-1"})
    assert again.id == first.id
    assert len(fake.payment_intents) == count
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"

    with pytest.raises(stripe.IdempotencyError) as raised:
        client.v1.payment_intents.create(
            params={"amount": 1600, "currency": "usd", "metadata": {"p": "1"}}, options={"idempotency_key": "create-1"}
        )
    assert raised.value.http_status == 400
    assert raised.value.user_message is not None
    assert raised.value.user_message.startswith(
        "Keys for idempotent requests can only be used with the same parameters"
    )


def test_a_declined_confirm_is_replayed_not_retried(client: stripe.StripeClient, fake: FakeStripe) -> None:
    intent = create_intent(client)
    options: stripe.RequestOptions = {"idempotency_key": f"confirm-{intent.id}"}
    for _ in range(2):
        with pytest.raises(stripe.CardError):
            client.v1.payment_intents.confirm(
                intent.id, params={"payment_method": "pm_card_chargeDeclined"}, options=options
            )
    assert len([charge for charge in fake.charges.values() if charge["payment_intent"] == intent.id]) == 1


# ------------------------------------------------------------------------------------------------- refunds


def test_refunds_full_partial_and_too_large(client: stripe.StripeClient, fake: FakeStripe) -> None:
    intent = paid_intent(client, 1000)
    partial = client.v1.refunds.create(
        params={"payment_intent": intent.id, "amount": 300, "reason": "requested_by_customer", "metadata": {"r": "1"}}
    )
    assert (partial.object, partial.status, partial.amount, partial.payment_intent) == (
        "refund",
        "succeeded",
        300,
        intent.id,
    )
    assert partial.id.startswith("re_")
    charge = fake.charges[intent.latest_charge]
    assert (charge["amount_refunded"], charge["refunded"]) == (300, False)

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 701})
    assert (raised.value.code, raised.value.param) == ("amount_too_large", "amount")

    rest = client.v1.refunds.create(params={"charge": intent.latest_charge})
    assert rest.amount == 700
    assert (charge["amount_refunded"], charge["refunded"]) == (1000, True)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    assert raised.value.code == "charge_already_refunded"

    assert client.v1.refunds.retrieve(partial.id).metadata.to_dict() == {"r": "1"}
    listed = client.v1.refunds.list(params={"payment_intent": intent.id})
    assert (listed.object, listed.url, listed.has_more) == ("list", "/v1/refunds", False)
    assert [refund.id for refund in listed.data] == [rest.id, partial.id]
    assert [event["data"]["object"]["id"] for event in fake.events_of("refund.created")][-2:] == [partial.id, rest.id]
    assert fake.events_of("charge.refunded")[-1]["data"]["object"]["amount_refunded"] == 1000

    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.create(params={"payment_intent": intent.id, "reason": "changed_mind"})
    assert raised.value.param == "reason"


def test_refunds_need_a_captured_charge(client: stripe.StripeClient) -> None:
    unpaid = create_intent(client)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.create(params={"payment_intent": unpaid.id})
    assert raised.value.code == "charge_not_refundable"
    held = create_intent(client, capture_method="manual")
    client.v1.payment_intents.confirm(held.id, params={"payment_method": "pm_card_visa"})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.create(params={"payment_intent": held.id})
    assert raised.value.code == "charge_not_refundable"


def test_pending_refunds_settle_or_fail(client: stripe.StripeClient, fake: FakeStripe) -> None:
    intent = paid_intent(client, 1000)
    fake.refunds_pending = True
    first = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 400})
    second = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 600})
    assert (first.status, second.status) == ("pending", "pending")
    charge = fake.charges[intent.latest_charge]
    assert charge["amount_refunded"] == 1000

    fake.settle_refund(first.id)
    failed = fake.settle_refund(second.id, status="failed")
    assert (failed["status"], failed["failure_reason"]) == ("failed", "declined")
    assert (charge["amount_refunded"], charge["refunded"]) == (400, False)
    assert client.v1.refunds.retrieve(first.id).status == "succeeded"
    assert fake.events_of("refund.failed")[-1]["data"]["object"]["id"] == second.id
    updated = fake.events_of("refund.updated")[-1]
    assert updated["data"]["previous_attributes"] == {"status": "pending"}
    again = client.v1.refunds.create(params={"payment_intent": intent.id})  # the failed amount is refundable again
    assert again.amount == 600


def test_a_succeeded_refund_fails_late_and_its_amount_returns(client: stripe.StripeClient, fake: FakeStripe) -> None:
    intent = paid_intent(client, 1000)
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 700})
    assert refund.status == "succeeded"
    charge = fake.charges[intent.latest_charge]

    failed = fake.fail_refund(refund.id)

    assert (failed["status"], failed["failure_reason"]) == ("failed", "expired_or_canceled_card")
    assert failed["failure_balance_transaction"].startswith("txn_")
    assert (charge["amount_refunded"], charge["refunded"]) == (0, False)
    seen = client.v1.refunds.retrieve(refund.id)
    assert (seen.status, seen.failure_reason) == ("failed", "expired_or_canceled_card")
    for event_type in ("charge.refund.updated", "refund.updated"):
        event = fake.events_of(event_type)[-1]
        assert event["data"]["object"]["id"] == refund.id
        assert event["data"]["previous_attributes"] == {"status": "succeeded"}
    assert fake.events_of("refund.failed")[-1]["data"]["object"]["status"] == "failed"
    with pytest.raises(ValueError, match="cannot fail"):
        fake.fail_refund(refund.id)
    assert client.v1.refunds.create(params={"payment_intent": intent.id}).amount == 1000


def test_a_refund_can_be_failed_over_http_for_a_person_driving_the_fake(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    intent = paid_intent(client, 1000)
    refund = client.v1.refunds.create(params={"payment_intent": intent.id})

    failed = httpx.post(f"{fake.url}/_fake/refunds/{refund.id}/fail")
    again = httpx.post(f"{fake.url}/_fake/refunds/{refund.id}/fail")

    assert failed.status_code == 200
    assert failed.json()["status"] == "failed"
    assert again.status_code == 400
    assert client.v1.refunds.retrieve(refund.id).status == "failed"


def test_refunds_of_an_intent_are_listed_page_by_page(client: stripe.StripeClient) -> None:
    intent = paid_intent(client, 1000)
    made = [client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 10}).id for _ in range(12)]

    first = client.v1.refunds.list(params={"payment_intent": intent.id})
    second = client.v1.refunds.list(params={"payment_intent": intent.id, "starting_after": first.data[-1].id})

    assert (len(first.data), first.has_more) == (10, True)  # Stripe's default page is 10
    assert (len(second.data), second.has_more) == (2, False)
    assert [refund.id for refund in [*first.data, *second.data]] == made[::-1]  # newest first


# ------------------------------------------------------------------------------------------ checkout sessions


def session_params(**extra: object) -> stripe.params.checkout.SessionCreateParams:
    params = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "10 credits"}},
                "quantity": 2,
            }
        ],
        "client_reference_id": "package-1",
        "success_url": "https://shop.example/ok",
        "cancel_url": "https://shop.example/cancel",
        "metadata": {"package_id": "pk1"},
        "payment_intent_data": {"metadata": {"payment_id": "pay1"}},
    }
    return params | extra  # type: ignore[return-value]


def test_checkout_session_is_paid(client: stripe.StripeClient, fake: FakeStripe) -> None:
    session = client.v1.checkout.sessions.create(params=session_params())
    assert session.id.startswith("cs_test_")
    assert (session.object, session.status, session.payment_status) == ("checkout.session", "open", "unpaid")
    assert (session.amount_total, session.currency, session.payment_intent) == (1000, "usd", None)
    assert session.url == f"{fake.url}/checkout/{session.id}"
    assert session.client_reference_id == "package-1"

    fake.pay_checkout(session.id)
    paid = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert (paid.status, paid.payment_status, paid.url) == ("complete", "paid", None)
    intent = paid.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert (intent.status, intent.amount, intent.amount_received) == ("succeeded", 1000, 1000)
    assert intent.metadata.to_dict() == {"payment_id": "pay1"}
    completed = fake.events_of("checkout.session.completed")[-1]["data"]["object"]
    assert (completed["id"], completed["payment_status"]) == (session.id, "paid")

    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.cancel(intent.id)  # a Checkout intent is ended by expiring its session


def test_checkout_decline_then_async_payment(client: stripe.StripeClient, fake: FakeStripe) -> None:
    session = client.v1.checkout.sessions.create(params=session_params())
    declined = fake.pay_checkout(session.id, "pm_card_chargeDeclined")
    assert (declined["status"], declined["payment_status"]) == ("open", "unpaid")

    pending = fake.pay_checkout(session.id, async_payment=True)
    assert (pending["status"], pending["payment_status"]) == ("complete", "unpaid")
    assert pending["payment_intent"] == declined["payment_intent"]
    assert fake.payment_intents[pending["payment_intent"]]["status"] == "processing"

    settled = fake.settle_async_checkout(session.id)
    assert settled["payment_status"] == "paid"
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
    assert fake.events_of("checkout.session.async_payment_succeeded")[-1]["data"]["object"]["id"] == session.id

    other = client.v1.checkout.sessions.create(params=session_params())
    fake.pay_checkout(other.id, async_payment=True)
    failed = fake.settle_async_checkout(other.id, succeeded=False)
    assert (failed["status"], failed["payment_status"]) == ("complete", "unpaid")
    assert fake.events_of("checkout.session.async_payment_failed")[-1]["data"]["object"]["id"] == other.id


def test_checkout_sessions_expire(client: stripe.StripeClient, fake: FakeStripe) -> None:
    by_api = client.v1.checkout.sessions.create(params=session_params())
    expired = client.v1.checkout.sessions.expire(by_api.id)
    assert (expired.status, expired.url) == ("expired", None)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(by_api.id)

    by_control = client.v1.checkout.sessions.create(params=session_params())
    fake.pay_checkout(by_control.id, "pm_card_chargeDeclined")
    fake.expire_checkout(by_control.id)
    session = fake.checkout_sessions[by_control.id]
    assert session["status"] == "expired"
    assert fake.payment_intents[session["payment_intent"]]["status"] == "canceled"
    assert [event["data"]["object"]["id"] for event in fake.events_of("checkout.session.expired")][-2:] == [
        by_api.id,
        by_control.id,
    ]


def test_checkout_session_validation(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.create(params=session_params(line_items=[{"quantity": 1}]))
    assert raised.value.code == "parameter_missing"
    assert raised.value.param == "line_items[0][price_data]"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.create(params=session_params(expires_at=int(time.time()) + 60))
    assert raised.value.param == "expires_at"


# ----------------------------------------------------------------------------------------------- transfers


def test_transfers(client: stripe.StripeClient, fake: FakeStripe) -> None:
    transfer = client.v1.transfers.create(
        params={
            "amount": 700,
            "currency": "usd",
            "destination": "acct_provider1",
            "metadata": {"withdrawal": "w1"},
            "transfer_group": "enroll-1",
        }
    )
    assert transfer.id.startswith("tr_")
    fetched = client.v1.transfers.retrieve(transfer.id)
    assert (fetched.amount, fetched.destination, fetched.transfer_group) == (700, "acct_provider1", "enroll-1")
    assert fake.events_of("transfer.created")[-1]["data"]["object"]["id"] == transfer.id
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.transfers.create(params={"amount": 700, "currency": "usd", "destination": "provider1"})
    assert (raised.value.code, raised.value.param) == ("resource_missing", "destination")


def test_a_transfer_to_an_account_that_cannot_receive_one_is_refused(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    fake.unpayable_accounts.add("acct_closed")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.transfers.create(params={"amount": 700, "currency": "usd", "destination": "acct_closed"})
    assert (raised.value.http_status, raised.value.code) == (400, "insufficient_capabilities_for_transfer")
    assert not [t for t in fake.transfers.values() if t["destination"] == "acct_closed"]


def test_transfer_reversals_partial_then_whole(client: stripe.StripeClient, fake: FakeStripe) -> None:
    transfer = client.v1.transfers.create(params={"amount": 700, "currency": "usd", "destination": "acct_p2"})

    partial = client.v1.transfers.reversals.create(transfer.id, params={"amount": 200})
    assert (partial.object, partial.amount, partial.transfer) == ("transfer_reversal", 200, transfer.id)
    assert partial.id.startswith("trr_")
    after = client.v1.transfers.retrieve(transfer.id)
    assert (after.amount_reversed, after.reversed) == (200, False)

    rest = fake.reverse_transfer(transfer.id)  # the Dashboard: all that is left
    assert rest["amount"] == 500
    # the objects have the SDK's fields, no more and no fewer
    assert set(rest) == set(stripe.TransferReversal.__annotations__) - {"OBJECT_NAME"}
    assert set(fake.transfers[transfer.id]) == set(stripe.Transfer.__annotations__) - {"OBJECT_NAME"}
    after = client.v1.transfers.retrieve(transfer.id)
    assert (after.amount_reversed, after.reversed, len(after.reversals.data)) == (700, True, 2)
    reversed_events = [e for e in fake.events_of("transfer.reversed") if e["data"]["object"]["id"] == transfer.id]
    assert [e["data"]["object"]["amount_reversed"] for e in reversed_events] == [200, 700]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.transfers.reversals.create(transfer.id)


# ------------------------------------------------------------------------------------------------ disputes


def _declared(sdk_type: type) -> set[str]:
    """The fields the SDK's type declares for the object (its annotations, without class-level constants)."""
    return {name for name, kind in sdk_type.__annotations__.items() if "ClassVar" not in str(kind)}


def test_a_chargeback_withdraws_then_a_win_reinstates_the_funds_but_not_the_fee(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    intent = paid_intent(client, 5000)
    opened = fake.open_dispute(intent.id, reason="fraudulent")
    dispute = client.v1.disputes.retrieve(opened["id"], params={"expand": ["charge"]})
    # the object has every field Stripe's dispute has, and nothing else
    wire = dispute.to_dict()
    assert set(wire) == _declared(stripe.Dispute)
    assert set(wire["evidence_details"]) == _declared(stripe.Dispute.EvidenceDetails)
    assert set(wire["evidence"]) == _declared(stripe.Dispute.Evidence)
    assert (dispute.amount, dispute.currency, dispute.status, dispute.reason) == (
        5000,
        "usd",
        "needs_response",
        "fraudulent",
    )
    assert dispute.payment_intent == intent.id
    assert dispute.charge["disputed"] is True  # expanded
    assert dispute.evidence_details.due_by > time.time()
    (withdrawal,) = dispute.balance_transactions
    assert set(withdrawal.to_dict()) == _declared(stripe.BalanceTransaction)
    assert (withdrawal.amount, withdrawal.fee, withdrawal.net) == (-5000, 1500, -6500)
    assert withdrawal.fee_details[0].type == "stripe_fee"
    assert [event["type"] for event in fake.events[-2:]] == ["charge.dispute.created", "charge.dispute.funds_withdrawn"]

    fake.submit_evidence(dispute.id)
    assert client.v1.disputes.retrieve(dispute.id).status == "under_review"
    fake.close_dispute(dispute.id, won=True)
    won = client.v1.disputes.retrieve(dispute.id)
    assert won.status == "won"
    assert [(txn.amount, txn.fee) for txn in won.balance_transactions] == [(-5000, 1500), (5000, 0)]
    assert [event["type"] for event in fake.events[-3:]] == [
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
    ]
    with pytest.raises(ValueError, match="cannot be disputed"):
        fake.open_dispute(intent.id)  # one dispute per charge


def test_an_inquiry_moves_no_money_until_it_escalates_and_an_accepted_dispute_is_lost(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    inquiry = fake.open_dispute(paid_intent(client).latest_charge, inquiry=True)  # type: ignore[arg-type]
    assert (inquiry["status"], inquiry["balance_transactions"]) == ("warning_needs_response", [])
    assert fake.events[-1]["type"] == "charge.dispute.created"
    escalated = fake.escalate_dispute(inquiry["id"])
    assert escalated["status"] == "needs_response"
    assert [txn["amount"] for txn in escalated["balance_transactions"]] == [-1000]

    closed = client.v1.disputes.close(inquiry["id"])
    assert closed.status == "lost"
    assert len(closed.balance_transactions) == 1  # nothing comes back
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.disputes.close(inquiry["id"])
    listed = client.v1.disputes.list(params={"payment_intent": closed.payment_intent})  # type: ignore[typeddict-item]
    assert [item.id for item in listed.data] == [inquiry["id"]]


def test_a_charge_charged_back_cannot_be_refunded_but_an_inquiry_can(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    # Stripe's error code `charge_disputed`: the bank returns the money of a chargeback, open or lost
    intent = paid_intent(client, 5000)
    inquiry = fake.open_dispute(intent.id, inquiry=True)
    partial = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1000})
    assert partial.status == "succeeded"  # an inquiry can still be refunded (`is_charge_refundable`)

    fake.escalate_dispute(inquiry["id"])
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    assert (raised.value.http_status, raised.value.code) == (400, "charge_disputed")
    fake.close_dispute(inquiry["id"], won=False)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    assert raised.value.code == "charge_disputed"
    assert [refund["id"] for refund in fake.refunds.values() if refund["payment_intent"] == intent.id] == [partial.id]


def test_disputes_are_opened_and_closed_over_http_too(fake: FakeStripe) -> None:
    with stripe_client(fake) as sdk:
        intent = paid_intent(sdk)
    opened = httpx.post(f"{fake.url}/_fake/payment_intents/{intent.id}/dispute", timeout=5)
    assert opened.status_code == 200
    dispute_id = opened.json()["id"]
    lost = httpx.post(f"{fake.url}/_fake/disputes/{dispute_id}/lose", timeout=5)
    assert lost.json()["status"] == "lost"


# --------------------------------------------------------------------------------------- failure injection


def test_injected_failures(client: stripe.StripeClient, fake: FakeStripe) -> None:
    fake.fail_next(status=500, path_prefix="/v1/payment_intents")
    client.v1.customers.create()  # another path is not affected
    with pytest.raises(stripe.APIError) as server_error:
        create_intent(client)
    assert server_error.value.http_status == 500

    fake.fail_next(status=429)
    with pytest.raises(stripe.RateLimitError) as rate_limited:
        create_intent(client)
    assert rate_limited.value.code is None  # the SDK does not copy `code` onto RateLimitError
    assert rate_limited.value.error is not None
    assert rate_limited.value.error.code == "rate_limit"

    assert create_intent(client).status == "requires_payment_method"


def test_a_hung_request_times_out_on_the_client(fake: FakeStripe) -> None:
    intent_count = len(fake.payment_intents)
    fake.hang_next(seconds=10, path_prefix="/v1/customers/")
    with stripe_client(fake, timeout=0.5) as sdk:
        started = time.monotonic()
        with pytest.raises(stripe.APIConnectionError):
            sdk.v1.customers.retrieve("cus_whatever")
        assert time.monotonic() - started < 3
        assert create_intent(sdk).status == "requires_payment_method"  # the server still answers others
    assert len(fake.payment_intents) == intent_count + 1


def test_a_lost_response_is_recovered_by_retrying_with_the_same_key(
    client: stripe.StripeClient, fake: FakeStripe
) -> None:
    intent = create_intent(client)
    options: stripe.RequestOptions = {"idempotency_key": f"confirm-{intent.id}"}
    fake.fail_next(status=500, path_prefix=f"/v1/payment_intents/{intent.id}/confirm", fail_after_processing=True)
    with pytest.raises(stripe.APIError):
        client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"}, options=options)
    assert fake.payment_intents[intent.id]["status"] == "succeeded"  # Stripe did the work; the answer was lost

    retried = client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"}, options=options)
    assert (retried.id, retried.status) == (intent.id, "succeeded")
    assert retried.last_response is not None
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    assert len([charge for charge in fake.charges.values() if charge["payment_intent"] == intent.id]) == 1


def test_the_sdk_retries_a_lost_response_with_its_own_key(fake: FakeStripe) -> None:
    with stripe_client(fake, retries=1) as sdk:
        intent = create_intent(sdk)
        fake.fail_next(status=500, path_prefix=f"/v1/payment_intents/{intent.id}/confirm", fail_after_processing=True)
        confirmed = sdk.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    assert confirmed.status == "succeeded"
    attempts = [request for request in fake.requests if request.path.endswith(f"{intent.id}/confirm")]
    assert len(attempts) == 2
    assert attempts[0].idempotency_key == attempts[1].idempotency_key is not None
    assert len([charge for charge in fake.charges.values() if charge["payment_intent"] == intent.id]) == 1


def test_close_ends_a_hung_request() -> None:
    outcome: list[BaseException] = []
    with FakeStripe() as server, stripe_client(server, timeout=30) as sdk:
        server.hang_next(seconds=60)

        def call() -> None:
            try:
                sdk.v1.customers.create()
            except stripe.APIConnectionError as error:
                outcome.append(error)

        caller = threading.Thread(target=call)
        caller.start()
        deadline = time.monotonic() + 5
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 2
        caller.join(5)
    assert len(outcome) == 1
    assert server.customers == {}


# ---------------------------------------------------------------------------------------- events, webhooks


def test_events_record_the_request(client: stripe.StripeClient, fake: FakeStripe) -> None:
    intent = client.v1.payment_intents.create(
        params={"amount": 2000, "currency": "usd", "allowed_payment_method_types": ["card"]},
        options={"idempotency_key": "events-1"},
    )
    created = next(
        event for event in fake.events_of("payment_intent.created") if event["data"]["object"]["id"] == intent.id
    )
    assert created["id"].startswith("evt_")
    assert (created["object"], created["livemode"], created["pending_webhooks"]) == ("event", False, 1)
    assert created["api_version"] == stripe.api_version
    assert created["request"]["idempotency_key"] == "events-1"
    assert intent.last_response is not None
    assert created["request"]["id"] == intent.last_response.request_id
    client.v1.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
    # the snapshot is the object at that moment, not now
    assert created["data"]["object"]["status"] == "requires_payment_method"
    assert client.v1.events.retrieve(created["id"]).type == "payment_intent.created"
    listed = client.v1.events.list(params={"type": "payment_intent.succeeded", "limit": 1})
    assert listed.data[0].data.object["id"] == intent.id


def test_signed_delivery_verifies_with_the_sdk(client: stripe.StripeClient, fake: FakeStripe) -> None:
    intent = paid_intent(client)
    event = next(
        event for event in fake.events_of("payment_intent.succeeded") if event["data"]["object"]["id"] == intent.id
    )
    body, headers = fake.signed_delivery(event, WEBHOOK_SECRET)
    assert headers["Content-Type"].startswith("application/json")

    verified = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], WEBHOOK_SECRET)
    assert (verified.id, verified.type) == (event["id"], "payment_intent.succeeded")
    assert verified.data.object["id"] == intent.id
    assert client.construct_event(body, headers["Stripe-Signature"], WEBHOOK_SECRET).id == event["id"]

    tampered = body.replace(b'"amount": 1000', b'"amount": 1')
    assert tampered != body
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, headers["Stripe-Signature"], WEBHOOK_SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_other")
    stale = fake.sign(body, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        client.construct_event(body, stale, WEBHOOK_SECRET)


def test_currency_rules_of_stripes_documentation(client: stripe.StripeClient) -> None:
    """https://docs.stripe.com/currencies: ISK whole krónur in two-decimal form, three-decimal amounts ending in 0,
    an eight-digit maximum, minimums in the currency's own units (¥50 for a zero-decimal JPY)."""

    def create(amount: int, currency: str) -> stripe.PaymentIntent:
        return create_intent(client, amount, currency=currency)

    assert create(150_000, "isk").amount == 150_000
    with pytest.raises(stripe.InvalidRequestError) as raised:
        create(150_050, "isk")
    assert (raised.value.code, raised.value.param) == ("invalid_charge_amount_no_decimal_compatible", "amount")

    kwd = create(5120, "kwd")
    with pytest.raises(stripe.InvalidRequestError) as raised:
        create(5124, "kwd")
    assert raised.value.param == "amount"

    assert create(99_999_999, "usd").amount == 99_999_999
    with pytest.raises(stripe.InvalidRequestError) as raised:
        create(100_000_000, "usd")
    assert raised.value.code == "amount_too_large"

    assert create(50, "jpy").amount == 50
    with pytest.raises(stripe.InvalidRequestError) as raised:
        create(49, "jpy")
    assert raised.value.code == "amount_too_small"

    # refunds follow the same rules
    paid = client.v1.payment_intents.confirm(kwd.id, params={"payment_method": "pm_card_visa"})
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.refunds.create(params={"payment_intent": paid.id, "amount": 1005})
    assert raised.value.param == "amount"
    assert client.v1.refunds.create(params={"payment_intent": paid.id, "amount": 1010}).amount == 1010


def test_the_fakes_connections_send_without_waiting_for_acks() -> None:
    """The fake's connections have TCP_NODELAY, as the providers' front ends do. An answer goes out in two writes
    (headers, then body): with Nagle's algorithm the body waited for the client's delayed ACK of the headers, about
    40 ms on every call over a kept-alive connection (`make bench-webhooks` seeded at 44 ms a call, bench/README.md)."""
    import http.client  # noqa: PLC0415 - only here: a client that keeps its one connection
    import socket  # noqa: PLC0415

    from fakes._http import FakeServer  # noqa: PLC0415

    server = FakeStripe(secret_key="sk_test_fake")
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/v1/payment_intents/pi_missing", headers={"Authorization": "Bearer sk_test_fake"})
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 404
        (served,) = [live for live in FakeServer.live if live.fake is server]
        accepted = list(served._connections)  # the server side of the client's connection
        assert len(accepted) == 1
        assert accepted[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        connection.close()
        server.close()


def test_connections_are_kept_alive_and_closing_the_fake_ends_idle_ones() -> None:
    """Like Stripe's API, the fake keeps a client's connection open between requests (HTTP/1.1); closing the fake
    ends a connection left idle instead of waiting out its handler's timeout."""
    import http.client  # noqa: PLC0415 - only here: a client that shows its socket

    server = FakeStripe(secret_key="sk_test_fake")
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        headers = {"Authorization": "Bearer sk_test_fake"}
        connection.request("GET", "/v1/payment_intents/pi_missing", headers=headers)
        first = connection.getresponse()
        first.read()
        kept = connection.sock
        assert first.version == 11  # HTTP/1.1
        assert kept is not None  # the server did not ask to close it
        connection.request("GET", "/v1/payment_intents/pi_missing", headers=headers)
        second = connection.getresponse()
        second.read()
        assert connection.sock is kept  # the same socket carried both requests
        assert (first.status, second.status) == (404, 404)
        server.close()
        assert kept.recv(1) == b""  # the fake shut the idle connection down (end of stream, not a timeout)
    finally:
        connection.close()
        server.close()
