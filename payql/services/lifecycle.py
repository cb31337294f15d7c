"""The lifecycle of a payment and its refunds: the only code that writes their status, their amounts and their
split, and that decides which ledger postings follow from them (DESIGN.md §3, §5).

The payment status machine:

```
PENDING ──> REQUIRES_ACTION ──> PROCESSING ──> SUCCEEDED ──> PARTIALLY_REFUNDED ──> REFUNDED
   │              │                  │     └─> AUTHORIZED ──> SUCCEEDED (capture)
   │              │                  │               └──────> CANCELED (void / hold expired)
   └──────────────┴──────────────────┴─> FAILED | CANCELED
```

The three states before any money is held may move among each other (a declined attempt sends a Stripe intent
back to `requires_payment_method`, which is PENDING) and forward to any later state. Nothing moves backwards: a
late `succeeded` after `refunded` is recorded and ignored. A refund goes `PENDING → SUCCEEDED | FAILED | CANCELED`,
and `SUCCEEDED → FAILED` when the provider reports a late failure (Stripe does, weeks after the fact). A refund that
ends FAILED or CANCELED after it posted reverses its own postings exactly, and its amount is refundable again: the
one way back in the payment machine (`REFUND_FALLBACK`), taken only by `settle` from the refund rows, never by a
provider's payment status: `REFUNDED → PARTIALLY_REFUNDED | SUCCEEDED`, `PARTIALLY_REFUNDED → SUCCEEDED`.

`Lifecycle.apply(session, payment, answer)` is the one path by which a provider's view reaches a payment: confirm,
webhooks, reconcile and the jobs all go through it. It is idempotent (applying the same answer twice changes
nothing) and the caller holds the payment row locked and commits.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from payql.models import AccountKind, Enroll, LedgerTransaction, Payment, Refund, new_id, utcnow
from payql.models.enums import EnrollAction, EnrollStatus, PaymentPurpose, RefundStatus
from payql.models.enums import PaymentStatus as S
from payql.models.ledger import PLATFORM
from payql.models.payment import OPEN_STATUSES
from payql.providers.base import ProviderPayment, ProviderRefund
from payql.services import credits, ledger, postings

logger = logging.getLogger("payql.lifecycle")

NOT_YET = frozenset({S.PENDING, S.REQUIRES_ACTION, S.PROCESSING})
FINAL = frozenset({S.FAILED, S.CANCELED, S.REFUNDED})
CAPTURED = frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED})
REFUNDABLE = frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED})
ENDED_UNPAID = frozenset({S.FAILED, S.CANCELED})
PAID = frozenset({S.AUTHORIZED, S.SUCCEEDED})  # the payer's money is held or taken

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.REQUIRES_ACTION, S.PROCESSING, S.AUTHORIZED, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.REQUIRES_ACTION: frozenset({S.PENDING, S.PROCESSING, S.AUTHORIZED, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.PROCESSING: frozenset({S.PENDING, S.REQUIRES_ACTION, S.AUTHORIZED, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.AUTHORIZED: frozenset({S.SUCCEEDED, S.CANCELED}),
    S.SUCCEEDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.REFUNDED}),
    S.REFUNDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
}

REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.CANCELED}),
    RefundStatus.SUCCEEDED: frozenset({RefundStatus.FAILED}),  # a late failure
    RefundStatus.FAILED: frozenset(),
    RefundStatus.CANCELED: frozenset(),
}

# Where a captured payment falls back to when refunds that counted fail: driven by the refunded amount in `settle`.
REFUND_FALLBACK: dict[S, frozenset[S]] = {
    S.REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.SUCCEEDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.SUCCEEDED}),
}

CARD_HOLD = timedelta(days=7)  # card holds lapse after seven days unless the provider says otherwise
MESSAGE_LENGTH = 500  # failure_message's column
REFUSED = "provider_refused"  # a refund's failure reason when the provider refused it outright
CAPTURE_KINDS = ("sale", "capture", "escrow")
REFUND_KINDS = ("refund", "refund_reversed")  # what a refund posts, and the undoing of it


def _refunded(payment_id: Any) -> Any:
    """The succeeded refunds' sum of the payment `payment_id` names (a bound parameter or a column)."""
    return (
        select(func.coalesce(func.sum(Refund.amount_minor), 0))
        .where(Refund.payment_id == payment_id, Refund.status == RefundStatus.SUCCEEDED)
        .scalar_subquery()
    )


