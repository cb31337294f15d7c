"""PostgreSQL row locks: ours must not block the foreign-key checks of other transactions.

A refund that updates its payment twice in one transaction makes PostgreSQL check the payment's foreign key to its
enroll (FOR KEY SHARE on the enroll row). With `FOR UPDATE` on the enroll, `confirmEnroll` (enroll locked, waiting
for the payment) and such a refund (payment locked, waiting for the enroll) deadlocked: CI saw it once through two
server processes. `ROW_LOCK` is `FOR NO KEY UPDATE`, which serialises writers but lets key checks through.
"""

from __future__ import annotations

import pytest
from flows import paid_enroll
from sqlalchemy import create_engine, text
from support import Api

from payql.db import ROW_LOCK, Database, normalise_url
from payql.models import Enroll, Payment

# PostgreSQL's lock modes only: tests/conftest.py collects this file when TEST_POSTGRES_URL is set (CI sets it).
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def test_a_locked_enroll_lets_another_transaction_update_its_payment(api: Api, db: Database) -> None:
    payment_id = paid_enroll(api.user("client"), api.user("mentor", "provider"))["id"]
    with db.read() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        enroll_id = payment.enroll_id
    other = create_engine(normalise_url(db.url))

    with db.uow() as uow:
        assert uow.session.get(Enroll, enroll_id, with_for_update=ROW_LOCK) is not None  # confirmEnroll's first lock
        with other.begin() as connection:  # a refund's second transaction, under a short lock timeout
            connection.execute(text("SET LOCAL lock_timeout = '2s'"))
            connection.execute(text("SELECT id FROM payments WHERE id = :id FOR NO KEY UPDATE"), {"id": payment_id})
            for value in (1, 2):  # the second update of a row this transaction wrote checks the foreign key
                connection.execute(
                    text("UPDATE payments SET failure_code = :v WHERE id = :id"), {"v": str(value), "id": payment_id}
                )
            connection.execute(text("UPDATE payments SET failure_code = NULL WHERE id = :id"), {"id": payment_id})
    other.dispose()


