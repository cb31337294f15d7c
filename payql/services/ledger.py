"""The double-entry ledger (DESIGN.md §4): every money movement is one balanced transaction.

Sign convention: debits are positive. Assets (`provider_cash`) carry positive balances; liabilities and revenue
(`payable`, `escrow`, `revenue`, `tax`, `payouts_in_flight`, `credits`) carry negative ones and are shown positive.

Postings for an amount A, fee F = ⌊A·platform_bps/10000⌋, tax T = ⌊(A−F)·tax_bps/10000⌋, payee P = A−F−T:

| event                                   | entries                                                         |
|-----------------------------------------|-----------------------------------------------------------------|
| enroll captured at completion (capture) | provider_cash +A, revenue −F, tax −T, payable(payee) −P          |
| enroll captured early (escrow)          | provider_cash +A, escrow −A                                     |
| enroll completes after escrow (release) | escrow +N, revenue −F, tax −T, payable −P, split on N = A − refunds |
| package paid (sale)                     | provider_cash +A, revenue −A                                    |
| refund R from escrow                    | escrow +R, provider_cash −R                                     |
| refund R after the split                | revenue +ΔF, tax +ΔT, payable +(R−ΔF−ΔT), provider_cash −R        |
| refund R of a package                   | revenue +R, provider_cash −R                                    |

A refund after the split reverses the fee and tax proportionally and cumulatively: with r the amount refunded
after the split before this refund, ΔF = ⌊(r+R)·F/N⌋ − ⌊r·F/N⌋ (likewise ΔT), so refunds that add up to N reverse
exactly F and T whatever their rounding. A payee's payable may go negative when a refund follows a payout.

Each transaction names its cause (payment or refund, and the kind of posting) under a unique constraint: the same
cause never posts twice, so applying the same provider state again changes nothing. A holding (AUTHORIZED) payment
posts nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from payql.models import (
    PLATFORM,
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    Refund,
    new_id,
    utcnow,
)
from payql.models.enums import PaymentPurpose, RefundStatus
from payql.money import prorate, split_fee


class UnbalancedPosting(ValueError):
    """A posting whose entries do not sum to zero per currency: refused before anything is written."""


@dataclass(frozen=True, slots=True)
class Line:
    owner_id: str
    kind: AccountKind
    currency: str
    amount_minor: int


_TRANSACTIONS = cast("Table", LedgerTransaction.__table__)
_ENTRIES = cast("Table", LedgerEntry.__table__)
_ACCOUNTS = cast("Table", LedgerAccount.__table__)
# Statements built once: a posting runs on every capture, refund and webhook, and building and compiling its
# statements each time cost more than executing them.
_POSTED = select(_TRANSACTIONS.c.id).where(
    _TRANSACTIONS.c.cause_type == bindparam("cause_type"),
    _TRANSACTIONS.c.cause_id == bindparam("cause_id"),
    _TRANSACTIONS.c.kind == bindparam("kind"),
)
_LOCK_ACCOUNTS = (
    select(_ACCOUNTS.c.id, _ACCOUNTS.c.owner_id, _ACCOUNTS.c.kind, _ACCOUNTS.c.currency)
    .where(
        _ACCOUNTS.c.owner_id.in_(bindparam("owners", expanding=True)),
        _ACCOUNTS.c.currency.in_(bindparam("currencies", expanding=True)),
    )
    .order_by(_ACCOUNTS.c.id)
    .with_for_update(key_share=True)
)
_INSERT_TRANSACTION = insert(_TRANSACTIONS)
_INSERT_ENTRY = insert(_ENTRIES)
_MOVE_BALANCE = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account"))
    .values(balance_minor=_ACCOUNTS.c.balance_minor + bindparam("delta"))
)
_NEW_ACCOUNT = {
    "postgresql": pg_insert(_ACCOUNTS).on_conflict_do_nothing(),
    "sqlite": sqlite_insert(_ACCOUNTS).on_conflict_do_nothing(),
}


def post(session: Session, kind: str, cause_type: str, cause_id: str, lines: Iterable[Line]) -> bool:
    """Write one balanced transaction and move the materialised balances with it.

    Returns False (and writes nothing) when this cause already posted this kind. Zero lines are dropped.
    """
    lines = [line for line in lines if line.amount_minor != 0]
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.currency] += line.amount_minor
    if any(totals.values()):
        raise UnbalancedPosting(f"{kind} for {cause_type} {cause_id} does not balance: {dict(totals)}")
    connection = session.connection()
    cause = {"cause_type": cause_type, "cause_id": cause_id, "kind": kind}
    if not lines or connection.execute(_POSTED, cause).first() is not None:
        return False
    keys = sorted({(line.owner_id, line.kind, line.currency) for line in lines})
    connection.execute(
        _NEW_ACCOUNT[connection.dialect.name],
        [
            {"owner_id": owner, "kind": kind_, "currency": currency, "balance_minor": 0}
            for owner, kind_, currency in keys
        ],
    )
    accounts = {
        (row.owner_id, row.kind, row.currency): row.id
        for row in connection.execute(
            _LOCK_ACCOUNTS,
            {"owners": sorted({key[0] for key in keys}), "currencies": sorted({key[2] for key in keys})},
        )
    }
    transaction_id = new_id("ltx")
    connection.execute(_INSERT_TRANSACTION, {"id": transaction_id, "created_at": utcnow(), **cause})
    moves = [(accounts[(line.owner_id, line.kind, line.currency)], line) for line in lines]
    connection.execute(
        _INSERT_ENTRY,
        [
            {
                "transaction_id": transaction_id,
                "account_id": account,
                "amount_minor": line.amount_minor,
                "currency": line.currency,
            }
            for account, line in moves
        ],
    )
    connection.execute(_MOVE_BALANCE, [{"account": account, "delta": line.amount_minor} for account, line in moves])
    return True


def _cash(payment: Payment, amount: int) -> Line:
    return Line(payment.provider.value, AccountKind.PROVIDER_CASH, payment.currency, amount)


def _platform(kind: AccountKind, payment: Payment, amount: int) -> Line:
    return Line(PLATFORM, kind, payment.currency, amount)


def _payable(payment: Payment, amount: int) -> Line:
    return Line(payment.payee_id or PLATFORM, AccountKind.PAYABLE, payment.currency, amount)


def _split_lines(payment: Payment, base: int) -> list[Line]:
    fee, tax, payee = split_fee(base, payment.platform_bps, payment.tax_bps)
    payment.split_base_minor = base
    payment.fee_minor, payment.tax_minor, payment.payee_minor = fee, tax, payee
    return [
        _platform(AccountKind.REVENUE, payment, -fee),
        _platform(AccountKind.TAX, payment, -tax),
        _payable(payment, -payee),
    ]


def post_captured(session: Session, payment: Payment, *, enroll_completed: bool) -> None:
    """The payment's money was captured: sale (package), split (enroll completed) or escrow (not yet)."""
    amount = payment.captured_minor
    if payment.purpose is PaymentPurpose.PACKAGE:
        lines = [_cash(payment, amount), _platform(AccountKind.REVENUE, payment, -amount)]
        post(session, "sale", "payment", payment.id, lines)
        return
    if enroll_completed:
        post(session, "capture", "payment", payment.id, [_cash(payment, amount), *_split_lines(payment, amount)])
        return
    escrow = [_cash(payment, amount), _platform(AccountKind.ESCROW, payment, -amount)]
    if post(session, "escrow", "payment", payment.id, escrow):
        payment.escrow_minor = amount


