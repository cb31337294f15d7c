"""payment counters spread over 64 shards by the last two hex digits of the payment id (were 8, by the last one)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 04:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payql.models.counts import rebuild

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# 0009's shard expression, frozen here: a downgrade recounts into the shards that revision's code writes.
_HEX = "0123456789abcdef"


def upgrade() -> None:
    rebuild(op.get_bind())  # the counters are a function of `payments`: recounted into the new shards


def downgrade() -> None:
    bind = op.get_bind()
    position = "strpos" if bind.dialect.name == "postgresql" else "instr"
    shard = f"(({position}('{_HEX}', substr(id, length(id), 1)) + 7) % 8)"
    bind.execute(sa.text("DELETE FROM payment_counts"))
    bind.execute(
        sa.text(
            f"""
            INSERT INTO payment_counts (user_id, status, purpose, shard, count)
            SELECT user_id, status, purpose, shard, COUNT(*) FROM (
                SELECT payer_id AS user_id, status, purpose, {shard} AS shard FROM payments
                UNION ALL
                SELECT payee_id, status, purpose, {shard} FROM payments
                WHERE payee_id IS NOT NULL AND payee_id <> payer_id
            ) AS owners
            GROUP BY user_id, status, purpose, shard
            """  # noqa: S608 - no input: the shard expression is built from constants
        )
    )
