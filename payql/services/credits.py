"""Credits (seeds/004): a lot per paid package, spent soonest-expiring first, expired as breakage.

Every change is a `CreditTransaction` (PURCHASED, SPENT, REFUNDED, EXPIRED, with the balance it left) and a ledger
posting in unit `CREDIT` between the user's `credits` account and the platform's `credits_issued`: a grant credits
the user (`credits_issued +C`, `credits(user) −C`), spending, expiry and a refund's clawback debit them back. The
balance is the user's credits account, shown positive; lots carry what remains of each grant and when it lapses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payql.auth import Principal
from payql.db import Database
from payql.models import AccountKind, CreditLot, CreditTransaction, Payment, Refund, new_id, utcnow
from payql.models.enums import CreditTransactionType, PaymentPurpose
from payql.services import ledger, postings, text
from payql.services.errors import InsufficientFunds, InvalidInput
from payql.services.idempotency import IdempotencyService

CREDIT = "CREDIT"
MAX_SPEND = 10_000_000


@dataclass(frozen=True, slots=True)
class SpendResult:
    transaction: CreditTransaction
    user_id: str


def balance(session: Session, user_id: str) -> int:
    """The user's credits as the ledger holds them (what lots remain, expired ones until `credits expire` runs)."""
    return -ledger.balances(session, user_id).get((AccountKind.CREDITS, CREDIT), 0)


def unexpired(session: Session, user_id: str, now: datetime | None = None) -> int:
    now = now or utcnow()
    total = session.scalar(
        select(func.coalesce(func.sum(CreditLot.remaining), 0)).where(
            CreditLot.user_id == user_id, CreditLot.expires_at > now
        )
    )
    return int(total or 0)


def unexpired_lots(session: Session, user_id: str, limit: int, now: datetime | None = None) -> list[CreditLot]:
    """The user's lots with credits left and not expired, soonest-expiring first (the order they are spent in)."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(CreditLot)
            .where(CreditLot.user_id == user_id, CreditLot.remaining > 0, CreditLot.expires_at > now)
            .order_by(CreditLot.expires_at, CreditLot.id)
            .limit(limit)
        )
    )


def _move(
    session: Session,
    user_id: str,
    kind: CreditTransactionType,
    credits: int,
    *,
    lot: CreditLot | None = None,
    reference: str | None = None,
    cause: tuple[str, str] | None = None,
) -> CreditTransaction:
    """Record one signed movement of a user's credits, with its ledger posting."""
    transaction_id = new_id("ctx")
    cause_type, cause_id = cause or ("credit_tx", transaction_id)
    ledger.post(
        session,
        f"credit_{kind.value.lower()}",
        cause_type,
        cause_id,
        postings.credits_moved(user_id, credits),
    )
    transaction = CreditTransaction(
        id=transaction_id,
        user_id=user_id,
        type=kind,
        credits=credits,
        balance_after=balance(session, user_id),
        lot_id=lot.id if lot else None,
        reference=reference,
        expires_at=lot.expires_at if lot else None,
    )
    session.add(transaction)
    return transaction


def grant_for_payment(session: Session, payment: Payment, expiry_days: int) -> None:
    """A paid package grants its credits once (a lot per payment, under a unique constraint)."""
    if payment.purpose is not PaymentPurpose.PACKAGE or payment.captured_minor <= 0 or not payment.credits:
        return
    if session.scalar(select(CreditLot.id).where(CreditLot.payment_id == payment.id)) is not None:
        return
    paid_at = payment.paid_at or utcnow()
    lot = CreditLot(
        id=new_id("lot"),
        user_id=payment.payer_id,
        payment_id=payment.id,
        credits=payment.credits,
        remaining=payment.credits,
        expires_at=paid_at + timedelta(days=expiry_days),
    )
    session.add(lot)
    session.flush()
    _move(
        session,
        payment.payer_id,
        CreditTransactionType.PURCHASED,
        payment.credits,
        lot=lot,
        cause=("credit_lot", lot.id),
    )


def refundable_for_package(session: Session, payment: Payment) -> int:
    """What a package refund returns by default: the price of the credits not spent (pro rata, rounded down),
    less what was refunded already."""
    lot = session.scalar(select(CreditLot).where(CreditLot.payment_id == payment.id))
    if lot is None or not lot.credits:
        return payment.captured_minor - payment.refunded_minor
    worth = payment.captured_minor * lot.remaining // lot.credits
    return max(0, worth - payment.refunded_minor)


