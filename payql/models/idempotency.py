from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import ID, Base, UTCDateTime, utcnow


class IdempotencyRecord(Base):
    """(user, operation, key) → the hash of the input and the stored result of the first definitive execution."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "operation", "key"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    operation: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    # IN_PROGRESS while the first execution runs (or after a transient failure), then COMPLETED.
    state: Mapped[str] = mapped_column(String(16), default="IN_PROGRESS")
    result: Mapped[str | None] = mapped_column(Text, default=None)
    # While IN_PROGRESS: the execution that holds the key holds it until then. Others wait for its outcome; a
    # transient failure releases the key at once (NULL) and an owner that died loses it when the lease runs out.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
