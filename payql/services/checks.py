"""The invariants that must always hold (DESIGN.md §4), checked by `payql ledger check` and after every test:
every transaction sums to zero, every materialised balance equals its entries, refunds never exceed captures,
no credit lot below zero."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payql.models import CreditLot, LedgerAccount, LedgerEntry, Payment, Refund
from payql.models.enums import RefundStatus


def ledger_problems(session: Session) -> list[str]:
    """Every problem found, one line each; an empty list means the books are sound."""
    problems: list[str] = []
    unbalanced = session.execute(
        select(LedgerEntry.transaction_id, LedgerEntry.currency, func.sum(LedgerEntry.amount_minor))
        .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
        .having(func.sum(LedgerEntry.amount_minor) != 0)
    )
    problems.extend(
        f"transaction {tx} does not balance in {currency}: sum {total}" for tx, currency, total in unbalanced
    )
    sums = (
        select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_minor).label("total"))
        .group_by(LedgerEntry.account_id)
        .subquery()
    )
    drifted = session.execute(
        select(
            LedgerAccount.id,
            LedgerAccount.owner_id,
            LedgerAccount.kind,
            LedgerAccount.currency,
            LedgerAccount.balance_minor,
            func.coalesce(sums.c.total, 0),
        )
        .outerjoin(sums, sums.c.account_id == LedgerAccount.id)
        .where(LedgerAccount.balance_minor != func.coalesce(sums.c.total, 0))
    )
    problems.extend(
        f"account {account_id} ({owner} {kind} {currency}) shows {balance} but its entries sum to {total}"
        for account_id, owner, kind, currency, balance, total in drifted
    )
    refunded = (
        select(Refund.payment_id, func.sum(Refund.amount_minor).label("total"))
        .where(Refund.status.in_([RefundStatus.SUCCEEDED, RefundStatus.PENDING]))
        .group_by(Refund.payment_id)
        .subquery()
    )
    over = session.execute(
        select(Payment.id, Payment.captured_minor, refunded.c.total)
        .join(refunded, refunded.c.payment_id == Payment.id)
        .where(refunded.c.total > Payment.captured_minor)
    )
    problems.extend(f"payment {pid} refunds {total} of {captured} captured" for pid, captured, total in over)
    succeeded = (
        select(Refund.payment_id, func.sum(Refund.amount_minor).label("total"))
        .where(Refund.status == RefundStatus.SUCCEEDED)
        .group_by(Refund.payment_id)
        .subquery()
    )
    mismatched = session.execute(
        select(Payment.id, Payment.refunded_minor, func.coalesce(succeeded.c.total, 0))
        .outerjoin(succeeded, succeeded.c.payment_id == Payment.id)
        .where(Payment.refunded_minor != func.coalesce(succeeded.c.total, 0))
    )
    problems.extend(
        f"payment {pid} shows {shown} refunded but its succeeded refunds sum to {total}"
        for pid, shown, total in mismatched
    )
    negative = session.execute(
        select(CreditLot.id, CreditLot.remaining, CreditLot.credits).where(
            (CreditLot.remaining < 0) | (CreditLot.remaining > CreditLot.credits)
        )
    )
    problems.extend(f"credit lot {lot} has {left} of {granted} credits left" for lot, left, granted in negative)
    return problems
