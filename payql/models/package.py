from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import Base, Timestamped


class CreditPackage(Timestamped, Base):
    """A catalogue entry, synchronised from `CREDIT_PACKAGES` at start-up; payments keep the price they paid."""

    __tablename__ = "credit_packages"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    credits: Mapped[int] = mapped_column(Integer)
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
