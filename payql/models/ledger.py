from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import ID, Base, UTCDateTime, utcnow

PLATFORM = "platform"


class AccountKind(StrEnum):
    """DESIGN.md §4's accounts. Debits are positive: liabilities and revenue carry negative balances."""

    PROVIDER_CASH = "provider_cash"  # owner: the provider name (STRIPE, YOOKASSA): money held there
    ESCROW = "escrow"  # owner: platform: captured money waiting for an enroll to complete
    PAYABLE = "payable"  # owner: a provider user: earnings owed to them ("available")
    REVENUE = "revenue"  # owner: platform: fees and package sales
    TAX = "tax"  # owner: platform: tax withheld from providers
    PAYOUTS_IN_FLIGHT = "payouts_in_flight"  # owner: a provider user: withdrawals sent, not yet settled
    CREDITS = "credits"  # owner: a user: credits owed to them (currency CREDIT)
    CREDITS_ISSUED = "credits_issued"  # owner: platform: the other side of every credit
    PROVIDER_FEES = "provider_fees"  # owner: platform: what a provider kept as its commission (an expense)


# The platform-wide accounts: every capture, refund and payout moves some of them, and nothing ever checks their
# balance against a limit. Each is kept as LEDGER_SHARDS sub-accounts (rows) so that concurrent postings do not
# queue on one row; a posting moves the shard its cause picks (`services/ledger.py`), the balance is their sum.
# The others (payable, payouts_in_flight, credits: one user's) stay one row, the row a withdrawal or a spend locks
# to check it.
SHARDED_KINDS = frozenset(
    {
        AccountKind.PROVIDER_CASH,
        AccountKind.ESCROW,
        AccountKind.REVENUE,
        AccountKind.TAX,
        AccountKind.CREDITS_ISSUED,
        AccountKind.PROVIDER_FEES,
    }
)
LEDGER_SHARDS = 128  # 64 left 5-21% of the webhook bench's backends waiting on a shard (bench/README.md)


class LedgerAccount(Base):
    """One account (or one shard of a platform-wide account) with its materialised balance, written in the same
    transaction as its entries. `shard` is 0 for accounts that are not sharded (see SHARDED_KINDS)."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (UniqueConstraint("owner_id", "kind", "currency", "shard"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[AccountKind] = mapped_column(
        Enum(AccountKind, native_enum=False, length=24, values_callable=lambda kinds: [kind.value for kind in kinds])
    )
    currency: Mapped[str] = mapped_column(String(8))
    shard: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerTransaction(Base):
    """One balanced money movement. (cause_type, cause_id, kind) is unique: the same cause never posts twice."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (UniqueConstraint("cause_type", "cause_id", "kind"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    cause_type: Mapped[str] = mapped_column(String(32))
    cause_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LedgerEntry(Base):
    """An append-only line of a transaction: never updated, never deleted."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_transaction_id", "transaction_id"),
        Index("ix_ledger_entries_account_id", "account_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(8))
