"""Every ledger posting (services/postings.py) is balanced, and the split and its reversals are exact, whatever the
amounts, the policy and the currency's exponent."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from payql.models.ledger import PLATFORM, AccountKind
from payql.money import MAX_MINOR, parse_amount
from payql.services import postings
from payql.services.postings import Line

amounts = st.integers(min_value=1, max_value=MAX_MINOR)
bps = st.integers(min_value=0, max_value=10_000)
currencies = st.sampled_from(["JPY", "USD", "RUB", "KWD"])  # exponents 0, 2, 2, 3


def by_account(lines: list[Line]) -> dict[tuple[str, AccountKind], int]:
    found: dict[tuple[str, AccountKind], int] = defaultdict(int)
    for line in lines:
        found[(line.owner_id, line.kind)] += line.amount_minor
    return dict(found)


@given(amount=amounts, platform_bps=bps, tax_bps=bps, currency=currencies, refunded=st.integers(0, MAX_MINOR))
def test_every_posting_is_balanced(amount: int, platform_bps: int, tax_bps: int, currency: str, refunded: int) -> None:
    shares = postings.split(amount, platform_bps, tax_bps)
    before = min(refunded, amount - 1)
    every = [
        postings.sale("STRIPE", currency, amount),
        postings.capture("STRIPE", currency, "master", shares),
        postings.escrow("STRIPE", currency, amount),
        postings.release(currency, "master", shares),
        postings.refund_of_sale("STRIPE", currency, amount),
        postings.refund_from_escrow("STRIPE", currency, amount),
        postings.refund_after_split("STRIPE", currency, "master", shares, before, amount - before),
        postings.provider_fee("YOOKASSA", currency, amount),
        postings.credits_moved("client", amount),
        postings.credits_moved("client", -amount),
        postings.withdrawal("master", currency, amount),
        postings.withdrawal_returned("master", currency, amount),
        postings.payout_settled("master", "STRIPE", currency, amount),
        postings.payout_reversed("master", "STRIPE", currency, amount),
    ]
    for lines in every:
        assert postings.imbalance(lines) == {}, lines


@given(amount=amounts, platform_bps=bps, tax_bps=bps)
def test_the_split_shares_out_the_whole_amount_rounding_toward_the_payee(
    amount: int, platform_bps: int, tax_bps: int
) -> None:
    shares = postings.split(amount, platform_bps, tax_bps)

    assert shares.fee + shares.tax + shares.payee == shares.base == amount
    assert shares.fee == amount * platform_bps // 10_000
    assert shares.tax == (amount - shares.fee) * tax_bps // 10_000
    assert min(shares.fee, shares.tax, shares.payee) >= 0


def test_seeds_splits_in_each_exponent() -> None:
    # seeds/003: 100.00 RUB through YooKassa -> 10.00 fee, 5.40 tax, 84.60 for the master
    rub = postings.split(parse_amount("100.00", "RUB").minor, 1000, 600)
    # seeds/001: 5% of 1500 JPY and of 1.234 KWD through Stripe, rounded down
    jpy = postings.split(parse_amount("1500", "JPY").minor, 500, 0)
    kwd = postings.split(parse_amount("1.234", "KWD").minor, 500, 0)

    assert (rub.fee, rub.tax, rub.payee) == (1000, 540, 8460)
    assert (jpy.fee, jpy.tax, jpy.payee) == (75, 0, 1425)
    assert (kwd.fee, kwd.tax, kwd.payee) == (61, 0, 1173)


def test_a_capture_at_completion_pays_each_account_its_share() -> None:
    shares = postings.split(10_000, 1000, 600)

    lines = by_account(postings.capture("YOOKASSA", "RUB", "master", shares))

    assert lines == {
        ("YOOKASSA", AccountKind.PROVIDER_CASH): 10_000,
        (PLATFORM, AccountKind.REVENUE): -1000,
        (PLATFORM, AccountKind.TAX): -540,
        ("master", AccountKind.PAYABLE): -8460,
    }


@given(
    amount=st.integers(min_value=1, max_value=10**12),
    platform_bps=bps,
    tax_bps=bps,
    cuts=st.lists(st.integers(min_value=1, max_value=10**12), min_size=1, max_size=8),
)
def test_refunds_that_add_up_to_the_split_reverse_it_exactly(
    amount: int, platform_bps: int, tax_bps: int, cuts: list[int]
) -> None:
    # given a split, and refunds of any sizes that together take back all of it
    shares = postings.split(amount, platform_bps, tax_bps)
    parts: list[int] = []
    left = amount
    for cut in cuts:
        if left == 0:
            break
        part = min(cut, left)
        parts.append(part)
        left -= part
    if left:
        parts.append(left)

    # when each refund posts its proportional reversal
    total: dict[tuple[str, AccountKind], int] = defaultdict(int)
    refunded = 0
    for part in parts:
        for key, value in by_account(
            postings.refund_after_split("STRIPE", "USD", "master", shares, refunded, part)
        ).items():
            total[key] += value
        refunded += part

    # then fee, tax and the payee's share come back to the cent, and the cash leaves whole
    assert dict(total) == {
        (PLATFORM, AccountKind.REVENUE): shares.fee,
        (PLATFORM, AccountKind.TAX): shares.tax,
        ("master", AccountKind.PAYABLE): shares.payee,
        ("STRIPE", AccountKind.PROVIDER_CASH): -amount,
    }


def test_a_reversal_undoes_a_posting_exactly() -> None:
    posted = postings.refund_after_split("STRIPE", "USD", "master", postings.split(10_001, 1000, 600), 0, 3_333)

    undone = postings.reversal(posted)

    assert postings.imbalance(undone) == {}
    totals: dict[tuple[str, AccountKind], int] = defaultdict(int)
    for key, value in [*by_account(posted).items(), *by_account(undone).items()]:
        totals[key] += value
    assert set(totals.values()) == {0}
    assert by_account(undone)[("STRIPE", AccountKind.PROVIDER_CASH)] == 3_333


@given(
    amount=st.integers(min_value=1, max_value=10**12),
    platform_bps=bps,
    tax_bps=bps,
    cuts=st.lists(st.integers(min_value=1, max_value=10**12), min_size=2, max_size=8),
    failed=st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_refunds_that_stand_reverse_the_split_exactly_whichever_failed_in_between(
    amount: int, platform_bps: int, tax_bps: int, cuts: list[int], failed: list[bool]
) -> None:
    # given a split, refunds of any sizes, some of which fail after they posted (their postings reversed)
    shares = postings.split(amount, platform_bps, tax_bps)
    total: dict[tuple[str, AccountKind], int] = defaultdict(int)
    standing = fee_taken = tax_taken = 0

    def post(lines: list[Line]) -> None:
        nonlocal fee_taken, tax_taken
        for key, value in by_account(lines).items():
            total[key] += value
        fee_taken += by_account(lines).get((PLATFORM, AccountKind.REVENUE), 0)
        tax_taken += by_account(lines).get((PLATFORM, AccountKind.TAX), 0)

    for cut, fails in zip(cuts, failed, strict=False):
        part = min(cut, amount - standing)
        if part == 0:
            break
        lines = postings.refund_after_split("STRIPE", "USD", "master", shares, standing, part, (fee_taken, tax_taken))
        post(lines)
        standing += part
        if fails:
            post(postings.reversal(lines))
            standing -= part

    # when the last refund takes back what is left, computed from what the ledger kept
    if amount - standing:
        post(
            postings.refund_after_split(
                "STRIPE", "USD", "master", shares, standing, amount - standing, (fee_taken, tax_taken)
            )
        )

    # then fee, tax and the payee's share come back to the cent
    assert {key: value for key, value in total.items() if value} == {
        key: value
        for key, value in {
            (PLATFORM, AccountKind.REVENUE): shares.fee,
            (PLATFORM, AccountKind.TAX): shares.tax,
            ("master", AccountKind.PAYABLE): shares.payee,
            ("STRIPE", AccountKind.PROVIDER_CASH): -amount,
        }.items()
        if value
    }


def test_a_returned_withdrawal_undoes_the_request_and_a_settled_one_leaves_the_cash() -> None:
    requested = by_account(postings.withdrawal("master", "USD", 6000))
    returned = by_account(postings.withdrawal_returned("master", "USD", 6000))
    settled = by_account(postings.payout_settled("master", "STRIPE", "USD", 6000))

    assert requested == {("master", AccountKind.PAYABLE): 6000, ("master", AccountKind.PAYOUTS_IN_FLIGHT): -6000}
    assert returned == {key: -value for key, value in requested.items()}
    assert settled == {("master", AccountKind.PAYOUTS_IN_FLIGHT): 6000, ("STRIPE", AccountKind.PROVIDER_CASH): -6000}


def test_a_reversed_payout_undoes_its_settlement_and_its_request_exactly() -> None:
    requested = by_account(postings.withdrawal("master", "USD", 6000))
    settled = by_account(postings.payout_settled("master", "STRIPE", "USD", 6000))
    reversed_ = by_account(postings.payout_reversed("master", "STRIPE", "USD", 6000))

    # the cash is back at Stripe, nothing is in flight any more, the payee's payable holds the 60.00 again
    assert reversed_ == {
        ("STRIPE", AccountKind.PROVIDER_CASH): 6000,
        ("master", AccountKind.PAYOUTS_IN_FLIGHT): 0,
        ("master", AccountKind.PAYABLE): -6000,
    }
    total: dict[tuple[str, AccountKind], int] = defaultdict(int)
    for posting in (requested, settled, reversed_):
        for key, value in posting.items():
            total[key] += value
    assert {key: value for key, value in total.items() if value} == {}


# -- disputes ----------------------------------------------------------------------------------------------


@given(amount=amounts, platform_bps=bps, tax_bps=bps, currency=currencies, disputed=amounts)
def test_a_dispute_won_reverses_its_withdrawal_exactly(
    amount: int, platform_bps: int, tax_bps: int, currency: str, disputed: int
) -> None:
    shares = postings.split(amount, platform_bps, tax_bps)
    disputed = min(disputed, amount)
    withdrawn = postings.refund_after_split("STRIPE", currency, "master", shares, 0, disputed)
    reinstated = postings.reversal(withdrawn)
    assert postings.imbalance(reinstated) == {}
    net = by_account(withdrawn + reinstated)
    assert set(net.values()) == {0}
    # the withdrawal took the payee's share of the disputed amount, and the reinstatement gives exactly that back
    assert (
        by_account(reinstated)[("master", AccountKind.PAYABLE)]
        == -by_account(withdrawn)[("master", AccountKind.PAYABLE)]
    )


def test_a_dispute_on_a_split_payment_takes_the_payee_share_fee_and_tax_proportionally() -> None:
    # given 100.00 split 10% fee, 5% tax on the rest: fee 10.00, tax 4.50, payee 85.50
    shares = postings.split(10_000, 1_000, 500)
    # when the whole 100.00 is withdrawn for a chargeback
    lines = by_account(postings.refund_after_split("STRIPE", "USD", "master", shares, 0, 10_000))
    # then everything the split gave is taken back, and the cash leaves the provider's balance
    assert lines[("master", AccountKind.PAYABLE)] == 8_550
    assert lines[(PLATFORM, AccountKind.REVENUE)] == 1_000
    assert lines[(PLATFORM, AccountKind.TAX)] == 450
    assert lines[("STRIPE", AccountKind.PROVIDER_CASH)] == -10_000


def test_the_dispute_fee_is_a_platform_expense_and_its_return_undoes_it() -> None:
    fee = postings.dispute_fee("STRIPE", "USD", 1_500)
    assert by_account(fee) == {
        (PLATFORM, AccountKind.PROVIDER_FEES): 1_500,
        ("STRIPE", AccountKind.PROVIDER_CASH): -1_500,
    }
    returned = postings.dispute_fee_returned("STRIPE", "USD", 1_500)
    assert postings.imbalance(returned) == {}
    assert set(by_account(fee + returned).values()) == {0}


def test_a_reversal_of_nothing_is_nothing() -> None:
    assert postings.reversal([]) == []