def _capture_posted(payment_id: Any) -> Any:
    """The payment's capture posting (sale, capture or escrow), if it has one."""
    return select(LedgerTransaction.id).where(
        LedgerTransaction.cause_type == "payment",
        LedgerTransaction.cause_id == payment_id,
        LedgerTransaction.kind.in_(CAPTURE_KINDS),
    )


_CAPTURE_POSTED = _capture_posted(bindparam("payment"))
# What `settle` reads under the payment's lock, in one round trip: the succeeded refunds' sum and whether the
# capture has posted; and the same for several payments locked in one transaction (`read_ahead`).
_SETTLE_READ = select(_refunded(bindparam("payment")), _CAPTURE_POSTED.exists())
_SETTLE_READ_MANY = select(Payment.id, _refunded(Payment.id), _capture_posted(Payment.id).exists()).where(
    Payment.id.in_(bindparam("payments", expanding=True))
)
_READ_AHEAD = "payql_settle_read_ahead"  # session.info: {payment id: (refunded, capture posted)}


def can_move(current: S, target: S) -> bool:
    return target in TRANSITIONS[current]


def can_move_refund(current: RefundStatus, target: RefundStatus) -> bool:
    return target in REFUND_TRANSITIONS[current]


def refunded_status(captured: int, refunded: int) -> S:
    """What a captured payment shows for what its standing refunds add up to."""
    if refunded <= 0:
        return S.SUCCEEDED
    return S.REFUNDED if refunded >= captured else S.PARTIALLY_REFUNDED


def follow_refunds(payment: Payment, refunded: int) -> None:
    """Move a captured payment's status to match `refunded`: forward along the machine, or back when refunds that
    counted have failed."""
    payment.refunded_minor = refunded
    if payment.status not in CAPTURED:
        return
    target = refunded_status(payment.captured_minor, refunded)
    if can_move(payment.status, target) or target in REFUND_FALLBACK.get(payment.status, frozenset()):
        payment.status = target


