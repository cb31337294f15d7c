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
