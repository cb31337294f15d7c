from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import ID, Base, Timestamped, UTCDateTime
from payql.models.enums import PayoutAccountStatus, ProviderName, WithdrawalStatus


class PayoutAccount(Timestamped, Base):
    """Where a provider is paid: a Stripe Connect account (`acct_…`) or a YooKassa payout destination."""

    __tablename__ = "payout_accounts"
    __table_args__ = (
        UniqueConstraint("user_id", "provider", "external_account_id"),
        Index("ix_payout_accounts_user_id", "user_id", "currency"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    provider: Mapped[ProviderName] = mapped_column(Enum(ProviderName, native_enum=False, length=16))
    external_account_id: Mapped[str] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[PayoutAccountStatus] = mapped_column(
        Enum(PayoutAccountStatus, native_enum=False, length=16), default=PayoutAccountStatus.PENDING
    )
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Withdrawal(Timestamped, Base):
    """A payout of available earnings. Requesting one moves the amount from `payable` to `payouts_in_flight`."""

    __tablename__ = "withdrawals"
    __table_args__ = (
        Index("ix_withdrawals_user_id", "user_id", "id"),
        Index("ix_withdrawals_status_updated", "status", "updated_at"),  # the payout run's and reconcile's scans
        # the weekly automatic payout: one per provider, currency and period
        UniqueConstraint("user_id", "currency", "period"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    payout_account_id: Mapped[str] = mapped_column(ForeignKey("payout_accounts.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[WithdrawalStatus] = mapped_column(
        Enum(WithdrawalStatus, native_enum=False, length=16), default=WithdrawalStatus.PENDING
    )
    reason: Mapped[str | None] = mapped_column(String(500), default=None)  # the admin's rejection reason
    # Why the provider refused, canceled or reversed the payout: payql's text or the provider's short code.
    failure_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    period: Mapped[str | None] = mapped_column(String(16), default=None)
    provider_key: Mapped[str] = mapped_column(String(100), unique=True)
    provider_payout_id: Mapped[str | None] = mapped_column(String(255), default=None)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
