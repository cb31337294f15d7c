from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import ID, Base, Timestamped, UTCDateTime
from payql.models.enums import (
    CaptureMethod,
    PaymentPurpose,
    PaymentStatus,
    ProviderName,
    RefundReason,
    RefundStatus,
)

# An enroll has at most one payment that is not closed: a second createIntent cannot charge the client twice.
OPEN_STATUSES = (
    PaymentStatus.PENDING,
    PaymentStatus.REQUIRES_ACTION,
    PaymentStatus.PROCESSING,
    PaymentStatus.AUTHORIZED,
    PaymentStatus.SUCCEEDED,
    PaymentStatus.PARTIALLY_REFUNDED,
)
_OPEN_SQL = text("status IN (" + ", ".join(f"'{status.value}'" for status in OPEN_STATUSES) + ")")
# What a payee's `pending` balance reads (services/balances.py): enroll payments held, or captured and still in
# escrow. The index and the query share this text, so that PostgreSQL proves the query is within the index.
PENDING_FOR_PAYEE = "purpose = 'ENROLL' AND (status = 'AUTHORIZED' OR escrow_minor > 0)"
# A creation whose provider call was never confirmed (payql reconcile resumes it): the index and the query share it.
UNSENT = "status = 'PENDING' AND provider_payment_id IS NULL"


def _enum(cls: type[StrEnum]) -> Enum:
    return Enum(cls, native_enum=False, length=24, validate_strings=True)


class Payment(Timestamped, Base):
    """One attempt to collect money for an enroll or a package through one provider.

    Amounts are integer minor units of `currency`. `platform_bps`/`tax_bps` are the fee policy the payment was
    created under; `fee_minor`/`tax_minor`/`payee_minor` are the split, set once the payment is captured (and set
    again, on what is left, if part was refunded from escrow before the enroll completed).
    `provider_key` is the idempotency key the provider saw when the payment was created there.
    """

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "provider_payment_id"),
        Index("ix_payments_payer_id", "payer_id", "id"),
        Index("ix_payments_payee_id", "payee_id", "id"),
        # a list filtered by status: a status the user has few of must not scan their whole history
        Index("ix_payments_payer_status", "payer_id", "status", "id"),
        Index("ix_payments_payee_status", "payee_id", "status", "id"),
        Index("ix_payments_status_updated", "status", "updated_at"),  # payql reconcile's scan
        # a few rows each, however long the history: the open ones only
        Index(
            "ix_payments_pending_payee",
            "payee_id",
            sqlite_where=text(PENDING_FOR_PAYEE),
            postgresql_where=text(PENDING_FOR_PAYEE),
        ),
        Index("ix_payments_unsent", "updated_at", sqlite_where=text(UNSENT), postgresql_where=text(UNSENT)),
        Index(
            "uq_payments_open_enroll",
            "enroll_id",
            unique=True,
            sqlite_where=_OPEN_SQL,
            postgresql_where=_OPEN_SQL,
        ),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    purpose: Mapped[PaymentPurpose] = mapped_column(_enum(PaymentPurpose))
    provider: Mapped[ProviderName] = mapped_column(_enum(ProviderName))
    mock: Mapped[bool] = mapped_column(Boolean, default=False)
    capture_method: Mapped[CaptureMethod] = mapped_column(_enum(CaptureMethod))
    # active_history: a change of status knows the old one (models/counts.py moves the counters with it)
    status: Mapped[PaymentStatus] = mapped_column(
        _enum(PaymentStatus), default=PaymentStatus.PENDING, active_history=True
    )

    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    authorized_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    captured_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    platform_bps: Mapped[int] = mapped_column(Integer, default=0)
    tax_bps: Mapped[int] = mapped_column(Integer, default=0)
    fee_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tax_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    payee_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Where the captured money stands in the ledger: parked in escrow, or split (on `split_base_minor`) between
    # revenue, tax and the payee's payable; `split_refunded_minor` is what was refunded after the split.
    escrow_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    split_base_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    split_refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)

    payer_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    payee_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    enroll_id: Mapped[str | None] = mapped_column(ForeignKey("enrolls.id"), default=None)
    package_code: Mapped[str | None] = mapped_column(ForeignKey("credit_packages.code"), default=None)
    credits: Mapped[int | None] = mapped_column(Integer, default=None)

    provider_payment_id: Mapped[str | None] = mapped_column(String(255), default=None)
    provider_key: Mapped[str] = mapped_column(String(100), unique=True)
    client_secret: Mapped[str | None] = mapped_column(String(255), default=None)
    confirmation_url: Mapped[str | None] = mapped_column(Text, default=None)
    checkout_url: Mapped[str | None] = mapped_column(Text, default=None)
    return_url: Mapped[str | None] = mapped_column(Text, default=None)

    failure_code: Mapped[str | None] = mapped_column(String(64), default=None)
    failure_message: Mapped[str | None] = mapped_column(String(500), default=None)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Refund(Timestamped, Base):
    """Part or all of a captured payment. The sum of non-failed refunds never exceeds the captured amount."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("provider", "provider_refund_id"),
        Index("ix_refunds_payment_id", "payment_id", "id"),
        Index("ix_refunds_status_updated", "status", "updated_at"),  # payql reconcile's scan
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"))
    provider: Mapped[ProviderName] = mapped_column(_enum(ProviderName))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[RefundStatus] = mapped_column(_enum(RefundStatus), default=RefundStatus.PENDING)
    reason: Mapped[RefundReason] = mapped_column(_enum(RefundReason), default=RefundReason.REQUESTED_BY_CUSTOMER)
    note: Mapped[str | None] = mapped_column(String(500), default=None)
    requested_by: Mapped[str | None] = mapped_column(String(128), default=None)
    provider_refund_id: Mapped[str | None] = mapped_column(String(255), default=None)
    provider_key: Mapped[str] = mapped_column(String(100), unique=True)
    failure_message: Mapped[str | None] = mapped_column(String(500), default=None)
    # A package refund takes back the lot's unspent credits when it is requested; a refund that then fails
    # gives them back.
    credits_voided: Mapped[int] = mapped_column(Integer, default=0)
