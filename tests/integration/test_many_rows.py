"""`ManyRows` (payql/db.py): many rows in one INSERT whose text is the same for any number of rows on PostgreSQL
(one array per column), SQLAlchemy's multi-row INSERT elsewhere. Each value is bound as SQLAlchemy binds it (an enum
by name, a datetime in UTC), so that the ORM reads back what it would have written itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, select

from payql.db import Database
from payql.models import WebhookEvent, new_id
from payql.models.enums import ProviderName, WebhookStatus
from payql.services.webhooks import _INSERT_EVENTS


def rows(n: int, tag: str) -> list[dict[str, Any]]:
    moscow = timezone(timedelta(hours=3))
    return [
        {
            "id": new_id("whk"),
            "provider": ProviderName.YOOKASSA if i % 2 else ProviderName.STRIPE,
            "dedupe_key": f"{tag}-{i}",
            "event_type": "payment.succeeded",
            "payload": '{"amount": "10.00", "note": "50% off; \'quoted\' \\"text\\""}',
            "headers": "{}",
            "sender_ip": None if i % 2 else "127.0.0.1",
            "status": WebhookStatus.FAILED if i == 0 else WebhookStatus.PROCESSED,
            "error": "Stripe answered 500" if i == 0 else None,
            "attempts": i + 1,
            "received_at": datetime(2026, 12, 7, 12, 0, i, tzinfo=moscow),
            "processed_at": None if i == 0 else datetime(2026, 12, 7, 9, 0, i, tzinfo=UTC),
        }
        for i in range(n)
    ]


def insert(db: Database, values: list[dict[str, Any]]) -> list[str]:
    """Insert the rows in one transaction; the statements sent."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        with db.uow() as uow:
            _INSERT_EVENTS.execute(uow.session.connection(), values)
            uow.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    return [statement for statement in sent if statement.lstrip().upper().startswith("INSERT")]


def test_rows_read_back_as_the_orm_would_have_written_them(db: Database) -> None:
    for n in (1, 2, 5):
        written = rows(n, f"batch{n}")
        statements = insert(db, written)
        assert len(statements) == 1  # one statement, whatever the number of rows
        with db.uow(write=False) as uow:
            read = {
                row.id: row
                for row in uow.session.scalars(select(WebhookEvent).where(WebhookEvent.dedupe_key.like(f"batch{n}-%")))
            }
            assert len(read) == n
            for values in written:
                row = read[values["id"]]
                for name, value in values.items():
                    assert getattr(row, name) == value, name  # datetimes compare as instants
                assert row.received_at.utcoffset() == timedelta(0)  # stored and read in UTC


def test_on_postgresql_the_text_does_not_depend_on_the_number_of_rows(db: Database) -> None:
    two, five = insert(db, rows(2, "two")), insert(db, rows(5, "five"))
    if db.engine.dialect.name == "postgresql":
        assert two == five
        assert "unnest" in two[0]
    else:  # SQLAlchemy's multi-row VALUES: one more row, a longer statement
        assert len(five[0]) > len(two[0])


def test_each_value_is_bound_as_sqlalchemy_binds_it_a_naive_datetime_is_refused(db: Database) -> None:
    # the column's type (UTCDateTime) refuses a naive datetime; psycopg alone would store it in the session's zone
    values = rows(3, "naive")
    values[2]["processed_at"] = datetime(2026, 12, 7, 9, 0)  # noqa: DTZ001 - the naive value under test
    with pytest.raises(Exception, match="naive datetime refused"):
        insert(db, values)
    with db.uow(write=False) as uow:  # and nothing of the statement was written
        assert not uow.session.scalars(select(WebhookEvent).where(WebhookEvent.dedupe_key.like("naive-%"))).all()
