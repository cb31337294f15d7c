"""Balances read from the ledger's materialised accounts, and what is pending from the payment rows.

A user's `available` is their payable account shown positive (what they can withdraw now; negative after a refund
that followed a payout). `pending` is their share of enroll payments that are held or in escrow and not completed
yet. `paidOut` is what settled withdrawals sent them. The platform's view sums every account kind per currency;
`providerCash = revenue + tax + providerPayable + escrow + payoutsInFlight − providerFees` holds because every
transaction balances (providerFees: what a provider kept as its commission, a platform expense).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session

from payql.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction, Payment
from payql.models.enums import PaymentStatus
from payql.models.payment import PENDING_FOR_PAYEE
from payql.services import ledger, postings

CREDIT = "CREDIT"


@dataclass(frozen=True, slots=True)
class AccountBalance:
    currency: str
    available: int
    pending: int
    paid_out: int


@dataclass(frozen=True, slots=True)
class PlatformBalance:
    currency: str
    revenue: int
    tax: int
    provider_payable: int
    escrow: int
    payouts_in_flight: int
    provider_cash: int
    provider_fees: int


def user_accounts(session: Session, user_id: str) -> list[AccountBalance]:
    own = ledger.balances(session, user_id)
    pending: dict[str, int] = defaultdict(int)
    held = session.execute(
        select(
            Payment.currency,
            Payment.status,
            Payment.amount_minor,
            Payment.authorized_minor,
            Payment.escrow_minor,
            Payment.platform_bps,
            Payment.tax_bps,
        ).where(Payment.payee_id == user_id, text(PENDING_FOR_PAYEE))  # ix_payments_pending_payee: the open ones
    )
    for currency, status, amount, authorized, escrow, platform_bps, tax_bps in held:
        base = (authorized or amount) if status is PaymentStatus.AUTHORIZED else escrow
        pending[currency] += postings.split(base, platform_bps, tax_bps).payee
    paid_out = _paid_out(session, user_id)
    currencies = {currency for (_, currency) in own if currency != CREDIT} | set(pending) | set(paid_out)
    return [
        AccountBalance(
            currency=currency,
            available=-own.get((AccountKind.PAYABLE, currency), 0),
            pending=pending.get(currency, 0),
            paid_out=paid_out.get(currency, 0),
        )
        for currency in sorted(currencies)
    ]


def _paid_out(session: Session, user_id: str) -> dict[str, int]:
    """What settled payouts moved out of the user's payouts-in-flight account (a credit to it, shown positive), less
    the settled payouts the provider reversed (the debit half of `payout_reversed` that undoes `payout_settled`)."""
    rows = session.execute(
        select(LedgerEntry.currency, func.sum(LedgerEntry.amount_minor))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(
            LedgerAccount.owner_id == user_id,
            LedgerAccount.kind == AccountKind.PAYOUTS_IN_FLIGHT,
            or_(
                LedgerTransaction.kind == "payout_settled",
                and_(LedgerTransaction.kind == "payout_reversed", LedgerEntry.amount_minor < 0),
            ),
        )
        .group_by(LedgerEntry.currency)
    )
    return {currency: int(total) for currency, total in rows}


def platform_balances(session: Session) -> list[PlatformBalance]:
    totals = ledger.totals_by_kind(session)
    currencies = sorted({currency for (_, currency) in totals if currency != CREDIT})

    def shown(kind: AccountKind, currency: str) -> int:
        return -totals.get((kind, currency), 0)

    return [
        PlatformBalance(
            currency=currency,
            revenue=shown(AccountKind.REVENUE, currency),
            tax=shown(AccountKind.TAX, currency),
            provider_payable=shown(AccountKind.PAYABLE, currency),
            escrow=shown(AccountKind.ESCROW, currency),
            payouts_in_flight=shown(AccountKind.PAYOUTS_IN_FLIGHT, currency),
            provider_cash=totals.get((AccountKind.PROVIDER_CASH, currency), 0),
            provider_fees=totals.get((AccountKind.PROVIDER_FEES, currency), 0),
        )
        for currency in currencies
    ]
