"""`--concurrency`: the payout run and reconcile call providers from a bounded pool (payql/batches.py).

The Stripe fake adds latency to every request and counts the requests it serves at once: with concurrency N the
calls overlap (more than one in flight) and never exceed N; each withdrawal is still sent once, with its own key,
also when two runs overlap; the counts are exact; reconcile at concurrency 4 does what it does at 1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import documents as doc
import pytest
from conftest import make_settings
from fakes.stripe_api import FakeStripe
from flows import book, intent
from sqlalchemy import insert, select
from support import Api

from payql.app import create_app, services_of
from payql.cli import build_parser
from payql.db import Database
from payql.models import PayoutAccount, Refund, User, Withdrawal, utcnow
from payql.models.enums import PaymentStatus, PayoutAccountStatus, ProviderName, RefundStatus, WithdrawalStatus
from payql.models.payment import Payment
from payql.services import ledger, postings
from payql.services.payouts import PayoutService
from payql.settings import Settings

SECRET_KEY = "sk_test_job_concurrency"
PROVIDERS = 24
EARNED = 10_000  # 100.00 USD each, above the 50.00 minimum
MONDAY = datetime(2026, 11, 23, 9, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(secret_key=SECRET_KEY, latency_ms=100) as server:
        yield server


@pytest.fixture
def settings(database_url: str, fake: FakeStripe) -> Settings:
    return make_settings(database_url, stripe_secret_key=SECRET_KEY, stripe_api_base=fake.url, provider_timeout_ms=5000)


@pytest.fixture
def api(settings: Settings, db: Database) -> Iterator[Api]:
    with Api(create_app(settings, db=db), settings) as running:
        yield running


def providers_with_earnings(db: Database, count: int = PROVIDERS) -> list[str]:
    """`count` providers with a verified Stripe account and 100.00 USD available: a sale each, captured through
    Stripe with the whole amount for the payee (the ledger's own posting)."""
    users = [f"earner-{i:03d}" for i in range(count)]
    with db.uow() as uow:
        connection = uow.session.connection()
        connection.execute(insert(User), [{"id": user, "roles": "provider"} for user in users])
        connection.execute(
            insert(PayoutAccount),
            [
                {
                    "id": f"pac_earner{i:03d}",
                    "user_id": user,
                    "provider": ProviderName.STRIPE,
                    "external_account_id": f"acct_earner{i:03d}",
                    "currency": "USD",
                    "status": PayoutAccountStatus.VERIFIED,
                    "verified_at": utcnow(),
                }
                for i, user in enumerate(users)
            ],
        )
        uow.commit()
    earn(db, users)
    return users


def earn(db: Database, users: list[str], sale: str = "first") -> None:
    """A sale for each user, captured through Stripe with the whole amount (100.00 USD) for the payee."""
    share = postings.Split(base=EARNED, fee=0, tax=0, payee=EARNED)
    with db.uow() as uow:
        for user in users:
            ledger.post(
                uow.session, "capture", "test", f"{user}-{sale}", postings.capture("stripe", "USD", user, share)
            )
        uow.commit()


def transfer_keys(fake: FakeStripe) -> list[str | None]:
    return [r.idempotency_key for r in fake.requests if (r.method, r.path) == ("POST", "/v1/transfers")]


def withdrawals(db: Database) -> list[Withdrawal]:
    with db.read() as session:
        return list(session.scalars(select(Withdrawal).order_by(Withdrawal.id)))


def payouts_of(api: Api) -> PayoutService:
    return services_of(api.app).payouts


def test_the_run_overlaps_at_most_n_calls_and_sends_each_payout_once_with_its_key(
    api: Api, fake: FakeStripe, db: Database
) -> None:
    users = providers_with_earnings(db)

    run = payouts_of(api).run(auto_approve=True, now=MONDAY, concurrency=4)

    assert (run.created, run.completed, run.failed, run.pending) == (PROVIDERS, PROVIDERS, 0, 0)
    assert 1 < fake.max_in_flight <= 4
    paid = withdrawals(db)
    assert {w.status for w in paid} == {WithdrawalStatus.COMPLETED}
    assert sorted(transfer_keys(fake)) == sorted(f"{w.provider_key}:transfer" for w in paid)  # one call each, keyed
    assert sorted(t["destination"] for t in fake.transfers.values()) == [
        f"acct_earner{i:03d}" for i in range(PROVIDERS)
    ]
    assert {w.provider_payout_id for w in paid} == set(fake.transfers)
    assert sorted(w.user_id for w in paid) == users

    earn(db, users, "second")  # more earnings the same week: this week's automatic payout was made already
    again = payouts_of(api).run(auto_approve=True, now=MONDAY + timedelta(days=1), concurrency=4)
    assert (again.created, again.completed, len(transfer_keys(fake))) == (0, 0, PROVIDERS)
    next_week = payouts_of(api).run(auto_approve=True, now=MONDAY + timedelta(days=7), concurrency=4)
    assert (next_week.created, next_week.completed, len(fake.transfers)) == (PROVIDERS, PROVIDERS, 2 * PROVIDERS)


def test_two_runs_at_once_pay_every_provider_once(api: Api, fake: FakeStripe, db: Database) -> None:
    providers_with_earnings(db)
    payouts = payouts_of(api)

    with ThreadPoolExecutor(2) as pool:  # on PostgreSQL one of them finds the job's lock taken and skips
        runs = list(pool.map(lambda _: payouts.run(auto_approve=True, now=MONDAY, concurrency=4), range(2)))

    paid = withdrawals(db)
    assert len(paid) == PROVIDERS
    assert {w.status for w in paid} == {WithdrawalStatus.COMPLETED}
    assert len(fake.transfers) == PROVIDERS  # a key sent by both runs was answered with the same transfer
    assert set(transfer_keys(fake)) == {f"{w.provider_key}:transfer" for w in paid}
    assert Counter(t["destination"] for t in fake.transfers.values()) == {
        f"acct_earner{i:03d}": 1 for i in range(PROVIDERS)
    }
    assert sum(run.created for run in runs) == PROVIDERS


def test_refusals_and_outages_are_counted_exactly_at_concurrency_4(api: Api, fake: FakeStripe, db: Database) -> None:
    providers_with_earnings(db)
    fake.unpayable_accounts.update({"acct_earner003", "acct_earner010", "acct_earner017"})
    fake.fail_next(count=2, status=500, path_prefix="/v1/transfers")  # whichever two come first

    run = payouts_of(api).run(auto_approve=True, now=MONDAY, concurrency=4)

    # the outage may hit a refused account's request: that one is refused on the next run instead
    assert (run.created, run.pending, run.completed + run.failed) == (PROVIDERS, 2, PROVIDERS - 2)
    assert Counter(w.status for w in withdrawals(db)) == {
        WithdrawalStatus.COMPLETED: run.completed,
        WithdrawalStatus.FAILED: run.failed,
        WithdrawalStatus.PROCESSING: 2,
    }

    again = payouts_of(api).run(concurrency=4)  # the two left in flight go again with their keys
    assert (again.completed + again.failed, again.pending) == (2, 0)
    final = withdrawals(db)
    assert Counter(w.status for w in final) == {WithdrawalStatus.COMPLETED: PROVIDERS - 3, WithdrawalStatus.FAILED: 3}
    assert {w.provider_payout_id for w in final if w.status is WithdrawalStatus.COMPLETED} == set(fake.transfers)
    refused = sorted(w.payout_account_id for w in final if w.status is WithdrawalStatus.FAILED)
    assert refused == ["pac_earner003", "pac_earner010", "pac_earner017"]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_reconcile_at_concurrency_4_does_what_it_does_at_1(
    api: Api, fake: FakeStripe, db: Database, concurrency: int
) -> None:
    client, mentor = api.user("client"), api.user("mentor", "provider")
    waiting = []
    for _ in range(3):  # paid in the browser; the webhook is lost
        waiting.append(intent(client, enrollId=book(client, mentor), provider="STRIPE", captureMethod="MANUAL"))
        fake.customer_pays(list(fake.payment_intents)[-1])
    for _ in range(2):  # a refund whose call failed, and nobody retried
        payment_id = intent(client, enrollId=book(client, mentor), provider="STRIPE", captureMethod="AUTOMATIC")[
            "payment"
        ]["id"]
        client.ok(doc.CONFIRM, paymentId=payment_id, paymentMethod="pm_card_visa")
        fake.fail_next(count=1, status=500, path_prefix="/v1/refunds")
        mentor.fails(doc.REFUND, "PROVIDER_UNAVAILABLE", input={"paymentId": payment_id})
    providers_with_earnings(db, 3)
    fake.fail_next(count=3, status=500, path_prefix="/v1/transfers")
    assert payouts_of(api).run(auto_approve=True, now=MONDAY).pending == 3  # three withdrawals left in flight
    reconciler = services_of(api.app).reconciler

    report = reconciler.report(older_than=timedelta(0), concurrency=1)
    assert reconciler.report(older_than=timedelta(0), concurrency=4) == report  # the same, in the same order
    assert (report.checked, report.failed) == (5, 0)  # the five payments known to Stripe; intents are listed
    changed = sorted(line for line in report.differences if "status PENDING -> AUTHORIZED" in line)
    assert changed == sorted(
        f"payment {p}: payments {p}: status PENDING -> AUTHORIZED" for p in (w["payment"]["id"] for w in waiting)
    )
    assert sum("never confirmed by the provider" in line for line in report.differences) == 2 + 3

    fake.fail_next(count=1, status=500, path_prefix="/v1/transfers")  # one of them fails again
    run = reconciler.run(older_than=timedelta(0), concurrency=concurrency)

    assert (run.created, run.enrolls, run.refunds, run.payouts, run.refreshed, run.failed) == (0, 0, 2, 2, 3, 1)
    with db.read() as session:
        statuses = {p.id: p.status for p in session.scalars(select(Payment))}
        refunds = [r.status for r in session.scalars(select(Refund))]
    assert [statuses[w["payment"]["id"]] for w in waiting] == [PaymentStatus.AUTHORIZED] * 3
    assert refunds == [RefundStatus.SUCCEEDED] * 2
    assert Counter(w.status for w in withdrawals(db)) == {WithdrawalStatus.COMPLETED: 2, WithdrawalStatus.PROCESSING: 1}
    assert len(fake.refunds) == 2
    assert len(fake.transfers) == 2


def test_concurrency_is_an_option_with_a_bounded_default() -> None:
    parser = build_parser()
    assert parser.parse_args(["payouts", "run"]).concurrency == parser.parse_args(["reconcile"]).concurrency == 16
    assert parser.parse_args(["reconcile", "--concurrency", "1"]).concurrency == 1
    for wrong in ("0", "17", "many"):
        with pytest.raises(SystemExit):
            parser.parse_args(["payouts", "run", "--concurrency", wrong])