class Lifecycle:
    def __init__(self, credit_expiry_days: int) -> None:
        self._credit_expiry_days = credit_expiry_days

    # -- a provider's view ---------------------------------------------------------------------------------

    def apply(self, session: Session, payment: Payment, answer: ProviderPayment) -> bool:
        """Apply a provider's view of `payment`; idempotent, and never moves a payment backwards.

        The caller holds the payment row locked in `session` and commits. Returns whether anything changed.
        """
        before = (payment.status, payment.captured_minor, payment.refunded_minor, payment.provider_payment_id)
        if payment.provider_payment_id is None:
            payment.provider_payment_id = answer.provider_payment_id
        elif payment.provider_payment_id != answer.provider_payment_id:
            logger.warning("ignored provider state for %s: it names %s", payment.id, answer.provider_payment_id)
            return False
        payment.client_secret = payment.client_secret or answer.client_secret
        payment.confirmation_url = payment.confirmation_url or answer.confirmation_url
        payment.checkout_url = payment.checkout_url or answer.checkout_url
        if answer.expires_at is not None:
            payment.expires_at = answer.expires_at

        advance(payment, answer, reopen=self.canceled_unpaid(session, payment))
        for provider_refund in answer.refunds:
            self.apply_refund(session, payment, provider_refund)
        # What `read_ahead` read holds only while no refund row of the payment has changed since.
        self.settle(session, payment, read_ahead=not answer.refunds)
        if payment.captured_minor > 0 and answer.provider_fee_minor > 0:
            ledger.post(
                session,
                "provider_fee",
                "payment",
                payment.id,
                postings.provider_fee(payment.provider.value, payment.currency, answer.provider_fee_minor),
            )
        return before != (payment.status, payment.captured_minor, payment.refunded_minor, payment.provider_payment_id)

    def apply_refund(self, session: Session, payment: Payment, answer: ProviderRefund) -> Refund:
        """Record a provider's refund object on `payment` (ours when we made it, a new row when made elsewhere)."""
        refund = session.scalars(
            select(Refund).where(
                Refund.provider == payment.provider, Refund.provider_refund_id == answer.provider_refund_id
            )
        ).one_or_none()
        if refund is None and answer.refund_id is not None:
            refund = session.get(Refund, answer.refund_id)
            if refund is not None and refund.payment_id != payment.id:
                refund = None
        if refund is None:
            refund = Refund(
                id=new_id("ref"),
                payment_id=payment.id,
                provider=payment.provider,
                amount_minor=answer.amount_minor,
                currency=answer.currency,
                provider_key=f"external-{answer.provider_refund_id}",
                status=RefundStatus.PENDING,
            )
            if answer.reason is not None:
                refund.reason = answer.reason
            session.add(refund)
        refund.provider_refund_id = answer.provider_refund_id
        if can_move_refund(refund.status, answer.status):
            self._end_refund(session, refund, answer.status, answer.failure_message)
        return refund

    def fail_refund(self, session: Session, refund: Refund, message: str) -> None:
        """The provider refused the refund outright: it is FAILED (credits it took back return). Only a refund still
        PENDING can be refused; a late failure comes from the provider's own refund object (`apply_refund`)."""
        if refund.status is RefundStatus.PENDING:
            self._end_refund(session, refund, RefundStatus.FAILED, message)

    @staticmethod
    def _end_refund(session: Session, refund: Refund, status: RefundStatus, message: str | None) -> None:
        refund.status = status
        refund.failure_message = message[:MESSAGE_LENGTH] if message else None
        if status in {RefundStatus.FAILED, RefundStatus.CANCELED}:
            credits.restore_after_failed_refund(session, refund)
            payment = session.get(Payment, refund.payment_id)
            if payment is not None:
                _reverse_refund(session, payment, refund)

    # -- our own decisions ---------------------------------------------------------------------------------

    @staticmethod
    def fail_creation(payment: Payment, code: str | None, message: str) -> None:
        """The provider refused to create the payment: it is FAILED, which frees its enroll for another attempt."""
        if payment.status in NOT_YET:
            payment.status = S.FAILED
            record_failure(payment, code, message)

    @staticmethod
    def cancel_unsent(payment: Payment) -> None:
        """A payment that never reached its provider is cancelled with its enroll: there is nothing to void."""
        if payment.provider_payment_id is None and payment.status in NOT_YET:
            payment.status = S.CANCELED

    @staticmethod
    def cancel_unpaid(payment: Payment) -> None:
        """A payment the payer has not paid, at a provider that cannot cancel it (YooKassa cancels only a hold), is
        cancelled here with its enroll. The provider still has it open until it lapses there; the enroll keeps its
        pending cancellation until then, and if the payer pays after all, `apply` reopens the payment (see
        `canceled_unpaid`) so that the hold is voided or the capture refunded."""
        if payment.status in NOT_YET:
            payment.status = S.CANCELED

    @staticmethod
    def canceled_unpaid(session: Session, payment: Payment) -> bool:
        """Whether `payment` was cancelled here while unpaid and its provider may still take the payer's money: its
        enroll is CANCELLED with the cancellation still pending (the void of a hold clears it in the transaction
        that records the void, so a late answer from before a void never reopens anything)."""
        if payment.status is not S.CANCELED or payment.enroll_id is None or payment.captured_minor:
            return False
        enroll = session.get(Enroll, payment.enroll_id)
        return (
            enroll is not None
            and enroll.status is EnrollStatus.CANCELLED
            and enroll.pending_action is EnrollAction.CANCEL
        )

    # -- amounts and the ledger ----------------------------------------------------------------------------

    @staticmethod
    def read_ahead(session: Session, payment_ids: list[str]) -> None:
        """Read what `settle` reads for several payments at once, for a caller that has just locked them all in
        this transaction and applies each (a group of webhook deliveries): one statement instead of one each.
        Each payment's `settle` takes its own figures, once, unless refund rows have changed since."""
        rows = session.connection().execute(_SETTLE_READ_MANY, {"payments": payment_ids})
        session.info[_READ_AHEAD] = {row[0]: (int(row[1]), bool(row[2])) for row in rows}

    def settle(self, session: Session, payment: Payment, *, read_ahead: bool = False) -> None:
        """Derive the refunded amount and status from the refund rows, then bring the ledger (and a package's
        credits) in line. `read_ahead`: no refund row has changed in this transaction since `read_ahead` read
        the payment's figures (if it did): they hold."""
        ahead: tuple[int, bool] | None = session.info.get(_READ_AHEAD, {}).pop(payment.id, None)
        if ahead is not None and read_ahead and not _refunds_pending(session):
            refunded, capture_posted = ahead
        else:
            if _refunds_pending(session):
                session.flush()  # the sum below reads the refund rows in SQL; the payment's own changes can wait
            refunded, capture_posted = session.connection().execute(_SETTLE_READ, {"payment": payment.id}).one()
            refunded = int(refunded)
        if payment.status is S.REFUNDED and refunded < payment.captured_minor and _enroll_paid_again(session, payment):
            # An enroll has one open payment: this one cannot reopen while the client's next payment is open. It
            # stays REFUNDED, showing what its standing refunds add up to.
            payment.refunded_minor = refunded
            logger.warning("payment %s: a refund failed, but its enroll has another open payment", payment.id)
        else:
            follow_refunds(payment, refunded)
        enroll = session.get(Enroll, payment.enroll_id) if payment.enroll_id else None
        completed = enroll is not None and enroll.status is EnrollStatus.COMPLETED
        sync_ledger(session, payment, enroll_completed=completed, capture_posted=bool(capture_posted))
        credits.grant_for_payment(session, payment, self._credit_expiry_days)