def post_provider_fee(session: Session, payment: Payment, fee: int) -> None:
    """A provider's commission on a capture (YooKassa keeps it, even on refunds): a platform expense, never the
    payee's. `provider_fees +C`, `provider_cash −C`."""
    if fee <= 0:
        return
    lines = [_platform(AccountKind.PROVIDER_FEES, payment, fee), _cash(payment, -fee)]
    post(session, "provider_fee", "payment", payment.id, lines)


def post_release(session: Session, payment: Payment) -> None:
    """The enroll completed: what is left in escrow is split between revenue, tax and the payee."""
    if payment.split_base_minor is not None or payment.escrow_minor <= 0:
        return
    base = payment.escrow_minor
    lines = [_platform(AccountKind.ESCROW, payment, base), *_split_lines(payment, base)]
    if post(session, "release", "payment", payment.id, lines):
        payment.escrow_minor = 0


def post_refund(session: Session, payment: Payment, refund: Refund) -> None:
    """A refund succeeded: take it back from escrow, from the split (proportionally), or from the sale."""
    amount = refund.amount_minor
    if payment.purpose is PaymentPurpose.PACKAGE:
        lines = [_platform(AccountKind.REVENUE, payment, amount), _cash(payment, -amount)]
        post(session, "refund", "refund", refund.id, lines)
        return
    if payment.split_base_minor is None:
        lines = [_platform(AccountKind.ESCROW, payment, amount), _cash(payment, -amount)]
        if post(session, "refund", "refund", refund.id, lines):
            payment.escrow_minor -= amount
        return
    base, before = payment.split_base_minor, payment.split_refunded_minor
    after = before + amount
    fee = prorate(after, base, payment.fee_minor or 0) - prorate(before, base, payment.fee_minor or 0)
    tax = prorate(after, base, payment.tax_minor or 0) - prorate(before, base, payment.tax_minor or 0)
    lines = [
        _platform(AccountKind.REVENUE, payment, fee),
        _platform(AccountKind.TAX, payment, tax),
        _payable(payment, amount - fee - tax),
        _cash(payment, -amount),
    ]
    if post(session, "refund", "refund", refund.id, lines):
        payment.split_refunded_minor = after


