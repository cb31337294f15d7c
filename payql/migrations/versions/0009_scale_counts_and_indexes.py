"""payment counters and the indexes that keep reads flat as history grows

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 02:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payql.models.counts import rebuild

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The texts the models share with their queries (models/payment.py), frozen here as this revision made them.
PENDING_FOR_PAYEE = "purpose = 'ENROLL' AND (status = 'AUTHORIZED' OR escrow_minor > 0)"
UNSENT = "status = 'PENDING' AND provider_payment_id IS NULL"


def upgrade() -> None:
    op.create_table(
        "payment_counts",
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("purpose", sa.String(length=24), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "status", "purpose", "shard", name=op.f("pk_payment_counts")),
    )
    rebuild(op.get_bind())
    op.create_index("ix_payments_payer_status", "payments", ["payer_id", "status", "id"])
    op.create_index("ix_payments_payee_status", "payments", ["payee_id", "status", "id"])
    op.create_index(
        "ix_payments_pending_payee",
        "payments",
        ["payee_id"],
        sqlite_where=sa.text(PENDING_FOR_PAYEE),
        postgresql_where=sa.text(PENDING_FOR_PAYEE),
    )
    op.create_index(
        "ix_payments_unsent", "payments", ["updated_at"], sqlite_where=sa.text(UNSENT), postgresql_where=sa.text(UNSENT)
    )
    op.create_index("ix_withdrawals_status_updated", "withdrawals", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_withdrawals_status_updated", table_name="withdrawals")
    op.drop_index("ix_payments_unsent", table_name="payments")
    op.drop_index("ix_payments_pending_payee", table_name="payments")
    op.drop_index("ix_payments_payee_status", table_name="payments")
    op.drop_index("ix_payments_payer_status", table_name="payments")
    op.drop_table("payment_counts")
