"""The status machines of payments and refunds (services/lifecycle.py), on objects in memory: every allowed and
every refused move, what a capture records, and that nothing ever moves backwards."""

from __future__ import annotations

from itertools import product

import pytest

from payql.models import Payment, Refund
from payql.models.enums import CaptureMethod, PaymentPurpose, PaymentStatus, ProviderName, RefundStatus
from payql.providers.base import ProviderPayment
from payql.services import lifecycle
from payql.services.lifecycle import (
    CAPTURED,
    FINAL,
    NOT_YET,
    REFUND_FALLBACK,
    REFUND_TRANSITIONS,
    TRANSITIONS,
    advance,
    follow_refunds,
)

S = PaymentStatus
ALLOWED = {
    (S.PENDING, S.REQUIRES_ACTION), (S.PENDING, S.PROCESSING), (S.PENDING, S.AUTHORIZED), (S.PENDING, S.SUCCEEDED),
    (S.PENDING, S.FAILED), (S.PENDING, S.CANCELED),
    (S.REQUIRES_ACTION, S.PENDING), (S.REQUIRES_ACTION, S.PROCESSING), (S.REQUIRES_ACTION, S.AUTHORIZED),
    (S.REQUIRES_ACTION, S.SUCCEEDED), (S.REQUIRES_ACTION, S.FAILED), (S.REQUIRES_ACTION, S.CANCELED),
    (S.PROCESSING, S.PENDING), (S.PROCESSING, S.REQUIRES_ACTION), (S.PROCESSING, S.AUTHORIZED),
    (S.PROCESSING, S.SUCCEEDED), (S.PROCESSING, S.FAILED), (S.PROCESSING, S.CANCELED),
    (S.AUTHORIZED, S.SUCCEEDED), (S.AUTHORIZED, S.CANCELED),
    (S.SUCCEEDED, S.PARTIALLY_REFUNDED), (S.SUCCEEDED, S.REFUNDED),
    (S.PARTIALLY_REFUNDED, S.REFUNDED),
}  # fmt: skip
# How far along a payment is: a move never goes to a lower rank, except among the states before money is held.
RANK = {S.PENDING: 0, S.REQUIRES_ACTION: 0, S.PROCESSING: 0, S.AUTHORIZED: 1, S.SUCCEEDED: 2}
RANK |= {S.PARTIALLY_REFUNDED: 3, S.REFUNDED: 4, S.FAILED: 5, S.CANCELED: 5}


def payment(status: PaymentStatus, *, purpose: PaymentPurpose = PaymentPurpose.ENROLL) -> Payment:
    return Payment(
        id="pay_unit",
        purpose=purpose,
        provider=ProviderName.STRIPE,
        capture_method=CaptureMethod.MANUAL,
        status=status,
        currency="RUB",
        amount_minor=10_000,
        authorized_minor=0,
        captured_minor=10_000 if status in CAPTURED else 0,
        refunded_minor=0,
        platform_bps=1000,
        tax_bps=600,
        payer_id="client",
        payee_id="master",
        provider_key="payql-pay_unit",
    )


def answer(status: PaymentStatus, **fields: object) -> ProviderPayment:
    return ProviderPayment(provider_payment_id="pi_unit", status=status, amount_minor=10_000, currency="RUB", **fields)  # type: ignore[arg-type]


def test_the_table_is_the_designs_machine() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED
    assert set(TRANSITIONS) == set(PaymentStatus)


@pytest.mark.parametrize(("current", "target"), sorted(product(PaymentStatus, PaymentStatus)))
def test_every_answer_moves_the_payment_only_along_the_machine(current: PaymentStatus, target: PaymentStatus) -> None:
    moved = payment(current)

    advance(moved, answer(target, captured_minor=10_000))

    assert moved.status is (target if (current, target) in ALLOWED else current)


def test_nothing_moves_backwards_and_final_states_never_move() -> None:
    for current, target in ALLOWED:
        assert RANK[target] >= RANK[current], (current, target)
    for final in FINAL:
        assert TRANSITIONS[final] == frozenset()
    assert all(TRANSITIONS[state] >= NOT_YET - {state} for state in NOT_YET)


