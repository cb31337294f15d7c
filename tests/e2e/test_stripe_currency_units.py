"""Currency units at Stripe (CONTRACT.md, "Currency units at the provider"), through the public API.

payql holds ISO 4217 minor units; Stripe takes its own (https://docs.stripe.com/currencies). The fake refuses what
Stripe refuses, so a wrong conversion shows as a refusal or a wrong stored amount.
"""

from __future__ import annotations

from typing import Any

import documents as doc
from conftest import STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET, stripe_api, stripe_fake
from fakes.stripe_api import FakeStripe
from flows import book, intent
from support import Api, User

from payql.app import services_of

SECRET_KEY, WEBHOOK_SECRET = STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET
WITH_PROVIDER_CODE = "errors { code field message providerCode }"


fake, api = stripe_fake, stripe_api  # the conftest fixtures, under this module's names


def paid(client: User, mentor: User, fake: FakeStripe, amount: str, currency: str) -> tuple[dict[str, Any], str]:
    """A Stripe payment of `amount` `currency` the client has paid (server-side confirm with a good card)."""
    enroll_id = book(client, mentor, amount, currency)
    created = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")
    intent_id = created["clientSecret"].split("_secret_")[0]
    payment = client.ok(doc.CONFIRM, paymentId=created["payment"]["id"], paymentMethod="pm_card_visa")["payment"]
    return payment, intent_id


def payments(user: User) -> list[dict[str, Any]]:
    edges = user.data(doc.PAYMENTS, first=20)["payments"]["edges"]
    return [edge["node"] for edge in edges]


def test_an_isk_price_is_charged_in_stripes_two_decimal_form_and_read_back_in_kronur(
    api: Api, fake: FakeStripe
) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment, intent_id = paid(client, mentor, fake, "1500", "ISK")

    # 1500 krónur is 150000 at Stripe (two-decimal ISK), not 1500 (15 krónur)
    assert fake.payment_intents[intent_id]["amount"] == 150_000
    assert fake.payment_intents[intent_id]["currency"] == "isk"
    assert payment["status"] == "SUCCEEDED"
    assert payment["amount"] == {"amount": "1500", "currency": "ISK"}
    assert payment["capturedAmount"] == {"amount": "1500", "currency": "ISK"}

    refunded = mentor.ok(doc.REFUND, input={"paymentId": payment["id"], "amount": {"amount": "500", "currency": "ISK"}})
    assert [refund["amount"] for refund in fake.refunds.values()] == [50_000]
    assert refunded["refund"]["amount"] == {"amount": "500", "currency": "ISK"}
    assert refunded["payment"]["refundedAmount"] == {"amount": "500", "currency": "ISK"}
    assert refunded["payment"]["status"] == "PARTIALLY_REFUNDED"

    # re-read from Stripe (payment and refunds converted back): nothing changes
    again = client.data(doc.PAYMENT, id=payment["id"])["payment"]
    assert again["capturedAmount"]["amount"] == "1500"
    assert again["refundedAmount"]["amount"] == "500"


def test_a_jpy_payment_goes_as_it_is(api: Api, fake: FakeStripe) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment, intent_id = paid(client, mentor, fake, "5000", "JPY")

    assert fake.payment_intents[intent_id]["amount"] == 5000
    assert payment["status"] == "SUCCEEDED"
    assert payment["capturedAmount"] == {"amount": "5000", "currency": "JPY"}
    full = mentor.ok(doc.REFUND, input={"paymentId": payment["id"]})
    assert [refund["amount"] for refund in fake.refunds.values()] == [5000]
    assert full["payment"]["status"] == "REFUNDED"


def test_a_kwd_price_not_ending_in_zero_is_refused_before_stripe_and_blocks_nothing(api: Api, fake: FakeStripe) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    enroll_id = book(client, mentor, "1.235", "KWD")
    create = doc.CREATE_INTENT.replace("errors { code field message }", WITH_PROVIDER_CODE)

    refused = client.fails(create, "INVALID_INPUT", input={"enrollId": enroll_id, "provider": "STRIPE"})

    assert "KWD" in refused["errors"][0]["message"]
    assert "last decimal is 0" in refused["errors"][0]["message"]
    assert fake.payment_intents == {}  # Stripe was never asked
    (failed,) = payments(client)
    assert failed["status"] == "FAILED"  # not PENDING: the enroll is free for another attempt
    # another attempt (with the mock YooKassa, which takes any amount) is not blocked by the refused one
    retried = intent(client, enrollId=enroll_id, provider="YOOKASSA")
    assert retried["payment"]["status"] == "PENDING"
    assert retried["payment"]["amount"] == {"amount": "1.235", "currency": "KWD"}


