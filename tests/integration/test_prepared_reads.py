"""Reads end with COMMIT, so psycopg's prepared statements survive them (payql/db.py, above `UnitOfWork`).

psycopg prepares a statement on the server after its fifth use on a connection and forgets every prepared
statement on a ROLLBACK (DEALLOCATE ALL). When read units of work rolled back, no statement ever stayed prepared:
PostgreSQL parsed and planned each afresh.
"""

from __future__ import annotations

import pytest
from conftest import make_settings
from sqlalchemy import select, text

from payql.app import create_app, services_of
from payql.auth import Principal
from payql.db import Database
from payql.models import Payment
from payql.schema import build_schema
from payql.schema.context import Context

# PostgreSQL only: tests/conftest.py collects this file when TEST_POSTGRES_URL is set (CI sets it).
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

PREPARED = text("SELECT count(*) FROM pg_prepared_statements")


def test_a_statement_repeated_by_reads_stays_prepared(database_url: str) -> None:
    db = Database(database_url, pool_size=1, max_overflow=0)  # one connection: every read runs on it
    try:
        for _ in range(8):
            with db.read() as session:
                session.execute(select(Payment.id).limit(1)).all()
        with db.read() as session:
            assert session.execute(PREPARED).scalar_one() >= 1
    finally:
        db.dispose()


def test_a_read_that_failed_still_rolls_back(database_url: str) -> None:
    db = Database(database_url, pool_size=1, max_overflow=0)  # one connection: the check below runs on it
    try:

        def failing_read() -> None:
            with db.read() as session:
                session.execute(text("CREATE TEMPORARY TABLE failed_read (x int)"))  # undone by a rollback only
                raise RuntimeError("the caller failed")

        with pytest.raises(RuntimeError):
            failing_read()
        with db.read() as session:
            assert session.execute(text("SELECT to_regclass('pg_temp.failed_read')")).scalar_one() is None
            session.execute(text("CREATE TEMPORARY TABLE ended_read (x int)"))  # a read that ended well commits
        with db.read() as session:
            assert session.execute(text("SELECT to_regclass('pg_temp.ended_read')")).scalar_one() is not None
    finally:
        db.dispose()


def test_graphql_reads_keep_their_statements_prepared(database_url: str) -> None:
    """A GraphQL request's read connection (schema/context.py) ends with COMMIT too."""
    settings = make_settings(database_url)
    db = Database(database_url, pool_size=1, max_overflow=0)  # one connection: every request reads on it
    services = services_of(create_app(settings, db=db))
    schema = build_schema(settings)
    principal = Principal("prepared-reader", frozenset())
    try:
        for _ in range(8):
            context = Context(services=services, principal=principal, auth_error=None, request_id="prepared")
            try:
                result = schema.execute_sync(
                    "{ payments(first: 5) { totalCount edges { node { id } } } }", context_value=context
                )
            finally:
                context.close()
            assert not result.errors, result.errors
        with db.read() as session:
            assert session.execute(PREPARED).scalar_one() >= 1
    finally:
        services.close()
