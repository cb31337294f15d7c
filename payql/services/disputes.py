"""Disputes (chargebacks): what a provider reports about one, applied through one path, whatever delivers it.

A webhook (`charge.dispute.*`) and `refresh` (reconcile) both re-read the dispute at the provider and hand the
answer to `DisputeService.receive`, which applies it in one transaction with the payment row locked:

- the dispute's status moves along `TRANSITIONS` and never back (a late `charge.dispute.created` after
  `charge.dispute.closed` changes nothing);
- its money follows the provider's balance transactions, which are cumulative: funds withdrawn are reversed like a
  refund of that amount (`lifecycle.withdraw_for_dispute`), funds reinstated reverse that reversal exactly
  (`lifecycle.reinstate_for_dispute`), and the dispute fee is booked to `providerFees` (given back only if the
  provider gives it back: Stripe keeps it when a dispute is won). Each is posted once per dispute, so events that
  come twice, late or out of order end in the same books. When the provider's balance is kept in another currency
  than the payment's, the funds count as the disputed amount in the payment's currency (as its capture was booked)
  and the fee is booked in the balance's currency (`ProviderDispute.fee_currency`).

Only Stripe has disputes: YooKassa has no disputes API, and the mock provider never opens one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from payql.db import ROW_LOCK, Database
from payql.models import Dispute, Payment, new_id
from payql.models.enums import DisputeStatus, ProviderName
from payql.providers.base import ProviderDispute
from payql.services import ledger, lifecycle, postings
from payql.services.payments import PaymentService

logger = logging.getLogger("payql.disputes")

D = DisputeStatus
# Inquiries (WARNING_*) may become chargebacks; a chargeback never goes back to an inquiry; the closed states are
# final (money a provider moves after a dispute closed still reaches the books: it follows the balance transactions).
TRANSITIONS: dict[DisputeStatus, frozenset[DisputeStatus]] = {
    D.WARNING_NEEDS_RESPONSE: frozenset(
        {D.WARNING_UNDER_REVIEW, D.WARNING_CLOSED, D.NEEDS_RESPONSE, D.UNDER_REVIEW, D.WON, D.LOST, D.PREVENTED}
    ),
    D.WARNING_UNDER_REVIEW: frozenset({D.WARNING_CLOSED, D.NEEDS_RESPONSE, D.UNDER_REVIEW, D.WON, D.LOST, D.PREVENTED}),
    D.NEEDS_RESPONSE: frozenset({D.UNDER_REVIEW, D.WON, D.LOST}),
    D.UNDER_REVIEW: frozenset({D.WON, D.LOST}),
    D.WARNING_CLOSED: frozenset(),
    D.WON: frozenset(),
    D.LOST: frozenset(),
    D.PREVENTED: frozenset(),
}
OPEN = frozenset(status for status, targets in TRANSITIONS.items() if targets)
# A chargeback open or lost: the payer's bank returns (or returned) the money, so a refund would pay it twice; the
# provider refuses one too (Stripe: `charge_disputed`). An inquiry may still be refunded, and so may a payment whose
# chargeback was won.
BLOCKS_REFUND = frozenset({D.NEEDS_RESPONSE, D.UNDER_REVIEW, D.LOST})
FIRST = D.NEEDS_RESPONSE  # a new dispute whose status the provider reports in words we do not know


def can_move(current: DisputeStatus, target: DisputeStatus) -> bool:
    return target in TRANSITIONS[current]


class DisputeNotReady(Exception):
    """The provider moved a dispute's money on a payment whose capture payql has not learned of yet: try later."""


