from __future__ import annotations

from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import ID, Base, UTCDateTime, utcnow
from payql.models.enums import CreditTransactionType


class CreditLot(Base):
    """Credits granted by one paid package; spending takes the soonest-expiring lots first (seeds/004)."""

    __tablename__ = "credit_lots"
    __table_args__ = (Index("ix_credit_lots_user_id", "user_id", "expires_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), unique=True)  # one lot per package payment
    credits: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CreditTransaction(Base):
    """One line of a user's credit history: `credits` is signed, `balance_after` the balance it left."""

    __tablename__ = "credit_transactions"
    __table_args__ = (Index("ix_credit_transactions_user_id", "user_id", "id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    type: Mapped[CreditTransactionType] = mapped_column(Enum(CreditTransactionType, native_enum=False, length=16))
    credits: Mapped[int] = mapped_column(Integer)
    balance_after: Mapped[int] = mapped_column(Integer)
    lot_id: Mapped[str | None] = mapped_column(ForeignKey("credit_lots.id"), default=None)
    reference: Mapped[str | None] = mapped_column(String(200), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProviderCustomer(Base):
    """A payer's record at a provider (a Stripe Customer), created on their first payment there."""

    __tablename__ = "provider_customers"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    mock: Mapped[bool] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
