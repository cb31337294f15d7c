"""Provider payouts (seeds/001, 003): payout accounts, withdrawals with a minimum, the payout batch."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import documents as doc
import pytest
from conftest import make_settings
from fakes.stripe_api import FakeStripe
from fakes.yookassa_api import FakeYooKassa
from flows import book, intent
from support import Api, User

from payql.app import create_app, services_of
from payql.db import Database

STRIPE_KEY = "sk_test_payouts"


@pytest.fixture
def stripe_fake() -> Iterator[FakeStripe]:
    with FakeStripe(secret_key=STRIPE_KEY) as server:
        yield server


@pytest.fixture
def yookassa_fake() -> Iterator[FakeYooKassa]:
    with FakeYooKassa(shop_id="777", secret_key="payout_secret") as server:
        yield server


@pytest.fixture
def api(database_url: str, db: Database, stripe_fake: FakeStripe, yookassa_fake: FakeYooKassa) -> Iterator[Api]:
    settings = make_settings(
        database_url,
        stripe_secret_key=STRIPE_KEY,
        stripe_webhook_secret="whsec_payouts",
        stripe_api_base=stripe_fake.url,
        yookassa_shop_id="777",
        yookassa_secret_key="payout_secret",
        yookassa_api_url=f"{yookassa_fake.url}/v3",
        yookassa_payout_agent_id=yookassa_fake.agent_id,
        yookassa_payout_secret_key=yookassa_fake.payout_secret_key,
        provider_timeout_ms=2000,
        yookassa_trusted_ips=["127.0.0.1"],
    )
    with Api(create_app(settings, db=db), settings) as client:
        yield client


def earn(
    client: User, provider: User, amount: str = "100.00", currency: str = "USD", yookassa: FakeYooKassa | None = None
) -> str:
    """A completed enroll (through Stripe, or YooKassa when its fake is given): the provider's share is available.
    Returns the payment id."""
    enroll_id = book(client, provider, amount, currency)
    name = "YOOKASSA" if yookassa else "STRIPE"
    payment_id = intent(client, enrollId=enroll_id, provider=name, captureMethod="AUTOMATIC")["payment"]["id"]
    method = None
    if yookassa is None:
        method = "pm_card_visa"
    else:  # the client pays on YooKassa's page
        yookassa.customer_pays(
            next(pid for pid, p in yookassa.payments.items() if p["metadata"]["payment_id"] == payment_id)
        )
    client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod=method)
    provider.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    provider.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    return payment_id


def account(user: User, currency: str = "USD") -> dict[str, str]:
    rows = user.data(doc.BALANCES)["balances"]["accounts"]
    row: dict[str, Any] = next(r for r in rows if r["currency"] == currency)
    return {"available": row["available"]["amount"], "paidOut": row["paidOut"]["amount"]}


def verified(
    provider: User,
    admin: User,
    provider_name: str = "STRIPE",
    external: str = "acct_mentor1",
    currency: str | None = None,
) -> str:
    registered = provider.ok(
        doc.REGISTER_PAYOUT_ACCOUNT,
        input={"provider": provider_name, "externalAccountId": external, "currency": currency},
    )["payoutAccount"]
    assert registered["status"] == "PENDING"
    assert admin.ok(doc.VERIFY_PAYOUT_ACCOUNT, id=registered["id"])["payoutAccount"]["status"] == "VERIFIED"
    account_id: str = registered["id"]
    return account_id


def usd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "USD"}


def test_earn_withdraw_approve_and_pay_through_a_stripe_transfer(api: Api, stripe_fake: FakeStripe) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    earn(client, mentor)
    assert account(mentor) == {"available": "95.00", "paidOut": "0.00"}
    registered = mentor.ok(
        doc.REGISTER_PAYOUT_ACCOUNT, input={"provider": "STRIPE", "externalAccountId": "acct_mentor1"}
    )
    mentor.fails(doc.REQUEST_WITHDRAWAL, "INVALID_STATE", input={"amount": usd("60.00")})  # not verified yet
    admin.ok(doc.VERIFY_PAYOUT_ACCOUNT, id=registered["payoutAccount"]["id"])

    assert (
        "50.00"
        in mentor.fails(doc.REQUEST_WITHDRAWAL, "INVALID_INPUT", input={"amount": usd("49.99")})["errors"][0]["message"]
    )
    mentor.fails(doc.REQUEST_WITHDRAWAL, "INSUFFICIENT_FUNDS", input={"amount": usd("95.01")})
    requested = mentor.ok(doc.REQUEST_WITHDRAWAL, input={"amount": usd("60.00"), "idempotencyKey": "w-1"})["withdrawal"]
    assert requested["status"] == "PENDING"
    assert account(mentor) == {"available": "35.00", "paidOut": "0.00"}
    assert (
        mentor.ok(doc.REQUEST_WITHDRAWAL, input={"amount": usd("60.00"), "idempotencyKey": "w-1"})["withdrawal"]["id"]
        == requested["id"]
    )

    mentor.fails(doc.APPROVE_WITHDRAWAL, "FORBIDDEN", id=requested["id"])
    api.user("stranger").fails(doc.APPROVE_WITHDRAWAL, "NOT_FOUND", id=requested["id"])
    assert admin.ok(doc.APPROVE_WITHDRAWAL, id=requested["id"])["withdrawal"]["status"] == "APPROVED"

    payouts = services_of(api.app).payouts
    first, second = payouts.run(), payouts.run()

    assert (first.completed, second.completed) == (1, 0)
    (transfer,) = stripe_fake.transfers.values()
    assert (transfer["amount"], transfer["currency"], transfer["destination"]) == (6000, "usd", "acct_mentor1")
    (create,) = [r for r in stripe_fake.requests if r.path == "/v1/transfers"]
    assert create.idempotency_key
    listed = mentor.data(doc.WITHDRAWALS)["withdrawals"]
    assert [(e["node"]["status"], e["node"]["amount"]["amount"]) for e in listed["edges"]] == [("COMPLETED", "60.00")]
    assert account(mentor) == {"available": "35.00", "paidOut": "60.00"}


def test_a_rejected_withdrawal_returns_the_money(api: Api) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    earn(client, mentor)
    verified(mentor, admin)
    requested = mentor.ok(doc.REQUEST_WITHDRAWAL, input={"amount": usd("90.00")})["withdrawal"]

    rejected = admin.ok(doc.REJECT_WITHDRAWAL, id=requested["id"], reason="documents missing")["withdrawal"]

    assert (rejected["status"], rejected["reason"]) == ("REJECTED", "documents missing")
    assert account(mentor)["available"] == "95.00"
    admin.fails(doc.APPROVE_WITHDRAWAL, "INVALID_STATE", id=requested["id"])


def test_a_failed_yookassa_payout_returns_the_money(api: Api, yookassa_fake: FakeYooKassa) -> None:
    client, master, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    earn(client, master, "200.00", "RUB", yookassa_fake)
    verified(master, admin, "YOOKASSA", "wallet:41001234567890", "RUB")
    withdrawal = master.ok(doc.REQUEST_WITHDRAWAL, input={"amount": {"amount": "100.00", "currency": "RUB"}})[
        "withdrawal"
    ]
    admin.ok(doc.APPROVE_WITHDRAWAL, id=withdrawal["id"])
    payouts = services_of(api.app).payouts

    sent = payouts.run()
    assert (sent.completed, sent.pending) == (0, 1)  # YooKassa payouts settle later
    (payout_id,) = yookassa_fake.payouts
    yookassa_fake.settle_payout(payout_id, status="canceled")
    settled = payouts.run()

    assert settled.failed == 1
    (row,) = master.data(doc.WITHDRAWALS)["withdrawals"]["edges"]
    assert row["node"]["status"] == "FAILED"
    assert account(master, "RUB") == {"available": "169.20", "paidOut": "0.00"}


def test_a_refund_after_a_payout_makes_the_payable_negative_and_blocks_withdrawals(api: Api) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    payment_id = earn(client, mentor)
    verified(mentor, admin)
    withdrawal = mentor.ok(doc.REQUEST_WITHDRAWAL, input={"amount": usd("95.00")})["withdrawal"]
    admin.ok(doc.APPROVE_WITHDRAWAL, id=withdrawal["id"])
    services_of(api.app).payouts.run()

    admin.ok(doc.REFUND, input={"paymentId": payment_id, "amount": usd("60.00")})

    assert account(mentor) == {"available": "-57.00", "paidOut": "95.00"}
    mentor.fails(doc.REQUEST_WITHDRAWAL, "INSUFFICIENT_FUNDS", input={"amount": usd("50.00")})


def test_the_weekly_run_pays_every_verified_provider_once_a_week(api: Api, stripe_fake: FakeStripe) -> None:
    client, admin = api.user("client"), api.user("admin", "admin")
    rich, poor = api.user("rich", "provider"), api.user("poor", "provider")
    earn(client, rich)
    earn(client, poor, "40.00")  # 38.00: below the minimum
    verified(rich, admin, external="acct_rich")
    verified(poor, admin, external="acct_poor")
    payouts = services_of(api.app).payouts
    monday = datetime(2026, 11, 23, 9, tzinfo=UTC)

    first = payouts.run(auto_approve=True, now=monday)
    again = payouts.run(auto_approve=True, now=monday + timedelta(days=2))

    assert (first.created, first.completed, again.created) == (1, 1, 0)
    assert [t["destination"] for t in stripe_fake.transfers.values()] == ["acct_rich"]
    assert account(rich) == {"available": "0.00", "paidOut": "95.00"}
    assert account(poor)["available"] == "38.00"


def test_concurrent_withdrawal_requests_never_exceed_the_balance(api: Api) -> None:
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    earn(client, mentor)
    verified(mentor, admin)

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(lambda _: mentor.data(doc.REQUEST_WITHDRAWAL, input={"amount": usd("50.00")}), range(6))
        )

    codes = [a["requestWithdrawal"]["errors"][0]["code"] if a["requestWithdrawal"]["errors"] else "OK" for a in answers]
    assert codes.count("OK") == 1
    assert set(codes) == {"OK", "INSUFFICIENT_FUNDS"}
    assert account(mentor)["available"] == "45.00"


def test_only_providers_register_accounts_and_only_admins_verify_them(api: Api) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    client.fails(doc.REGISTER_PAYOUT_ACCOUNT, "FORBIDDEN", input={"provider": "STRIPE", "externalAccountId": "acct_x"})
    mentor.fails(
        doc.REGISTER_PAYOUT_ACCOUNT, "INVALID_INPUT", input={"provider": "STRIPE", "externalAccountId": "bank-1"}
    )
    account_id = mentor.ok(doc.REGISTER_PAYOUT_ACCOUNT, input={"provider": "STRIPE", "externalAccountId": "acct_x"})[
        "payoutAccount"
    ]["id"]
    mentor.fails(doc.VERIFY_PAYOUT_ACCOUNT, "FORBIDDEN", id=account_id)
    client.fails(doc.VERIFY_PAYOUT_ACCOUNT, "NOT_FOUND", id=account_id)
    client.fails(doc.REQUEST_WITHDRAWAL, "FORBIDDEN", input={"amount": usd("50.00")})


def test_a_yookassa_payout_notification_completes_the_withdrawal_after_a_re_fetch(
    api: Api, yookassa_fake: FakeYooKassa
) -> None:
    client, master, admin = api.user("client"), api.user("master", "provider"), api.user("admin", "admin")
    earn(client, master, "200.00", "RUB", yookassa_fake)
    verified(master, admin, "YOOKASSA", "wallet:41001234567890", "RUB")
    withdrawal = master.ok(doc.REQUEST_WITHDRAWAL, input={"amount": {"amount": "100.00", "currency": "RUB"}})[
        "withdrawal"
    ]
    admin.ok(doc.APPROVE_WITHDRAWAL, id=withdrawal["id"])
    services_of(api.app).payouts.run()
    (payout_id,) = yookassa_fake.payouts
    hook = {"Content-Type": "application/json"}

    forged = api.request(
        "POST",
        "/webhooks/yookassa",
        content=yookassa_fake.forged_notification("payout.succeeded", {"id": payout_id}),
        headers=hook,
    )
    assert forged.json() == {"status": "unconfirmed"}
    assert master.data(doc.WITHDRAWALS)["withdrawals"]["edges"][0]["node"]["status"] == "PROCESSING"

    yookassa_fake.settle_payout(payout_id, status="succeeded")
    real = api.request(
        "POST",
        "/webhooks/yookassa",
        content=yookassa_fake.notification_for("payout.succeeded", payout_id),
        headers=hook,
    )

    assert real.json() == {"status": "processed"}
    assert master.data(doc.WITHDRAWALS)["withdrawals"]["edges"][0]["node"]["status"] == "COMPLETED"
    assert account(master, "RUB") == {"available": "69.20", "paidOut": "100.00"}
