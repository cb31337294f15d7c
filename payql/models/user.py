from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from payql.models.base import Base, Timestamped


class User(Timestamped, Base):
    """A user mirrored from a token subject the first time they call the API, with their roles then."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    roles: Mapped[str] = mapped_column(String(255), default="")  # comma-separated, sorted

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(role for role in self.roles.split(",") if role)
