"""The Alembic migrations build exactly the tables the models describe, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from payql.db import Database
from payql.models import Base


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)

    assert differences == []


def test_0008_shards_the_platform_accounts_and_keeps_every_balance(database_url: str) -> None:
    """Upgrading a ledger that has entries keeps every account and balance (SQLite rebuilds the table under
    ledger_entries' references); downgrading folds the shards back into one row per account."""
    from alembic import command  # noqa: PLC0415
    from sqlalchemy import text  # noqa: PLC0415

    from payql.migrate import alembic_config, upgrade  # noqa: PLC0415
    from payql.models import AccountKind  # noqa: PLC0415
    from payql.services import ledger, postings  # noqa: PLC0415
    from payql.services.checks import ledger_problems  # noqa: PLC0415

    command.downgrade(alembic_config(database_url), "0007")
    db = Database(database_url)
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO ledger_accounts (owner_id, kind, currency, balance_minor) VALUES "
                "('STRIPE', 'provider_cash', 'USD', 500), ('platform', 'revenue', 'USD', -500)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO ledger_transactions (id, kind, cause_type, cause_id, created_at) "
                "VALUES ('ltx_old', 'sale', 'payment', 'pay_old', :at)"
            ),
            {"at": "2026-01-01 00:00:00.000000"},
        )
        connection.execute(
            text(
                "INSERT INTO ledger_entries (transaction_id, account_id, amount_minor, currency) "
                "SELECT 'ltx_old', id, balance_minor, currency FROM ledger_accounts"
            )
        )
    db.dispose()

    upgrade(database_url)
    db = Database(database_url)
    cause = next(f"pay_{n}" for n in range(100) if ledger.shard_of(AccountKind.REVENUE, f"pay_{n}") != 0)
    with db.uow() as uow:
        assert ledger.post(uow.session, "sale", "payment", cause, postings.sale("STRIPE", "USD", 700))
        uow.commit()
    with db.read() as session:
        assert ledger.balances(session, "platform") == {(AccountKind.REVENUE, "USD"): -1200}
        assert ledger.balances(session, "STRIPE") == {(AccountKind.PROVIDER_CASH, "USD"): 1200}
        assert ledger_problems(session) == []
    db.dispose()

    command.downgrade(alembic_config(database_url), "0007")
    db = Database(database_url)
    with db.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT a.owner_id, a.kind, a.balance_minor, sum(e.amount_minor) FROM ledger_accounts a "
                "JOIN ledger_entries e ON e.account_id = a.id GROUP BY a.id, a.owner_id, a.kind, a.balance_minor "
                "ORDER BY a.owner_id"
            )
        ).all()
    db.dispose()
    assert [(owner, kind, int(balance), int(total)) for owner, kind, balance, total in rows] == [
        ("STRIPE", "provider_cash", 1200, 1200),
        ("platform", "revenue", -1200, -1200),
    ]
    upgrade(database_url)
