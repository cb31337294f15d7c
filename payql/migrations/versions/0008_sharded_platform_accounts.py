"""sharded platform accounts: ledger_accounts.shard, unique per (owner, kind, currency, shard)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 02:30:00.000000

The platform-wide accounts (provider_cash, escrow, revenue, tax, credits_issued, provider_fees) are kept as
several rows each so that concurrent postings do not queue on one row; existing rows become shard 0 and keep their
entries and balances, so every sum reads as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


@contextmanager
def _rebuilding_ledger_accounts() -> Iterator[None]:
    """SQLite changes a unique constraint by rebuilding the table (copy, drop, rename), and dropping it would break
    ledger_entries' references: SQLite's own procedure for this (lang_altertable.html) turns foreign keys off,
    which only takes effect outside a transaction, rebuilds, checks every reference, and turns them on again."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("COMMIT")
        op.execute("PRAGMA foreign_keys = OFF")
        op.execute("BEGIN")
    yield
    if sqlite:
        broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"ledger references broken by the rebuild: {broken[:5]}")
        op.execute("COMMIT")
        op.execute("PRAGMA foreign_keys = ON")
        op.execute("BEGIN")


def upgrade() -> None:
    with _rebuilding_ledger_accounts(), op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shard", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_constraint("uq_ledger_accounts_owner_id_kind_currency", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_ledger_accounts_owner_id_kind_currency_shard"), ["owner_id", "kind", "currency", "shard"]
        )


def downgrade() -> None:
    # Fold every account's shards into its shard 0: entries move with their amounts, balances add up.
    op.execute(
        "INSERT INTO ledger_accounts (owner_id, kind, currency, shard, balance_minor) "
        "SELECT DISTINCT s.owner_id, s.kind, s.currency, 0, 0 FROM ledger_accounts s WHERE s.shard <> 0 "
        "AND NOT EXISTS (SELECT 1 FROM ledger_accounts z WHERE z.owner_id = s.owner_id AND z.kind = s.kind "
        "AND z.currency = s.currency AND z.shard = 0)"
    )
    op.execute(
        "UPDATE ledger_entries SET account_id = (SELECT z.id FROM ledger_accounts z, ledger_accounts s "
        "WHERE s.id = ledger_entries.account_id AND z.owner_id = s.owner_id AND z.kind = s.kind "
        "AND z.currency = s.currency AND z.shard = 0) "
        "WHERE account_id IN (SELECT id FROM ledger_accounts WHERE shard <> 0)"
    )
    op.execute(
        "UPDATE ledger_accounts SET balance_minor = (SELECT sum(s.balance_minor) FROM ledger_accounts s "
        "WHERE s.owner_id = ledger_accounts.owner_id AND s.kind = ledger_accounts.kind "
        "AND s.currency = ledger_accounts.currency) WHERE shard = 0"
    )
    op.execute("DELETE FROM ledger_accounts WHERE shard <> 0")
    with _rebuilding_ledger_accounts(), op.batch_alter_table("ledger_accounts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_ledger_accounts_owner_id_kind_currency_shard", type_="unique")
        batch_op.drop_column("shard")
        batch_op.create_unique_constraint(
            batch_op.f("uq_ledger_accounts_owner_id_kind_currency"), ["owner_id", "kind", "currency"]
        )