def _refunds_pending(session: Session) -> bool:
    """Whether the session holds refund rows not written yet (what `settle`'s sum must see)."""
    return any(isinstance(obj, Refund) for obj in session.new) or any(isinstance(obj, Refund) for obj in session.dirty)


def _enroll_paid_again(session: Session, payment: Payment) -> bool:
    """Whether the payment's enroll has another payment open (a new attempt after this one was refunded)."""
    if payment.enroll_id is None:
        return False
    other = select(Payment.id).where(
        Payment.enroll_id == payment.enroll_id, Payment.id != payment.id, Payment.status.in_(OPEN_STATUSES)
    )
    return session.scalars(other.limit(1)).first() is not None


def record_failure(payment: Payment, code: str | None, message: str | None) -> None:
    """Why the last attempt to pay failed (a decline keeps the payment retryable; a capture clears it)."""
    payment.failure_code = code
    payment.failure_message = message[:MESSAGE_LENGTH] if message else None


def advance(payment: Payment, answer: ProviderPayment, *, reopen: bool = False) -> None:
    """Move along the status machine toward the provider's status, recording what a move brings with it.

    `reopen`: the payment was canceled here while its provider still had it open (`Lifecycle.cancel_unpaid`), so
    a hold or a capture the provider reports is the payer paying after all: the payment follows the provider (and
    the caller gives the money back). `failure_code` is the provider's reason for the last attempt that failed: a
    decline (the payment stays retryable), or why a payment ended FAILED or CANCELED (YooKassa's
    `cancellation_details.reason`); an attempt that succeeds (a hold or a capture) clears it.
    """
    target = answer.status
    allowed = can_move(payment.status, target) or (reopen and payment.status is S.CANCELED and target in PAID)
    if target is S.AUTHORIZED and (allowed or payment.status is target):
        payment.authorized_minor = max(payment.authorized_minor, answer.authorized_minor or payment.amount_minor)
        if payment.expires_at is None:
            payment.expires_at = utcnow() + CARD_HOLD
        if allowed:
            record_failure(payment, None, None)
    if target is S.SUCCEEDED and (payment.status in CAPTURED or allowed):
        _record_capture(payment, answer.captured_minor or payment.amount_minor)
    if target in NOT_YET and payment.status in NOT_YET:
        payment.failure_code = answer.failure_code
        payment.failure_message = answer.failure_message
    if target in ENDED_UNPAID and (allowed or payment.status in ENDED_UNPAID) and answer.failure_code:
        record_failure(payment, answer.failure_code, answer.failure_message)
    if payment.status is target:
        return
    if allowed:
        payment.status = target
    elif not (target is S.SUCCEEDED and payment.status in CAPTURED):
        logger.info("ignored %s -> %s for payment %s", payment.status.value, target.value, payment.id)


def _record_capture(payment: Payment, captured: int) -> None:
    if payment.captured_minor:
        return  # one capture per payment: the first one recorded stands
    payment.captured_minor = captured
    payment.paid_at = payment.paid_at or utcnow()
    record_failure(payment, None, None)
    if payment.purpose is PaymentPurpose.ENROLL:
        _show_split(payment, postings.split(captured, payment.platform_bps, payment.tax_bps))
    else:
        payment.fee_minor, payment.tax_minor, payment.payee_minor = captured, 0, None


def _show_split(payment: Payment, shares: postings.Split) -> None:
    payment.fee_minor, payment.tax_minor, payment.payee_minor = shares.fee, shares.tax, shares.payee


def _split_of(payment: Payment) -> postings.Split:
    """The split the ledger made (on `split_base_minor`), as the payment shows it."""
    base = payment.split_base_minor or 0
    return postings.Split(
        base=base, fee=payment.fee_minor or 0, tax=payment.tax_minor or 0, payee=payment.payee_minor or 0
    )


