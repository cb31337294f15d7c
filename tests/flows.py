"""Scenario steps shared by the tests, each through the public GraphQL API."""

from __future__ import annotations

from typing import Any

import documents as doc
from support import User


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
