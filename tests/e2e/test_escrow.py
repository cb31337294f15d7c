"""The money core through GraphQL: held payments, escrow, completion, cancellation, refunds, and the books."""

from __future__ import annotations

from typing import Any

import documents as doc
import pytest
from flows import book, intent
from support import Api, User

from payql.db import Database
from payql.models import PLATFORM, AccountKind
from payql.services import ledger


def accounts(user: User) -> dict[str, dict[str, str]]:
    rows = user.data(doc.BALANCES)["balances"]["accounts"]
    return {
        row["currency"]: {
            "available": row["available"]["amount"],
            "pending": row["pending"]["amount"],
            "paidOut": row["paidOut"]["amount"],
        }
        for row in rows
    }


def books(admin: User) -> dict[str, dict[str, str]]:
    rows = admin.data(doc.PLATFORM_BALANCES)["platformBalances"]
    return {row["currency"]: {key: value["amount"] for key, value in row.items() if key != "currency"} for row in rows}


def held_enroll(
    client: User, provider: User, amount: str, currency: str, provider_name: str, capture: str
) -> tuple[str, str]:
    enroll_id = book(client, provider, amount, currency)
    payment_id = intent(client, enrollId=enroll_id, provider=provider_name, captureMethod=capture)["payment"]["id"]
    client.ok(doc.CONFIRM, paymentId=payment_id)
    return enroll_id, payment_id


def work_done(provider: User, enroll_id: str) -> None:
    assert provider.ok(doc.ACCEPT_ENROLL, id=enroll_id)["enroll"]["status"] == "CONFIRMED"
    assert provider.ok(doc.MARK_ENROLL_READY, id=enroll_id)["enroll"]["status"] == "READY"


@pytest.mark.parametrize(
    ("provider_name", "amount", "currency", "split"),
    [
        ("STRIPE", "100.00", "USD", {"payee": "95.00", "fee": "5.00", "tax": "0.00"}),
        ("YOOKASSA", "100.00", "RUB", {"payee": "84.60", "fee": "10.00", "tax": "5.40"}),
    ],
)
def test_held_payment_is_captured_and_split_when_the_client_confirms(
    api: Api, provider_name: str, amount: str, currency: str, split: dict[str, str]
) -> None:
    # given a held payment for an enroll
    client, provider, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    enroll_id, _ = held_enroll(client, provider, amount, currency, provider_name, "MANUAL")
    assert accounts(provider) == {currency: {"available": "0.00", "pending": split["payee"], "paidOut": "0.00"}}
    assert books(admin) == {}  # a hold posts nothing

    # when the provider does the work and the client confirms
    work_done(provider, enroll_id)
    done = client.ok(doc.CONFIRM_ENROLL, id=enroll_id)

    # then the payment is captured and split exactly
    assert done["enroll"]["status"] == "COMPLETED"
    assert done["payment"]["status"] == "SUCCEEDED"
    assert done["payment"]["capturedAmount"]["amount"] == amount
    assert (
        done["payment"]["payeeAmount"]["amount"],
        done["payment"]["platformFee"]["amount"],
        done["payment"]["taxAmount"]["amount"],
    ) == (
        split["payee"],
        split["fee"],
        split["tax"],
    )
    assert accounts(provider) == {currency: {"available": split["payee"], "pending": "0.00", "paidOut": "0.00"}}
    assert books(admin) == {
        currency: {
            "revenue": split["fee"],
            "tax": split["tax"],
            "providerPayable": split["payee"],
            "escrow": "0.00",
            "payoutsInFlight": "0.00",
            "providerCash": amount,
        }
    }


def test_automatic_capture_waits_in_escrow_until_completion(api: Api) -> None:
    client, provider, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    enroll_id, _ = held_enroll(client, provider, "100.00", "USD", "STRIPE", "AUTOMATIC")

    assert books(admin)["USD"] == {
        "revenue": "0.00",
        "tax": "0.00",
        "providerPayable": "0.00",
        "escrow": "100.00",
        "payoutsInFlight": "0.00",
        "providerCash": "100.00",
    }
    assert accounts(provider)["USD"] == {"available": "0.00", "pending": "95.00", "paidOut": "0.00"}

    work_done(provider, enroll_id)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)

    assert books(admin)["USD"]["escrow"] == "0.00"
    assert books(admin)["USD"]["revenue"] == "5.00"
    assert accounts(provider)["USD"] == {"available": "95.00", "pending": "0.00", "paidOut": "0.00"}


