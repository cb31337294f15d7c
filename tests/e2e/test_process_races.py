"""Races between two server processes on one database: conflicting money movements fired at once, half at each
server, as two replicas behind a load balancer would receive them. On PostgreSQL the row locks (`SELECT … FOR
UPDATE`) serialise them; on SQLite, its single writer. Each test runs on both when TEST_POSTGRES_URL is set.

The providers are the mock ones, whose state lives in the database and so is shared by both processes like a real
provider's; the webhook race uses the Stripe fake. After each test the ledger must balance (`db` fixture).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import documents as doc
import httpx
import pytest
from conftest import make_settings
from fakes.stripe_api import FakeStripe
from flows import book, intent, paid_enroll
from servers import Server, server_env, servers
from sqlalchemy import func, select
from support import User

from payql.db import Database
from payql.models import LedgerTransaction, Payment, WebhookEvent
from payql.models.enums import PaymentStatus, ProviderName
from payql.providers.mock import MockProvider
from payql.settings import Settings

WEBHOOK_SECRET = "whsec_payql_races"
STRIPE_KEY = "sk_test_payql_races"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def pair(database_url: str, tmp_path: Path) -> Iterator[list[Server]]:
    with servers(2, server_env(database_url), tmp_path) as started:
        yield started


class Both:
    """One user as seen through each of the two servers."""

    def __init__(self, pair: list[Server], settings: Settings, sub: str, *roles: str) -> None:
        self.at = [server.api(settings).user(sub, *roles) for server in pair]

    @property
    def first(self) -> User:
        return self.at[0]


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def codes(payloads: list[dict[str, Any]]) -> list[str]:
    return [p["errors"][0]["code"] if p["errors"] else "OK" for p in payloads]


def balance(user: User) -> tuple[str, str]:
    rows = user.data(doc.BALANCES)["balances"]["accounts"]
    if not rows:  # no money has ever been the user's
        return "0.00", "0.00"
    (row,) = rows
    return row["available"]["amount"], row["pending"]["amount"]


def ready_enroll(client: Both, mentor: Both, capture: str) -> tuple[str, str]:
    payment = paid_enroll(client.first, mentor.first, capture=capture)
    enroll_id = payment["enroll"]["id"]
    mentor.first.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    mentor.first.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    return enroll_id, payment["id"]


def test_twenty_partial_refunds_through_two_servers_never_exceed_the_capture(
    pair: list[Server], settings: Settings
) -> None:
    client, mentor = Both(pair, settings, "client"), Both(pair, settings, "mentor", "provider")
    payment = paid_enroll(client.first, mentor.first, amount="100.00")
    ask = {"paymentId": payment["id"], "amount": {"amount": "7.00", "currency": "USD"}}

    answers = at_once(*[lambda i=i: mentor.at[i % 2].data(doc.REFUND, input=ask)["refund"] for i in range(20)])

    assert codes(answers).count("OK") == 14  # 14 × 7.00 = 98.00; a fifteenth would exceed 100.00
    assert set(codes(answers)) == {"OK", "INVALID_INPUT"}
    final = client.first.data(doc.PAYMENT, id=payment["id"])["payment"]
    assert final["refundedAmount"]["amount"] == "98.00"
    assert len(final["refunds"]) == 14


@pytest.mark.parametrize("rounds", [3])
def test_a_refund_racing_confirm_enroll_settles_one_way(pair: list[Server], settings: Settings, rounds: int) -> None:
    client, mentor = Both(pair, settings, "client"), Both(pair, settings, "mentor", "provider")
    for _ in range(rounds):
        enroll_id, payment_id = ready_enroll(client, mentor, "AUTOMATIC")  # captured, held in escrow

        refund, confirm = at_once(
            lambda p=payment_id: mentor.at[0].data(doc.REFUND, input={"paymentId": p})["refund"],
            lambda e=enroll_id: client.at[1].data(doc.CONFIRM_ENROLL, id=e)["confirmEnroll"],
        )

        assert refund["errors"] == [], refund  # the payee may refund before or after completion
        final = client.first.data(doc.PAYMENT, id=payment_id)["payment"]
        assert (final["status"], final["refundedAmount"]["amount"]) == ("REFUNDED", "100.00")
        enroll = client.first.data(doc.ENROLL, id=enroll_id)["enroll"]["status"]
        if confirm["errors"]:  # the refund came first: nothing is left to complete the enroll with
            assert (codes([confirm]), enroll) == (["INVALID_STATE"], "READY")
        else:  # the completion came first, then the refund took the split back
            assert enroll == "COMPLETED"
    assert balance(mentor.first) == ("0.00", "0.00")  # whatever the order, the mentor keeps nothing of a refund


@pytest.mark.parametrize("rounds", [3])
def test_cancel_racing_confirm_enroll_lets_exactly_one_win(
    pair: list[Server], settings: Settings, db: Database, rounds: int
) -> None:
    client, mentor = Both(pair, settings, "client"), Both(pair, settings, "mentor", "provider")
    mock = MockProvider(ProviderName.STRIPE, db)
    completed = 0
    for _ in range(rounds):
        enroll_id, payment_id = ready_enroll(client, mentor, "MANUAL")  # a hold

        cancel, confirm = at_once(
            lambda e=enroll_id: client.at[0].data(doc.CANCEL_ENROLL, id=e)["cancelEnroll"],
            lambda e=enroll_id: client.at[1].data(doc.CONFIRM_ENROLL, id=e)["confirmEnroll"],
        )

        assert sorted(codes([cancel, confirm])) == ["INVALID_STATE", "OK"], (cancel, confirm)
        enroll = client.first.data(doc.ENROLL, id=enroll_id)["enroll"]
        with db.read() as session:
            payment = session.get(Payment, payment_id)
            assert payment is not None
            at_provider = mock.retrieve_payment(payment.provider_payment_id or "").status
        if confirm["errors"] == []:
            completed += 1
            assert (enroll["status"], payment.status, at_provider) == (
                "COMPLETED",
                PaymentStatus.SUCCEEDED,
                "SUCCEEDED",
            )
        else:
            assert (enroll["status"], payment.status, at_provider) == ("CANCELLED", PaymentStatus.CANCELED, "CANCELED")
    assert balance(mentor.first) == (f"{95 * completed}.00", "0.00")


def test_withdrawals_racing_a_refund_never_pay_out_money_that_was_refunded_first(
    pair: list[Server], settings: Settings
) -> None:
    client, mentor = Both(pair, settings, "client"), Both(pair, settings, "mentor", "provider")
    admin = Both(pair, settings, "admin", "admin")
    enroll_id, payment_id = ready_enroll(client, mentor, "AUTOMATIC")
    client.first.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    assert balance(mentor.first) == ("95.00", "0.00")
    account = mentor.first.ok(doc.REGISTER_PAYOUT_ACCOUNT, input={"provider": "STRIPE", "externalAccountId": "acct_r"})
    admin.first.ok(doc.VERIFY_PAYOUT_ACCOUNT, id=account["payoutAccount"]["id"])
    fifty = {"amount": {"amount": "50.00", "currency": "USD"}}

    answers = at_once(
        lambda: mentor.at[0].data(doc.REFUND, input={"paymentId": payment_id})["refund"],
        *[
            lambda i=i: mentor.at[i % 2].data(doc.REQUEST_WITHDRAWAL, input=fifty)["requestWithdrawal"]
            for i in range(4)
        ],
    )

    refund, withdrawals = answers[0], answers[1:]
    assert refund["errors"] == [], refund
    taken = codes(withdrawals).count("OK")
    assert taken <= 1  # 95.00 covers one withdrawal of 50.00, and none once the refund came first
    assert set(codes(withdrawals)) <= {"OK", "INSUFFICIENT_FUNDS"}
    # the refund takes the mentor's 95.00 back even when part of it is already on its way out: negative, not lost
    assert balance(mentor.first) == (f"{-50 * taken}.00" if taken else "0.00", "0.00")


def test_the_same_webhook_delivered_to_both_servers_at_once_is_processed_once(
    database_url: str, settings: Settings, db: Database, tmp_path: Path
) -> None:
    with FakeStripe(secret_key=STRIPE_KEY) as fake:
        env = server_env(database_url) | {
            "STRIPE_SECRET_KEY": STRIPE_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": fake.url,
        }
        with servers(2, env, tmp_path) as pair:
            client, mentor = Both(pair, settings, "client"), Both(pair, settings, "mentor", "provider")
            enroll_id = book(client.first, mentor.first)
            created = intent(client.first, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")
            fake.customer_pays(next(iter(fake.payment_intents)))
            body, headers = fake.signed_delivery(fake.events_of("payment_intent.succeeded")[-1], WEBHOOK_SECRET)

            def deliver(server: Server) -> int:
                return httpx.post(
                    f"{server.url}/webhooks/stripe", content=body, headers=headers, timeout=30
                ).status_code

            statuses = at_once(*[lambda i=i: deliver(pair[i % 2]) for i in range(10)])

            assert statuses == [200] * 10
            payment = client.first.data(doc.PAYMENT, id=created["payment"]["id"])["payment"]
            assert (payment["status"], payment["capturedAmount"]["amount"]) == ("SUCCEEDED", "100.00")
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 1
        postings = session.scalars(
            select(LedgerTransaction.kind).where(LedgerTransaction.cause_id == created["payment"]["id"])
        ).all()
    assert len(postings) == len(set(postings)), postings  # each kind of posting once