def test_a_capture_records_its_amount_the_split_and_clears_the_last_failure() -> None:
    # given a hold whose first card was declined
    held = payment(S.AUTHORIZED)
    held.failure_code, held.failure_message = "card_declined", "declined"

    # when the provider reports it captured
    advance(held, answer(S.SUCCEEDED, captured_minor=10_000))

    # then the capture, the paid time and the split (10% fee, 6% tax of the rest) are recorded once
    assert (held.status, held.captured_minor, held.failure_code, held.failure_message) == (
        S.SUCCEEDED,
        10_000,
        None,
        None,
    )
    assert (held.fee_minor, held.tax_minor, held.payee_minor) == (1000, 540, 8460)
    assert held.paid_at is not None
    advance(held, answer(S.SUCCEEDED, captured_minor=5_000))  # a second capture never replaces the first
    assert held.captured_minor == 10_000


def test_a_package_capture_is_all_revenue() -> None:
    package = payment(S.PENDING, purpose=PaymentPurpose.PACKAGE)

    advance(package, answer(S.SUCCEEDED, captured_minor=10_000))

    assert (package.fee_minor, package.tax_minor, package.payee_minor) == (10_000, 0, None)


def test_a_late_success_after_a_refund_is_ignored_and_a_decline_keeps_the_payment_retryable() -> None:
    refunded = payment(S.REFUNDED)
    advance(refunded, answer(S.SUCCEEDED, captured_minor=10_000))
    assert refunded.status is S.REFUNDED

    declined = payment(S.PENDING)
    advance(declined, answer(S.PENDING, failure_code="card_declined", failure_message="Your card was declined."))
    assert (declined.status, declined.failure_code) == (S.PENDING, "card_declined")


def test_a_hold_records_what_is_authorized_and_when_it_lapses() -> None:
    pending = payment(S.PENDING)

    advance(pending, answer(S.AUTHORIZED, authorized_minor=9_000))

    assert (pending.status, pending.authorized_minor) == (S.AUTHORIZED, 9_000)
    assert pending.expires_at is not None


@pytest.mark.parametrize(("current", "target"), sorted(product(RefundStatus, RefundStatus)))
def test_a_refund_ends_once_but_a_success_may_fail_late(current: RefundStatus, target: RefundStatus) -> None:
    allowed = (current is RefundStatus.PENDING and target is not RefundStatus.PENDING) or (
        current is RefundStatus.SUCCEEDED and target is RefundStatus.FAILED
    )

    assert lifecycle.can_move_refund(current, target) is allowed
    assert (target in REFUND_TRANSITIONS[current]) is allowed


def test_our_own_decisions_move_only_payments_that_have_not_started() -> None:
    unsent = payment(S.PENDING)
    lifecycle.Lifecycle.cancel_unsent(unsent)
    sent = payment(S.PENDING)
    sent.provider_payment_id = "pi_unit"
    lifecycle.Lifecycle.cancel_unsent(sent)
    refused, held = payment(S.REQUIRES_ACTION), payment(S.AUTHORIZED)
    for one in (refused, held):
        lifecycle.Lifecycle.fail_creation(one, "parameter_invalid", "x" * 900)

    assert (unsent.status, sent.status) == (S.CANCELED, S.PENDING)
    assert (refused.status, refused.failure_code, len(refused.failure_message or "")) == (
        S.FAILED,
        "parameter_invalid",
        500,
    )
    assert held.status is S.AUTHORIZED


def test_a_failed_refund_keeps_the_first_ending() -> None:
    ended = Refund(id="ref_unit", status=RefundStatus.SUCCEEDED, amount_minor=100, currency="RUB", credits_voided=0)

    lifecycle.Lifecycle(180).fail_refund(None, ended, "too late")  # type: ignore[arg-type]  # no session needed

    assert ended.status is RefundStatus.SUCCEEDED


@pytest.mark.parametrize("ended", [S.FAILED, S.CANCELED])
def test_a_payment_that_ends_unpaid_shows_the_providers_reason(ended: PaymentStatus) -> None:
    # YooKassa's `cancellation_details.reason`, for a declined card (FAILED) or a hold canceled or lapsed (CANCELED)
    pending, held = payment(S.PENDING), payment(S.AUTHORIZED)
    reason = answer(ended, failure_code="insufficient_funds", failure_message="declined")

    advance(pending, reason)
    advance(held, reason)

    assert (pending.status, pending.failure_code, pending.failure_message) == (ended, "insufficient_funds", "declined")
    assert held.failure_code == ("insufficient_funds" if ended is S.CANCELED else None)  # a hold never FAILS