def test_two_processes_syncing_the_catalogue_at_once_both_start(db: Database) -> None:
    """Replicas start together: another one inserts a package between this one's read and its insert (SQLite
    serialises its writers, so only PostgreSQL can interleave them)."""
    from sqlalchemy import event, insert, select  # noqa: PLC0415

    from payql.models import CreditPackage  # noqa: PLC0415
    from payql.services.catalogue import Catalogue  # noqa: PLC0415
    from payql.settings import DEFAULT_PACKAGES  # noqa: PLC0415

    with db.uow() as uow:
        uow.session.execute(CreditPackage.__table__.delete())
        uow.commit()
    raced: list[str] = []

    def other_process_first(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("INSERT INTO credit_packages") and not raced:
            raced.append(statement)
            with db.engine.connect() as other:  # a separate connection: the other replica
                other.execute(
                    insert(CreditPackage.__table__),
                    [
                        {"code": p.code, "name": p.name, "credits": p.credits, "price_minor": 1, "currency": "USD"}
                        for p in DEFAULT_PACKAGES
                    ],
                )
                other.commit()

    event.listen(db.engine, "before_cursor_execute", other_process_first)
    try:
        Catalogue(list(DEFAULT_PACKAGES)).sync(db)
    finally:
        event.remove(db.engine, "before_cursor_execute", other_process_first)

    assert raced  # the race happened
    with db.read() as session:
        rows = {row.code: row.price_minor for row in session.scalars(select(CreditPackage))}
    assert rows == {p.code: int(p.price.replace(".", "")) for p in DEFAULT_PACKAGES}  # ours won the update


def test_captures_of_different_payments_do_not_wait_on_the_platform_accounts(db: Database) -> None:
    """Every capture moves the platform's provider_cash and revenue: with one row each, a second capture waited for
    the first one's commit (the hot rows of issue 14). Two causes on different shards now pass each other."""
    from payql.models import AccountKind  # noqa: PLC0415
    from payql.services import ledger, postings  # noqa: PLC0415

    first, second = (
        "pay_a",
        next(
            f"pay_{n}"
            for n in range(100)
            if ledger.shard_of(AccountKind.REVENUE, f"pay_{n}") != ledger.shard_of(AccountKind.REVENUE, "pay_a")
        ),
    )
    shares = postings.split(1000, 1000, 500)
    for cause in (first, second):  # both shards exist, as they do after the first postings of a platform
        with db.uow() as uow:
            ledger.post(uow.session, "sale", "payment", cause, postings.sale("STRIPE", "USD", 1))
            uow.commit()

    with db.uow() as holder:  # the first capture, not committed yet: its rows stay locked
        assert ledger.post(holder.session, "capture", "payment", first, postings.capture("STRIPE", "USD", "p1", shares))
        other = Database(db.url)
        try:
            with other.uow() as uow:
                uow.session.execute(text("SET LOCAL lock_timeout = '2s'"))
                assert ledger.post(
                    uow.session, "capture", "payment", second, postings.capture("STRIPE", "USD", "p2", shares)
                )
                uow.commit()
        finally:
            other.dispose()
        holder.commit()


def test_a_transactions_balance_moves_take_their_rows_in_account_id_order(db: Database) -> None:
    """The moves a transaction makes (on PostgreSQL, for many accounts, in two statements: the rows locked, then
    updated from arrays) take their rows in account-id order, the one order of every writer: while another
    transaction holds the highest of them, the lowest is already taken, and nothing deadlocks."""
    import threading  # noqa: PLC0415

    from sqlalchemy import select  # noqa: PLC0415
    from sqlalchemy.exc import OperationalError  # noqa: PLC0415

    from payql.models import AccountKind, LedgerAccount  # noqa: PLC0415
    from payql.services import ledger, postings  # noqa: PLC0415

    causes = [f"pay_{n}" for n in range(4)]
    for cause in causes:  # the platform's shard rows exist (an escrow posting moves provider_cash and escrow)
        with db.uow() as uow:
            ledger.post(uow.session, "escrow", "payment", cause, postings.escrow("STRIPE", "USD", 100))
            uow.commit()
    with db.read() as session:
        ids = sorted(session.scalars(select(LedgerAccount.id)))
    assert len(ids) > 2  # several rows, or the order would not show
    lowest, highest = ids[0], ids[-1]

    other = create_engine(normalise_url(db.url))
    failures: list[BaseException] = []

    def group() -> None:  # one transaction moving every one of those rows (a webhook group's postings)
        try:
            with db.uow() as uow:
                again = [ledger.Posting("test-move", "payment", c, postings.escrow("STRIPE", "USD", 7)) for c in causes]
                assert all(ledger.post_many(uow.session, again))
                uow.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    try:
        with other.connect() as holder, other.connect() as probe:
            holding = holder.begin()
            holder.execute(text("SELECT id FROM ledger_accounts WHERE id = :id FOR NO KEY UPDATE"), {"id": highest})
            mover = threading.Thread(target=group)
            mover.start()
            for _ in range(200):  # until the group waits for the held row
                waiting = probe.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar()
                probe.rollback()
                if waiting:
                    break
                mover.join(timeout=0.05)
            assert waiting, "the group never waited for the held row"
            with pytest.raises(OperationalError, match="could not obtain lock"):
                probe.execute(
                    text("SELECT id FROM ledger_accounts WHERE id = :id FOR NO KEY UPDATE NOWAIT"), {"id": lowest}
                )
            probe.rollback()
            holding.rollback()
            mover.join(timeout=30)
    finally:
        other.dispose()
    assert not failures, failures[0]
    with db.read() as session:
        assert ledger.balances(session, "STRIPE") == {(AccountKind.PROVIDER_CASH, "USD"): 4 * 107}
