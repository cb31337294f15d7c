from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import ID, Base, Timestamped, UTCDateTime
from payql.models.enums import DisputeStatus, ProviderName


class Dispute(Timestamped, Base):
    """A chargeback (or an inquiry) the payer's bank opened on a captured payment, as its provider reports it.

    `withdrawn_minor` and `reinstated_minor` are the funds the provider took from the platform's balance and gave
    back, in `currency`; `fee_minor` and `fee_returned_minor` its dispute fees, in the currency of the provider's
    balance (the payment's, unless the platform's Stripe balance is kept in another currency). They are what the
    ledger has booked for this dispute (services/disputes.py). `payee_id` is the payment's, so that a payee's list
    needs no join.
    """

    __tablename__ = "disputes"
    __table_args__ = (
        UniqueConstraint("provider", "provider_dispute_id"),
        Index("ix_disputes_payment_id", "payment_id", "id"),
        Index("ix_disputes_payee_id", "payee_id", "id"),
        Index("ix_disputes_status_updated", "status", "updated_at"),  # reconcile's scan of open disputes
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"))
    payee_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    provider: Mapped[ProviderName] = mapped_column(Enum(ProviderName, native_enum=False, length=16))
    provider_dispute_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[DisputeStatus] = mapped_column(
        Enum(DisputeStatus, native_enum=False, length=24, validate_strings=True)
    )
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    evidence_due_by: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    withdrawn_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    reinstated_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    fee_returned_minor: Mapped[int] = mapped_column(BigInteger, default=0)
