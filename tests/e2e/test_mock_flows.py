"""The whole mock-mode flow through HTTP with real tokens: book, pay, confirm, list, refund."""

from __future__ import annotations

import re

import documents as doc
from flows import book, intent, paid_enroll, paid_package
from support import Api


def test_enroll_paid_through_stripe_mock_then_refunded_partially_and_fully(api: Api) -> None:
    # given a client who booked a provider for 100.00 USD
    client, provider = api.user("client-1"), api.user("mentor-1", "provider")
    enroll_id = book(client, provider, "100.00", "USD")

    # when the client starts an automatic-capture payment through Stripe
    created = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")

    # then the amount came from the enroll and a mock client secret came back
    payment = created["payment"]
    assert payment["status"] == "PENDING"
    assert payment["amount"] == {"amount": "100.00", "currency": "USD"}
    assert payment["mock"] is True
    assert payment["payeeId"] == provider.id
    assert re.fullmatch(r"pi_mock_\w+_secret_\w+", created["clientSecret"])
    assert created["checkoutUrl"] is None

    # when the client confirms with the test card that succeeds
    confirmed = client.ok(doc.CONFIRM, paymentId=payment["id"], paymentMethod="4242 4242 4242 4242")["payment"]

    # then it is captured and split 95 / 5 (ENROLL_FEES' Stripe default)
    assert confirmed["status"] == "SUCCEEDED"
    assert confirmed["capturedAmount"] == {"amount": "100.00", "currency": "USD"}
    assert confirmed["platformFee"]["amount"] == "5.00"
    assert confirmed["taxAmount"]["amount"] == "0.00"
    assert confirmed["payeeAmount"]["amount"] == "95.00"
    assert confirmed["paidAt"] is not None

    # and both parties see it in their payments, newest first
    for who in (client, provider):
        listed = who.data(doc.PAYMENTS)["payments"]
        assert [edge["node"]["id"] for edge in listed["edges"]] == [payment["id"]]
        assert listed["edges"][0]["node"]["enroll"]["id"] == enroll_id

    # when the payee refunds 30.00, then the rest
    partial = provider.ok(
        doc.REFUND, input={"paymentId": payment["id"], "amount": {"amount": "30.00", "currency": "USD"}}
    )
    assert partial["refund"]["status"] == "SUCCEEDED"
    assert partial["refund"]["amount"] == {"amount": "30.00", "currency": "USD"}
    assert partial["payment"]["status"] == "PARTIALLY_REFUNDED"
    assert partial["payment"]["refundedAmount"]["amount"] == "30.00"

    rest = provider.ok(doc.REFUND, input={"paymentId": payment["id"], "reason": "DUPLICATE"})
    assert rest["refund"]["amount"]["amount"] == "70.00"
    assert rest["refund"]["reason"] == "DUPLICATE"
    assert rest["payment"]["status"] == "REFUNDED"
    assert rest["payment"]["refundedAmount"]["amount"] == "100.00"
    assert [r["amount"]["amount"] for r in rest["payment"]["refunds"]] == ["30.00", "70.00"]

    # and nothing is left to refund
    provider.fails(doc.REFUND, "INVALID_STATE", input={"paymentId": payment["id"]})


def test_manual_capture_holds_the_money_and_cannot_be_refunded_before_capture(api: Api) -> None:
    client, provider = api.user("client-2"), api.user("mentor-2", "provider")
    enroll_id = book(client, provider, "40.00", "EUR")

    created = intent(client, enrollId=enroll_id)  # enroll payments default to MANUAL capture via STRIPE
    assert created["payment"]["captureMethod"] == "MANUAL"
    held = client.ok(doc.CONFIRM, paymentId=created["payment"]["id"])["payment"]

    assert held["status"] == "AUTHORIZED"
    assert held["capturedAmount"]["amount"] == "0.00"
    assert held["platformFee"] is None
    failed = provider.fails(doc.REFUND, "INVALID_STATE", input={"paymentId": held["id"]})
    assert "AUTHORIZED" in failed["errors"][0]["message"]


def test_yookassa_mock_returns_a_confirmation_url_and_holds(api: Api) -> None:
    client, master = api.user("client-3"), api.user("master-3", "provider")
    enroll_id = book(client, master, "100.00", "RUB")

    created = intent(client, enrollId=enroll_id, provider="YOOKASSA", returnUrl="https://spa.example/return")

    assert created["clientSecret"] is None
    assert created["confirmationUrl"] == f"http://127.0.0.1:8000/mock/checkout/{created['payment']['id']}"  # mock page
    assert created["payment"]["provider"] == "YOOKASSA"
    held = client.ok(doc.CONFIRM, paymentId=created["payment"]["id"])["payment"]
    assert held["status"] == "AUTHORIZED"
    assert held["amount"] == {"amount": "100.00", "currency": "RUB"}


def test_yookassa_automatic_capture_splits_ten_percent_and_six_percent_tax(api: Api) -> None:
    client, master = api.user("client-4"), api.user("master-4", "provider")

    payment = paid_enroll(client, master, amount="100.00", currency="RUB", provider_name="YOOKASSA")

    assert payment["status"] == "SUCCEEDED"
    assert payment["platformFee"]["amount"] == "10.00"
    assert payment["taxAmount"]["amount"] == "5.40"
    assert payment["payeeAmount"]["amount"] == "84.60"


