"""Scenario steps shared by the tests, each through the public GraphQL API."""

from __future__ import annotations

from typing import Any

import documents as doc
from conftest import stripe_deliver
from fakes.stripe_api import FakeStripe
from support import Api, User


def book(client: User, provider: User, amount: str = "100.00", currency: str = "USD", title: str = "Lesson") -> str:
    provider.data("{ payments { totalCount } }")  # a provider is a known user once they have called the API
    payload = client.ok(doc.CREATE_ENROLL, providerId=provider.id, title=title, amount=amount, currency=currency)
    enroll_id: str = payload["enroll"]["id"]
    return enroll_id


def intent(client: User, **fields: Any) -> dict[str, Any]:
    return client.ok(doc.CREATE_INTENT, input=fields)


def paid_enroll(
    client: User,
    provider: User,
    *,
    amount: str = "100.00",
    currency: str = "USD",
    provider_name: str = "STRIPE",
    capture: str = "AUTOMATIC",
) -> dict[str, Any]:
    """A booked enroll with a confirmed payment; returns the payment as the confirm mutation showed it."""
    enroll_id = book(client, provider, amount, currency)
    created = intent(client, enrollId=enroll_id, provider=provider_name, captureMethod=capture)
    payment: dict[str, Any] = client.ok(doc.CONFIRM, paymentId=created["payment"]["id"])["payment"]
    return payment


def paid_package(client: User, code: str = "standard") -> dict[str, Any]:
    created = intent(client, packageCode=code)
    payment: dict[str, Any] = client.ok(doc.CONFIRM, paymentId=created["payment"]["id"])["payment"]
    return payment


def paid_intent(api: Api, fake: FakeStripe, client: User, mentor: User) -> tuple[str, str, str]:
    """A 100.00 USD enroll paid through Stripe (captured at once, so in escrow): payment, enroll and intent ids."""
    enroll_id = book(client, mentor, "100.00", "USD")
    created = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")
    intent_id = created["clientSecret"].split("_secret_")[0]
    fake.customer_pays(intent_id, "pm_card_visa")
    assert stripe_deliver(api, fake, fake.events_of("payment_intent.succeeded")[-1]) == "processed"
    return created["payment"]["id"], enroll_id, intent_id


def completed_enroll(api: Api, fake: FakeStripe, client: User, mentor: User) -> tuple[str, str]:
    """The enroll completed: the 100.00 is split, 95.00 the mentor's to withdraw (Stripe's policy: 5%, no tax)."""
    payment_id, enroll_id, intent_id = paid_intent(api, fake, client, mentor)
    mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    mentor.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    assert available(mentor) == "95.00"
    return payment_id, intent_id


def available(user: User, currency: str = "USD") -> str:
    """What the user may withdraw in CURRENCY."""
    (account,) = [row for row in user.data(doc.BALANCES)["balances"]["accounts"] if row["currency"] == currency]
    amount: str = account["available"]["amount"]
    return amount
