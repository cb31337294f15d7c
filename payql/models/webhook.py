from __future__ import annotations

from datetime import datetime

from sqlalchemy import Enum, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import ID, Base, UTCDateTime, utcnow
from payql.models.enums import ProviderName, WebhookStatus


class WebhookEvent(Base):
    """A provider delivery as received, with its dedupe key and what processing did."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("provider", "dedupe_key"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    provider: Mapped[ProviderName] = mapped_column(Enum(ProviderName, native_enum=False, length=16))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)
    headers: Mapped[str] = mapped_column(Text, default="{}")
    sender_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[WebhookStatus] = mapped_column(
        Enum(WebhookStatus, native_enum=False, length=16), default=WebhookStatus.RECEIVED
    )
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