def test_cancel_before_capture_voids_the_hold_and_posts_nothing(api: Api) -> None:
    client, provider, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    enroll_id, payment_id = held_enroll(client, provider, "100.00", "RUB", "YOOKASSA", "MANUAL")
    provider.ok(doc.ACCEPT_ENROLL, id=enroll_id)

    cancelled = client.ok(doc.CANCEL_ENROLL, id=enroll_id, reason="changed my mind")

    assert cancelled["enroll"]["status"] == "CANCELLED"
    assert cancelled["payment"] == {**cancelled["payment"], "id": payment_id, "status": "CANCELED"}
    assert books(admin) == {}
    assert accounts(provider) == {}  # nothing held, nothing earned


def test_cancel_after_capture_refunds_from_escrow(api: Api) -> None:
    client, provider, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    enroll_id, _ = held_enroll(client, provider, "100.00", "USD", "STRIPE", "AUTOMATIC")

    cancelled = provider.ok(doc.CANCEL_ENROLL, id=enroll_id)

    assert cancelled["enroll"]["status"] == "CANCELLED"
    assert cancelled["payment"]["status"] == "REFUNDED"
    assert cancelled["payment"]["refundedAmount"]["amount"] == "100.00"
    assert set(books(admin)["USD"].values()) == {"0.00"}


def test_cancel_without_a_payment_and_a_pending_one(api: Api) -> None:
    client, provider = api.user("client"), api.user("mentor", "provider")
    unpaid = book(client, provider)
    pending = book(client, provider)
    payment_id = intent(client, enrollId=pending)["payment"]["id"]

    assert client.ok(doc.CANCEL_ENROLL, id=unpaid)["payment"] is None
    cancelled = client.ok(doc.CANCEL_ENROLL, id=pending)
    assert cancelled["payment"]["id"] == payment_id
    assert cancelled["payment"]["status"] == "CANCELED"


def test_partial_refund_after_completion_reverses_proportionally_and_exactly(api: Api) -> None:
    client, master, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    enroll_id, payment_id = held_enroll(client, master, "100.00", "RUB", "YOOKASSA", "MANUAL")
    work_done(master, enroll_id)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)

    master.ok(doc.REFUND, input={"paymentId": payment_id, "amount": {"amount": "33.33", "currency": "RUB"}})

    # fee 10.00 → ⌊33.33·10.00/100⌋ = 3.33 back; tax 5.40 → ⌊33.33·5.40/100⌋ = 1.79 back; payee the rest (28.21)
    assert books(admin)["RUB"] == {
        "revenue": "6.67",
        "tax": "3.61",
        "providerPayable": "56.39",
        "escrow": "0.00",
        "payoutsInFlight": "0.00",
        "providerCash": "66.67",
    }
    assert accounts(master)["RUB"]["available"] == "56.39"

    # refunding the rest brings every account back to exactly zero
    rest = master.ok(doc.REFUND, input={"paymentId": payment_id})
    assert rest["refund"]["amount"]["amount"] == "66.67"
    assert set(books(admin)["RUB"].values()) == {"0.00"}


def test_refund_after_a_payout_makes_the_payable_negative(api: Api, db: Database) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    enroll_id, payment_id = held_enroll(client, mentor, "100.00", "USD", "STRIPE", "MANUAL")
    work_done(mentor, enroll_id)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    # the provider's 95.00 has been sent out (as a withdrawal would)
    with db.uow() as uow:
        ledger.post(
            uow.session,
            "withdrawal",
            "test",
            "payout-1",
            [
                ledger.Line(mentor.id, AccountKind.PAYABLE, "USD", 9500),
                ledger.Line(mentor.id, AccountKind.PAYOUTS_IN_FLIGHT, "USD", -9500),
            ],
        )
        uow.commit()

    mentor.ok(doc.REFUND, input={"paymentId": payment_id, "amount": {"amount": "40.00", "currency": "USD"}})

    # 40.00 back: 2.00 from the fee, 38.00 from the provider, who now owes it
    assert accounts(mentor)["USD"]["available"] == "-38.00"
    with db.read() as session:
        assert ledger.balances(session, PLATFORM)[(AccountKind.REVENUE, "USD")] == -300


