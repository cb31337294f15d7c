"""The dispute status machine (services/disputes.py) and how a Stripe dispute's balance transactions become the
money payql books (providers/stripe/mapping.py)."""

from __future__ import annotations

from itertools import product

from payql.models.enums import DisputeStatus
from payql.providers.stripe import mapping
from payql.services.disputes import OPEN, TRANSITIONS, can_move

D = DisputeStatus
# How far along a dispute is: a move never goes to a lower rank, and an inquiry may become a chargeback, never back.
RANK = {D.WARNING_NEEDS_RESPONSE: 0, D.WARNING_UNDER_REVIEW: 1, D.NEEDS_RESPONSE: 2, D.UNDER_REVIEW: 3}
RANK |= {D.WARNING_CLOSED: 4, D.WON: 4, D.LOST: 4, D.PREVENTED: 4}
CLOSED = {D.WARNING_CLOSED, D.WON, D.LOST, D.PREVENTED}


def test_every_status_has_a_row_and_the_closed_ones_are_final() -> None:
    assert set(TRANSITIONS) == set(DisputeStatus)
    assert {status for status, targets in TRANSITIONS.items() if not targets} == CLOSED
    assert set(DisputeStatus) - CLOSED == OPEN


def test_no_move_goes_backwards() -> None:
    for current, target in product(DisputeStatus, DisputeStatus):
        if can_move(current, target):
            assert RANK[target] > RANK[current], (current, target)


def test_a_chargeback_never_becomes_an_inquiry_again() -> None:
    warnings = {D.WARNING_NEEDS_RESPONSE, D.WARNING_UNDER_REVIEW, D.WARNING_CLOSED}
    for current in (D.NEEDS_RESPONSE, D.UNDER_REVIEW):
        assert not TRANSITIONS[current] & warnings
    assert can_move(D.WARNING_NEEDS_RESPONSE, D.NEEDS_RESPONSE)  # an inquiry escalates
    assert can_move(D.NEEDS_RESPONSE, D.WON)
    assert can_move(D.UNDER_REVIEW, D.LOST)
    assert not can_move(D.WON, D.LOST)
    assert not can_move(D.LOST, D.NEEDS_RESPONSE)


def _dispute(status: str, *transactions: tuple[int, int]) -> dict[str, object]:
    return {
        "id": "dp_unit",
        "object": "dispute",
        "amount": 10_000,
        "currency": "usd",
        "status": status,
        "reason": "fraudulent",
        "created": 1_700_000_000,
        "evidence_details": {"due_by": 1_700_600_000},
        "payment_intent": "pi_unit",
        "charge": {"id": "ch_unit", "object": "charge", "metadata": {"payment_id": "pay_unit"}},
        "balance_transactions": [{"amount": amount, "fee": fee} for amount, fee in transactions],
    }


def test_stripe_balance_transactions_are_the_money_of_a_dispute() -> None:
    inquiry = mapping.dispute(_dispute("warning_needs_response"))
    assert (inquiry.status, inquiry.withdrawn_minor, inquiry.fee_minor) == (D.WARNING_NEEDS_RESPONSE, 0, 0)
    assert (inquiry.payment_id, inquiry.payment_ref, inquiry.currency) == ("pay_unit", "pi_unit", "USD")
    assert inquiry.evidence_due_by is not None
    assert inquiry.evidence_due_by.timestamp() == 1_700_600_000

    withdrawn = mapping.dispute(_dispute("needs_response", (-10_000, 1_500)))
    assert (withdrawn.withdrawn_minor, withdrawn.reinstated_minor, withdrawn.fee_minor) == (10_000, 0, 1_500)

    won = mapping.dispute(_dispute("won", (-10_000, 1_500), (10_000, 0)))
    assert (won.status, won.withdrawn_minor, won.reinstated_minor) == (D.WON, 10_000, 10_000)
    assert (won.fee_minor, won.fee_returned_minor) == (1_500, 0)  # Stripe keeps its dispute fee
    refunded_fee = mapping.dispute(_dispute("won", (-10_000, 1_500), (10_000, -1_500)))
    assert refunded_fee.fee_returned_minor == 1_500


def test_a_status_stripe_adds_later_changes_nothing() -> None:
    assert mapping.dispute(_dispute("appeal_under_review")).status is None
    assert mapping.dispute(_dispute("something_new")).status is None
    unexpanded = _dispute("lost") | {"charge": "ch_unit", "evidence_details": {"due_by": 0}}
    assert mapping.dispute(unexpanded).payment_id is None
    assert mapping.dispute(unexpanded).evidence_due_by is None
