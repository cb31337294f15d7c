from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import ID, Base, Timestamped, UTCDateTime
from payql.models.enums import EnrollAction, EnrollStatus


class Enroll(Timestamped, Base):
    """A booking of a provider by a client at a price (seeds/003's enroll)."""

    __tablename__ = "enrolls"
    __table_args__ = (
        Index("ix_enrolls_client_id", "client_id", "id"),
        Index("ix_enrolls_provider_id", "provider_id", "id"),
        Index("ix_enrolls_pending_action", "pending_action"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    provider_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[EnrollStatus] = mapped_column(
        Enum(EnrollStatus, native_enum=False, length=16), default=EnrollStatus.PENDING
    )
    cancel_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The intent of a completion or cancellation whose provider call (capture, void, refund) has not been recorded
    # yet: set and committed before the call, cleared with its answer. `payql reconcile` finishes what a crash left.
    pending_action: Mapped[EnrollAction | None] = mapped_column(
        Enum(EnrollAction, native_enum=False, length=16), default=None
    )
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