def sync_ledger(
    session: Session, payment: Payment, *, enroll_completed: bool, capture_posted: bool | None = None
) -> None:
    """Bring the ledger in line with the payment: its capture, its succeeded refunds, its release at completion.

    Idempotent: called after every application of provider state and at an enroll's completion. `capture_posted`:
    whether the capture has posted, when the caller has just read it under the payment's lock (`settle`); unset,
    it is read here.
    """
    if payment.captured_minor <= 0:
        return
    if capture_posted is None:
        capture_posted = session.connection().execute(_CAPTURE_POSTED, {"payment": payment.id}).first() is not None
    if not capture_posted:
        _post_captured(session, payment, enroll_completed=enroll_completed)
    _post_pending_refunds(session, payment)
    if enroll_completed:
        _post_release(session, payment)


def _post_captured(session: Session, payment: Payment, *, enroll_completed: bool) -> None:
    """The payment's money was captured: sale (package), split (enroll completed) or escrow (not yet). The caller
    has just read that none of the three has posted (`_CAPTURE_POSTED`), under the payment's lock."""
    provider, currency, amount = payment.provider.value, payment.currency, payment.captured_minor
    if payment.purpose is PaymentPurpose.PACKAGE:
        ledger.post(session, "sale", "payment", payment.id, postings.sale(provider, currency, amount), unposted=True)
        return
    if enroll_completed:
        shares = postings.split(amount, payment.platform_bps, payment.tax_bps)
        _show_split(payment, shares)
        payment.split_base_minor = shares.base
        lines = postings.capture(provider, currency, payment.payee_id, shares)
        ledger.post(session, "capture", "payment", payment.id, lines, unposted=True)
        return
    lines = postings.escrow(provider, currency, amount)
    if ledger.post(session, "escrow", "payment", payment.id, lines, unposted=True):
        payment.escrow_minor = amount


def _post_release(session: Session, payment: Payment) -> None:
    """The enroll completed: what is left in escrow is split between revenue, tax and the payee."""
    if payment.split_base_minor is not None or payment.escrow_minor <= 0:
        return
    shares = postings.split(payment.escrow_minor, payment.platform_bps, payment.tax_bps)
    _show_split(payment, shares)
    payment.split_base_minor = shares.base
    if ledger.post(
        session, "release", "payment", payment.id, postings.release(payment.currency, payment.payee_id, shares)
    ):
        payment.escrow_minor = 0


def _post_refund(session: Session, payment: Payment, refund: Refund) -> None:
    """A refund succeeded: take it back from the sale, from escrow, or from the split (proportionally)."""
    provider, currency, amount = payment.provider.value, payment.currency, refund.amount_minor
    if payment.purpose is PaymentPurpose.PACKAGE:
        ledger.post(session, "refund", "refund", refund.id, postings.refund_of_sale(provider, currency, amount))
        return
    if payment.split_base_minor is None:
        if ledger.post(session, "refund", "refund", refund.id, postings.refund_from_escrow(provider, currency, amount)):
            payment.escrow_minor -= amount
        return
    before = payment.split_refunded_minor
    taken = _taken_back(session, payment)
    lines = postings.refund_after_split(provider, currency, payment.payee_id, _split_of(payment), before, amount, taken)
    if ledger.post(session, "refund", "refund", refund.id, lines):
        payment.split_refunded_minor = before + amount


def _taken_back(session: Session, payment: Payment) -> tuple[int, int]:
    """The fee and tax the payment's standing refunds took back after the split, as the ledger holds them."""
    refund_ids = session.scalars(select(Refund.id).where(Refund.payment_id == payment.id))
    fee = tax = 0
    for line in ledger.posted_lines(session, "refund", refund_ids, REFUND_KINDS):
        if line.owner_id == PLATFORM and line.kind is AccountKind.REVENUE:
            fee += line.amount_minor
        elif line.owner_id == PLATFORM and line.kind is AccountKind.TAX:
            tax += line.amount_minor
    return fee, tax


