"""Enrolls: a client books a provider at a price (seeds/003)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from payql.auth import Principal
from payql.db import Database
from payql.models import Enroll, User, new_id
from payql.money import Money
from payql.services.errors import InvalidInput, NotFound

MAX_TITLE = 200


def can_see(principal: Principal, enroll: Enroll) -> bool:
    return principal.is_admin or principal.user_id in {enroll.client_id, enroll.provider_id}


class EnrollService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get_visible(self, session: Session, principal: Principal, enroll_id: str, *, lock: bool = False) -> Enroll:
        enroll = session.get(Enroll, enroll_id, with_for_update=lock)
        if enroll is None or not can_see(principal, enroll):
            raise NotFound("enroll not found", field="enrollId")
        return enroll

    def create_enroll(self, principal: Principal, provider_id: str, title: str, price: Money) -> Enroll:
        title = title.strip()
        if not title or len(title) > MAX_TITLE:
            raise InvalidInput(f"title must be 1 to {MAX_TITLE} characters", field="title")
        if provider_id == principal.user_id:
            raise InvalidInput("you cannot book yourself", field="providerId")
        with self._db.uow() as uow:
            provider = uow.session.get(User, provider_id)
            if provider is None or "provider" not in provider.role_set:
                raise NotFound("provider not found", field="providerId")
            enroll = Enroll(
                id=new_id("enr"),
                client_id=principal.user_id,
                provider_id=provider_id,
                title=title,
                price_minor=price.minor,
                currency=price.currency,
            )
            uow.session.add(enroll)
            uow.commit()
            return enroll
