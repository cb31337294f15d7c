"""Stripe objects to neutral DTOs. An unknown Stripe status maps to PENDING, never to success."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from payql.models.enums import DisputeStatus, PaymentStatus, RefundReason, RefundStatus
from payql.providers import messages
from payql.providers.base import ProviderDispute, ProviderPayment, ProviderRefund
from payql.providers.stripe import units

INTENT_STATUS = {
    "requires_payment_method": PaymentStatus.PENDING,
    "requires_confirmation": PaymentStatus.PENDING,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "processing": PaymentStatus.PROCESSING,
    "requires_capture": PaymentStatus.AUTHORIZED,
    "succeeded": PaymentStatus.SUCCEEDED,
    "canceled": PaymentStatus.CANCELED,
}

REFUND_STATUS = {
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.CANCELED,
}

REASON_TO_STRIPE = {
    RefundReason.REQUESTED_BY_CUSTOMER: "requested_by_customer",
    RefundReason.DUPLICATE: "duplicate",
    RefundReason.FRAUDULENT: "fraudulent",
}
REASON_FROM_STRIPE = {value: key for key, value in REASON_TO_STRIPE.items()}


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """Stripe objects are dict-like; nested expandable fields may be an id or an object."""
    try:
        value = obj[key]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


DECLINE_CODES = frozenset({"card_declined", "insufficient_funds", "expired_card", "incorrect_cvc", "processing_error"})
# Refusals because of the object's state, which payql refuses itself as INVALID_STATE when it knows the state first:
# a refund of a charge that has been charged back (an open or lost chargeback; an inquiry can still be refunded).
STATE_CODES = frozenset({"charge_disputed"})


def decline_code(error: Any) -> str | None:
    """The most telling of Stripe's `decline_code` and `code` (insufficient funds come as a decline code)."""
    specific, general = _get(error, "decline_code"), _get(error, "code")
    if specific in DECLINE_CODES:
        return str(specific)
    return str(general) if general else None


def metadata_payment_id(obj: Any) -> str | None:
    metadata = _get(obj, "metadata", {})
    value = _get(metadata, "payment_id")
    return str(value) if value else None


def refund(obj: Any) -> ProviderRefund:
    return ProviderRefund(
        provider_refund_id=str(obj["id"]),
        amount_minor=units.from_stripe(int(obj["amount"]), str(obj["currency"])),
        currency=str(obj["currency"]).upper(),
        status=REFUND_STATUS.get(str(_get(obj, "status", "")), RefundStatus.PENDING),
        reason=REASON_FROM_STRIPE.get(str(_get(obj, "reason", "")), RefundReason.OTHER),
        failure_message=_get(obj, "failure_reason"),
        refund_id=(_get(_get(obj, "metadata", {}), "refund_id") or None),
    )


def payment_intent(obj: Any, refunds: Iterable[Any] = ()) -> ProviderPayment:
    raw = str(_get(obj, "status", ""))
    status = INTENT_STATUS.get(raw, PaymentStatus.PENDING)
    error = _get(obj, "last_payment_error", {})
    currency = str(obj["currency"])
    received = units.from_stripe(int(_get(obj, "amount_received", 0)), currency)
    failure_code = decline_code(error) if status is PaymentStatus.PENDING else None
    return ProviderPayment(
        provider_payment_id=str(obj["id"]),
        status=status,
        amount_minor=units.from_stripe(int(obj["amount"]), currency),
        currency=currency.upper(),
        captured_minor=received if status is PaymentStatus.SUCCEEDED else 0,
        authorized_minor=units.from_stripe(int(_get(obj, "amount_capturable", 0)), currency),
        refunds=tuple(refund(item) for item in refunds),
        client_secret=_get(obj, "client_secret"),
        failure_code=failure_code,
        # payql's words for the code, never Stripe's `message` (CONTRACT.md, "No provider text reaches a client")
        failure_message=(
            messages.message(failure_code, messages.DECLINED) if error and status is PaymentStatus.PENDING else None
        ),
        payment_id=metadata_payment_id(obj),
        raw_status=raw,
    )


