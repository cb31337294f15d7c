"""Crash recovery: a real server is killed between a provider's answer and the transaction that records it, then
`payql reconcile` finishes the work. The Stripe fake must show one charge, capture, refund or transfer, and our
ledger must match it (the `db` fixture runs `payql ledger check` after each test).

The kill is a crash point (payql/faults.py) armed with `PAYQL_FAULTS`, which only `PAYQL_ENV=test` accepts: the
process exits on the spot (exit code 137, as for SIGKILL) with the provider call made and nothing of it recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import documents as doc
import httpx
import pytest
from conftest import TEST_SECRET, make_settings
from fakes.stripe_api import FakeStripe
from flows import book, intent
from servers import Server, payql
from sqlalchemy import select
from support import Api, User

from payql.app import create_app
from payql.cli import main
from payql.db import Database
from payql.faults import CRASH_EXIT_CODE
from payql.models import Enroll, Payment, Refund, Withdrawal
from payql.models.enums import EnrollStatus, PaymentStatus, RefundStatus, WithdrawalStatus
from payql.settings import Settings

SECRET_KEY = "sk_test_payql_crash"

Env = Callable[..., dict[str, str]]
Run = Callable[..., str]


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(secret_key=SECRET_KEY) as server:
        yield server


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def env(database_url: str, fake: FakeStripe) -> Env:
    def build(faults: str = "") -> dict[str, str]:
        values = {
            "DATABASE_URL": database_url,
            "PAYQL_ENV": "test",
            "JWT_SECRET": TEST_SECRET,
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_WEBHOOK_SECRET": "whsec_payql_crash",
            "STRIPE_API_BASE": fake.url,
            "PROVIDER_TIMEOUT_MS": "1000",
            "LOG_LEVEL": "WARNING",
        }
        if faults:
            values["PAYQL_FAULTS"] = faults
        return values

    return build


@pytest.fixture
def reconcile(env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    """`payql reconcile` as an operator runs it once the server is back (in this process: the crash is over)."""
    monkeypatch.chdir(tmp_path)
    for name, value in env().items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> str:
        capsys.readouterr()
        assert main(["reconcile", *args]) == 0
        return capsys.readouterr().out

    return run


@pytest.fixture
def restarted(settings: Settings, fake: FakeStripe, db: Database) -> Iterator[Api]:
    """The service after the restart (in this process), to read and retry through the API."""
    values = make_settings(
        settings.database_url,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret="whsec_payql_crash",
        stripe_api_base=fake.url,
    )
    with Api(create_app(values, db=db), values) as api:
        yield api


def crashes(server: Server, call: Callable[[], Any]) -> None:
    """`call` reaches the crash point: no answer comes back, and the server is dead, as if killed."""
    with pytest.raises(httpx.TransportError):
        call()
    assert server.wait_dead() == CRASH_EXIT_CODE, server.log()
    assert "crash point" in server.log()


def one(db: Database, model: type[Any]) -> Any:
    with db.read() as session:
        (row,) = session.scalars(select(model)).all()
        session.expunge(row)
        return row


def held_enroll(client: User, mentor: User) -> tuple[str, str]:
    """An enroll READY for completion whose payment is held (authorized, not captured) at Stripe."""
    enroll_id = book(client, mentor)
    payment_id = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="MANUAL")["payment"]["id"]
    assert client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_visa")["payment"]["status"] == (
        "AUTHORIZED"
    )
    mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
    mentor.ok(doc.MARK_ENROLL_READY, id=enroll_id)
    return enroll_id, payment_id


def test_fault_points_are_refused_outside_the_test_environment(env: Env, tmp_path: Path) -> None:
    values = env("capture") | {"PAYQL_ENV": "production", "JWT_SECRET": "x" * 40}
    result = payql("reconcile", env=values, cwd=tmp_path)
    assert result.returncode != 0
    assert "PAYQL_FAULTS is honoured only with PAYQL_ENV=test" in result.stdout + result.stderr


def test_killed_after_stripe_created_the_payment(
    env: Env, settings: Settings, fake: FakeStripe, db: Database, tmp_path: Path, reconcile: Run, restarted: Api
) -> None:
    with Server(env("create_payment"), tmp_path) as server:
        api = server.api(settings)
        client, mentor = api.user("client"), api.user("mentor", "provider")
        enroll_id = book(client, mentor)
        fields = {"enrollId": enroll_id, "provider": "STRIPE", "captureMethod": "MANUAL", "idempotencyKey": "buy-1"}
        crashes(server, lambda: client.ok(doc.CREATE_INTENT, input=fields))
    (created,) = fake.payment_intents.values()
    lost = one(db, Payment)
    assert (lost.status, lost.provider_payment_id) == (PaymentStatus.PENDING, None)

    assert "1 payment(s) created" in reconcile("--older-than", "0")

    assert list(fake.payment_intents) == [created["id"]]  # asked again with the same key: Stripe replayed it
    found = one(db, Payment)
    assert (found.status, found.provider_payment_id) == (PaymentStatus.PENDING, created["id"])
    again = restarted.user("client").ok(doc.CREATE_INTENT, input=fields)  # the app retries with its key
    assert again["payment"]["id"] == found.id
    assert again["clientSecret"] == created["client_secret"]
    assert len(fake.payment_intents) == 1


def test_killed_after_stripe_captured_the_hold(
    env: Env, settings: Settings, fake: FakeStripe, db: Database, tmp_path: Path, reconcile: Run, restarted: Api
) -> None:
    with Server(env("capture"), tmp_path) as server:
        api = server.api(settings)
        client, mentor = api.user("client"), api.user("mentor", "provider")
        enroll_id, payment_id = held_enroll(client, mentor)
        crashes(server, lambda: client.ok(doc.CONFIRM_ENROLL, id=enroll_id))
    (stripe_intent,) = fake.payment_intents.values()
    assert (stripe_intent["status"], stripe_intent["amount_received"]) == ("succeeded", 10000)
    assert one(db, Payment).status is PaymentStatus.AUTHORIZED
    assert one(db, Enroll).status is EnrollStatus.READY

    assert "1 enroll action(s) finished" in reconcile("--older-than", "0")

    captures = [r for r in fake.requests if r.path.endswith("/capture")]
    assert len(captures) == 1  # reconcile re-read the intent and saw the capture: it did not capture again
    payment, enroll = one(db, Payment), one(db, Enroll)
    assert (payment.status, payment.captured_minor, payment.payee_minor) == (PaymentStatus.SUCCEEDED, 10000, 9500)
    assert (enroll.status, enroll.pending_action) == (EnrollStatus.COMPLETED, None)
    rows = restarted.user("mentor", "provider").data(doc.BALANCES)["balances"]["accounts"]
    assert [(r["available"]["amount"], r["pending"]["amount"]) for r in rows] == [("95.00", "0.00")]
    assert restarted.user("client").data(doc.PAYMENT, id=payment_id)["payment"]["status"] == "SUCCEEDED"


def test_killed_after_stripe_voided_the_hold(
    env: Env, settings: Settings, fake: FakeStripe, db: Database, tmp_path: Path, reconcile: Run
) -> None:
    with Server(env("void"), tmp_path) as server:
        api = server.api(settings)
        client, mentor = api.user("client"), api.user("mentor", "provider")
        enroll_id, _ = held_enroll(client, mentor)
        crashes(server, lambda: client.ok(doc.CANCEL_ENROLL, id=enroll_id, reason="changed my mind"))
    (stripe_intent,) = fake.payment_intents.values()
    assert stripe_intent["status"] == "canceled"
    assert one(db, Enroll).status is EnrollStatus.READY

    assert "1 enroll action(s) finished" in reconcile("--older-than", "0")

    payment, enroll = one(db, Payment), one(db, Enroll)
    assert payment.status is PaymentStatus.CANCELED
    assert (enroll.status, enroll.cancel_reason, enroll.pending_action) == (
        EnrollStatus.CANCELLED,
        "changed my mind",
        None,
    )
    assert len([r for r in fake.requests if r.path.endswith("/cancel")]) == 1


@pytest.mark.parametrize(("accepted", "step"), [(False, doc.ACCEPT_ENROLL), (True, doc.MARK_ENROLL_READY)])
def test_the_providers_steps_wait_for_a_cancellation_a_crash_left_pending(
    env: Env,
    settings: Settings,
    fake: FakeStripe,
    db: Database,
    tmp_path: Path,
    reconcile: Run,
    restarted: Api,
    accepted: bool,
    step: str,
) -> None:
    # given a held payment on an enroll the provider has not yet accepted (or not yet marked ready), and a server
    # killed after Stripe voided the hold while the client cancelled
    with Server(env("void"), tmp_path) as server:
        api = server.api(settings)
        client, mentor = api.user("client"), api.user("mentor", "provider")
        enroll_id = book(client, mentor)
        payment_id = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="MANUAL")["payment"]["id"]
        client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_visa")
        if accepted:
            mentor.ok(doc.ACCEPT_ENROLL, id=enroll_id)
        crashes(server, lambda: client.ok(doc.CANCEL_ENROLL, id=enroll_id, reason="changed my mind"))
    before = one(db, Enroll).status
    assert before is (EnrollStatus.CONFIRMED if accepted else EnrollStatus.PENDING)

    # when the provider takes the next step before reconcile ran, then it waits for the cancellation
    refused = restarted.user("mentor", "provider").fails(step, "INVALID_STATE", id=enroll_id)
    assert "cancellation is in progress" in refused["errors"][0]["message"]
    assert one(db, Enroll).status is before

    # and reconcile finishes the cancellation the client asked for
    assert "1 enroll action(s) finished" in reconcile("--older-than", "0")
    assert (one(db, Enroll).status, one(db, Payment).status) == (EnrollStatus.CANCELLED, PaymentStatus.CANCELED)


def test_killed_after_stripe_made_the_refund(
    env: Env, settings: Settings, fake: FakeStripe, db: Database, tmp_path: Path, reconcile: Run, restarted: Api
) -> None:
    with Server(env("refund"), tmp_path) as server:
        api = server.api(settings)
        client, mentor = api.user("client"), api.user("mentor", "provider")
        enroll_id = book(client, mentor)
        payment_id = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")["payment"]["id"]
        client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_visa")
        refund = {"paymentId": payment_id, "amount": {"amount": "30.00", "currency": "USD"}, "idempotencyKey": "r-1"}
        crashes(server, lambda: mentor.ok(doc.REFUND, input=refund))
    (stripe_refund,) = fake.refunds.values()
    lost = one(db, Refund)
    assert (lost.status, lost.provider_refund_id) == (RefundStatus.PENDING, None)

    assert "1 refund(s) sent" in reconcile("--older-than", "0")

    assert list(fake.refunds) == [stripe_refund["id"]]
    found, payment = one(db, Refund), one(db, Payment)
    assert (found.status, found.provider_refund_id, found.amount_minor) == (
        RefundStatus.SUCCEEDED,
        stripe_refund["id"],
        3000,
    )
    assert (payment.status, payment.refunded_minor) == (PaymentStatus.PARTIALLY_REFUNDED, 3000)
    again = restarted.user("mentor", "provider").ok(doc.REFUND, input=refund)  # the payee's retry replays it
    assert (again["refund"]["id"], again["refund"]["status"]) == (found.id, "SUCCEEDED")
    assert len(fake.refunds) == 1


def test_killed_after_stripe_made_the_payout_transfer(
    env: Env, fake: FakeStripe, db: Database, tmp_path: Path, reconcile: Run, restarted: Api
) -> None:
    api = restarted
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    enroll_id, _ = held_enroll(client, mentor)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    account = mentor.ok(doc.REGISTER_PAYOUT_ACCOUNT, input={"provider": "STRIPE", "externalAccountId": "acct_m1"})
    admin.ok(doc.VERIFY_PAYOUT_ACCOUNT, id=account["payoutAccount"]["id"])
    amount = {"amount": "60.00", "currency": "USD"}
    withdrawal = mentor.ok(doc.REQUEST_WITHDRAWAL, input={"amount": amount})["withdrawal"]
    admin.ok(doc.APPROVE_WITHDRAWAL, id=withdrawal["id"])

    run = payql("payouts", "run", env=env("payout"), cwd=tmp_path)
    assert run.returncode == CRASH_EXIT_CODE, run.stdout + run.stderr
    (transfer,) = fake.transfers.values()
    assert one(db, Withdrawal).status is WithdrawalStatus.PROCESSING

    assert "1 payout(s) settled or sent" in reconcile("--older-than", "0")

    assert list(fake.transfers) == [transfer["id"]]
    done = one(db, Withdrawal)
    assert (done.status, done.provider_payout_id) == (WithdrawalStatus.COMPLETED, transfer["id"])
    rows = mentor.data(doc.BALANCES)["balances"]["accounts"]
    assert [(r["available"]["amount"], r["paidOut"]["amount"]) for r in rows] == [("35.00", "60.00")]


def test_reconcile_applies_a_payment_whose_webhook_never_came_and_leaves_fresh_rows_alone(
    fake: FakeStripe, db: Database, reconcile: Run, restarted: Api
) -> None:
    client, mentor = restarted.user("client"), restarted.user("mentor", "provider")
    enroll_id = book(client, mentor)
    created = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="MANUAL")
    fake.customer_pays(next(iter(fake.payment_intents)))  # paid in the browser; the webhook is lost

    fresh = reconcile()  # default RECONCILE_AFTER_SECONDS: it is too recent to be touched
    assert "0 payment(s) updated from the provider" in fresh
    assert one(db, Payment).status is PaymentStatus.PENDING

    assert "1 payment(s) updated from the provider" in reconcile("--older-than", "0")
    payment = one(db, Payment)
    assert (payment.id, payment.status, payment.authorized_minor) == (
        created["payment"]["id"],
        PaymentStatus.AUTHORIZED,
        10000,
    )
    assert "0 payment(s) updated from the provider" in reconcile("--older-than", "0")  # nothing left to change


def test_reconcile_leaves_what_the_provider_cannot_answer_now_for_its_next_run(
    fake: FakeStripe, db: Database, restarted: Api, reconcile: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    client, mentor = restarted.user("client"), restarted.user("mentor", "provider")
    enroll_id = book(client, mentor)
    payment_id = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")["payment"]["id"]
    client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_visa")
    fake.fail_next(count=1, status=500, path_prefix="/v1/refunds")
    mentor.fails(doc.REFUND, "PROVIDER_UNAVAILABLE", input={"paymentId": payment_id})  # and nobody retries
    assert one(db, Refund).status is RefundStatus.PENDING

    fake.fail_next(count=1, status=500, path_prefix="/v1/refunds")
    capsys.readouterr()
    assert main(["reconcile", "--older-than", "0"]) == 1  # cron sees it: something is left to retry
    assert "1 to retry" in capsys.readouterr().out
    assert one(db, Refund).status is RefundStatus.PENDING
    assert fake.refunds == {}

    assert (
        "1 refund(s) sent, 0 payout(s) settled or sent, 0 payment(s) updated from the provider, "
        "0 dispute(s) updated from the provider, 0 to retry"
    ) in reconcile("--older-than", "0")
    assert one(db, Refund).status is RefundStatus.SUCCEEDED
    assert len(fake.refunds) == 1


def test_killed_after_stripe_refunded_a_cancelled_enroll(
    env: Env, settings: Settings, fake: FakeStripe, db: Database, tmp_path: Path, reconcile: Run
) -> None:
    with Server(env("refund"), tmp_path) as server:
        api = server.api(settings)
        client, mentor = api.user("client"), api.user("mentor", "provider")
        enroll_id = book(client, mentor)
        payment_id = intent(client, enrollId=enroll_id, provider="STRIPE", captureMethod="AUTOMATIC")["payment"]["id"]
        client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_visa")  # captured, held in escrow
        crashes(server, lambda: client.ok(doc.CANCEL_ENROLL, id=enroll_id, reason="no longer needed"))
    (stripe_refund,) = fake.refunds.values()
    assert one(db, Enroll).pending_action is not None

    assert "1 enroll action(s) finished, 0 refund(s) sent" in reconcile("--older-than", "0")

    assert list(fake.refunds) == [stripe_refund["id"]]  # the re-read found the refund: none made again
    refund, payment, enroll = one(db, Refund), one(db, Payment), one(db, Enroll)
    assert (refund.status, refund.provider_refund_id, refund.amount_minor) == (
        RefundStatus.SUCCEEDED,
        stripe_refund["id"],
        10000,
    )
    assert (payment.status, payment.refunded_minor) == (PaymentStatus.REFUNDED, 10000)
    assert (enroll.status, enroll.cancel_reason, enroll.pending_action) == (
        EnrollStatus.CANCELLED,
        "no longer needed",
        None,
    )


def test_killed_after_stripe_refused_the_payout_transfer(
    env: Env, fake: FakeStripe, db: Database, tmp_path: Path, reconcile: Run, restarted: Api
) -> None:
    api = restarted
    client, mentor, admin = api.user("client"), api.user("mentor", "provider"), api.user("admin", "admin")
    enroll_id, _ = held_enroll(client, mentor)
    client.ok(doc.CONFIRM_ENROLL, id=enroll_id)
    account = mentor.ok(doc.REGISTER_PAYOUT_ACCOUNT, input={"provider": "STRIPE", "externalAccountId": "acct_shut"})
    admin.ok(doc.VERIFY_PAYOUT_ACCOUNT, id=account["payoutAccount"]["id"])
    fake.unpayable_accounts.add("acct_shut")
    withdrawal = mentor.ok(doc.REQUEST_WITHDRAWAL, input={"amount": {"amount": "60.00", "currency": "USD"}})
    admin.ok(doc.APPROVE_WITHDRAWAL, id=withdrawal["withdrawal"]["id"])

    run = payql("payouts", "run", env=env("payout"), cwd=tmp_path)  # killed between Stripe's 400 and the commit
    assert run.returncode == CRASH_EXIT_CODE, run.stdout + run.stderr
    assert one(db, Withdrawal).status is WithdrawalStatus.PROCESSING

    reconcile("--older-than", "0")

    assert fake.transfers == {}
    done = one(db, Withdrawal)
    assert (done.status, done.failure_reason) == (WithdrawalStatus.FAILED, "insufficient_capabilities_for_transfer")
    rows = mentor.data(doc.BALANCES)["balances"]["accounts"]
    assert [(r["available"]["amount"], r["paidOut"]["amount"]) for r in rows] == [("95.00", "0.00")]