def test_a_kwd_refund_not_ending_in_zero_is_refused_and_leaves_the_amount_refundable(
    api: Api, fake: FakeStripe
) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    payment, intent_id = paid(client, mentor, fake, "1.230", "KWD")
    assert fake.payment_intents[intent_id]["amount"] == 1230
    refund = doc.REFUND.replace("errors { code field message }", WITH_PROVIDER_CODE)

    refused = mentor.fails(
        refund, "INVALID_INPUT", input={"paymentId": payment["id"], "amount": {"amount": "0.005", "currency": "KWD"}}
    )
    assert "0.005 KWD" in refused["errors"][0]["message"]
    assert fake.refunds == {}  # Stripe was never asked

    # the refused refund holds nothing back: the whole amount is still refundable
    full = mentor.ok(refund, input={"paymentId": payment["id"]})
    assert full["payment"]["status"] == "REFUNDED"
    assert full["payment"]["refundedAmount"] == {"amount": "1.230", "currency": "KWD"}
    assert [item["amount"] for item in fake.refunds.values()] == [1230]


def test_an_amount_over_stripes_maximum_is_refused(api: Api, fake: FakeStripe) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    enroll_id = book(client, mentor, "1000000.00", "USD")

    refused = client.fails(doc.CREATE_INTENT, "INVALID_INPUT", input={"enrollId": enroll_id, "provider": "STRIPE"})

    assert "999999.99 USD at most" in refused["errors"][0]["message"]
    assert fake.payment_intents == {}
    (failed,) = payments(client)
    assert failed["status"] == "FAILED"
    # the largest amount Stripe takes goes through
    largest = book(client, mentor, "999999.99", "USD")
    created = intent(client, enrollId=largest, provider="STRIPE")
    intent_id = created["clientSecret"].split("_secret_")[0]
    assert fake.payment_intents[intent_id]["amount"] == 99_999_999


def test_an_isk_hold_is_captured_in_full(api: Api, fake: FakeStripe) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    enroll_id = book(client, mentor, "1550", "ISK")
    created = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="MANUAL")
    intent_id = created["clientSecret"].split("_secret_")[0]
    held = client.ok(doc.CONFIRM, paymentId=created["payment"]["id"], paymentMethod="pm_card_visa")["payment"]
    assert held["status"] == "AUTHORIZED"
    mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    mentor.ok(doc.MARK_ENROLL_READY, id=enroll_id)

    done = client.ok(doc.CONFIRM_ENROLL, id=enroll_id)

    assert done["payment"]["status"] == "SUCCEEDED"
    assert done["payment"]["capturedAmount"]["amount"] == "1550"
    assert fake.payment_intents[intent_id]["amount_received"] == 155_000
    assert fake.refunds == {}  # nothing of the hold was released: all of it was captured


def earned_and_approved(api: Api, amount: str, currency: str, withdraw: str) -> User:
    """A mentor who earned `amount` `currency` through Stripe and has an approved withdrawal of `withdraw`."""
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    enroll_id = book(client, mentor, amount, currency)
    created = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")
    client.ok(doc.CONFIRM, paymentId=created["payment"]["id"], paymentMethod="pm_card_visa")
    mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    mentor.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    registered = mentor.ok(
        doc.REGISTER_PAYOUT_ACCOUNT,
        input={"provider": "STRIPE", "externalAccountId": "acct_mentor1", "currency": currency},
    )["payoutAccount"]
    admin.ok(doc.VERIFY_PAYOUT_ACCOUNT, id=registered["id"])
    money = {"amount": withdraw, "currency": currency}
    requested = mentor.ok(doc.REQUEST_WITHDRAWAL, input={"amount": money})["withdrawal"]
    admin.ok(doc.APPROVE_WITHDRAWAL, id=requested["id"])
    return mentor


def withdrawals(mentor: User) -> list[tuple[str, str]]:
    edges = mentor.data(doc.WITHDRAWALS)["withdrawals"]["edges"]
    return [(edge["node"]["status"], edge["node"]["amount"]["amount"]) for edge in edges]


def test_an_isk_payout_is_transferred_in_stripes_two_decimal_form(api: Api, fake: FakeStripe) -> None:
    mentor = earned_and_approved(api, "20000", "ISK", "10000")

    assert services_of(api.app).payouts.run().completed == 1

    (transfer,) = fake.transfers.values()
    assert (transfer["amount"], transfer["currency"]) == (1_000_000, "isk")
    assert withdrawals(mentor) == [("COMPLETED", "10000")]


def test_a_huf_payout_in_fractions_of_a_forint_is_never_sent(api: Api, fake: FakeStripe) -> None:
    mentor = earned_and_approved(api, "20000.00", "HUF", "10000.50")

    services_of(api.app).payouts.run()

    # refused before Stripe (HUF payouts are whole forints): no transfer was even asked for
    assert [r for r in fake.requests if r.path == "/v1/transfers"] == []
    assert fake.transfers == {}
    ((status, amount),) = withdrawals(mentor)
    assert amount == "10000.50"
    assert status != "COMPLETED"