def test_credit_package_bought_through_checkout_and_refunded_by_an_admin(api: Api) -> None:
    buyer, admin = api.user("buyer-5"), api.user("admin-5", "admin")

    created = intent(buyer, packageCode="standard")
    assert created["checkoutUrl"] == f"http://127.0.0.1:8000/mock/checkout/{created['payment']['id']}"  # mock page
    assert created["payment"]["purpose"] == "PACKAGE"
    assert created["payment"]["amount"] == {"amount": "100.00", "currency": "CNY"}
    assert created["payment"]["package"] == {"code": "standard", "credits": 1100}
    assert created["payment"]["payeeId"] is None

    paid = buyer.ok(doc.CONFIRM, paymentId=created["payment"]["id"])["payment"]
    assert paid["status"] == "SUCCEEDED"

    # the buyer cannot refund their own package; an admin can
    buyer.fails(doc.REFUND, "FORBIDDEN", input={"paymentId": paid["id"]})
    refunded = admin.ok(doc.REFUND, input={"paymentId": paid["id"]})
    assert refunded["payment"]["status"] == "REFUNDED"
    assert refunded["refund"]["amount"] == {"amount": "100.00", "currency": "CNY"}


def test_packages_are_public_with_prices_as_decimal_strings(api: Api) -> None:
    packages = api.anonymous().data(doc.PACKAGES)["packages"]

    assert [(p["code"], p["credits"], p["price"]["amount"], p["unitPrice"]) for p in packages] == [
        ("trial", 500, "50.00", "0.1000"),
        ("standard", 1100, "100.00", "0.0909"),
        ("value", 6000, "500.00", "0.0833"),
        ("premium", 13000, "1000.00", "0.0769"),
    ]
    assert {p["price"]["currency"] for p in packages} == {"CNY"}


def test_declined_card_keeps_the_payment_retryable_and_a_good_card_then_pays(api: Api) -> None:
    client, provider = api.user("client-6"), api.user("mentor-6", "provider")
    enroll_id = book(client, provider)
    payment_id = intent(client, enrollId=enroll_id, captureMethod="AUTOMATIC")["payment"]["id"]

    declined = client.fails(doc.CONFIRM, "PAYMENT_DECLINED", paymentId=payment_id, paymentMethod="4000000000000002")
    assert declined["payment"]["status"] == "PENDING"
    assert declined["payment"]["failureCode"] == "card_declined"

    short = client.fails(doc.CONFIRM, "PAYMENT_DECLINED", paymentId=payment_id, paymentMethod="4000000000009995")
    assert short["payment"]["failureCode"] == "insufficient_funds"
    assert "insufficient funds" in short["errors"][0]["message"]

    paid = client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="4242424242424242")["payment"]
    assert paid["status"] == "SUCCEEDED"
    assert paid["failureCode"] is None


def test_card_requiring_authentication_waits_for_action_then_completes(api: Api) -> None:
    client, provider = api.user("client-7"), api.user("mentor-7", "provider")
    payment_id = intent(client, enrollId=book(client, provider), captureMethod="AUTOMATIC")["payment"]["id"]

    waiting = client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="4000002500003155")["payment"]
    assert waiting["status"] == "REQUIRES_ACTION"

    done = client.ok(doc.CONFIRM, paymentId=payment_id)["payment"]
    assert done["status"] == "SUCCEEDED"


def test_confirming_twice_changes_nothing_the_second_time(api: Api) -> None:
    client, provider = api.user("client-8"), api.user("mentor-8", "provider")
    payment = paid_enroll(client, provider)

    again = client.ok(doc.CONFIRM, paymentId=payment["id"])["payment"]

    assert again["status"] == "SUCCEEDED"
    assert again["capturedAmount"] == payment["capturedAmount"]
    assert again["paidAt"] == payment["paidAt"]


def test_enroll_shows_its_payment_to_client_and_provider(api: Api) -> None:
    client, provider = api.user("client-9"), api.user("mentor-9", "provider")
    payment = paid_enroll(client, provider)
    enroll_id = payment["enroll"]["id"]

    for who in (client, provider):
        enroll = who.data(doc.ENROLL, id=enroll_id)["enroll"]
        assert enroll["payment"] == {"id": payment["id"], "status": "SUCCEEDED"}
        assert enroll["price"] == {"amount": "100.00", "currency": "USD"}
        listed = who.data(doc.ENROLLS)["enrolls"]
        assert [edge["node"]["id"] for edge in listed["edges"]] == [enroll_id]


def test_package_bought_twice_makes_two_payments(api: Api) -> None:
    buyer = api.user("buyer-10")
    first, second = paid_package(buyer), paid_package(buyer, "trial")

    listed = buyer.data(doc.PAYMENTS)["payments"]
    assert [edge["node"]["id"] for edge in listed["edges"]] == [second["id"], first["id"]]
    assert listed["totalCount"] == 2
