"""Many rows of one ORM update in one statement (`payql.db.rows_locked`, `_update_many`): on PostgreSQL, when the
transaction says it holds the rows' locks, the flush's update of several rows of that table is one statement
(`UPDATE … FROM unnest(…)`) instead of one per row; each row still gets its own values, exactly as the ORM would
have written them, and the ORM still checks that every row was found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, event, select
from sqlalchemy.orm.exc import StaleDataError

from payql.db import ROW_LOCK, Database, rows_locked
from payql.models import Payment, User, new_id
from payql.models.enums import CaptureMethod, PaymentPurpose, PaymentStatus, ProviderName

MOSCOW = timezone(timedelta(hours=3))


def payments(db: Database, n: int) -> list[str]:
    ids = sorted(new_id("pay") for _ in range(n))
    with db.uow() as uow:
        uow.session.add_all([User(id="payer"), User(id="payee")])
        uow.session.flush()
        for i, payment_id in enumerate(ids):
            uow.session.add(
                Payment(
                    id=payment_id,
                    purpose=PaymentPurpose.ENROLL,
                    provider=ProviderName.STRIPE,
                    capture_method=CaptureMethod.AUTOMATIC,
                    currency="USD",
                    amount_minor=100 + i,
                    payer_id="payer",
                    payee_id="payee",
                    provider_key=f"key-{payment_id}",
                    failure_message="before",
                )
            )
        uow.commit()
    return ids


def update(db: Database, ids: list[str], *, locked: bool) -> list[str]:
    """Move each payment on (its own values), with or without `rows_locked`; the driver's status message of each
    statement that carried several rows' updates ("UPDATE 3": one statement for three rows)."""
    seen: list[str] = []

    def note(_conn: object, cursor: object, _statement: str, _params: object, _context: object, many: bool) -> None:
        if many and hasattr(cursor, "statusmessage"):  # psycopg; SQLite's driver has none
            seen.append(str(cursor.statusmessage))

    event.listen(db.engine, "after_cursor_execute", note)
    try:
        with db.uow() as uow:
            session = uow.session
            query = select(Payment).where(Payment.id.in_(ids)).order_by(Payment.id).with_for_update(**ROW_LOCK)
            rows = session.scalars(query).all()
            if locked:
                rows_locked(session, "payments")
            for i, payment in enumerate(rows):
                payment.status = PaymentStatus.SUCCEEDED
                payment.captured_minor = payment.amount_minor
                payment.failure_message = None if i == 0 else f'it\'s "{i}" ; {{}}'  # quotes, braces, a NULL
                payment.paid_at = datetime(2026, 12, 7, 12, 0, i, tzinfo=MOSCOW)
            uow.commit()
    finally:
        event.remove(db.engine, "after_cursor_execute", note)
    return seen


def assert_moved_on(db: Database, ids: list[str]) -> None:
    with db.read() as session:
        read = {payment.id: payment for payment in session.scalars(select(Payment).where(Payment.id.in_(ids)))}
    for i, payment_id in enumerate(ids):
        payment = read[payment_id]
        assert payment.status is PaymentStatus.SUCCEEDED
        assert payment.captured_minor == 100 + i
        assert payment.failure_message == (None if i == 0 else f'it\'s "{i}" ; {{}}')
        assert payment.paid_at == datetime(2026, 12, 7, 9, 0, i, tzinfo=UTC)  # the same instant, read in UTC


def test_locked_rows_are_updated_in_one_statement_on_postgresql_each_with_its_own_values(db: Database) -> None:
    ids = payments(db, 3)
    seen = update(db, ids, locked=True)
    if db.engine.dialect.name == "postgresql":
        assert seen == ["UPDATE 3"]
    assert_moved_on(db, ids)


def test_without_rows_locked_each_row_is_its_own_statement(db: Database) -> None:
    ids = payments(db, 3)
    seen = update(db, ids, locked=False)
    if db.engine.dialect.name == "postgresql":
        assert seen == ["UPDATE 1"]  # the driver's executemany: one statement per row, the last one's status
    assert_moved_on(db, ids)


def test_a_row_gone_meanwhile_still_fails_the_flush(db: Database) -> None:
    """The ORM checks the count of rows updated: the one statement must report it as the driver's executemany did."""
    ids = payments(db, 3)
    with db.uow() as uow:
        session = uow.session
        rows = session.scalars(select(Payment).where(Payment.id.in_(ids)).order_by(Payment.id)).all()
        rows_locked(session, "payments")
        session.execute(delete(Payment).where(Payment.id == ids[1]), execution_options={"synchronize_session": False})
        for payment in rows:
            payment.status = PaymentStatus.FAILED
        with pytest.raises(StaleDataError):
            session.flush()