def checkout_session(obj: Any, intent: Any | None, refunds: Iterable[Any] = ()) -> ProviderPayment:
    """A Checkout Session is paid when its `payment_status` is `paid`; only then are credits granted."""
    status_raw, paid = str(_get(obj, "status", "")), str(_get(obj, "payment_status", ""))
    if paid in {"paid", "no_payment_required"}:
        status = PaymentStatus.SUCCEEDED
    elif status_raw == "expired":
        status = PaymentStatus.CANCELED
    elif status_raw == "complete":
        status = PaymentStatus.PROCESSING  # an async payment method still settling
    else:
        status = PaymentStatus.PENDING
    if intent is not None and _get(intent, "status") == "canceled" and status is not PaymentStatus.SUCCEEDED:
        status = PaymentStatus.CANCELED
    currency = str(_get(obj, "currency", ""))
    amount = units.from_stripe(int(_get(obj, "amount_total", 0)), currency) if currency else 0
    expires = _get(obj, "expires_at")
    return ProviderPayment(
        provider_payment_id=str(obj["id"]),
        status=status,
        amount_minor=amount,
        currency=currency.upper(),
        captured_minor=amount if status is PaymentStatus.SUCCEEDED else 0,
        refunds=tuple(refund(item) for item in refunds),
        checkout_url=_get(obj, "url"),
        expires_at=datetime.fromtimestamp(int(expires), UTC) if expires else None,
        payment_id=_get(obj, "client_reference_id") or metadata_payment_id(obj),
        raw_status=f"{status_raw}/{paid}",
    )


# Stripe's dispute statuses; the appeal statuses (after a dispute was lost) are not ours: the status stays.
DISPUTE_STATUS = {
    "warning_needs_response": DisputeStatus.WARNING_NEEDS_RESPONSE,
    "warning_under_review": DisputeStatus.WARNING_UNDER_REVIEW,
    "warning_closed": DisputeStatus.WARNING_CLOSED,
    "needs_response": DisputeStatus.NEEDS_RESPONSE,
    "under_review": DisputeStatus.UNDER_REVIEW,
    "won": DisputeStatus.WON,
    "lost": DisputeStatus.LOST,
    "prevented": DisputeStatus.PREVENTED,
}


def _id_of(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the object."""
    if value is None:
        return None
    return str(value) if isinstance(value, str) else str(_get(value, "id", "")) or None


def dispute(obj: Any) -> ProviderDispute:
    """A Stripe Dispute. Its money is its balance transactions (none for an inquiry; one when the funds are withdrawn,
    a second when they are reinstated): negative amounts are funds withdrawn, positive ones reinstated; a positive
    fee is charged, a negative one given back.

    A balance transaction is in the currency of the platform's Stripe balance. When that is another currency than
    the disputed charge's (Stripe converted it, `exchange_rate`), the funds withdrawn or reinstated count as the
    disputed `amount` in the charge's currency, as payql booked the capture (README "Provider truth: what payql books"),
    and the fees stay in the balance's currency (`fee_currency`)."""
    stripe_currency = str(obj["currency"]).lower()
    transactions = _get(obj, "balance_transactions", []) or []
    settled = sorted({str(_get(txn, "currency", stripe_currency)).lower() for txn in transactions} - {stripe_currency})
    fee_currency = settled[0] if settled else stripe_currency
    if settled:  # converted: each movement is the disputed amount, taken (negative) or given back (positive)
        disputed = units.from_stripe(int(obj["amount"]), stripe_currency)
        moved = [int(_get(txn, "amount", 0)) for txn in transactions]
        amounts = [disputed if amount > 0 else -disputed if amount < 0 else 0 for amount in moved]
    else:
        amounts = [units.from_stripe(int(_get(txn, "amount", 0)), stripe_currency) for txn in transactions]
    fees = [
        units.from_stripe(int(_get(txn, "fee", 0)), fee_currency)
        for txn in transactions
        if str(_get(txn, "currency", stripe_currency)).lower() == fee_currency
    ]
    charge = _get(obj, "charge")
    due = _get(_get(obj, "evidence_details", {}), "due_by")
    created = _get(obj, "created")
    return ProviderDispute(
        provider_dispute_id=str(obj["id"]),
        amount_minor=units.from_stripe(int(obj["amount"]), stripe_currency),
        currency=stripe_currency.upper(),
        status=DISPUTE_STATUS.get(str(_get(obj, "status", ""))),
        reason=_get(obj, "reason"),
        evidence_due_by=datetime.fromtimestamp(int(due), UTC) if due else None,
        created_at=datetime.fromtimestamp(int(created), UTC) if created else None,
        withdrawn_minor=-sum(amount for amount in amounts if amount < 0),
        reinstated_minor=sum(amount for amount in amounts if amount > 0),
        fee_minor=sum(fee for fee in fees if fee > 0),
        fee_returned_minor=-sum(fee for fee in fees if fee < 0),
        fee_currency=fee_currency.upper() if settled else None,
        payment_id=None if charge is None or isinstance(charge, str) else metadata_payment_id(charge),
        payment_ref=_id_of(_get(obj, "payment_intent")),
    )
