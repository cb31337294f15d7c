"""The ledger's own guarantees: balanced or refused, one posting per cause, balances move with their entries."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from payql.db import Database
from payql.models import PLATFORM, AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction
from payql.services import ledger


def lines(amount: int) -> list[ledger.Line]:
    return [
        ledger.Line("STRIPE", AccountKind.PROVIDER_CASH, "USD", amount),
        ledger.Line(PLATFORM, AccountKind.REVENUE, "USD", -amount),
    ]


def test_an_unbalanced_posting_is_refused_before_anything_is_written(db: Database) -> None:
    unbalanced = [*lines(100), ledger.Line("u1", AccountKind.PAYABLE, "EUR", -1)]

    with db.uow() as uow, pytest.raises(ledger.UnbalancedPosting, match="does not balance"):
        ledger.post(uow.session, "sale", "payment", "pay_1", unbalanced)

    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 0


def test_the_same_cause_posts_once_and_balances_move_with_their_entries(db: Database) -> None:
    with db.uow() as uow:
        assert ledger.post(uow.session, "sale", "payment", "pay_1", lines(250)) is True
        assert ledger.post(uow.session, "sale", "payment", "pay_1", lines(250)) is False  # a replay
        assert ledger.post(uow.session, "refund", "refund", "ref_1", lines(-50)) is True
        uow.commit()

    with db.read() as session:
        assert ledger.balances(session, PLATFORM) == {(AccountKind.REVENUE, "USD"): -200}
        assert ledger.balances(session, "STRIPE") == {(AccountKind.PROVIDER_CASH, "USD"): 200}
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 2


def test_a_posting_to_thousands_of_new_accounts_is_written(db: Database) -> None:
    # one posting paying 10,000 payees that never had an account: their ids are read in several statements
    # (PostgreSQL 15.20 refused one row IN list of 10,001 keys: "stack depth limit exceeded")
    payees = [ledger.Line(f"payee-{i:05d}", AccountKind.PAYABLE, "USD", -1) for i in range(10_000)]
    with db.uow() as uow:
        assert ledger.post(uow.session, "seed", "batch", "b1", [*payees, *lines(10_000)[:1]]) is True
        uow.commit()

    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerAccount)) == 10_001
        assert ledger.balances(session, "payee-09999") == {(AccountKind.PAYABLE, "USD"): -1}
        assert ledger.balances(session, "STRIPE") == {(AccountKind.PROVIDER_CASH, "USD"): 10_000}


def test_an_empty_posting_writes_nothing(db: Database) -> None:
    with db.uow() as uow:
        assert ledger.post(uow.session, "sale", "payment", "pay_0", lines(0)) is False
        uow.commit()

    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0


def test_a_dry_run_records_what_a_unit_of_work_would_write_and_writes_nothing(db: Database) -> None:
    with db.dry_run() as changes, db.uow() as uow:
        ledger.post(uow.session, "sale", "payment", "pay_1", lines(250))
        uow.commit()  # inside a dry run: flushed and recorded, then rolled back

    assert changes == [
        "ledger_transactions (new): kind=sale cause=payment pay_1 provider_cash:STRIPE+250 revenue:platform-250"
    ]
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
        assert ledger.balances(session, PLATFORM) == {}

    with db.uow() as uow:  # outside it, the same unit of work commits
        ledger.post(uow.session, "sale", "payment", "pay_1", lines(250))
        uow.commit()
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1


def test_post_many_writes_each_cause_once_and_sums_the_moves_of_an_account(db: Database) -> None:
    with db.uow() as uow:
        assert ledger.post(uow.session, "sale", "payment", "pay_1", lines(250)) is True
        written = ledger.post_many(
            uow.session,
            [
                ledger.Posting("sale", "payment", "pay_1", lines(250)),  # posted before: skipped
                ledger.Posting("sale", "payment", "pay_2", lines(100)),
                ledger.Posting("sale", "payment", "pay_2", lines(100)),  # twice in one batch: once
                ledger.Posting("sale", "payment", "pay_3", lines(0)),  # empty: nothing
                ledger.Posting("sale", "payment", "pay_4", lines(7)),
            ],
        )
        uow.commit()

    assert written == [False, True, False, False, True]
    with db.read() as session:
        assert ledger.balances(session, PLATFORM) == {(AccountKind.REVENUE, "USD"): -357}
        assert ledger.balances(session, "STRIPE") == {(AccountKind.PROVIDER_CASH, "USD"): 357}
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 3
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 6


def test_post_many_refuses_a_batch_with_an_unbalanced_posting_before_anything_is_written(db: Database) -> None:
    unbalanced = [*lines(100), ledger.Line("u1", AccountKind.PAYABLE, "EUR", -1)]

    with db.uow() as uow, pytest.raises(ledger.UnbalancedPosting, match="pay_2 does not balance"):
        ledger.post_many(
            uow.session,
            [
                ledger.Posting("sale", "payment", "pay_1", lines(5)),
                ledger.Posting("sale", "payment", "pay_2", unbalanced),
            ],
        )

    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0


def test_post_many_in_a_dry_run_records_each_posting(db: Database) -> None:
    with db.dry_run() as changes, db.uow() as uow:
        ledger.post_many(
            uow.session,
            [
                ledger.Posting("sale", "payment", "pay_1", lines(250)),
                ledger.Posting("sale", "payment", "pay_2", lines(5)),
            ],
        )
        uow.commit()

    assert changes == [
        "ledger_transactions (new): kind=sale cause=payment pay_1 provider_cash:STRIPE+250 revenue:platform-250",
        "ledger_transactions (new): kind=sale cause=payment pay_2 provider_cash:STRIPE+5 revenue:platform-5",
    ]
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0


def test_platform_wide_moves_are_written_at_commit_and_read_in_step_before_it(db: Database) -> None:
    # given a posting that moves a platform-wide (sharded) account, its row is moved only just before the commit
    with db.uow() as uow:
        assert ledger.post(uow.session, "sale", "payment", "pay_1", lines(250)) is True
        shards = uow.session.scalars(
            select(LedgerAccount.balance_minor).where(LedgerAccount.kind == AccountKind.REVENUE)
        ).all()
        assert shards == [0]
        # but a balance read in the same transaction sees it
        assert ledger.balances(uow.session, PLATFORM) == {(AccountKind.REVENUE, "USD"): -250}
        assert ledger.post(uow.session, "refund", "refund", "ref_1", lines(-50)) is True
        uow.commit()

    with db.read() as session:
        assert ledger.balances(session, PLATFORM) == {(AccountKind.REVENUE, "USD"): -200}
        assert ledger.totals_by_kind(session)[AccountKind.REVENUE, "USD"] == -200


def test_a_rolled_back_posting_moves_no_balance_in_the_next_transaction(db: Database) -> None:
    with db.uow() as uow:
        ledger.post(uow.session, "sale", "payment", "pay_1", lines(250))
        uow.session.rollback()
        ledger.post(uow.session, "sale", "payment", "pay_2", lines(100))
        uow.commit()
    with db.uow() as uow:
        with uow.session.begin_nested() as savepoint:
            ledger.post(uow.session, "sale", "payment", "pay_3", lines(70))
            savepoint.rollback()
        uow.commit()

    with db.read() as session:
        assert ledger.balances(session, PLATFORM) == {(AccountKind.REVENUE, "USD"): -100}
        assert ledger.balances(session, "STRIPE") == {(AccountKind.PROVIDER_CASH, "USD"): 100}


def test_an_account_created_by_a_rolled_back_posting_is_created_again(db: Database) -> None:
    # given a posting that created a user's account and was rolled back (its id must not be remembered)
    moved = [ledger.Line("u1", AccountKind.PAYABLE, "USD", -40), ledger.Line(PLATFORM, AccountKind.REVENUE, "USD", 40)]
    with db.uow() as uow:
        assert ledger.post(uow.session, "release", "payment", "pay_1", moved) is True
        assert ledger.post(uow.session, "release", "payment", "pay_2", moved) is True  # read back, not committed
        uow.session.rollback()
    # when the same account moves again, twice (the second time from the ids remembered once committed)
    for cause in ("pay_3", "pay_4"):
        with db.uow() as uow:
            assert ledger.post(uow.session, "release", "payment", cause, moved) is True
            uow.commit()

    # then it exists once and holds both moves
    with db.read() as session:
        assert ledger.balances(session, "u1") == {(AccountKind.PAYABLE, "USD"): -80}
        assert (
            session.scalar(select(func.count()).select_from(LedgerAccount).where(LedgerAccount.owner_id == "u1")) == 1
        )


def test_deferred_postings_are_written_together_at_the_commit(db: Database) -> None:
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(" ".join(statement.split()[:3]))

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        with db.uow() as uow:
            ledger.defer_postings(uow.session)
            assert ledger.post(uow.session, "sale", "payment", "pay_1", lines(250), unposted=True) is True
            assert ledger.post(uow.session, "sale", "payment", "pay_2", lines(100), unposted=True) is True
            assert not [s for s in statements if s.startswith("INSERT INTO ledger_")]  # nothing written yet
            uow.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", note)

    assert statements.count("INSERT INTO ledger_transactions") == 1  # both postings in one statement
    assert statements.count("INSERT INTO ledger_entries") == 1
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 2
        assert ledger.balances(session, PLATFORM) == {(AccountKind.REVENUE, "USD"): -350}
        assert ledger.balances(session, "STRIPE") == {(AccountKind.PROVIDER_CASH, "USD"): 350}


def test_a_read_of_the_ledger_sees_the_postings_deferred_before_it(db: Database) -> None:
    with db.uow() as uow:
        ledger.defer_postings(uow.session)
        ledger.post(uow.session, "sale", "payment", "pay_1", lines(250), unposted=True)
        assert ledger.balance_of(uow.session, "STRIPE", AccountKind.PROVIDER_CASH, "USD") == 250
        assert ledger.posted_lines(uow.session, "payment", ["pay_1"], ["sale"]) == lines(250)
        # a posting that checks its cause sees the deferred one: a replay writes nothing
        assert ledger.post(uow.session, "sale", "payment", "pay_1", lines(250)) is False
        uow.commit()

    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1
        assert ledger.balances(session, "STRIPE") == {(AccountKind.PROVIDER_CASH, "USD"): 250}


def test_deferred_postings_rolled_back_are_gone_and_a_cause_deferred_twice_fails_the_commit(db: Database) -> None:
    with db.uow() as uow:
        ledger.defer_postings(uow.session)
        ledger.post(uow.session, "sale", "payment", "pay_1", lines(250), unposted=True)
        # no commit: rolled back
    with db.uow() as uow:
        ledger.defer_postings(uow.session)
        ledger.post(uow.session, "sale", "payment", "pay_2", lines(100), unposted=True)
        ledger.post(uow.session, "sale", "payment", "pay_2", lines(100), unposted=True)  # the caller was wrong
        with pytest.raises(IntegrityError):
            uow.commit()

    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
        assert ledger.balances(session, "STRIPE") == {}


def test_a_dry_run_defers_nothing_and_records_each_posting(db: Database) -> None:
    with db.dry_run() as changes, db.uow() as uow:
        ledger.defer_postings(uow.session)
        ledger.post(uow.session, "sale", "payment", "pay_1", lines(250), unposted=True)
        uow.commit()

    assert changes == [
        "ledger_transactions (new): kind=sale cause=payment pay_1 provider_cash:STRIPE+250 revenue:platform-250"
    ]
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
