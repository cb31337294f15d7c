"""Enrolls: a client books a provider at a price (seeds/003), and the escrow flow on top of it.

`PENDING → CONFIRMED (provider accepts) → READY (provider marks the work done) → COMPLETED (client confirms)`;
`CANCELLED` from any state before `COMPLETED`. Completing captures a held payment (intent, call, apply) and splits
it; a payment captured early (AUTOMATIC) waits in escrow and is split at completion. Cancelling voids a hold or
refunds what was captured, reversing its postings. An unpaid payment at a provider that cancels only holds
(YooKassa) is cancelled here at once; the enroll's cancellation stays pending until the provider closes the payment,
and a payment the payer pays after all is given back (`give_back`, `resume`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from payql.auth import Principal
from payql.db import ROW_LOCK, Database
from payql.faults import crash_point
from payql.models import Enroll, Payment, User, new_id, utcnow
from payql.models.enums import EnrollAction, EnrollStatus, PaymentStatus
from payql.money import Money
from payql.providers.base import ProviderError
from payql.services import text
from payql.services.errors import Forbidden, InvalidInput, InvalidState, NotFound, PaymentDisputed
from payql.services.lifecycle import CAPTURED, NOT_YET, sync_ledger
from payql.services.payments import PaymentService, open_payment
from payql.services.refunds import RefundService

RECONCILER = Principal(user_id="payql-reconcile", roles=frozenset({"admin"}))  # who `payql reconcile` acts as
BEFORE_COMPLETION = frozenset({EnrollStatus.PENDING, EnrollStatus.CONFIRMED, EnrollStatus.READY})
CLOSED_UNCAPTURED = frozenset({PaymentStatus.CANCELED, PaymentStatus.FAILED})


def can_see(principal: Principal, enroll: Enroll) -> bool:
    return principal.is_admin or principal.user_id in {enroll.client_id, enroll.provider_id}


@dataclass(frozen=True, slots=True)
class EnrollResult:
    enroll: Enroll
    payment: Payment | None


def owed_back(payment: Payment, enroll: Enroll) -> bool:
    """Whether the payer paid (a hold or a capture) for an enroll cancelled while its payment was unpaid, with the
    cancellation still pending: what `give_back` voids or refunds."""
    return (
        enroll.status is EnrollStatus.CANCELLED
        and enroll.pending_action is EnrollAction.CANCEL
        and payment.status in {PaymentStatus.AUTHORIZED, *CAPTURED}
    )


class EnrollService:
    def __init__(self, db: Database, payments: PaymentService, refunds: RefundService) -> None:
        self._db = db
        self._payments = payments
        self._refunds = refunds

    def get_visible(self, session: Session, principal: Principal, enroll_id: str, *, lock: bool = False) -> Enroll:
        enroll = session.get(Enroll, enroll_id, with_for_update=ROW_LOCK if lock else False)
        if enroll is None or not can_see(principal, enroll):
            raise NotFound("enroll not found", field="enrollId")
        return enroll

    # -- booking -------------------------------------------------------------------------------------------

    def create_enroll(self, principal: Principal, provider_id: str, title: str, price: Money) -> Enroll:
        title = title.strip()
        if not title or len(title) > text.TITLE:
            raise InvalidInput(f"title must be 1 to {text.TITLE} characters", field="title")
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
            _not_busy(enroll, None)
            enroll.status = target
            payment = open_payment(uow.session, enroll.id)
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
            _not_busy(enroll, EnrollAction.COMPLETE)
            payment = open_payment(session, enroll.id, lock=True)
            if payment is None or payment.status not in {PaymentStatus.AUTHORIZED, *CAPTURED}:
                shown = payment.status.value if payment else "no payment"
                raise InvalidState(f"the enroll's payment must be held or captured, not {shown}", field="enrollId")
            if payment.status in CAPTURED:
                self._complete(session, enroll, payment)
                uow.commit()
                return EnrollResult(enroll, payment)
            _intend(enroll, EnrollAction.COMPLETE)  # a crash after the capture leaves this for `payql reconcile`
            uow.commit()
        return self.finish_completion(enroll_id, payment.id)

    def finish_completion(self, enroll_id: str, payment_id: str) -> EnrollResult:
        """Capture the hold at the provider (outside any transaction, with a key stable per payment) and complete
        the enroll in one transaction with the answer. A retry, or `payql reconcile`, repeats it safely."""
        with self._db.read() as session:
            payment = _payment(session, payment_id)
        provider = self._payments.provider(payment.provider)
        try:
            answer = provider.capture(
                payment.provider_payment_id or "",
                payment.authorized_minor or payment.amount_minor,
                payment.currency,
                f"payql-{payment.id}-capture",
            )
        except ProviderError as exc:
            if not exc.transient:  # the hold cannot be captured (voided, lapsed): the completion is off
                self._forget_intent(enroll_id, EnrollAction.COMPLETE)
            raise
        crash_point("capture")
        with self._db.uow() as uow:
            session = uow.session
            enroll = _enroll(session, enroll_id)
            locked = _payment(session, payment.id, lock=True)
            if enroll.status is EnrollStatus.READY and answer.status is PaymentStatus.SUCCEEDED:
                enroll.status = EnrollStatus.COMPLETED
                enroll.completed_at = utcnow()
            _done(enroll, EnrollAction.COMPLETE)
            self._payments.lifecycle.apply(session, locked, answer)
            uow.commit()
            return EnrollResult(enroll, locked)

    @staticmethod
    def _complete(session: Session, enroll: Enroll, payment: Payment) -> None:
        enroll.status = EnrollStatus.COMPLETED
        enroll.completed_at = utcnow()
        _done(enroll, EnrollAction.COMPLETE)
        sync_ledger(session, payment, enroll_completed=True)

    # -- cancellation --------------------------------------------------------------------------------------

    def cancel(self, principal: Principal, enroll_id: str, reason: str | None) -> EnrollResult:
        """Client, provider or admin, before completion: void a hold, or refund what was captured."""
        text.bounded(reason, "reason", text.REASON)
        with self._db.uow() as uow:
            enroll = self.get_visible(uow.session, principal, enroll_id, lock=True)
            if enroll.status not in BEFORE_COMPLETION:
                raise InvalidState(f"the enroll is {enroll.status.value}: it can no longer be cancelled")
            _not_busy(enroll, EnrollAction.CANCEL)
            payment = open_payment(uow.session, enroll.id, lock=True)
            if payment is None or (payment.provider_payment_id is None and payment.status in NOT_YET):
                if payment is not None:
                    self._payments.lifecycle.cancel_unsent(payment)
                self._mark_cancelled(enroll, reason)
                uow.commit()
                return EnrollResult(enroll, payment)
            if payment.status in NOT_YET and not self._payments.provider(payment.provider).cancels_unpaid:
                # Unpaid, at a provider that cancels only holds (YooKassa): cancelled here at once. The provider
                # keeps it open until it lapses there, so the cancellation stays pending and is watched (`resume`,
                # `give_back`): if the payer pays after all, the hold is voided or the capture refunded.
                self._payments.lifecycle.cancel_unpaid(payment)
                self._mark_cancelled(enroll, reason)
                _intend(enroll, EnrollAction.CANCEL)
                uow.commit()
                return EnrollResult(enroll, payment)
            _intend(enroll, EnrollAction.CANCEL)  # a crash after the void or refund leaves this for reconcile
            enroll.cancel_reason = reason
            uow.commit()
        return self.finish_cancellation(principal, enroll_id, payment.id)

    def finish_cancellation(self, principal: Principal, enroll_id: str, payment_id: str) -> EnrollResult:
        """Void the hold, or refund what was captured (one stable refund per payment), then cancel the enroll in
        the transaction that records the answer. A retry, or `payql reconcile`, repeats it safely."""
        with self._db.read() as session:
            payment = _payment(session, payment_id)
        answer = None
        try:
            if payment.status in CAPTURED:
                self._refunds.refund_rest_for_cancellation(principal, payment.id)
            elif payment.provider_payment_id is not None and payment.status not in CLOSED_UNCAPTURED:
                provider = self._payments.provider(payment.provider)
                answer = provider.cancel(payment.provider_payment_id, f"payql-{payment.id}-cancel")
                crash_point("void")
        except ProviderError as exc:
            if not exc.transient:  # the provider will not void or refund it: the cancellation is off
                self._forget_intent(enroll_id, EnrollAction.CANCEL)
            raise
        except PaymentDisputed:  # refused before the provider was asked: the cancellation is off all the same
            self._forget_intent(enroll_id, EnrollAction.CANCEL)
            raise
        with self._db.uow() as uow:
            session = uow.session
            enroll = _enroll(session, enroll_id)
            locked = _payment(session, payment.id, lock=True)
            if answer is not None:
                self._payments.lifecycle.apply(session, locked, answer)
            if enroll.status in BEFORE_COMPLETION:
                self._mark_cancelled(enroll, enroll.cancel_reason)
            elif enroll.status is EnrollStatus.CANCELLED:
                _done(enroll, EnrollAction.CANCEL)  # a payment paid after its enroll was cancelled: given back
            uow.commit()
            return EnrollResult(enroll, locked)

    def give_back(self, payment_id: str) -> bool:
        """The payer paid after all for an enroll cancelled while its payment was unpaid (`cancel_unpaid`): void the
        hold, or refund the capture, at once. Called when a notification shows it; `payql reconcile` finds the
        same through `resume`. Whether there was anything to give back."""
        with self._db.read() as session:
            payment = session.get(Payment, payment_id)
            enroll = session.get(Enroll, payment.enroll_id) if payment and payment.enroll_id else None
            if payment is None or enroll is None or not owed_back(payment, enroll):
                return False
        self.finish_cancellation(RECONCILER, enroll.id, payment.id)
        return True

    # -- reconcile -----------------------------------------------------------------------------------------

    def resume(self, enroll_id: str) -> EnrollAction | None:
        """Finish a completion or cancellation left pending by a crash or an outage (`payql reconcile`).

        The enroll's payment is re-fetched from its provider first: whatever the lost call did there is applied,
        and only what is still missing is asked for again, with the same keys.
        """
        with self._db.read() as session:
            enroll = _enroll(session, enroll_id)
            action = enroll.pending_action
            payment = session.scalars(
                select(Payment).where(Payment.enroll_id == enroll_id).order_by(Payment.created_at.desc()).limit(1)
            ).first()
        if action is None:
            return None
        answer = self._payments.reread(payment.id)[1] if payment is not None else None
        with self._db.uow() as uow:
            session = uow.session
            enroll = _enroll(session, enroll_id)
            locked = _payment(session, payment.id, lock=True) if payment is not None else None
            if enroll.pending_action is not action:
                return None  # finished meanwhile
            if action is EnrollAction.COMPLETE and (locked is None or locked.status is not PaymentStatus.AUTHORIZED):
                if locked is not None and locked.status in CAPTURED and enroll.status is EnrollStatus.READY:
                    self._complete(session, enroll, locked)  # the lost capture went through
                else:
                    _done(enroll, action)  # nothing left that could complete it
                uow.commit()
                return action
            if action is EnrollAction.CANCEL and (locked is None or locked.status in CLOSED_UNCAPTURED):
                if enroll.status is EnrollStatus.CANCELLED and answer is not None and answer.status in NOT_YET:
                    return None  # cancelled here while unpaid, still open at its provider: watched until it lapses
                if enroll.status in BEFORE_COMPLETION:
                    self._mark_cancelled(enroll, enroll.cancel_reason)  # the lost void went through
                _done(enroll, action)
                uow.commit()
                return action
        assert payment is not None  # noqa: S101 - both branches above return when there is none
        if action is EnrollAction.COMPLETE:
            self.finish_completion(enroll_id, payment.id)
        else:
            self.finish_cancellation(RECONCILER, enroll_id, payment.id)
        return action

    def _forget_intent(self, enroll_id: str, action: EnrollAction) -> None:
        with self._db.uow() as uow:
            enroll = _enroll(uow.session, enroll_id)
            _done(enroll, action)
            if action is EnrollAction.CANCEL and enroll.status in BEFORE_COMPLETION:
                enroll.cancel_reason = None
            uow.commit()

    @staticmethod
    def _mark_cancelled(enroll: Enroll, reason: str | None) -> None:
        enroll.status = EnrollStatus.CANCELLED
        enroll.cancel_reason = reason
        _done(enroll, EnrollAction.CANCEL)


def _intend(enroll: Enroll, action: EnrollAction) -> None:
    enroll.pending_action = action
    enroll.pending_since = utcnow()


def _not_busy(enroll: Enroll, action: EnrollAction | None) -> None:
    """Completion and cancellation exclude each other: the other one waits until the first is finished. The
    provider's steps (`action` None) wait for either: after a crash during a cancellation the hold may already be
    voided at the provider, and the enroll must not move on as if it were not until `payql reconcile` finishes it."""
    if enroll.pending_action is not None and enroll.pending_action is not action:
        doing = "completion" if enroll.pending_action is EnrollAction.COMPLETE else "cancellation"
        raise InvalidState(f"the enroll's {doing} is in progress", field="enrollId")


def _done(enroll: Enroll, action: EnrollAction) -> None:
    if enroll.pending_action is action:
        enroll.pending_action = None
        enroll.pending_since = None


def _enroll(session: Session, enroll_id: str) -> Enroll:
    enroll = session.get(Enroll, enroll_id, with_for_update=ROW_LOCK)
    if enroll is None:  # pragma: no cover - enrolls are never deleted
        raise NotFound("enroll not found", field="enrollId")
    return enroll


def _payment(session: Session, payment_id: str, *, lock: bool = False) -> Payment:
    payment = session.get(Payment, payment_id, with_for_update=ROW_LOCK if lock else False)
    if payment is None:  # pragma: no cover - payments are never deleted
        raise NotFound("payment not found")
    return payment


def _require(enroll: Enroll, source: EnrollStatus, target: EnrollStatus) -> None:
    if enroll.status is not source:
        raise InvalidState(
            f"the enroll is {enroll.status.value}: it must be {source.value} to become {target.value}",
            field="enrollId",
        )
