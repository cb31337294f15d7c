"""Every ledger posting (DESIGN.md §4), as pure functions that return balanced lines; `ledger.post` writes them.

Sign convention: debits are positive. Assets (`provider_cash`) carry positive balances; liabilities and revenue
(`payable`, `escrow`, `revenue`, `tax`, `payouts_in_flight`, `credits`) carry negative ones and are shown positive.

For an amount A the split is computed once, by `split`: fee F = ⌊A·platform_bps/10000⌋, tax T = ⌊(A−F)·tax_bps/10000⌋,
payee P = A−F−T.

| posting                                 | lines                                                            |
|-----------------------------------------|------------------------------------------------------------------|
| `sale`: package paid                    | provider_cash +A, revenue −A                                     |
| `capture`: enroll captured at completion| provider_cash +A, revenue −F, tax −T, payable(payee) −P           |
| `escrow`: enroll captured early         | provider_cash +A, escrow −A                                      |
| `release`: completion after escrow      | escrow +N, revenue −F, tax −T, payable −P (split on N)            |
| `refund_of_sale`                        | revenue +R, provider_cash −R                                     |
| `refund_from_escrow`                    | escrow +R, provider_cash −R                                      |
| `refund_after_split`                    | revenue +ΔF, tax +ΔT, payable +(R−ΔF−ΔT), provider_cash −R         |
| `reversal`: a posted refund failed      | each of its lines negated (kind `refund_reversed`)               |
| `provider_fee`: commission kept         | provider_fees +C, provider_cash −C                               |
| `credits_moved`: credits granted/spent  | credits(user) −C, credits_issued +C (unit CREDIT)                |
| `withdrawal` / `withdrawal_returned`    | payable +W, payouts_in_flight(user) −W / the reverse             |
| `payout_settled`                        | payouts_in_flight(user) +W, provider_cash −W                     |
| `payout_reversed`: settled, then undone | provider_cash +W, payouts_in_flight −W; payouts_in_flight +W, payable −W |
| `dispute_withdrawn`: chargeback funds   | as a refund of D: `refund_of_sale`, `_from_escrow` or `_after_split` |
| `dispute_reinstated`: dispute won       | `reversal` of the withdrawal's lines (or `capture` of D if released since) |
| `dispute_fee` / `dispute_fee_returned`  | provider_fees +C, provider_cash −C / the reverse                 |

A refund after the split reverses the fee and tax proportionally and cumulatively: with r refunded after the split
before this refund, ΔF = ⌊(r+R)·F/N⌋ − ⌊r·F/N⌋ (likewise ΔT), so refunds that add up to N reverse exactly F and T
whatever their rounding. A payee's payable may go negative when a refund follows a payout. When a refund that
posted fails later (Stripe reports failures for weeks), `reversal` undoes its own lines exactly; the fee and tax the
standing refunds have taken back are then no longer ⌊r·F/N⌋, so the next refund is given them (`taken_before`):
ΔF = ⌊(r+R)·F/N⌋ − (fee taken back so far), which still reverses exactly F when the standing refunds reach N.

Every function is pure: it reads its arguments and returns lines whose `imbalance` is empty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from payql.models.ledger import PLATFORM, AccountKind
from payql.money import prorate, split_fee

CREDIT = "CREDIT"  # the unit of the credit accounts


class UnbalancedPosting(ValueError):
    """A posting whose lines do not sum to zero per currency: refused before anything is written."""


@dataclass(frozen=True, slots=True)
class Line:
    owner_id: str
    kind: AccountKind
    currency: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Split:
    """An amount shared out between the platform's fee, the tax withheld and the payee: `base` = fee + tax + payee."""

    base: int
    fee: int
    tax: int
    payee: int


def split(amount_minor: int, platform_bps: int, tax_bps: int) -> Split:
    """The one place an enroll payment's split is computed."""
    fee, tax, payee = split_fee(amount_minor, platform_bps, tax_bps)
    return Split(base=amount_minor, fee=fee, tax=tax, payee=payee)


def imbalance(lines: Iterable[Line]) -> dict[str, int]:
    """The currencies whose lines do not sum to zero, with their sums; empty for a balanced posting."""
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.currency] += line.amount_minor
    return {currency: total for currency, total in totals.items() if total}


def _cash(provider: str, currency: str, amount: int) -> Line:
    return Line(provider, AccountKind.PROVIDER_CASH, currency, amount)


def _platform(kind: AccountKind, currency: str, amount: int) -> Line:
    return Line(PLATFORM, kind, currency, amount)


def _payable(payee: str | None, currency: str, amount: int) -> Line:
    return Line(payee or PLATFORM, AccountKind.PAYABLE, currency, amount)


def _shares(currency: str, payee: str | None, shares: Split) -> list[Line]:
    return [
        _platform(AccountKind.REVENUE, currency, -shares.fee),
        _platform(AccountKind.TAX, currency, -shares.tax),
        _payable(payee, currency, -shares.payee),
    ]


