from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import Base, UTCDateTime, utcnow


class MockObject(Base):
    """State of the in-process mock providers, kept in the database so that it survives restarts and is shared
    by every worker. Rows keyed `key:<idempotency key>` remember what a key created, as the real APIs do."""

    __tablename__ = "mock_provider_objects"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