class DisputeService:
    def __init__(self, db: Database, payments: PaymentService) -> None:
        self._db = db
        self._payments = payments

    # -- from the provider ---------------------------------------------------------------------------------

    def receive(
        self, provider: ProviderName, answer: ProviderDispute, record: Callable[[Session], None] | None = None
    ) -> bool | None:
        """Apply a provider's dispute in one transaction, with `record` (the webhook's log row) in it. None when
        the dispute is on no payment of ours (nothing is written); else whether anything changed."""
        with self._db.read() as session:
            payment = self._payment_of(session, provider, answer)
            if payment is None:
                return None
            payment_id, captured, provider_payment_id = payment.id, payment.captured_minor, payment.provider_payment_id
        # A dispute is on a captured payment: if payql has not seen the capture yet, it learns it first (the
        # dispute's withdrawal is reversed from what the capture posted).
        state = None
        if captured <= 0 and provider_payment_id is not None:
            state = self._payments.provider(provider).retrieve_payment(provider_payment_id)
        with self._db.uow() as uow:
            locked = uow.session.get(Payment, payment_id, with_for_update=ROW_LOCK)
            if locked is None:  # pragma: no cover - payments are never deleted
                return None
            if state is not None:
                self._payments.lifecycle.apply(uow.session, locked, state)
            changed = self.apply(uow.session, locked, answer)
            if record is not None:
                record(uow.session)
            uow.commit()
            return changed

    def refresh(self, dispute_id: str) -> bool:
        """Re-read a dispute at its provider and apply it through the same path as webhooks; whether anything
        changed (reconcile calls it for every open dispute)."""
        read = self.reread(dispute_id)
        return read is not None and bool(self.receive(*read))

    def reread(self, dispute_id: str) -> tuple[ProviderName, ProviderDispute] | None:
        """A dispute of ours as its provider shows it now (one provider call); None for an unknown id."""
        with self._db.read() as session:
            dispute = session.get(Dispute, dispute_id)
            if dispute is None:
                return None
            provider, provider_dispute_id = dispute.provider, dispute.provider_dispute_id
        return provider, self._payments.provider(provider).retrieve_dispute(provider_dispute_id)

    def listed(self, since: datetime, limit: int) -> list[tuple[ProviderName, ProviderDispute]]:
        """Every dispute each provider opened since `since` (one paged list per provider), ours or not: what
        `payql reconcile --full` and `--report` compare, so that a dispute none of whose events arrived is found."""
        found: list[tuple[ProviderName, ProviderDispute]] = []
        for name in ProviderName:
            try:
                provider = self._payments.provider(name)
            except KeyError:  # not configured (a test's own providers)
                continue
            found.extend((name, answer) for answer in provider.list_disputes(since, limit))
        return found

    def id_of(self, provider: ProviderName, provider_dispute_id: str) -> str | None:
        """payql's id of a provider's dispute, if payql has heard of it."""
        with self._db.read() as session:
            return session.scalars(
                select(Dispute.id).where(
                    Dispute.provider == provider, Dispute.provider_dispute_id == provider_dispute_id
                )
            ).first()

    def open_ids(self, limit: int | None = None) -> list[str]:
        """The disputes the provider may still change: not closed, or won without the funds back yet."""
        query = (
            select(Dispute.id)
            .where(
                or_(
                    Dispute.status.in_(OPEN),
                    (Dispute.status == D.WON) & (Dispute.withdrawn_minor > 0) & (Dispute.reinstated_minor == 0),
                )
            )
            .order_by(Dispute.id)
        )
        with self._db.read() as session:
            return list(session.scalars(query if limit is None else query.limit(limit)))

    # -- the one path --------------------------------------------------------------------------------------

    def apply(self, session: Session, payment: Payment, answer: ProviderDispute) -> bool:
        """Record the provider's view of one dispute of `payment`; idempotent, never moves backwards. The caller
        holds the payment row locked and commits."""
        dispute = session.scalars(
            select(Dispute).where(
                Dispute.provider == payment.provider, Dispute.provider_dispute_id == answer.provider_dispute_id
            )
        ).one_or_none()
        if dispute is None:
            dispute = Dispute(
                id=new_id("dsp"),
                payment_id=payment.id,
                payee_id=payment.payee_id,
                provider=payment.provider,
                provider_dispute_id=answer.provider_dispute_id,
                status=answer.status or FIRST,
                amount_minor=answer.amount_minor,
                currency=answer.currency,
                withdrawn_minor=0,
                reinstated_minor=0,
                fee_minor=0,
                fee_returned_minor=0,
            )
            if answer.created_at is not None:
                dispute.created_at = answer.created_at
            session.add(dispute)
            changed = True
        else:
            changed = False
            if answer.status is not None and can_move(dispute.status, answer.status):
                dispute.status, changed = answer.status, True
            elif answer.status is not None and answer.status is not dispute.status:
                logger.info("ignored dispute %s: %s -> %s", dispute.id, dispute.status.value, answer.status.value)
        dispute.amount_minor = answer.amount_minor
        dispute.reason = answer.reason[:64] if answer.reason else dispute.reason
        dispute.evidence_due_by = answer.evidence_due_by or dispute.evidence_due_by
        session.flush()
        return self._book(session, payment, dispute, answer) or changed

    def _book(self, session: Session, payment: Payment, dispute: Dispute, answer: ProviderDispute) -> bool:
        """Bring the ledger to what the provider's balance shows for the dispute (each movement once)."""
        if answer.currency != payment.currency:
            logger.warning(
                "dispute %s is in %s, its payment in %s: not booked", dispute.id, answer.currency, payment.currency
            )
            return False
        moves = answer.withdrawn_minor or answer.reinstated_minor or answer.fee_minor or answer.fee_returned_minor
        if moves and payment.captured_minor <= 0:
            raise DisputeNotReady(f"payment {payment.id} is not captured in payql's books yet")
        changed = False
        provider, currency = payment.provider.value, payment.currency
        fee_currency = answer.fee_currency or currency  # the provider's balance may be kept in another currency
        if answer.withdrawn_minor > 0 and dispute.withdrawn_minor == 0:
            lifecycle.withdraw_for_dispute(session, payment, dispute.id, answer.withdrawn_minor)
            dispute.withdrawn_minor, changed = answer.withdrawn_minor, True
        if answer.reinstated_minor > 0 and dispute.reinstated_minor == 0 and dispute.withdrawn_minor > 0:
            if answer.reinstated_minor != dispute.withdrawn_minor:
                logger.warning(
                    "dispute %s: %s reinstated of %s withdrawn; the withdrawal is reversed whole",
                    dispute.id,
                    answer.reinstated_minor,
                    dispute.withdrawn_minor,
                )
            lifecycle.reinstate_for_dispute(session, payment, dispute.id)
            dispute.reinstated_minor, changed = dispute.withdrawn_minor, True
        if answer.fee_minor > 0 and dispute.fee_minor == 0:
            lines = postings.dispute_fee(provider, fee_currency, answer.fee_minor)
            ledger.post(session, "dispute_fee", "dispute", dispute.id, lines)
            dispute.fee_minor, changed = answer.fee_minor, True
        if answer.fee_returned_minor > 0 and dispute.fee_returned_minor == 0 and dispute.fee_minor > 0:
            returned = min(answer.fee_returned_minor, dispute.fee_minor)
            lines = postings.dispute_fee_returned(provider, fee_currency, returned)
            ledger.post(session, "dispute_fee_returned", "dispute", dispute.id, lines)
            dispute.fee_returned_minor, changed = returned, True
        if changed:
            self._payments.lifecycle.settle(session, payment)  # a release that waited for reinstated escrow
        return changed

    @staticmethod
    def _payment_of(session: Session, provider: ProviderName, answer: ProviderDispute) -> Payment | None:
        if answer.payment_id:
            payment = session.get(Payment, answer.payment_id)
            if payment is not None and payment.provider is provider:
                return payment
        if answer.payment_ref:
            return session.scalars(
                select(Payment).where(Payment.provider == provider, Payment.provider_payment_id == answer.payment_ref)
            ).first()
        return None