def test_illegal_transitions_are_invalid_state_and_name_the_current_state(api: Api) -> None:
    client, provider = api.user("client"), api.user("mentor", "provider")
    enroll_id = book(client, provider)

    def refused(user: User, document: str) -> str:
        message: str = user.fails(document, "INVALID_STATE", id=enroll_id)["errors"][0]["message"]
        return message

    assert "PENDING" in refused(provider, doc.MARK_ENROLL_READY)
    assert "PENDING" in refused(client, doc.CONFIRM_ENROLL)
    provider.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    assert "CONFIRMED" in refused(provider, doc.ACCEPT_ENROLL)
    assert "CONFIRMED" in refused(client, doc.CONFIRM_ENROLL)
    provider.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    # READY but nothing paid, then a payment not yet confirmed
    assert "no payment" in refused(client, doc.CONFIRM_ENROLL)
    payment_id = intent(client, enrollId=enroll_id)["payment"]["id"]
    assert "PENDING" in refused(client, doc.CONFIRM_ENROLL)
    client.ok(doc.CONFIRM, paymentId=payment_id)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    assert "COMPLETED" in refused(client, doc.CANCEL_ENROLL)
    assert "COMPLETED" in refused(client, doc.CONFIRM_ENROLL)
    assert "COMPLETED" in refused(provider, doc.ACCEPT_ENROLL)
    # a cancelled enroll goes nowhere and cannot be paid
    enroll_id = book(client, provider)
    client.ok(doc.CANCEL_ENROLL, id=enroll_id)
    assert (
        "CANCELLED"
        in client.fails(doc.CREATE_INTENT, "INVALID_STATE", input={"enrollId": enroll_id})["errors"][0]["message"]
    )
    assert "CANCELLED" in refused(provider, doc.ACCEPT_ENROLL)
    assert "CANCELLED" in refused(client, doc.CANCEL_ENROLL)


@pytest.mark.parametrize(
    ("document", "actor", "code"),
    [
        (doc.ACCEPT_ENROLL, "client", "FORBIDDEN"),
        (doc.ACCEPT_ENROLL, "admin", "FORBIDDEN"),
        (doc.ACCEPT_ENROLL, "stranger", "NOT_FOUND"),
        (doc.MARK_ENROLL_READY, "client", "FORBIDDEN"),
        (doc.MARK_ENROLL_READY, "stranger", "NOT_FOUND"),
        (doc.CONFIRM_ENROLL, "provider", "FORBIDDEN"),
        (doc.CONFIRM_ENROLL, "admin", "FORBIDDEN"),
        (doc.CONFIRM_ENROLL, "stranger", "NOT_FOUND"),
        (doc.CANCEL_ENROLL, "stranger", "NOT_FOUND"),
        (doc.CANCEL_ENROLL, "other-provider", "NOT_FOUND"),
    ],
)
def test_wrong_actor_for_each_enroll_mutation(api: Api, document: str, actor: str, code: str) -> None:
    users: dict[str, Any] = {
        "client": api.user("client"),
        "provider": api.user("mentor", "provider"),
        "admin": api.user("admin", "admin"),
        "stranger": api.user("stranger"),
        "other-provider": api.user("mentor-2", "provider"),
    }
    enroll_id = book(users["client"], users["provider"])

    users[actor].fails(document, code, id=enroll_id)

    assert users["client"].data(doc.ENROLL, id=enroll_id)["enroll"]["status"] == "PENDING"


def test_an_admin_can_cancel_and_only_an_admin_reads_the_platform_books(api: Api) -> None:
    client, provider, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    enroll_id = book(client, provider)

    assert admin.ok(doc.CANCEL_ENROLL, id=enroll_id)["enroll"]["status"] == "CANCELLED"
    for user in (client, provider):
        body = user.gql(doc.PLATFORM_BALANCES)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_balances_of_a_client_without_earnings_are_empty(api: Api) -> None:
    assert api.user("client").data(doc.BALANCES)["balances"] == {"credits": 0, "creditLots": [], "accounts": []}
