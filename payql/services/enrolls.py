"""Enrolls: a client books a provider at a price (seeds/003), and the escrow flow on top of it.

`PENDING → CONFIRMED (provider accepts) → READY (provider marks the work done) → COMPLETED (client confirms)`;
`CANCELLED` from any state before `COMPLETED`. Completing captures a held payment (intent, call, apply) and splits
it; a payment captured early (AUTOMATIC) waits in escrow and is split at completion. Cancelling voids a hold or
refunds what was captured, reversing its postings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from payql.auth import Principal
from payql.db import Database
from payql.models import Enroll, Payment, User, new_id, utcnow
from payql.models.enums import EnrollStatus, PaymentStatus
from payql.money import Money
from payql.services import ledger
from payql.services.errors import Forbidden, InvalidInput, InvalidState, NotFound
from payql.services.payments import PaymentService, open_payment
from payql.services.refunds import RefundService
from payql.services.status import CAPTURED, NOT_YET

MAX_TITLE = 200
BEFORE_COMPLETION = frozenset({EnrollStatus.PENDING, EnrollStatus.CONFIRMED, EnrollStatus.READY})


def can_see(principal: Principal, enroll: Enroll) -> bool:
    return principal.is_admin or principal.user_id in {enroll.client_id, enroll.provider_id}


@dataclass(frozen=True, slots=True)
class EnrollResult:
    enroll: Enroll
    payment: Payment | None


class EnrollService:
    def __init__(self, db: Database, payments: PaymentService, refunds: RefundService) -> None:
        self._db = db
        self._payments = payments
        self._refunds = refunds

    def get_visible(self, session: Session, principal: Principal, enroll_id: str, *, lock: bool = False) -> Enroll:
        enroll = session.get(Enroll, enroll_id, with_for_update=lock)
        if enroll is None or not can_see(principal, enroll):
            raise NotFound("enroll not found", field="enrollId")
        return enroll

    @staticmethod
    def open_payment(session: Session, enroll: Enroll, *, lock: bool = False) -> Payment | None:
        return open_payment(session, enroll.id, lock=lock)

    # -- booking -------------------------------------------------------------------------------------------

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

    # -- the provider's steps ------------------------------------------------------------------------------

    def accept(self, principal: Principal, enroll_id: str) -> EnrollResult:
        return self._provider_step(principal, enroll_id, EnrollStatus.PENDING, EnrollStatus.CONFIRMED)

    def mark_ready(self, principal: Principal, enroll_id: str) -> EnrollResult:
        return self._provider_step(principal, enroll_id, EnrollStatus.CONFIRMED, EnrollStatus.READY)

    def _provider_step(
        self, principal: Principal, enroll_id: str, source: EnrollStatus, target: EnrollStatus
    ) -> EnrollResult:
        with self._db.uow() as uow:
            enroll = self.get_visible(uow.session, principal, enroll_id, lock=True)
            if principal.user_id != enroll.provider_id:
                raise Forbidden("only the enroll's provider can do this", field="enrollId")
            _require(enroll, source, target)
            enroll.status = target
            payment = self.open_payment(uow.session, enroll)
            uow.commit()
            return EnrollResult(enroll, payment)

    # -- completion ----------------------------------------------------------------------------------------

    def confirm(self, principal: Principal, enroll_id: str) -> EnrollResult:
        """The client confirms the work: capture the held payment (or release the escrow) and split it."""
        with self._db.uow() as uow:
            session = uow.session
            enroll = self.get_visible(session, principal, enroll_id, lock=True)
            if principal.user_id != enroll.client_id:
                raise Forbidden("only the enroll's client can confirm it", field="enrollId")
            _require(enroll, EnrollStatus.READY, EnrollStatus.COMPLETED)
            payment = self.open_payment(session, enroll, lock=True)
            if payment is None or payment.status not in {PaymentStatus.AUTHORIZED, *CAPTURED}:
                shown = payment.status.value if payment else "no payment"
                raise InvalidState(f"the enroll's payment must be held or captured, not {shown}", field="enrollId")
            if payment.status in CAPTURED:
                self._complete(session, enroll, payment)
                uow.commit()
                return EnrollResult(enroll, payment)
        # A hold: capture it at the provider, outside any transaction, with a key that is stable per payment.
        provider = self._payments.provider(payment.provider)
        answer = provider.capture(
            payment.provider_payment_id or "",
            payment.authorized_minor or payment.amount_minor,
            payment.currency,
            f"payql-{payment.id}-capture",
        )
        with self._db.uow() as uow:
            session = uow.session
            enroll = self.get_visible(session, principal, enroll_id, lock=True)
            locked = session.get(Payment, payment.id, with_for_update=True)
            if locked is None:  # pragma: no cover - payments are never deleted
                raise NotFound("payment not found")
            if enroll.status is EnrollStatus.READY:
                enroll.status = EnrollStatus.COMPLETED
                enroll.completed_at = utcnow()
            self._payments.apply(session, locked, answer)
            uow.commit()
            return EnrollResult(enroll, locked)

    @staticmethod
    def _complete(session: Session, enroll: Enroll, payment: Payment) -> None:
        enroll.status = EnrollStatus.COMPLETED
        enroll.completed_at = utcnow()
        ledger.sync_payment(session, payment, enroll_completed=True)

    # -- cancellation --------------------------------------------------------------------------------------

    def cancel(self, principal: Principal, enroll_id: str, reason: str | None) -> EnrollResult:
        """Client, provider or admin, before completion: void a hold, or refund what was captured."""
        if reason is not None and len(reason) > 500:  # noqa: PLR2004
            raise InvalidInput("reason must be at most 500 characters", field="reason")
        with self._db.uow() as uow:
            enroll = self.get_visible(uow.session, principal, enroll_id, lock=True)
            if enroll.status not in BEFORE_COMPLETION:
                raise InvalidState(f"the enroll is {enroll.status.value}: it can no longer be cancelled")
            payment = self.open_payment(uow.session, enroll, lock=True)
            if payment is None or (payment.provider_payment_id is None and payment.status in NOT_YET):
                if payment is not None:
                    payment.status = PaymentStatus.CANCELED  # it never reached the provider: nothing to void
                self._mark_cancelled(enroll, reason)
                uow.commit()
                return EnrollResult(enroll, payment)
        if payment.status in CAPTURED:
            self._refunds.refund_rest_for_cancellation(principal, payment.id)
            answer = None
        else:
            provider = self._payments.provider(payment.provider)
            answer = provider.cancel(payment.provider_payment_id or "", f"payql-{payment.id}-cancel")
        with self._db.uow() as uow:
            session = uow.session
            enroll = self.get_visible(session, principal, enroll_id, lock=True)
            locked = session.get(Payment, payment.id, with_for_update=True)
            if locked is None:  # pragma: no cover
                raise NotFound("payment not found")
            if answer is not None:
                self._payments.apply(session, locked, answer)
            if enroll.status in BEFORE_COMPLETION:
                self._mark_cancelled(enroll, reason)
            uow.commit()
            return EnrollResult(enroll, locked)

    @staticmethod
    def _mark_cancelled(enroll: Enroll, reason: str | None) -> None:
        enroll.status = EnrollStatus.CANCELLED
        enroll.cancel_reason = reason


def _require(enroll: Enroll, source: EnrollStatus, target: EnrollStatus) -> None:
    if enroll.status is not source:
        raise InvalidState(
            f"the enroll is {enroll.status.value}: it must be {source.value} to become {target.value}",
            field="enrollId",
        )
