"""Concurrent postings (threads, each with its own connection) to the same platform-wide accounts and the same
payee: no update is lost, every balance is exact, and a checked balance never goes below its limit."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import func, select

from payql.db import Database
from payql.models import PLATFORM, AccountKind, LedgerAccount, LedgerTransaction
from payql.services import ledger, postings
from payql.services.checks import ledger_problems

THREADS = 6
EACH = 15
PAYEE = "payee-1"


def _race(work: Callable[[int], None]) -> None:
    """Run `work(thread)` in THREADS threads released together; re-raise the first failure."""
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            start.wait(timeout=30)
            work(thread)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures[0]


def test_concurrent_captures_lose_no_update_on_the_platform_accounts_and_the_payee(db: Database) -> None:
    amounts = {(t, i): 1000 + 37 * t + i for t in range(THREADS) for i in range(EACH)}

    def capture(thread: int) -> None:
        for i in range(EACH):
            shares = postings.split(amounts[(thread, i)], 1000, 500)
            with db.uow() as uow:
                assert ledger.post(
                    uow.session,
                    "capture",
                    "payment",
                    f"pay_{thread}_{i}",
                    postings.capture("STRIPE", "USD", PAYEE, shares),
                )
                uow.commit()

    _race(capture)

    splits = [postings.split(amount, 1000, 500) for amount in amounts.values()]
    with db.read() as session:
        assert ledger.balances(session, "STRIPE") == {(AccountKind.PROVIDER_CASH, "USD"): sum(amounts.values())}
        assert ledger.balances(session, PLATFORM) == {
            (AccountKind.REVENUE, "USD"): -sum(s.fee for s in splits),
            (AccountKind.TAX, "USD"): -sum(s.tax for s in splits),
        }
        assert ledger.balances(session, PAYEE) == {(AccountKind.PAYABLE, "USD"): -sum(s.payee for s in splits)}
        assert ledger.balance_of(session, PAYEE, AccountKind.PAYABLE, "USD") == -sum(s.payee for s in splits)
        assert ledger.totals_by_kind(session)[(AccountKind.REVENUE, "USD")] == -sum(s.fee for s in splits)
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == THREADS * EACH
        revenue_rows = session.scalar(
            select(func.count()).where(LedgerAccount.owner_id == PLATFORM, LedgerAccount.kind == AccountKind.REVENUE)
        )
        payee_rows = session.scalar(select(func.count()).where(LedgerAccount.owner_id == PAYEE))
        assert ledger_problems(session) == []
    assert revenue_rows is not None
    assert revenue_rows > 1  # platform revenue is spread over several rows
    assert payee_rows == 1  # the payee's payable stays one row: the one a withdrawal checks


def test_the_same_cause_posted_concurrently_posts_once(db: Database) -> None:
    posted: list[bool] = []

    def sale(_thread: int) -> None:
        with db.uow() as uow:
            try:
                done = ledger.post(uow.session, "sale", "payment", "pay_once", postings.sale("STRIPE", "USD", 500))
                uow.commit()
            except Exception:  # noqa: BLE001 - the unique constraint refuses the second one at commit
                done = False
            posted.append(done)

    _race(sale)

    assert posted.count(True) == 1
    with db.read() as session:
        assert ledger.balances(session, PLATFORM) == {(AccountKind.REVENUE, "USD"): -500}
        assert ledger.balances(session, "STRIPE") == {(AccountKind.PROVIDER_CASH, "USD"): 500}


def test_withdrawals_racing_captures_never_take_the_payable_below_zero(db: Database) -> None:
    """Half the threads capture for the payee, half withdraw 700 whenever the locked payable shows enough."""
    withdrawn: list[int] = []

    def work(thread: int) -> None:
        for i in range(EACH):
            with db.uow() as uow:
                if thread % 2:
                    available = -ledger.balance_of(uow.session, PAYEE, AccountKind.PAYABLE, "USD", lock=True)
                    if available < 700:
                        continue
                    assert ledger.post(
                        uow.session,
                        "withdrawal",
                        "withdrawal",
                        f"wdr_{thread}_{i}",
                        postings.withdrawal(PAYEE, "USD", 700),
                    )
                    withdrawn.append(700)
                else:
                    shares = postings.split(1000, 1000, 0)  # 900 to the payee
                    ledger.post(
                        uow.session,
                        "capture",
                        "payment",
                        f"pay_{thread}_{i}",
                        postings.capture("STRIPE", "USD", PAYEE, shares),
                    )
                uow.commit()

    _race(work)

    earned = (THREADS // 2) * EACH * 900
    with db.read() as session:
        available = -ledger.balance_of(session, PAYEE, AccountKind.PAYABLE, "USD")
        in_flight = -ledger.balance_of(session, PAYEE, AccountKind.PAYOUTS_IN_FLIGHT, "USD")
        assert ledger_problems(session) == []
    assert available >= 0
    assert available + sum(withdrawn) == earned
    assert in_flight == sum(withdrawn)
    assert withdrawn  # the race did withdraw