def sale(provider: str, currency: str, amount: int) -> list[Line]:
    return [_cash(provider, currency, amount), _platform(AccountKind.REVENUE, currency, -amount)]


def capture(provider: str, currency: str, payee: str | None, shares: Split) -> list[Line]:
    return [_cash(provider, currency, shares.base), *_shares(currency, payee, shares)]


def escrow(provider: str, currency: str, amount: int) -> list[Line]:
    return [_cash(provider, currency, amount), _platform(AccountKind.ESCROW, currency, -amount)]


def release(currency: str, payee: str | None, shares: Split) -> list[Line]:
    return [_platform(AccountKind.ESCROW, currency, shares.base), *_shares(currency, payee, shares)]


def refund_of_sale(provider: str, currency: str, amount: int) -> list[Line]:
    return [_platform(AccountKind.REVENUE, currency, amount), _cash(provider, currency, -amount)]


def refund_from_escrow(provider: str, currency: str, amount: int) -> list[Line]:
    return [_platform(AccountKind.ESCROW, currency, amount), _cash(provider, currency, -amount)]


def refund_after_split(
    provider: str,
    currency: str,
    payee: str | None,
    shares: Split,
    refunded_before: int,
    amount: int,
    taken_before: tuple[int, int] | None = None,
) -> list[Line]:
    """`amount` refunded after the split, `refunded_before` having been refunded after it already (and still
    standing). `taken_before` is the (fee, tax) those standing refunds took back, as the ledger holds it; by
    default what the cumulative formula gave them, which is what it holds while no refund was reversed."""
    after = refunded_before + amount
    if taken_before is None:
        taken_before = (
            prorate(refunded_before, shares.base, shares.fee),
            prorate(refunded_before, shares.base, shares.tax),
        )
    fee = prorate(after, shares.base, shares.fee) - taken_before[0]
    tax = prorate(after, shares.base, shares.tax) - taken_before[1]
    return [
        _platform(AccountKind.REVENUE, currency, fee),
        _platform(AccountKind.TAX, currency, tax),
        _payable(payee, currency, amount - fee - tax),
        _cash(provider, currency, -amount),
    ]


def reversal(lines: Iterable[Line]) -> list[Line]:
    """The exact undoing of a posting (a refund that failed after it posted, a dispute won): each line negated."""
    return [Line(line.owner_id, line.kind, line.currency, -line.amount_minor) for line in lines]


def provider_fee(provider: str, currency: str, fee: int) -> list[Line]:
    """A provider's commission (YooKassa keeps it, even on refunds): a platform expense, never the payee's."""
    return [_platform(AccountKind.PROVIDER_FEES, currency, fee), _cash(provider, currency, -fee)]


def credits_moved(user_id: str, credits: int) -> list[Line]:
    """`credits` granted to the user (positive) or taken from them (negative: spent, expired, clawed back)."""
    return [
        Line(user_id, AccountKind.CREDITS, CREDIT, -credits),
        Line(PLATFORM, AccountKind.CREDITS_ISSUED, CREDIT, credits),
    ]


def withdrawal(user_id: str, currency: str, amount: int) -> list[Line]:
    """A withdrawal requested: its amount leaves the payable for payouts in flight."""
    return [
        Line(user_id, AccountKind.PAYABLE, currency, amount),
        Line(user_id, AccountKind.PAYOUTS_IN_FLIGHT, currency, -amount),
    ]


def withdrawal_returned(user_id: str, currency: str, amount: int) -> list[Line]:
    """A withdrawal rejected, or its payout failed: the money goes back to the payable."""
    return withdrawal(user_id, currency, -amount)


def payout_settled(user_id: str, provider: str, currency: str, amount: int) -> list[Line]:
    """The provider paid the payout out: it leaves payouts in flight and the platform's cash there."""
    return [Line(user_id, AccountKind.PAYOUTS_IN_FLIGHT, currency, amount), _cash(provider, currency, -amount)]


def payout_reversed(user_id: str, provider: str, currency: str, amount: int) -> list[Line]:
    """A settled payout the provider reversed or canceled: `payout_settled` undone exactly (the cash is back at the
    provider), then the withdrawal returned (the money is back in the payee's payable)."""
    return [
        *reversal(payout_settled(user_id, provider, currency, amount)),
        *withdrawal_returned(user_id, currency, amount),
    ]


def dispute_fee(provider: str, currency: str, fee: int) -> list[Line]:
    """The provider's dispute fee (Stripe's, on the dispute's balance transaction): a platform expense."""
    return provider_fee(provider, currency, fee)


def dispute_fee_returned(provider: str, currency: str, fee: int) -> list[Line]:
    """A dispute fee the provider gave back (a negative fee on a reinstatement)."""
    return reversal(dispute_fee(provider, currency, fee))
