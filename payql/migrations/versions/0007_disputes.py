"""disputes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 18:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payql.models.base import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATUSES = (
    "WARNING_NEEDS_RESPONSE",
    "WARNING_UNDER_REVIEW",
    "WARNING_CLOSED",
    "NEEDS_RESPONSE",
    "UNDER_REVIEW",
    "WON",
    "LOST",
    "PREVENTED",
)


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("payee_id", sa.String(length=128), nullable=True),
        sa.Column(
            "provider", sa.Enum("STRIPE", "YOOKASSA", name="providername", native_enum=False, length=16), nullable=False
        ),
        sa.Column("provider_dispute_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.Enum(*STATUSES, name="disputestatus", native_enum=False, length=24), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("evidence_due_by", UTCDateTime(), nullable=True),
        sa.Column("withdrawn_minor", sa.BigInteger(), nullable=False),
        sa.Column("reinstated_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_returned_minor", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["payee_id"], ["users.id"], name=op.f("fk_disputes_payee_id_users")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_disputes_payment_id_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
        sa.UniqueConstraint("provider", "provider_dispute_id", name=op.f("uq_disputes_provider_provider_dispute_id")),
    )
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.create_index("ix_disputes_payee_id", ["payee_id", "id"], unique=False)
        batch_op.create_index("ix_disputes_payment_id", ["payment_id", "id"], unique=False)
        batch_op.create_index("ix_disputes_status_updated", ["status", "updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("disputes", schema=None) as batch_op:
        batch_op.drop_index("ix_disputes_status_updated")
        batch_op.drop_index("ix_disputes_payment_id")
        batch_op.drop_index("ix_disputes_payee_id")
    op.drop_table("disputes")