def void_for_refund(session: Session, payment: Payment, refund: Refund) -> None:
    """A package refund takes back the lot's unspent credits at once (so they cannot be spent meanwhile)."""
    lot = session.scalar(select(CreditLot).where(CreditLot.payment_id == payment.id).with_for_update(key_share=True))
    if lot is None or lot.remaining <= 0:
        return
    voided, lot.remaining = lot.remaining, 0
    refund.credits_voided = voided
    _move(session, lot.user_id, CreditTransactionType.REFUNDED, -voided, lot=lot, cause=("refund", refund.id))


def restore_after_failed_refund(session: Session, refund: Refund) -> None:
    """A package refund that failed gives back the credits it took."""
    if refund.credits_voided <= 0:
        return
    lot = session.scalar(
        select(CreditLot).where(CreditLot.payment_id == refund.payment_id).with_for_update(key_share=True)
    )
    if lot is None:
        return
    lot.remaining += refund.credits_voided
    _move(
        session,
        lot.user_id,
        CreditTransactionType.REFUNDED,
        refund.credits_voided,
        lot=lot,
        reference="refund failed: credits restored",
        cause=("refund_failed", refund.id),
    )
    refund.credits_voided = 0


class CreditService:
    def __init__(self, db: Database, idempotency: IdempotencyService) -> None:
        self._db = db
        self._idempotency = idempotency

    def spend(self, principal: Principal, credits: int, reference: str | None, key: str | None) -> SpendResult:
        if not 0 < credits <= MAX_SPEND:
            raise InvalidInput(f"credits must be between 1 and {MAX_SPEND}", field="credits")
        text.bounded(reference, "reference", text.REFERENCE)
        return self._idempotency.run(
            user_id=principal.user_id,
            operation="spendCredits",
            key=key,
            request={"credits": credits, "reference": reference},
            execute=lambda _seed: self._spend(principal.user_id, credits, reference),
            encode=lambda result: {"transaction_id": result.transaction.id},
            decode=self._replay,
        )

    def _replay(self, stored: dict[str, str]) -> SpendResult:
        with self._db.read() as session:
            transaction = session.get(CreditTransaction, stored["transaction_id"])
            if transaction is None:  # pragma: no cover - never deleted
                raise InvalidInput("credit transaction not found")
            return SpendResult(transaction, transaction.user_id)

    def _spend(self, user_id: str, credits: int, reference: str | None) -> SpendResult:
        now = utcnow()
        with self._db.uow() as uow:
            session = uow.session
            lots = list(
                session.scalars(
                    select(CreditLot)
                    .where(CreditLot.user_id == user_id, CreditLot.remaining > 0, CreditLot.expires_at > now)
                    .order_by(CreditLot.expires_at, CreditLot.id)
                    .with_for_update(key_share=True)
                )
            )
            available = sum(lot.remaining for lot in lots)
            if available < credits:
                raise InsufficientFunds(f"{credits} credits asked, {available} available", field="credits")
            left = credits
            for lot in lots:
                taken = min(lot.remaining, left)
                lot.remaining -= taken
                left -= taken
                if not left:
                    break
            transaction = _move(session, user_id, CreditTransactionType.SPENT, -credits, reference=reference)
            uow.commit()
            return SpendResult(transaction, user_id)

    def expire(self, now: datetime | None = None) -> int:
        """Post the unspent remainder of every lapsed lot as breakage; returns how many lots expired. Idempotent."""
        now = now or utcnow()
        expired = 0
        with self._db.uow() as uow:
            session = uow.session
            lots = session.scalars(
                select(CreditLot)
                .where(CreditLot.expires_at <= now, CreditLot.remaining > 0)
                .order_by(CreditLot.id)
                .with_for_update(key_share=True)
            )
            for lot in lots:
                remaining, lot.remaining = lot.remaining, 0
                _move(
                    session,
                    lot.user_id,
                    CreditTransactionType.EXPIRED,
                    -remaining,
                    lot=lot,
                    cause=("credit_lot_expiry", lot.id),
                )
                expired += 1
            uow.commit()
        return expired