def _reverse_refund(session: Session, payment: Payment, refund: Refund) -> None:
    """A refund that posted has failed: undo its own lines exactly, and put its amount back where it came from (the
    escrow, or the split). Money returned to an escrow that was released meanwhile is released in turn, split on
    its own, so that it reaches the payee as the rest did."""
    lines = ledger.posted_lines(session, "refund", [refund.id], ["refund"])
    if not lines or not ledger.post(session, "refund_reversed", "refund", refund.id, postings.reversal(lines)):
        return
    if payment.purpose is PaymentPurpose.PACKAGE:
        return
    if not any(line.kind is AccountKind.ESCROW for line in lines):
        payment.split_refunded_minor -= refund.amount_minor
        return
    payment.escrow_minor += refund.amount_minor
    if payment.split_base_minor is None:
        return  # still in escrow: the release at completion splits it with the rest
    shares = postings.split(refund.amount_minor, payment.platform_bps, payment.tax_bps)
    if ledger.post(
        session, "release", "refund", refund.id, postings.release(payment.currency, payment.payee_id, shares)
    ):
        payment.escrow_minor -= refund.amount_minor
        payment.split_base_minor += shares.base
        payment.fee_minor = (payment.fee_minor or 0) + shares.fee
        payment.tax_minor = (payment.tax_minor or 0) + shares.tax
        payment.payee_minor = (payment.payee_minor or 0) + shares.payee


def _post_pending_refunds(session: Session, payment: Payment) -> None:
    """Post every succeeded refund of a captured payment that has not posted yet (a refund the provider reported
    before we knew the payment was captured waits here until we do)."""
    if payment.refunded_minor <= 0:
        return  # no succeeded refund (settle has just counted them)
    posted = set(
        session.scalars(
            select(LedgerTransaction.cause_id)
            .join(Refund, Refund.id == LedgerTransaction.cause_id)
            .where(LedgerTransaction.cause_type == "refund", Refund.payment_id == payment.id)
        )
    )
    refunds = session.scalars(
        select(Refund)
        .where(Refund.payment_id == payment.id, Refund.status == RefundStatus.SUCCEEDED)
        .order_by(Refund.id)
    )
    for refund in refunds:
        if refund.id not in posted:
            _post_refund(session, payment, refund)


# -- disputes (chargebacks) ------------------------------------------------------------------------------------
# A dispute's money moves here, with the payment's escrow and split it changes; its status is services/disputes.py's.


def withdraw_for_dispute(session: Session, payment: Payment, dispute_id: str, amount: int) -> bool:
    """The provider took `amount` back for a dispute: reversed like a refund of that amount, from the sale, from
    escrow, or from the split (payee share, fee and tax proportionally; the payee's payable may go negative).
    Once per dispute; the caller holds the payment row locked and has brought its capture to the ledger."""
    provider, currency = payment.provider.value, payment.currency
    if payment.purpose is PaymentPurpose.PACKAGE:
        return ledger.post(
            session, "dispute_withdrawn", "dispute", dispute_id, postings.refund_of_sale(provider, currency, amount)
        )
    if payment.split_base_minor is None:
        lines = postings.refund_from_escrow(provider, currency, amount)
        if not ledger.post(session, "dispute_withdrawn", "dispute", dispute_id, lines):
            return False
        payment.escrow_minor -= amount
        return True
    before = payment.split_refunded_minor
    lines = postings.refund_after_split(provider, currency, payment.payee_id, _split_of(payment), before, amount)
    if not ledger.post(session, "dispute_withdrawn", "dispute", dispute_id, lines):
        return False
    payment.split_refunded_minor = before + amount
    return True


def reinstate_for_dispute(session: Session, payment: Payment, dispute_id: str) -> bool:
    """The provider gave a dispute's withdrawn funds back (the dispute was won): the withdrawal is reversed exactly.
    Funds withdrawn from escrow that has been released since come back split, as the release would have split
    them. Once per dispute, and only after its withdrawal."""
    withdrawn = ledger.posted_lines(session, "dispute", [dispute_id], ["dispute_withdrawn"])
    if not withdrawn:
        return False
    amount = -sum(line.amount_minor for line in withdrawn if line.kind is AccountKind.PROVIDER_CASH)
    from_escrow = any(line.kind is AccountKind.ESCROW for line in withdrawn)
    released = from_escrow and payment.split_base_minor is not None
    if released:
        shares = postings.split(amount, payment.platform_bps, payment.tax_bps)
        lines = postings.capture(payment.provider.value, payment.currency, payment.payee_id, shares)
    else:
        lines = postings.reversal(withdrawn)
    if not ledger.post(session, "dispute_reinstated", "dispute", dispute_id, lines):
        return False
    if from_escrow and not released:
        payment.escrow_minor += amount
    elif not from_escrow and payment.purpose is PaymentPurpose.ENROLL:
        payment.split_refunded_minor -= amount
    return True