def test_a_payment_ended_here_takes_the_reason_its_provider_gives_later() -> None:
    canceled = payment(S.CANCELED)  # cancelled with its enroll while unpaid: YooKassa lets it lapse afterwards

    advance(canceled, answer(S.CANCELED, failure_code="expired_on_confirmation"))

    assert (canceled.status, canceled.failure_code) == (S.CANCELED, "expired_on_confirmation")


def test_a_successful_attempt_clears_the_last_decline_a_hold_as_well_as_a_capture() -> None:
    # the contract: failureCode is the last failed attempt's; the next attempt that succeeds clears it
    declined = payment(S.PENDING)
    advance(declined, answer(S.PENDING, failure_code="card_declined", failure_message="Your card was declined."))

    advance(declined, answer(S.AUTHORIZED))

    assert (declined.status, declined.failure_code, declined.failure_message) == (S.AUTHORIZED, None, None)
    advance(declined, answer(S.AUTHORIZED, failure_code="stale"))  # a repeated hold changes nothing
    assert declined.failure_code is None


@pytest.mark.parametrize("paid", [S.AUTHORIZED, S.SUCCEEDED])
def test_a_payment_canceled_here_while_unpaid_reopens_only_when_told_so(paid: PaymentStatus) -> None:
    # a canceled payment never moves, unless it was cancelled here while its provider still had it open
    # (`Lifecycle.canceled_unpaid`): then the payer paid after all, and the payment follows the provider
    closed, reopened = payment(S.CANCELED), payment(S.CANCELED)

    advance(closed, answer(paid, captured_minor=10_000))
    advance(reopened, answer(paid, captured_minor=10_000), reopen=True)

    assert (closed.status, closed.captured_minor) == (S.CANCELED, 0)
    assert reopened.status is paid
    assert reopened.captured_minor == (10_000 if paid is S.SUCCEEDED else 0)
    advance(reopened, answer(S.PENDING), reopen=True)  # never backwards, reopened or not
    assert reopened.status is paid


def test_cancel_unpaid_cancels_only_a_payment_nobody_has_paid() -> None:
    sent, held = payment(S.PENDING), payment(S.AUTHORIZED)
    sent.provider_payment_id = held.provider_payment_id = "pi_unit"

    lifecycle.Lifecycle.cancel_unpaid(sent)
    lifecycle.Lifecycle.cancel_unpaid(held)

    assert (sent.status, held.status) == (S.CANCELED, S.AUTHORIZED)


def test_the_only_way_back_is_a_refund_that_failed() -> None:
    # the fall-back table: a refunded payment returns to what its standing refunds add up to, and nowhere else
    assert {(a, b) for a, targets in REFUND_FALLBACK.items() for b in targets} == {
        (S.REFUNDED, S.PARTIALLY_REFUNDED),
        (S.REFUNDED, S.SUCCEEDED),
        (S.PARTIALLY_REFUNDED, S.SUCCEEDED),
    }
    assert all(RANK[back] < RANK[current] for current, targets in REFUND_FALLBACK.items() for back in targets)
    # and a provider's payment status never takes it (only the refund rows do, through `settle`)
    for current in REFUND_FALLBACK:
        moved = payment(current)
        advance(moved, answer(S.SUCCEEDED, captured_minor=10_000))
        assert moved.status is current


@pytest.mark.parametrize(
    ("current", "refunded", "expected"),
    [
        (S.SUCCEEDED, 2_500, S.PARTIALLY_REFUNDED),
        (S.SUCCEEDED, 10_000, S.REFUNDED),
        (S.PARTIALLY_REFUNDED, 10_000, S.REFUNDED),
        (S.REFUNDED, 2_500, S.PARTIALLY_REFUNDED),  # one of two refunds failed late
        (S.REFUNDED, 0, S.SUCCEEDED),  # the only refund failed late
        (S.PARTIALLY_REFUNDED, 0, S.SUCCEEDED),
        (S.AUTHORIZED, 0, S.AUTHORIZED),  # nothing captured: refunds do not move it
        (S.CANCELED, 0, S.CANCELED),
    ],
)
def test_the_status_follows_the_standing_refunds(
    current: PaymentStatus, refunded: int, expected: PaymentStatus
) -> None:
    followed = payment(current)

    follow_refunds(followed, refunded)

    assert (followed.status, followed.refunded_minor) == (expected, refunded)
