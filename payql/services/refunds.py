"""Refunds: part or all of a captured payment, never more than captured minus already refunded.

The check and the pending refund row are written under the payment's row lock (PostgreSQL `FOR UPDATE`, SQLite's
single writer), so concurrent refunds cannot together exceed what was captured: a pending refund already counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payql.auth import Principal
from payql.db import ROW_LOCK, Database
from payql.faults import crash_point
from payql.models import Dispute, Payment, Refund
from payql.models.enums import PaymentPurpose, RefundReason, RefundStatus
from payql.money import Money
from payql.providers.base import ProviderError
from payql.services import credits, text
from payql.services.disputes import BLOCKS_REFUND
from payql.services.errors import Forbidden, InvalidInput, InvalidState, NotFound, PaymentDisputed
from payql.services.idempotency import IdempotencyService, derived_id
from payql.services.lifecycle import REFUNDABLE, REFUSED
from payql.services.payments import PaymentService


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund: Refund
    payment: Payment


class RefundService:
    def __init__(self, db: Database, payments: PaymentService, idempotency: IdempotencyService) -> None:
        self._db = db
        self._payments = payments
        self._idempotency = idempotency

    def refund_payment(
        self,
        principal: Principal,
        payment_id: str,
        amount: Money | None,
        reason: RefundReason,
        note: str | None,
        idempotency_key: str | None,
    ) -> RefundResult:
        text.bounded(note, "note", text.NOTE)
        request = {
            "paymentId": payment_id,
            "amount": [amount.minor, amount.currency] if amount else None,
            "reason": reason.value,
            "note": note,
        }
        return self._idempotency.run(
            user_id=principal.user_id,
            operation="refund",
            key=idempotency_key,
            request=request,
            execute=lambda seed: self._refund(principal, seed, payment_id, amount, reason, note),
            encode=lambda result: {"refund_id": result.refund.id},
            decode=self._replay,
        )

    def refund_rest_for_cancellation(self, principal: Principal, payment_id: str) -> RefundResult | None:
        """Give the client back all that is left of a captured payment because its enroll is cancelled.

        Whoever may cancel the enroll may cause this refund; one stable refund id per payment makes a retry of the
        cancellation resume the same refund instead of making another. None when nothing is left.
        """
        with self._db.read() as session:
            payment = self._payments.get_visible(session, principal, payment_id)
        seed = derived_id("cxl", payment.id)
        try:
            return self._refund(
                principal,
                seed,
                payment.id,
                None,
                RefundReason.REQUESTED_BY_CUSTOMER,
                "enroll cancelled",
                check_actor=False,
            )
        except PaymentDisputed:
            raise  # the chargeback decides where the money goes: the cancellation is refused, as Stripe would
        except (InvalidInput, InvalidState):
            return None  # nothing left to refund (refunded already, by this cancellation or otherwise)

    def resume(self, refund_id: str) -> RefundResult:
        """Send a refund whose call never came back to the provider again, with the same key (`payql reconcile`)."""
        with self._db.read() as session:
            refund = session.get(Refund, refund_id)
            payment = session.get(Payment, refund.payment_id) if refund else None
            if refund is None or payment is None:  # pragma: no cover - never deleted
                raise NotFound("refund not found")
        if refund.status is not RefundStatus.PENDING or refund.provider_refund_id is not None:
            return RefundResult(refund=refund, payment=payment)
        return self._send(refund, payment)

    def _replay(self, stored: dict[str, Any]) -> RefundResult:
        with self._db.read() as session:
            refund = session.get(Refund, stored["refund_id"])
            payment = session.get(Payment, refund.payment_id) if refund else None
            if refund is None or payment is None:  # pragma: no cover - never deleted
                raise NotFound("refund not found")
            return RefundResult(refund=refund, payment=payment)

    def _refund(
        self,
        principal: Principal,
        seed: str,
        payment_id: str,
        amount: Money | None,
        reason: RefundReason,
        note: str | None,
        *,
        check_actor: bool = True,
    ) -> RefundResult:
        refund_id = derived_id("ref", seed)
        with self._db.uow() as uow:
            session = uow.session
            refund = session.get(Refund, refund_id)
            if refund is None:
                payment = self._payments.get_visible(session, principal, payment_id, lock=True)
                if check_actor:
                    self._check_actor(principal, payment)
                if payment.status not in REFUNDABLE:
                    raise InvalidState(f"the payment is {payment.status.value}: there is nothing to refund")
                self._not_disputed(session, payment)
                value = self._amount(session, payment, amount)
                refund = Refund(
                    id=refund_id,
                    payment_id=payment.id,
                    provider=payment.provider,
                    amount_minor=value,
                    currency=payment.currency,
                    reason=reason,
                    note=note,
                    requested_by=principal.user_id,
                    provider_key=f"payql-{refund_id}",
                )
                session.add(refund)
                session.flush()
                if payment.purpose is PaymentPurpose.PACKAGE:
                    credits.void_for_refund(session, payment, refund)
                uow.commit()
            else:
                payment = self._payments.get_visible(session, principal, refund.payment_id)
        if refund.status is not RefundStatus.PENDING:
            return RefundResult(refund=refund, payment=payment)
        return self._send(refund, payment)

    @staticmethod
    def _not_disputed(session: Session, payment: Payment) -> None:
        """Refuse, before anything is written or sent, a refund of a payment whose chargeback is open or lost."""
        status = session.scalars(
            select(Dispute.status)
            .where(Dispute.payment_id == payment.id, Dispute.status.in_(BLOCKS_REFUND))
            .order_by(Dispute.created_at.desc())
            .limit(1)
        ).first()
        if status is not None:
            raise PaymentDisputed(
                f"the payment is disputed ({status.value}): it cannot be refunded while the chargeback is open or "
                "after it was lost"
            )

    @staticmethod
    def _amount(session: Session, payment: Payment, amount: Money | None) -> int:
        """The refund's amount: what was asked, or what is left (for a package, less the credits spent), never more
        than captured minus what other refunds (pending ones included) already take."""
        committed = session.scalar(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.payment_id == payment.id,
                Refund.status.in_([RefundStatus.PENDING, RefundStatus.SUCCEEDED]),
            )
        )
        left = payment.captured_minor - int(committed or 0)
        if amount is None and payment.purpose is PaymentPurpose.PACKAGE:
            value = min(left, credits.refundable_for_package(session, payment))  # spent credits stay paid for
        elif amount is None:
            value = left
        elif amount.currency != payment.currency:
            raise InvalidInput(f"amount must be in the payment's currency {payment.currency}", field="amount")
        else:
            value = amount.minor
        if value <= 0:
            raise InvalidInput("nothing is left to refund on this payment", field="amount")
        if value > left:
            raise InvalidInput(
                f"amount exceeds what is left to refund ({Money(left, payment.currency).format()} {payment.currency})",
                field="amount",
            )
        return value

    @staticmethod
    def _check_actor(principal: Principal, payment: Payment) -> None:
        if principal.is_admin:
            return
        if payment.purpose is PaymentPurpose.PACKAGE:
            raise Forbidden("only an admin can refund a credit package")
        if principal.user_id != payment.payee_id:
            raise Forbidden("only the payee or an admin can refund this payment")

    def _send(self, refund: Refund, payment: Payment) -> RefundResult:
        provider = self._payments.provider(payment.provider)
        if payment.provider_payment_id is None:  # pragma: no cover - captured payments have provider ids
            raise InvalidState("the payment has no provider id")
        try:
            answer = provider.refund(
                payment.provider_payment_id,
                refund.amount_minor,
                refund.currency,
                refund.reason,
                refund.id,
                refund.provider_key,
            )
        except ProviderError as exc:
            if not exc.transient:
                self._mark_failed(refund.id, REFUSED)  # the reason clients see: a code, never the provider's text
            raise
        crash_point("refund")
        with self._db.uow() as uow:
            locked = uow.session.get(Payment, payment.id, with_for_update=ROW_LOCK)
            if locked is None:  # pragma: no cover
                raise NotFound("payment not found")
            stored = self._payments.lifecycle.apply_refund(uow.session, locked, answer)
            self._payments.lifecycle.settle(uow.session, locked)
            uow.commit()
            return RefundResult(refund=stored, payment=locked)

    def _mark_failed(self, refund_id: str, message: str) -> None:
        with self._db.uow() as uow:
            refund = uow.session.get(Refund, refund_id, with_for_update=ROW_LOCK)
            if refund is not None:
                self._payments.lifecycle.fail_refund(uow.session, refund, message)
                uow.commit()