def post_pending_refunds(session: Session, payment: Payment) -> None:
    """Post every succeeded refund of a captured payment that has not posted yet (a refund the provider reported
    before we knew the payment was captured waits here until we do)."""
    if payment.captured_minor <= 0 or payment.refunded_minor <= 0:
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
            post_refund(session, payment, refund)


CAPTURE_KINDS = ("sale", "capture", "escrow")
_CAPTURE_POSTED = select(_TRANSACTIONS.c.id).where(
    _TRANSACTIONS.c.cause_type == "payment",
    _TRANSACTIONS.c.cause_id == bindparam("payment"),
    _TRANSACTIONS.c.kind.in_(CAPTURE_KINDS),
)


def sync_payment(session: Session, payment: Payment, *, enroll_completed: bool) -> None:
    """Bring the ledger in line with the payment: its capture, its succeeded refunds, its release at completion.

    Idempotent: called after every application of provider state and at an enroll's completion.
    """
    if payment.captured_minor <= 0:
        return
    posted = session.connection().execute(_CAPTURE_POSTED, {"payment": payment.id}).first()
    if posted is None:
        post_captured(session, payment, enroll_completed=enroll_completed)
    post_pending_refunds(session, payment)
    if enroll_completed:
        post_release(session, payment)


def balance_of(session: Session, owner_id: str, kind: AccountKind, currency: str, *, lock: bool = False) -> int:
    """One account's materialised balance (0 when it has never moved); `lock` holds its row until commit."""
    query = select(_ACCOUNTS.c.balance_minor).where(
        _ACCOUNTS.c.owner_id == owner_id, _ACCOUNTS.c.kind == kind, _ACCOUNTS.c.currency == currency
    )
    value = session.connection().execute(query.with_for_update(key_share=True) if lock else query).scalar()
    return int(value or 0)


def balances(session: Session, owner_id: str) -> dict[tuple[AccountKind, str], int]:
    rows = session.execute(
        select(LedgerAccount.kind, LedgerAccount.currency, LedgerAccount.balance_minor).where(
            LedgerAccount.owner_id == owner_id
        )
    )
    return {(kind, currency): balance for kind, currency, balance in rows}


def totals_by_kind(session: Session) -> dict[tuple[AccountKind, str], int]:
    rows = session.execute(
        select(LedgerAccount.kind, LedgerAccount.currency, func.sum(LedgerAccount.balance_minor)).group_by(
            LedgerAccount.kind, LedgerAccount.currency
        )
    )
    return {(kind, currency): int(total) for kind, currency, total in rows}
