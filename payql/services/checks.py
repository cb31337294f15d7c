"""The invariants that must always hold (DESIGN.md §4), checked by `payql ledger check` and after every test:
every amount is a whole number of minor units within MAX_MINOR, every transaction sums to zero, every
materialised balance equals its entries, refunds never exceed captures, no credit lot below zero."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ColumnElement, Table, func, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from payql.models import Base, CreditLot, LedgerAccount, LedgerEntry, Payment, Refund
from payql.models.enums import RefundStatus
from payql.money import MAX_MINOR

# Balances add up many amounts: they are not bounded by MAX_MINOR, only whole.
AGGREGATES = frozenset({("ledger_accounts", "balance_minor")})


def _amount_columns() -> list[tuple[Table, Column[int]]]:
    return [
        (table, column)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, BigInteger) and column.name.endswith("_minor")
    ]


def amount_problems(session: Session) -> list[str]:
    """Amount columns holding what no amount may be: on SQLite a value stored as a REAL (what an integer too large
    for 64 bits silently becomes), and anywhere a single amount beyond MAX_MINOR (which payql refuses on input)."""
    problems: list[str] = []
    sqlite = session.get_bind().dialect.name == "sqlite"
    for table, column in _amount_columns():
        key = next(iter(table.primary_key.columns))
        wrong: list[ColumnElement[bool]] = []
        if sqlite:
            wrong.append(func.typeof(column).not_in(["integer", "null"]))
        if (table.name, column.name) not in AGGREGATES:
            wrong.append(func.abs(column) > MAX_MINOR)
        if not wrong:
            continue
        rows = session.execute(select(key, func.typeof(column) if sqlite else column).where(or_(*wrong)).limit(20))
        problems.extend(
            f"{table.name}.{column.name} of {row_id} is not a whole amount within {MAX_MINOR} minor units"
            + (f" (stored as {kind})" if sqlite else "")
            for row_id, kind in rows
        )
    return problems


def ledger_problems(session: Session) -> list[str]:
    """Every problem found, one line each; an empty list means the books are sound."""
    problems = amount_problems(session)
    try:
        problems.extend(_balance_problems(session))
    except DBAPIError as exc:  # SQLite's sum() refuses to overflow: the amounts above are why
        session.rollback()
        problems.append(f"the ledger's sums cannot be computed ({type(exc.orig).__name__}): see the amounts above")
    return problems


def _balance_problems(session: Session) -> list[str]:
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
